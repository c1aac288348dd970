"""Reward reshaping (DMC speed rewards) and env construction."""

import math

import numpy as np
import pytest

EXTRA = "needs the [control] extra (pip install 'simpo-bio[control]')"
pytest.importorskip("mujoco", reason=EXTRA)
pytest.importorskip("gymnasium", reason=EXTRA)

import gymnasium as gym  # noqa: E402

from simpo_bio.control.envs import (  # noqa: E402
    REWARD_SHAPES,
    SpeedRewardReshape,
    make_env,
    make_vector_env,
    reshape_speed,
)


def test_reshape_speed_endpoints_order_and_clipping():
    u = np.linspace(0.0, 1.0, 101)
    shaped = {s: reshape_speed(u, s) for s in REWARD_SHAPES}
    for s, h in shaped.items():
        assert h[0] == pytest.approx(0.0) and h[-1] == pytest.approx(1.0), s
        assert np.all(np.diff(h) > 0), f"{s} must increase with speed"
    inner = slice(1, -1)
    # flat -> steep: sqrt above linear above square; exp below linear (convex)
    assert np.all(shaped["sqrt"][inner] > shaped["linear"][inner])
    assert np.all(shaped["linear"][inner] > shaped["square"][inner])
    assert np.all(shaped["exp"][inner] < shaped["linear"][inner])
    assert reshape_speed(0.25, "sqrt") == pytest.approx(0.5)
    assert reshape_speed(0.5, "square") == pytest.approx(0.25)
    assert reshape_speed(0.5, "exp", exp_scale=2.0) == pytest.approx(math.expm1(1.0) / math.expm1(2.0))
    # beyond the run speed / moving backwards are clipped
    assert reshape_speed(3.0, "exp") == pytest.approx(1.0) and reshape_speed(-2.0, "sqrt") == 0.0
    with pytest.raises(ValueError, match="unknown reward shape"):
        reshape_speed(0.5, "cubic")


class _FakeRunner(gym.Env):
    """Moves at a scripted speed; its own reward is -1 so a replaced reward is visible."""

    observation_space = gym.spaces.Box(-1, 1, (2,))
    action_space = gym.spaces.Box(-1, 1, (1,))

    def __init__(self, speeds, domain="cheetah", stand=0.5):
        self.speeds, self.domain, self._stand, self.t = list(speeds), domain, stand, 0

    def speed(self):
        return self.speeds[self.t - 1]

    def stand_reward(self):
        return self._stand

    def reset(self, *, seed=None, options=None):
        self.t = 0
        return np.zeros(2, np.float32), {}

    def step(self, action):
        self.t += 1
        return np.zeros(2, np.float32), -1.0, False, False, {}


@pytest.mark.parametrize("shape", REWARD_SHAPES)
def test_speed_wrapper_replaces_reward(shape):
    speeds = [0.0, 2.5, 5.0, 12.0]
    env = SpeedRewardReshape(_FakeRunner(speeds), shape, run_speed=10.0, exp_scale=2.0)
    env.reset()
    for v in speeds:
        _, r, _, _, info = env.step(np.zeros(1))
        assert r == pytest.approx(float(reshape_speed(v / 10.0, shape, 2.0)))
        assert info["original_reward"] == -1.0 and info["speed"] == v
    # walker: standing term multiplies (5 h + 1) / 6
    walker = SpeedRewardReshape(_FakeRunner([4.0], domain="walker", stand=0.5), shape, run_speed=8.0)
    walker.reset()
    _, r, *_ = walker.step(np.zeros(1))
    assert r == pytest.approx(0.5 * (5 * float(reshape_speed(0.5, shape)) + 1) / 6)


def test_speed_wrapper_rejects_bad_input():
    with pytest.raises(ValueError, match="unknown reward shape"):
        SpeedRewardReshape(_FakeRunner([1.0]), "cube", 10.0)
    with pytest.raises(ValueError, match="run_speed"):
        SpeedRewardReshape(_FakeRunner([1.0]), "sqrt", 0.0)
    with pytest.raises(ValueError, match="speed"):
        SpeedRewardReshape(gym.make("InvertedPendulum-v4"), "sqrt", 1.0)


@pytest.mark.parametrize("env_id", ["dmc/cheetah-run", "dmc/walker-run"])
def test_dmc_linear_shape_is_the_original_reward(env_id):
    pytest.importorskip("dm_control", reason=EXTRA)
    env = make_env(env_id, seed=3, reward_shape="linear")
    obs, _ = env.reset(seed=3)
    assert obs.dtype == np.float32 and obs.shape == env.observation_space.shape
    assert np.all(env.action_space.low == -1) and np.all(env.action_space.high == 1)
    rng = np.random.default_rng(0)
    speeds = []
    for _ in range(60):
        _, r, terminated, truncated, info = env.step(rng.uniform(-1, 1, env.action_space.shape))
        assert r == pytest.approx(info["original_reward"], abs=1e-9)
        assert not terminated
        speeds.append(info["speed"])
    assert np.ptp(speeds) > 0.05  # the body actually moved, so the check above is not vacuous


def test_dmc_steep_shape_differs_from_original():
    pytest.importorskip("dm_control", reason=EXTRA)
    env = make_env("dmc/cheetah-run", seed=0, reward_shape="sqrt")
    env.reset(seed=0)
    diffs = []
    for _ in range(40):
        _, r, _, _, info = env.step(np.ones(env.action_space.shape))
        diffs.append(r - info["original_reward"])
        assert r == pytest.approx(float(reshape_speed(info["speed"] / 10.0, "sqrt")))
    assert max(diffs) > 1e-3


def test_make_env_errors_and_vector_env():
    with pytest.raises(ValueError, match="unknown control env"):
        make_env("HalfCheetah-v9")
    with pytest.raises(ValueError, match="reward_shape"):
        make_env("Hopper-v4", reward_shape="sqrt")
    with pytest.raises(ValueError, match="num_envs"):
        make_vector_env("Hopper-v4", 0)
    envs = make_vector_env("InvertedPendulum-v4", 3, seed=0)
    obs, _ = envs.reset(seed=0)
    assert obs.shape == (3, 4)
    ended = False
    for _ in range(200):  # random actions drop the pendulum within a few steps
        obs, _, terminated, truncated, info = envs.step(envs.action_space.sample())
        if terminated.any():
            i = int(np.flatnonzero(terminated)[0])
            assert info["_final_obs"][i] and not np.allclose(info["final_obs"][i], obs[i])
            ended = True
            break
    envs.close()
    assert ended
