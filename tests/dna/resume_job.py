"""A tiny SiMPO fit that checkpoints every iteration and resumes from ``last.ckpt`` (for the kill tests).

    python tests/dna/resume_job.py OUT_DIR ITERATIONS [SCHEME]

Tiny pretrained model and oracle (:mod:`tiny_models`), ``ResumableCheckpoint`` every epoch, ``ckpt_path="last"``:
running the same command again after a kill continues where the last checkpoint left off. The final policy
parameters and the per-iteration history go to ``OUT_DIR/final.pt``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import lightning.pytorch as pl  # noqa: E402
import torch  # noqa: E402
from tiny_models import (  # noqa: E402
    SEQ_LEN,
    finetuning,  # noqa: E402
    tiny_oracle_ckpt,
    tiny_pretrained_ckpt,
)

from simpo_bio.dna.finetune.module import PolicyIterationDataModule  # noqa: E402
from simpo_bio.dna.models.checkpoints import ResumableCheckpoint  # noqa: E402


def run(out: Path, iterations: int, scheme: str = "square_neg", lr: float = 3e-3) -> dict:
    torch.set_num_threads(1)
    os.environ.setdefault("WANDB_MODE", "offline")
    out = Path(out)
    pretrained = tiny_pretrained_ckpt(out / "models" / "pretrained.ckpt")
    oracle = tiny_oracle_ckpt(out / "models" / "oracle.ckpt", seed=1)
    pl.seed_everything(0, verbose=False)
    module = finetuning(pretrained=str(pretrained), oracle=str(oracle), scheme=scheme, group_size=8,
                             num_groups=2, seq_len=SEQ_LEN, num_steps=4, update_epochs=2, minibatch_size=8, lr=lr,
                             auto_temperature=True, seed=1)  # fmt: skip
    trainer = pl.Trainer(max_epochs=iterations, accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=out,
                         callbacks=[ResumableCheckpoint(dirpath=str(out / "checkpoints"))])  # fmt: skip
    trainer.fit(module, PolicyIterationDataModule(), ckpt_path="last")
    result = {"params": {k: v.clone() for k, v in module.policy.state_dict().items()}, "history": module.history,
              "temperature": float(module.weighting.temperature)}  # fmt: skip
    torch.save(result, out / "final.pt")
    return result


if __name__ == "__main__":
    run(Path(sys.argv[1]), int(sys.argv[2]), *(sys.argv[3:4] or []))
