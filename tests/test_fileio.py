import os
import stat
from pathlib import Path

import pytest
import torch

from simpo_bio.fileio import atomic_path, atomic_torch_save, atomic_write


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path):
    target = tmp_path / "sub" / "out.txt"
    with atomic_write(target) as fh:
        fh.write("new")
    assert target.read_text() == "new"
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.txt"]
    mode = stat.S_IMODE(os.stat(target).st_mode)
    assert mode & 0o044, "the file keeps the usual group/other read permissions, not mkstemp's 0600"


def test_crash_mid_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_write(target) as fh:
        fh.write("half")
        raise RuntimeError("crash")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_atomic_path_and_torch_save_round_trip(tmp_path):
    target = tmp_path / "ckpt.pt"
    atomic_torch_save({"w": torch.arange(3)}, target)
    assert torch.equal(torch.load(target)["w"], torch.arange(3))
    with pytest.raises(ValueError), atomic_path(target) as tmp:
        tmp.write_bytes(b"garbage")
        raise ValueError
    assert torch.equal(torch.load(target)["w"], torch.arange(3))


def test_atomic_paths_replaces_every_file_only_when_all_are_written(tmp_path):
    import errno

    from simpo_bio.fileio import DiskFullError, atomic_paths

    a, b = tmp_path / "a.fasta", tmp_path / "a.csv"
    a.write_text("old a")
    b.write_text("old b")
    with pytest.raises(RuntimeError), atomic_paths(a, b) as (ta, tb):
        ta.write_text("new a")
        raise RuntimeError("killed between the two files")
    assert (a.read_text(), b.read_text()) == ("old a", "old b")
    with pytest.raises(DiskFullError, match=r"writing .*a\.csv: it needs more than 3 bytes") as e, \
            atomic_paths(a, b) as (ta, tb):
        ta.write_text("new a")
        tb.write_text("new")
        raise OSError(errno.ENOSPC, "No space left on device", str(tb))
    assert e.value.errno == errno.ENOSPC and "\n" not in str(e.value)
    assert (a.read_text(), b.read_text()) == ("old a", "old b")
    with atomic_paths(a, b) as (ta, tb):
        assert ta != tb and ta.name.startswith(".a.fasta.") and ta.suffix == ".part"
        ta.write_text("new a")
        tb.write_text("new b")
    assert (a.read_text(), b.read_text()) == ("new a", "new b")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv", "a.fasta"]


def test_resumable_checkpoint_full_disk_keeps_the_old_last_ckpt_and_no_temp(tmp_path):
    """The fit's last.ckpt writer (ResumableCheckpoint): a unique temp name per write, removed when the disk
    fills; the previous last.ckpt is byte-identical and the error is one DiskFullError line."""
    import errno
    from types import SimpleNamespace

    from simpo_bio.dna.models.checkpoints import ResumableCheckpoint
    from simpo_bio.fileio import DiskFullError

    last = tmp_path / "last.ckpt"
    last.write_bytes(b"previous checkpoint")
    names = []

    def save(path, weights_only=False):
        names.append(Path(path).name)
        Path(path).write_bytes(b"half a checkpoint")
        if len(names) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")

    trainer = SimpleNamespace(save_checkpoint=save, is_global_zero=True, global_step=3, loggers=[])
    cb = ResumableCheckpoint(dirpath=tmp_path)
    cb._save_checkpoint(trainer, str(last))
    assert last.read_bytes() == b"half a checkpoint"
    last.write_bytes(b"previous checkpoint")
    with pytest.raises(DiskFullError, match=r"no space left on the device writing .*last\.ckpt") as e:
        cb._save_checkpoint(trainer, str(last))
    assert "\n" not in str(e.value)
    assert last.read_bytes() == b"previous checkpoint"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]
    assert names[0] != names[1] and all(n.startswith(".last.ckpt.") and n.endswith(".part") for n in names)
