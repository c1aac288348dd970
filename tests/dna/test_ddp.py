"""SiMPO fine-tuning under DDP: a 2-process CPU fit (gloo) on the tiny models.

The two processes are launched the way ``torchrun`` / ``srun`` launch them (``RANK``, ``LOCAL_RANK``,
``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT`` in the environment; Lightning's ``strategy="ddp"`` joins them).

Checks (``simpo_bio.dna.finetune.module`` docstring, ``docs/gpu.md``): the two ranks draw different sequences; the policy
parameters are identical on both ranks after every step; and one DDP step equals one single-process step on the
concatenation of both ranks' groups. "Equal" needs the same per-sequence ELBO noise in both runs (the ELBO's
antithetic times and masks depend on the batch), so the policy here uses a deterministic per-sequence ELBO; the
weights are normalised within groups, each rank's loss is ``sum_i w_i ELBO_i / num_groups`` and DDP averages the
gradients, so the average of the rank losses is the single-process loss with ``2 * num_groups`` groups.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from tiny_models import finetuning, tiny_checkpoints

from simpo_bio.diffusion.masked import MaskedDiffusion
from simpo_bio.dna.finetune.module import PolicyIterationDataModule, SiMPOFineTuning
from simpo_bio.dna.models.pretrain import load_pretrained

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not torch.distributed.is_available() or sys.platform == "win32",
                                 reason="torch.distributed (gloo) is not available on this platform")]
GROUP, GROUPS, ITERS = 6, 2, 2
UPDATE_EPOCHS = 2  # two optimizer steps per iteration: several backward passes per DDP step


class DeterministicElbo(MaskedDiffusion):
    """The same ELBO estimator with noise that depends on the sequence only (time and masked positions)."""

    def elbo_loss(self, x, *, antithetic=True, generator=None, t=None):
        t = 0.25 + 0.5 * (x.sum(1) % 5).float() / 4
        masked = (torch.arange(x.shape[1], device=x.device)[None] + x.sum(1, keepdim=True)) % 3 != 0
        z = torch.where(masked, torch.full_like(x, self.mask_index), x)
        logp = self(z, self.schedule.sigma(t)).gather(-1, x[..., None]).squeeze(-1)
        return -(logp * masked).sum(-1) / t


class Recording(SiMPOFineTuning):
    """Records each iteration's samples, the policy after the step and the loss, per rank, into ``record_dir``."""

    record_dir = None
    replay = None  # a tensor to return instead of sampling (the single-process reference)

    def generate(self, num_samples, **kwargs):
        if self.replay is not None:  # trajectory log-probabilities only shape the reward with a KL penalty (0 here)
            zeros = torch.zeros(len(self.replay))
            out = self.replay if kwargs.get("reference") is None else (self.replay, zeros, zeros)
        else:
            out = super().generate(num_samples, **kwargs)
        self._last_x = out[0] if isinstance(out, tuple) else out
        return out

    def on_train_batch_end(self, outputs, batch, batch_idx):
        flat = torch.cat([p.detach().flatten() for p in self.policy.parameters()]).cpu()
        torch.save({"x": self._last_x.cpu(), "params": flat, "loss": self.history[-1]["loss"]},
                   f"{self.record_dir}/rank{self.global_rank}_it{self.current_epoch}.pt")


def _policy(ckpts) -> DeterministicElbo:
    m = load_pretrained(ckpts["pretrained"])
    return DeterministicElbo(m.backbone, mask_index=m.mask_index, eps=m.eps)


def _module(ckpts, record_dir, num_groups: int) -> Recording:
    module = finetuning(cls=Recording, pretrained=_policy(ckpts), oracle=str(ckpts["oracle"]), scheme="square_neg",
                        group_size=GROUP,
                       num_groups=num_groups, seq_len=20, num_steps=4, update_epochs=UPDATE_EPOCHS, lr=3e-3, grad_clip=1.0,
                       log_reference_elbo=False, seed=7, elbo_estimator="time", elbo_draws=1)  # the overridden elbo_loss
    module.record_dir = str(record_dir)
    return module


def _trainer(root, **kw) -> pl.Trainer:
    return pl.Trainer(max_epochs=ITERS, accelerator="cpu", logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, default_root_dir=root, **kw)


def _worker(root: str) -> None:
    """One DDP process (run by :func:`_launch` in a fresh interpreter)."""
    torch.set_num_threads(1)
    root = Path(root)
    ckpts = {"pretrained": root / "models" / "pretrained.ckpt", "oracle": root / "models" / "oracle_ft.ckpt"}
    _trainer(root, strategy="ddp", devices=2).fit(_module(ckpts, root / "ddp", GROUPS), PolicyIterationDataModule())


def _launch(root: Path, world: int = 2) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    here = str(Path(__file__).parent)
    procs = []
    for rank in range(world):
        env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": str(world),
               "RANK": str(rank), "LOCAL_RANK": str(rank), "NODE_RANK": "0", "OMP_NUM_THREADS": "1",
               "PYTHONPATH": os.pathsep.join([here, os.environ.get("PYTHONPATH", "")])}
        code = f"import test_ddp; test_ddp._worker({str(root)!r})"
        procs.append(subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    outs = [p.communicate(timeout=300)[0] for p in procs]
    for rank, (p, out) in enumerate(zip(procs, outs)):
        assert p.returncode == 0, f"rank {rank} failed:\n{out[-4000:]}"


def test_two_process_ddp_ranks_differ_stay_in_sync_and_match_single_process(tmp_path):
    torch.set_num_threads(1)
    ckpts = tiny_checkpoints(tmp_path / "models")
    (tmp_path / "ddp").mkdir()
    _launch(tmp_path)
    rec = {(r, k): torch.load(tmp_path / "ddp" / f"rank{r}_it{k}.pt") for r in (0, 1) for k in range(ITERS)}
    for k in range(ITERS):
        assert not torch.equal(rec[0, k]["x"], rec[1, k]["x"]), "both ranks drew the same sequences"
        torch.testing.assert_close(rec[0, k]["params"], rec[1, k]["params"], rtol=0, atol=0)

    # single process, one iteration on both ranks' first-iteration groups (rank 0's first, as the groups lie)
    (tmp_path / "single").mkdir()
    single = _module(ckpts, tmp_path / "single", 2 * GROUPS)
    single.replay = torch.cat([rec[0, 0]["x"], rec[1, 0]["x"]])
    _trainer(tmp_path, devices=1, max_steps=1).fit(single, PolicyIterationDataModule())
    ref = torch.load(tmp_path / "single" / "rank0_it0.pt")
    mean_rank_loss = (rec[0, 0]["loss"] + rec[1, 0]["loss"]) / 2
    assert ref["loss"] == pytest.approx(mean_rank_loss, rel=1e-5, abs=1e-6)
    torch.testing.assert_close(ref["params"], rec[0, 0]["params"], rtol=1e-5, atol=1e-6)

    # rank 0 keeps the one-process stream: a one-process fit with the same seed draws rank 0's first groups
    (tmp_path / "plain").mkdir()
    _trainer(tmp_path, devices=1, max_steps=1).fit(_module(ckpts, tmp_path / "plain", GROUPS),
                                                   PolicyIterationDataModule())
    assert torch.equal(torch.load(tmp_path / "plain" / "rank0_it0.pt")["x"], rec[0, 0]["x"])
