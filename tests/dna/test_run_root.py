"""One run root: ``--trainer.default_root_dir D`` puts everything of a fine-tuning fit under D, nothing under runs/.

The fit runs in a fresh interpreter from an empty working directory, with the shipped base config and a scheme
config (which names its own default root, runs/simpo_exp): checkpoints, CSV logs, wandb, config.yaml and the exported
designs must all land in D.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _fit(cwd: Path, *extra: str) -> subprocess.CompletedProcess:
    small = tmp_config(cwd)
    args = [sys.executable, "-m", "simpo_bio.cli", "fit",
            "--config", str(ROOT / "configs/dna/simpo_base.yaml"), "--config", str(ROOT / "configs/dna/simpo_exp.yaml"),
            "--config", str(small),
            f"--model.init_args.pretrained={ROOT / 'checkpoints/dna/pretrained_dhs.ckpt'}",
            f"--model.init_args.oracle={ROOT / 'checkpoints/dna/oracle_ft.ckpt'}", *extra]
    env = {**os.environ, "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=600, env=env)


def tmp_config(cwd: Path) -> Path:
    """A one-iteration fit with a small export (no evaluation oracle: no data set needed)."""
    cfg = cwd.parent / f"{cwd.name}_small.yaml"
    cfg.write_text(
        "trainer:\n  max_epochs: 1\n  enable_progress_bar: false\n  callbacks:\n"
        "    - class_path: simpo_bio.dna.models.checkpoints.ResumableCheckpoint\n"
        "    - class_path: simpo_bio.dna.design.designs.ExportDesigns\n"
        "      init_args:\n        num_samples: 4\n        eval_oracle: null\n        evaluate_pretrained: false\n"
        "        jaspar: false\n        num_steps: 2\n"
        "model:\n  init_args:\n    sampling:\n      group_size: 4\n      num_groups: 1\n      num_steps: 2\n"
        "    log_reference_elbo: false\n")
    return cfg


def test_default_root_dir_holds_the_whole_run_and_nothing_goes_under_runs(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    root = tmp_path / "elsewhere" / "my_run"
    out = _fit(work, f"--trainer.default_root_dir={root}")
    assert out.returncode == 0, out.stderr[-3000:]
    assert list(work.iterdir()) == [], sorted(str(p) for p in work.rglob("*"))[:20]  # nothing under runs/ or ./
    assert (root / "checkpoints" / "last.ckpt").is_file()
    assert any(root.rglob("config.yaml")) and (root / "designs.fasta").is_file() and (root / "history.csv").is_file()
    assert any((root / "logs").rglob("metrics.csv")), "the CSV logger's metrics are not under the root"
    assert (root / "wandb").is_dir(), "wandb's offline run is not under the root"
    # the scheme config's own root when none is given: runs/simpo_exp under the working directory
    again = _fit(work)
    assert again.returncode == 0, again.stderr[-3000:]
    assert (work / "runs" / "simpo_exp" / "checkpoints" / "last.ckpt").is_file()
    assert sorted(p.name for p in (work / "runs").iterdir()) == ["simpo_exp"]
