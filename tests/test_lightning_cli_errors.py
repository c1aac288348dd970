"""`simpo-bio fit` reports a bad config value or a broken --ckpt_path in one line with exit status 2."""

from pathlib import Path

import pytest

from simpo_bio.lightning_cli import lightning_cli

ROOT = Path(__file__).resolve().parents[1]
BASE = str(ROOT / "configs" / "dna" / "simpo_base.yaml")


def _run(args, capsys):
    with pytest.raises(SystemExit) as e:
        lightning_cli(args)
    return e.value.code, capsys.readouterr().err.strip().splitlines()


def test_temperature_zero_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, lines = _run(["fit", "--config", BASE, "--model.init_args.weighting.temperature", "0",
                        "--trainer.logger", "false", "--trainer.callbacks", "[]"], capsys)
    assert code == 2
    assert len(lines) == 1 and "weighting.temperature must be a finite number > 0" in lines[0] and lines[0].startswith("simpo-bio fit: error:")


def test_truncated_ckpt_path_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    bad = tmp_path / "last.ckpt"
    bad.write_bytes(b"PK\x03\x04 truncated")
    code, lines = _run(["fit", "--config", BASE, "--ckpt_path", str(bad),
                        "--trainer.logger", "false", "--trainer.callbacks", "[]"], capsys)
    assert code == 2 and len(lines) == 1 and lines[0].startswith("simpo-bio fit: error:")


def test_debug_shows_the_traceback(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SIMPO_DEBUG", "1")
    with pytest.raises(ValueError, match="temperature"):
        lightning_cli(["fit", "--config", BASE, "--model.init_args.weighting.temperature", "0",
                       "--trainer.logger", "false", "--trainer.callbacks", "[]"])


def test_a_misspelt_config_key_is_one_line_naming_the_key_and_the_file(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    bad = tmp_path / "mine.yaml"
    bad.write_text("model:\n  init_args:\n    lrr: 0.1\n")
    code, lines = _run(["fit", "--config", BASE, "--config", str(bad)], capsys)
    assert code == 2 and len(lines) == 1, lines  # was a 59-line usage dump
    assert lines[0].startswith("simpo-bio fit: error:") and "'lrr'" in lines[0] and str(bad) in lines[0]
    assert BASE not in lines[0]  # only the file that sets it
    code, lines = _run(["fit", "--config", BASE, "--trainer.max_epochz", "3"], capsys)
    assert code == 2 and len(lines) == 1 and "max_epochz" in lines[0]


def test_config_yaml_is_written_atomically(tmp_path, monkeypatch):
    """A full disk while Lightning writes config.yaml: the previous file stays whole, no temp file is left."""
    import errno
    from types import SimpleNamespace

    from simpo_bio.fileio import DiskFullError
    from simpo_bio.lightning_cli import AtomicSaveConfigCallback

    old = tmp_path / "config.yaml"
    old.write_text("previous: config\n")

    def full(cfg, path, **kwargs):
        Path(path).write_text("half")
        raise OSError(errno.ENOSPC, "No space left on device")

    parser = SimpleNamespace(save=full)
    strategy = SimpleNamespace(broadcast=lambda x: x)
    trainer = SimpleNamespace(log_dir=str(tmp_path), is_global_zero=True, strategy=strategy)
    cb = AtomicSaveConfigCallback(parser, config={}, overwrite=True)
    with pytest.raises(DiskFullError, match="config.yaml"):
        cb.setup(trainer, None, "fit")
    assert old.read_text() == "previous: config\n" and sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml"]
    assert parser.save is full  # the parser's own writer is put back
    parser.save = lambda cfg, path, **kw: Path(path).write_text("new: config\n")
    AtomicSaveConfigCallback(parser, config={}, overwrite=True).setup(trainer, None, "fit")
    assert old.read_text() == "new: config\n" and sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml"]
