"""The composition term of the fine-tuning reward (``reward.composition_weight``; ``leash.composition_penalty``).

Checked: the per-sequence penalty is the policy gradient of ``N * KL(f_pi || q)`` (against autograd, with totals
that vary from sequence to sequence, as motif hits do); it is zero at the reference and signs the over- and
under-used entries; bad inputs are one-line errors; in a fit it lowers the drift of the 3-mer spectrum that an
oracle rewarding A/T content causes; a fit with it resumes from ``last.ckpt`` to the uninterrupted result.
"""

from __future__ import annotations

import sys
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tiny_models import finetuning  # noqa: E402

from simpo_bio.diffusion.masked import MaskedDiffusion  # noqa: E402
from simpo_bio.dna.data.spectra import spectrum_counts  # noqa: E402
from simpo_bio.dna.finetune.leash import composition_penalty  # noqa: E402
from simpo_bio.dna.models.backbones import DilatedCNN  # noqa: E402
from simpo_bio.dna.models.checkpoints import ResumableCheckpoint  # noqa: E402


def _model(seed: int) -> MaskedDiffusion:
    torch.manual_seed(seed)
    return MaskedDiffusion(DilatedCNN(hidden_dim=8, num_stacks=1, dilations=(1, 2), kernel_size=3)).eval()


def test_penalty_is_the_policy_gradient_of_the_spectrum_kl():
    g = torch.Generator().manual_seed(0)
    counts = torch.randint(0, 6, (7, 5), generator=g).double()  # totals differ across the 7 sequences
    counts[:, 0] += 1
    q = torch.rand(5, generator=g, dtype=torch.float64) + 0.1
    q = q / q.sum()
    theta = torch.randn(7, generator=g, dtype=torch.float64, requires_grad=True)
    p = torch.softmax(theta, 0)  # a policy over the 7 sequences
    big_f = p @ counts  # the policy's expected counts F
    total = big_f.sum().detach()  # N held at S = sum F
    f = big_f / big_f.sum()
    (total * (f * (f / q).log()).sum()).backward()
    s = composition_penalty(counts, q, spectrum=big_f.detach())
    assert torch.allclose(theta.grad, p.detach() * s, atol=1e-10)
    # the score-function form: E_p[s] = 0, so p_j (s_j - E_p[s]) is the same gradient
    assert abs(float(p.detach() @ s)) < 1e-10


def test_penalty_is_zero_at_the_reference_and_signs_over_and_under_use():
    q = torch.tensor([0.4, 0.3, 0.2, 0.1], dtype=torch.float64)
    counts = torch.tensor([[4.0, 3, 2, 1], [0, 0, 0, 10], [10, 0, 0, 0]])
    assert torch.allclose(composition_penalty(counts, q, spectrum=q * 7), torch.zeros(3, dtype=torch.float64))
    drifted = torch.tensor([0.1, 0.3, 0.2, 0.4])  # the policy over-uses entry 3 and under-uses entry 0
    s = composition_penalty(counts, q, spectrum=drifted)
    assert s[1] > 0 > s[2]  # a design full of the over-used entry pays, one of the under-used entry gains
    # the default spectrum is the samples' own pooled counts plus the pseudocount
    assert torch.allclose(composition_penalty(counts, q), composition_penalty(counts, q, spectrum=counts.sum(0) + 1))


def test_penalty_bad_inputs_are_one_line_errors():
    q = torch.full((4,), 0.25)
    with pytest.raises(ValueError, match=r"must be \[n, 4\]"):
        composition_penalty(torch.ones(3, 5), q)
    with pytest.raises(ValueError, match="counts must be >= 0"):
        composition_penalty(-torch.ones(3, 4), q)
    with pytest.raises(ValueError, match="reference spectrum must be finite and > 0"):
        composition_penalty(torch.ones(3, 4), torch.tensor([0.5, 0.5, 0.0, 0.0]))
    with pytest.raises(ValueError, match="spectrum has 3 entries"):
        composition_penalty(torch.ones(3, 4), q, spectrum=torch.ones(3))
    with pytest.raises(ValueError, match="policy's spectrum must be finite and > 0"):
        composition_penalty(torch.ones(3, 4), q, spectrum=torch.tensor([1.0, 0, 1, 1]))
    with pytest.raises(ValueError, match="pseudocount"):
        composition_penalty(torch.ones(3, 4), q, pseudocount=0)
    for bad in (-1.0, float("nan"), True):
        with pytest.raises(ValueError, match="reward.composition_weight"):
            finetuning(pretrained=_model(0), oracle=lambda t: t.float().mean(1), seq_len=16, composition_weight=bad)


def _at_oracle(tokens):  # rewards A/T content: a composition hack
    return ((tokens == 0) | (tokens == 3)).float().mean(1) * 10


def _kmer_kl(module, x) -> float:
    c = spectrum_counts(x)["kmer3"].sum(0).double() + 1
    f = c / c.sum()
    q = module.composition_reference()["kmer3"]
    return float((f * (f / q).log()).sum())


def test_the_term_shapes_the_reward_and_lowers_the_spectrum_drift(tmp_path):
    drift = {}
    for weight in (0.0, 3.0):
        pl.seed_everything(0, verbose=False)
        m = finetuning(pretrained=_model(0), oracle=_at_oracle, group_size=16, num_groups=1, seq_len=16,
                       num_steps=4, lr=1e-2, composition_weight=weight, seed=0)
        pl.Trainer(max_epochs=10, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                   enable_model_summary=False, default_root_dir=tmp_path).fit(m)
        assert ("kmer3_kl" in m.history[-1]) == (weight > 0)
        x = m.policy.sample(256, 16, num_steps=4, seed=3)
        drift[weight] = _kmer_kl(m, x)
        if weight > 0:  # the shaped reward is the oracle minus weight x the penalty (nothing else is on here)
            xs = m.policy.sample(16, 16, num_steps=4, seed=4)
            expected = _at_oracle(xs) - weight * composition_penalty(spectrum_counts(xs)["kmer3"],
                                                                     m.composition_reference()["kmer3"])
            shaped, _ = m.shaped_reward(xs, _at_oracle(xs), torch.zeros(16))
            assert torch.allclose(shaped.reshape(-1), expected.float(), atol=1e-4)
    assert drift[3.0] < 0.5 * drift[0.0], drift


def _fit_with_composition(root: Path, iterations: int, crash_at: int | None = None):
    class Crash(pl.Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            if crash_at is not None and trainer.current_epoch == crash_at:
                raise RuntimeError("killed")

    pl.seed_everything(0, verbose=False)
    m = finetuning(pretrained=_model(0), oracle=_at_oracle, group_size=8, num_groups=1, seq_len=16, num_steps=4,
                   lr=1e-2, composition_weight=1.0, seed=0)
    trainer = pl.Trainer(max_epochs=iterations, accelerator="cpu", logger=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=root,
                         callbacks=[ResumableCheckpoint(dirpath=str(root / "ck")), Crash()])
    trainer.fit(m, ckpt_path="last")
    return m


def test_a_fit_with_the_term_resumes_to_the_uninterrupted_result(tmp_path):
    whole = _fit_with_composition(tmp_path / "whole", 5)
    with pytest.raises(RuntimeError, match="killed"):
        _fit_with_composition(tmp_path / "killed", 5, crash_at=3)
    assert torch.load(tmp_path / "killed" / "ck" / "last.ckpt", weights_only=False)["epoch"] < 4
    resumed = _fit_with_composition(tmp_path / "killed", 5)
    assert [h["reward_mean"] for h in resumed.history] == [h["reward_mean"] for h in whole.history]
    assert [h["kmer3_kl"] for h in resumed.history] == [h["kmer3_kl"] for h in whole.history]
    for name, value in whole.policy.state_dict().items():
        assert torch.equal(resumed.policy.state_dict()[name], value), name
