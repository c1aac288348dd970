import os
import stat

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
