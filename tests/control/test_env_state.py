"""Env snapshots: stepping on from a restored snapshot is bit-for-bit stepping on from the original."""

import pickle

import numpy as np
import pytest

EXTRA = "needs the [control] extra (pip install 'simpo-bio[control]')"
pytest.importorskip("mujoco", reason=EXTRA)

from simpo_bio.control.envs import make_vector_env, set_vector_env_state, vector_env_state  # noqa: E402


@pytest.mark.parametrize(
    ("env_id", "kwargs", "steps"),
    [("InvertedPendulum-v4", {}, 120), ("HalfCheetah-v4", {}, 60), ("dmc/cheetah-run", {"reward_shape": "square"}, 60)],
)
def test_restored_env_steps_like_the_original(env_id, kwargs, steps):
    rng = np.random.default_rng(0)
    original = make_vector_env(env_id, 2, seed=0, **kwargs)
    original.reset(seed=0)
    dim = original.single_action_space.shape[0]
    for _ in range(23):
        original.step(rng.uniform(-1, 1, (2, dim)).astype(np.float32))
    snapshot = pickle.loads(pickle.dumps(vector_env_state(original)))  # what a checkpoint stores
    restored = make_vector_env(env_id, 2, seed=0, **kwargs)
    restored.reset(seed=99)  # another state, overwritten by the snapshot
    set_vector_env_state(restored, snapshot)
    for _ in range(steps):  # InvertedPendulum: episodes end and auto-reset from the restored env RNGs
        action = rng.uniform(-1, 1, (2, dim)).astype(np.float32)
        a, b = original.step(action), restored.step(action)
        for x, y in zip(a[:4], b[:4]):
            np.testing.assert_array_equal(x, y)
    with pytest.raises(ValueError, match="copies"):
        set_vector_env_state(restored, snapshot[:1])
