"""A full disk in the middle of a fine-tuning fit (``simpo-bio fit``): one line, exit 2, the previous last.ckpt
byte-identical, no temp file left."""

from __future__ import annotations

import errno
from pathlib import Path

import lightning.pytorch as pl
import pytest
import yaml
from tiny_models import SEQ_LEN, tiny_checkpoints

from simpo_bio.cli import main as cli_main

ROOT = Path(__file__).resolve().parents[2]


def test_a_full_disk_during_a_fit_is_one_line_and_keeps_the_previous_last_ckpt(tmp_path, capsys, monkeypatch):
    ckpts = tiny_checkpoints(tmp_path / "models")
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump({
        "trainer": {"max_epochs": 3, "enable_progress_bar": False, "logger": False, "callbacks": [
            {"class_path": "simpo_bio.dna.models.checkpoints.ResumableCheckpoint"}]},
        "model": {"init_args": {"pretrained": str(ckpts["pretrained"]), "oracle": str(ckpts["oracle"]),
                                "sampling": {"group_size": 4, "num_groups": 1, "seq_len": SEQ_LEN, "num_steps": 2},
                                "log_reference_elbo": False}},
    }))
    run = tmp_path / "run"
    last = run / "checkpoints" / "last.ckpt"
    saved: dict[str, bytes] = {}
    real_save = pl.Trainer.save_checkpoint

    def save(trainer, filepath, *args, **kwargs):
        if last.exists():  # the second write: the disk fills half-way through the temp file
            saved["before"] = last.read_bytes()
            Path(filepath).write_bytes(b"PK\x03\x04 half")
            raise OSError(errno.ENOSPC, "No space left on device", str(filepath))
        return real_save(trainer, filepath, *args, **kwargs)

    monkeypatch.setattr(pl.Trainer, "save_checkpoint", save)
    monkeypatch.chdir(ROOT)
    with pytest.raises(SystemExit) as exc:
        cli_main(["fit", "--config", str(ROOT / "configs/dna/simpo_base.yaml"), "--config", str(cfg),
                  f"--trainer.default_root_dir={run}", "--trainer.accelerator=cpu"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip() and "Seed set" not in line]
    assert exc.value.code == 2 and len(err) == 1, err
    assert "last.ckpt" in err[0] and "disk" in err[0].lower(), err[0]
    assert last.read_bytes() == saved["before"]  # the iteration-1 checkpoint, byte for byte
    assert [p.name for p in last.parent.iterdir() if p.name.endswith(".part")] == []  # no temp file left
