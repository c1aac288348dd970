"""Shared setup of the control tests: one torch thread, no rendering, wandb offline.

The tests that need the ``[control]`` extra (MuJoCo, dm_control, stable-baselines3) skip with the missing
module named when it is absent; CI installs the extra, so there they always run.
"""

import os

import pytest

os.environ.setdefault("MUJOCO_GL", "disable")
os.environ.setdefault("WANDB_MODE", "offline")


@pytest.fixture(autouse=True)
def _one_thread():
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
