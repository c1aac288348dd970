"""``simpo-bio demo`` on tiny models (for the demo kill test): ``python tests/dna/demo_job.py OUT ITERATIONS``.

The shipped demo configs (``configs/dna/natural_policy.yaml`` + ``demo.yaml``; or the SiMPO demo's) plus a tiny
override file (tiny pretrained model and oracles of :mod:`tiny_models`, 20-bp sequences, small groups, a small
composition prior, no JASPAR motif term);
the DHS reference sets are replaced by :func:`tiny_models.tiny_real_sets` (no download). Running the same command
again after a kill resumes from ``OUT/checkpoints/last.ckpt``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))

import torch  # noqa: E402
import yaml  # noqa: E402
from tiny_models import SEQ_LEN, tiny_checkpoints, tiny_real_sets  # noqa: E402

from simpo_bio.dna import cli  # noqa: E402
from simpo_bio.dna.design import designs  # noqa: E402

#: The SiMPO demo's configs (``configs/dna/demo_simpo.yaml``, the demo until 2026-12-07), for ``run(..., simpo=True)``.
SIMPO_CONFIGS = ("configs/dna/simpo_base.yaml", "configs/dna/simpo_square_neg.yaml", "configs/dna/demo_simpo.yaml")


def tiny_config(out: Path, simpo: bool = False) -> Path:
    ckpts = tiny_checkpoints(out / "models")
    method = {"update": {"update_epochs": 1, "minibatch_size": 8}} if simpo else \
        {"gradient": {"prior_samples": 16, "motif_weight": 0.0}}
    cfg = {
        "model": {"init_args": {"pretrained": str(ckpts["pretrained"]), "oracle": str(ckpts["oracle"]),
                                "sampling": {"group_size": 8, "num_groups": 1, "seq_len": SEQ_LEN, "num_steps": 4},
                                **method}},
        "trainer": {"enable_progress_bar": False},
    }  # fmt: skip
    path = out / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def run(out: Path, iterations: int, *extra: str, simpo: bool = False) -> None:
    """The demo (its default configs, or with ``simpo`` the SiMPO demo's) on the tiny models into ``out``."""
    os.environ["WANDB_MODE"] = "disabled"  # (the demo logs to wandb offline; not needed here)
    torch.set_num_threads(1)
    original, designs.real_sets = designs.real_sets, lambda *a, **k: tiny_real_sets()
    try:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        configs = [str(ROOT / c) for c in (SIMPO_CONFIGS if simpo else cli.DEMO_CONFIGS)] + [str(tiny_config(out, simpo))]
        cli.demo_main(["--out", str(out), *[a for c in configs for a in ("--config", c)], "--iterations",
                       str(iterations), "--num-samples", "16", "--eval-oracle",
                       str(tiny_checkpoints(out / "models")["eval_oracle"]), "--no-jaspar", *extra])  # fmt: skip
    finally:
        designs.real_sets = original


if __name__ == "__main__":
    run(Path(sys.argv[1]), int(sys.argv[2]), *sys.argv[3:])
