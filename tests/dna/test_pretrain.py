"""Pretraining module: a tiny Lightning run, EMA, checkpoint round trip and its errors, Markov baselines."""

from __future__ import annotations

import itertools
import math

import lightning.pytorch as pl
import pytest
import torch
from torch.utils.data import DataLoader

from simpo_bio.dna.models.baselines import MarkovChain, markov_bits_per_base
from simpo_bio.dna.models.checkpoints import (
    KIND_KEY,
    CheckpointArchitectureError,
    CheckpointCorruptError,
    CheckpointNotFoundError,
)
from simpo_bio.dna.models.pretrain import ExportPretrained, MaskedDiffusionLM, export_state, load_pretrained

torch.set_num_threads(1)
TINY = {"hidden_dim": 8, "num_stacks": 1, "dilations": [1, 2], "kernel_size": 3, "block_order": "interleaved"}


class _Split:
    def __init__(self, tokens):
        self.tokens = tokens


class TinyData(pl.LightningDataModule):
    """Random sequences with a Markov structure (so the baselines have something to learn); same API as ours."""

    def __init__(self, n: int = 96, length: int = 24):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        x = torch.zeros(n, length, dtype=torch.long)
        x[:, 0] = torch.randint(0, 4, (n,), generator=g)
        for i in range(1, length):  # sticky chain: repeat the previous base with probability 0.7
            keep = torch.rand(n, generator=g) < 0.7
            x[:, i] = torch.where(keep, x[:, i - 1], torch.randint(0, 4, (n,), generator=g))
        self.splits = {"train": x[:64], "validation": x[64:80], "test": x[80:]}

    def dataset(self, split):
        return _Split(self.splits[split].to(torch.int8))

    def train_dataloader(self):
        return DataLoader(self.splits["train"], batch_size=16, shuffle=True)

    def val_dataloader(self):
        return DataLoader(self.splits["validation"], batch_size=16)

    def test_dataloader(self):
        return DataLoader(self.splits["test"], batch_size=16)


def _trainer(tmp_path, max_steps, callbacks=()):
    return pl.Trainer(
        max_steps=max_steps, logger=False, enable_progress_bar=False, enable_model_summary=False,
        default_root_dir=tmp_path, callbacks=list(callbacks), num_sanity_val_steps=0,
        enable_checkpointing=False, limit_val_batches=1,
    )  # fmt: skip


def test_fit_exports_ema_and_checkpoint_round_trip(tmp_path, capsys):
    model = MaskedDiffusionLM(**TINY, lr=3e-3, warmup_steps=2, ema_decay=0.9, num_eval_samples=16,
                              eval_sampling_steps=4, eval_elbo_draws=1, markov_orders=[0, 1])  # fmt: skip
    export = tmp_path / "pretrained.ckpt"
    trainer = _trainer(tmp_path, 8, [ExportPretrained(str(export), data_sha256="abc")])
    trainer.fit(model, datamodule=TinyData())
    assert int(model.ema_updates) == 8
    # the EMA differs from the live weights and is what gets exported
    live = model.model.backbone.linear.weight
    ema = model.ema.backbone.linear.weight
    assert not torch.allclose(live, ema)
    loaded = load_pretrained(export)
    assert not loaded.training
    torch.testing.assert_close(loaded.backbone.linear.weight, ema)
    x = torch.randint(0, 4, (3, 24))
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    torch.testing.assert_close(loaded.elbo_loss(x, generator=g1), model.ema.eval().elbo_loss(x, generator=g2))
    ckpt = torch.load(export, weights_only=True)
    assert ckpt["simpo_bio"]["data_sha256"] == "abc"
    assert not any(k.startswith("model.") for k in ckpt["state_dict"])  # EMA only: half the size
    # `test --ckpt_path <export>` path: Lightning restores the export into a fresh module and prints the gate table
    fresh = MaskedDiffusionLM(**TINY, num_eval_samples=16, eval_sampling_steps=4, eval_elbo_draws=1,
                              markov_orders=[0, 1])  # fmt: skip
    out = _trainer(tmp_path, 1).test(fresh, datamodule=TinyData(), ckpt_path=str(export), verbose=False)[0]
    printed = capsys.readouterr().out
    assert "Markov order 1" in printed and "3-mer" in printed
    assert math.isfinite(out["test/bpb"]) and -1 <= out["test/kmer3_corr"] <= 1
    torch.testing.assert_close(fresh.model.backbone.linear.weight, ema)


def test_load_pretrained_errors(tmp_path):
    module = MaskedDiffusionLM(**TINY)
    good = export_state(module)
    with pytest.raises(CheckpointNotFoundError):
        load_pretrained(tmp_path / "nope.ckpt")
    path = tmp_path / "good.ckpt"
    torch.save(good, path)
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointCorruptError):
        load_pretrained(truncated)
    wrong = dict(good, hyper_parameters={**good["hyper_parameters"], "hidden_dim": 12})
    torch.save(wrong, tmp_path / "wrong.ckpt")
    with pytest.raises(CheckpointArchitectureError, match="wrong architecture.*shape"):
        load_pretrained(tmp_path / "wrong.ckpt")
    other = dict(good, **{KIND_KEY: "CellTypeClassifier"})
    torch.save(other, tmp_path / "oracle.ckpt")
    with pytest.raises(CheckpointArchitectureError, match="CellTypeClassifier"):
        load_pretrained(tmp_path / "oracle.ckpt")
    no_hp = {k: v for k, v in good.items() if k != "hyper_parameters"}
    torch.save(no_hp, tmp_path / "nohp.ckpt")
    with pytest.raises(CheckpointArchitectureError, match="hyper-parameters"):
        load_pretrained(tmp_path / "nohp.ckpt")


def test_markov_chain_is_normalised_and_recovers_entropy_rate():
    # every chain is a distribution over whole sequences: probabilities of all 4^3 sequences sum to 1
    train = torch.randint(0, 4, (50, 10), generator=torch.Generator().manual_seed(0))
    every = torch.tensor(list(itertools.product(range(4), repeat=3)))
    for k in (0, 1, 2, 4):
        chain = MarkovChain(k, alpha=0.5).fit(train[:, :3] if k < 3 else train)
        total = chain.log_likelihood(every).exp().sum()
        torch.testing.assert_close(total, torch.tensor(1.0, dtype=torch.float64))
    # a sticky order-1 chain: order 1 reaches the entropy rate, order 0 does not
    data = TinyData(n=3000, length=60)
    tr, te = data.splits["train"], data.splits["test"]
    tr = torch.cat([data.splits["train"], data.splits["validation"]])
    bits = markov_bits_per_base(tr, te, orders=[0, 1, 2])
    p = 0.7 + 0.3 / 4
    rate = -(p * math.log2(p) + 3 * (0.3 / 4) * math.log2(0.3 / 4))
    assert abs(bits[0] - 2.0) < 0.02
    expected = (2.0 + 59 * rate) / 60
    assert abs(bits[1] - expected) < 0.03
    assert bits[1] < bits[0] - 0.5
    with pytest.raises(ValueError):
        MarkovChain(1).fit(torch.full((2, 5), 4))
