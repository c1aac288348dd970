"""One writer per run folder (simpo_bio/runlock.py): a live holder blocks a second run at once, a killed one's lock
is taken over; `simpo-bio fit` into a held folder fails before any model loads."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from simpo_bio.cli import main as cli_main
from simpo_bio.runlock import LOCK_NAME, RunLockedError, run_lock

ROOT = Path(__file__).resolve().parents[1]
BASE = str(ROOT / "configs" / "dna" / "simpo_base.yaml")


def _holder(folder: Path) -> subprocess.Popen:
    """A second process that takes the folder's lock and keeps it until killed (a fit in progress)."""
    code = textwrap.dedent(f"""
        import sys, time
        from simpo_bio.runlock import run_lock
        with run_lock({str(folder)!r}, what="fit"):
            print("held", flush=True)
            time.sleep(120)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_live_holder_blocks_and_a_killed_ones_lock_is_taken_over(tmp_path, capsys):
    folder = tmp_path / "run"
    proc = _holder(folder)
    try:
        with pytest.raises(RunLockedError, match=rf"in use by another fit \(pid {proc.pid} on .*, started 20") as e:
            with run_lock(folder):
                pass
        assert "\n" not in str(e.value)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert (folder / (LOCK_NAME + ".json")).exists()  # the killed run left its record behind
    with run_lock(folder):
        assert f"took over the stale lock of {folder.resolve()} (pid {proc.pid}" in capsys.readouterr().err
    assert not (folder / (LOCK_NAME + ".json")).exists()
    with run_lock(folder):  # released: taken again, silently
        pass
    assert "took over" not in capsys.readouterr().err


def test_a_second_fit_into_a_held_folder_fails_at_once_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "exp"
    proc = _holder(root)
    try:
        t0 = time.perf_counter()
        with pytest.raises(SystemExit) as e:
            # pretrained / oracle files that do not exist: a fit that got past the lock would fail on them instead
            cli_main(["fit", "--config", BASE, "--trainer.default_root_dir", str(root), "--trainer.logger", "false",
                      "--trainer.callbacks", "[]", "--model.init_args.pretrained", str(tmp_path / "absent.ckpt")])
        elapsed = time.perf_counter() - t0
        err = [line for line in capsys.readouterr().err.strip().splitlines() if not line.startswith("INFO: Seed")]
        assert e.value.code == 2 and len(err) == 1, err  # (Lightning logs the seed before the lock is taken)
        assert "RunLockedError" in err[0] and f"pid {proc.pid}" in err[0] and str(root.resolve()) in err[0]
        assert elapsed < 30
        assert sorted(p.name for p in root.iterdir()) == [LOCK_NAME, LOCK_NAME + ".json"]  # nothing else written
        assert proc.poll() is None  # the first run is unharmed
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait()
    assert os.path.exists(root)
