"""bench/dna_policy_alone.py's reward-gradient entries: their calls, and that they run the shipped
RewardGradientFineTuning with the entry's weights (the method itself: tests/dna/test_natural_policy.py)."""

import importlib.util
from pathlib import Path

import pytest
import torch
from test_finetune import tiny_policy
from test_natural_policy import tiny_oracle

BENCH = Path(__file__).resolve().parents[2] / "bench" / "dna_policy_alone.py"


def bench():
    spec = importlib.util.spec_from_file_location("bench_dna_policy_alone_rg", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_grid_entries_spend_1920_or_the_gates_4000_calls():
    b = bench()
    calls = {e: b.entry_calls(spec) for e, spec in b.GRID.items() if "reward_gradient" in spec}
    assert len(calls) == 11
    assert {e for e, c in calls.items() if c == 4000} == {"rgc_k10_m10_c4000", "rgc_k5_m5_c4000", "rgc_k10_m30_c4000",
                                                          "rgc_k7_m7_c4000", "rgc_k5_m10_c4000"}
    assert set(calls.values()) == {1920, 4000}


@pytest.mark.parametrize("entry", ["rg_a3", "rgc_k5_m5_c4000"])
def test_an_entry_builds_the_shipped_module_with_its_weights_and_seed(entry, monkeypatch):
    import simpo_bio.dna.finetune as ft

    b = bench()
    seen = {}

    class Spy(ft.RewardGradientFineTuning):
        def __init__(self, **kw):
            seen.update(kw)
            super().__init__(pretrained=tiny_policy(), oracle=tiny_oracle(), **{k: v for k, v in kw.items()
                                                                                   if k not in ("sampling",)},
                             sampling=ft.SamplingConfig(group_size=kw["sampling"].group_size, num_groups=1,
                                                        num_steps=4, seq_len=20))

    monkeypatch.setattr(ft, "RewardGradientFineTuning", Spy)
    m = b.build_gradient(entry, 7, motif_scanner=None if entry == "rg_a3" else _scanner())
    spec = b.GRID[entry]["reward_gradient"]
    g = m.gradient_config
    assert (g.kl_penalty, g.lr) == (spec["alpha"], spec["lr"])
    assert (g.kmer_weight, g.motif_weight) == (spec.get("kmer_weight", 0.0), spec.get("motif_weight", 0.0))
    assert seen["sampling"].group_size == 32 and seen["sampling"].num_steps == b.NUM_STEPS
    assert torch.equal(m.generator.get_state(), torch.Generator().manual_seed(3007).get_state())


def _scanner():
    from simpo_bio.dna.data.motifs import MotifScanner

    return MotifScanner(["m"], torch.zeros(1, 4, 3), torch.tensor([3]), torch.tensor([1.0]))


def test_the_shipped_natural_policy_is_the_measured_entry():
    """GradientConfig's defaults and configs/dna/natural_policy.yaml are rgc_k7_m7_c4000 (the numbers the README
    quotes were measured on it)."""
    import yaml

    from simpo_bio.dna.finetune import GradientConfig, RewardGradientFineTuning

    b = bench()
    spec = b.GRID["rgc_k7_m7_c4000"]
    g = GradientConfig()
    rg = spec["reward_gradient"]
    assert (g.kl_penalty, g.lr, g.kmer_weight, g.motif_weight) == (rg["alpha"], rg["lr"], rg["kmer_weight"],
                                                                    rg["motif_weight"])
    cfg = yaml.safe_load((BENCH.parents[1] / "configs" / "dna" / "natural_policy.yaml").read_text())
    sampling = RewardGradientFineTuning.__init__.__defaults__[2]
    assert cfg["model"]["class_path"] == "simpo_bio.dna.finetune.RewardGradientFineTuning"
    assert "gradient" not in cfg["model"]["init_args"] and "sampling" not in cfg["model"]["init_args"]
    assert (sampling.group_size, sampling.num_groups, sampling.num_steps) == (32, 1, b.NUM_STEPS)
    assert cfg["trainer"]["max_epochs"] * sampling.group_size == b.entry_calls(spec) == 4000
