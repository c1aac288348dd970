"""Environments for the control experiments (paper Sec. 5.2 and Appendix F.2).

Two families, both exposed as :class:`gymnasium.Env` with actions rescaled to ``[-1, 1]``:

* Gymnasium MuJoCo locomotion: ``HalfCheetah``, ``Hopper``, ``Walker2d``, ``Ant``, ``Humanoid``, ``Swimmer``
  (the paper uses the ``-v4`` names; ``-v5`` is accepted too) and ``InvertedPendulum`` for smoke tests.
* DeepMind Control Suite ``dmc/cheetah-run`` and ``dmc/walker-run`` through :class:`DMCEnv`, optionally with the
  speed reward reshaped by :class:`SpeedRewardReshape` (paper section 5.2 "Q3", Appendix F.2).

Speed-reward reshaping (the paper's Appendix F.2 lost its formulas in extraction; these are ours, documented
here and in README). With ``v`` the horizontal torso velocity (m/s) and ``v*`` the run speed of the task
(cheetah 10 m/s, walker 8 m/s, as in dm_control), the normalised speed is ``u = clip(v / v*, 0, 1)`` and the
shaped speed term ``h(u)`` is, from flat to steep:

==========  =====================================  =======================================
shape       ``h(u)``                               slope at the top (``u -> 1``)
==========  =====================================  =======================================
``sqrt``    ``sqrt(u)``                            0.5
``linear``  ``u``                                  1
``square``  ``u ** 2``                             2
``exp``     ``(exp(c u) - 1) / (exp(c) - 1)``      ``c e^c / (e^c - 1)`` (c = ``exp_scale``, 3 -> 3.2)
==========  =====================================  =======================================

All four map ``[0, 1]`` onto ``[0, 1]`` (the paper's "proper transformation to align the scale"). The reward is
``h(u)`` for cheetah and ``stand * (5 h(u) + 1) / 6`` for walker, where ``stand`` is dm_control's own standing /
upright term. ``linear`` reproduces dm_control's original ``run`` reward exactly for both tasks (tested).

Env state for exact resumes: :func:`vector_env_state` / :func:`set_vector_env_state` snapshot and restore every
copy of a vector env (MuJoCo integration state, env RNGs, wrapper counters); stepping on from a restored snapshot
gives bit-for-bit the same transitions as stepping on from the original. The pickled parts of a snapshot are read
back with :func:`simpo_bio.safe_pickle.loads` (numpy data, numpy random generators, containers; nothing else is
imported), so a snapshot keeps only attributes of those types.

Imports: gymnasium, numpy and :mod:`simpo_bio.safe_pickle`; dm_control inside :class:`DMCEnv`, mujoco inside the
env-state functions.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np

from simpo_bio.safe_pickle import loads as safe_loads

#: Gymnasium MuJoCo tasks of the paper (v4 names; v5 accepted) plus the smoke-test task.
GYM_TASKS = ("HalfCheetah", "Hopper", "Walker2d", "Ant", "Humanoid", "Swimmer", "InvertedPendulum")
#: DeepMind Control tasks: id -> (domain, task, run speed v* in m/s).
DMC_TASKS: dict[str, tuple[str, str, float]] = {
    "dmc/cheetah-run": ("cheetah", "run", 10.0),
    "dmc/walker-run": ("walker", "run", 8.0),
}
#: Speed-reward shapes, flat to steep.
REWARD_SHAPES = ("sqrt", "linear", "square", "exp")


def reshape_speed(u: np.ndarray | float, shape: str, exp_scale: float = 3.0) -> np.ndarray | float:
    """Shaped speed term ``h(u)`` for a normalised speed ``u`` in ``[0, 1]`` (see the module docstring).

    Args:
        u: normalised speed(s), any shape; values are clipped to ``[0, 1]``.
        shape: one of :data:`REWARD_SHAPES`.
        exp_scale: steepness ``c > 0`` of the ``exp`` shape.

    Returns:
        ``h(u)`` with the shape of ``u``, in ``[0, 1]``; ``h(0) = 0`` and ``h(1) = 1`` for every shape.

    Raises:
        ValueError: unknown ``shape`` or ``exp_scale <= 0``.
    """
    u = np.clip(u, 0.0, 1.0)
    if shape == "sqrt":
        return np.sqrt(u)
    if shape == "linear":
        return u
    if shape == "square":
        return u**2
    if shape == "exp":
        if exp_scale <= 0:
            raise ValueError(f"exp_scale must be > 0, got {exp_scale}")
        return np.expm1(exp_scale * u) / math.expm1(exp_scale)
    raise ValueError(f"unknown reward shape {shape!r}; choose one of {REWARD_SHAPES}")


class DMCEnv(gym.Env):
    """A DeepMind Control Suite task as a Gymnasium env (flat float32 observation, native action bounds).

    Episodes last ``time_limit`` seconds of simulation (1000 control steps for cheetah/walker); the end of an
    episode is a *truncation* (dm_control's discount stays 1), never a termination.

    Args:
        domain, task: dm_control suite names, e.g. ``"cheetah", "run"``.
        seed: seed of the task's random state (also settable through ``reset(seed=...)``).

    Attributes exposed for reward reshaping: :meth:`speed` (m/s) and :meth:`stand_reward` (walker only).
    """

    metadata = {"render_modes": []}

    def __init__(self, domain: str, task: str, seed: int | None = None):
        from dm_control import suite

        self.domain, self.task_name = domain, task
        self._suite = suite
        self._env = suite.load(domain, task, task_kwargs={"random": seed})
        spec = self._env.action_spec()
        self.action_space = gym.spaces.Box(spec.minimum.astype(np.float32), spec.maximum.astype(np.float32))
        dim = sum(int(np.prod(v.shape)) for v in self._env.observation_spec().values())
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(dim,), dtype=np.float32)

    @staticmethod
    def _flatten(obs: dict[str, Any]) -> np.ndarray:
        return np.concatenate([np.asarray(v, dtype=np.float32).ravel() for v in obs.values()])

    @property
    def physics(self):
        """The dm_control physics of the current episode."""
        return self._env.physics

    def speed(self) -> float:
        """Horizontal velocity of the torso subtree, m/s (what the ``run`` tasks reward)."""
        return float(self.physics.named.data.sensordata["torso_subtreelinvel"][0])

    def stand_reward(self) -> float:
        """dm_control's walker standing/upright term in ``[0, 1]`` (1 for non-walker domains)."""
        if self.domain != "walker":
            return 1.0
        from dm_control.suite.walker import _STAND_HEIGHT
        from dm_control.utils import rewards

        standing = rewards.tolerance(
            self.physics.torso_height(), bounds=(_STAND_HEIGHT, float("inf")), margin=_STAND_HEIGHT / 2
        )
        upright = (1 + self.physics.torso_upright()) / 2
        return float((3 * standing + upright) / 4)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None:  # dm_control keeps its own RandomState inside the task
            self._env = self._suite.load(self.domain, self.task_name, task_kwargs={"random": seed})
        ts = self._env.reset()
        return self._flatten(ts.observation), {}

    def step(self, action):
        ts = self._env.step(np.asarray(action, dtype=np.float64))
        terminated = bool(ts.last() and ts.discount == 0.0)
        truncated = bool(ts.last() and not terminated)
        return self._flatten(ts.observation), float(ts.reward or 0.0), terminated, truncated, {}


class SpeedRewardReshape(gym.Wrapper):
    """Replace a ``run`` task's reward by a reshaped function of the torso speed (module docstring formulas).

    ``reward = stand * (5 h(u) + 1) / 6`` if the env has a standing term (walker), else ``h(u)``; ``u = clip(v /
    run_speed, 0, 1)``. The original reward and the speed are returned in ``info["original_reward"]`` and
    ``info["speed"]`` so an evaluation can also report the task's own return.

    Args:
        env: an env whose ``unwrapped`` has ``speed() -> float`` and (optionally) ``stand_reward() -> float``.
        shape: one of :data:`REWARD_SHAPES`.
        run_speed: ``v*`` in m/s (> 0).
        exp_scale: steepness of the ``exp`` shape.

    Raises:
        ValueError: unknown shape, ``run_speed <= 0``, or an env without ``speed()``.
    """

    def __init__(self, env: gym.Env, shape: str, run_speed: float, exp_scale: float = 3.0):
        super().__init__(env)
        if shape not in REWARD_SHAPES:
            raise ValueError(f"unknown reward shape {shape!r}; choose one of {REWARD_SHAPES}")
        if run_speed <= 0:
            raise ValueError(f"run_speed must be > 0 m/s, got {run_speed}")
        if not hasattr(env.unwrapped, "speed"):
            raise ValueError(f"{type(env.unwrapped).__name__} has no speed(); cannot reshape its reward")
        self.shape, self.run_speed, self.exp_scale = shape, float(run_speed), float(exp_scale)
        self._has_stand = (
            hasattr(env.unwrapped, "stand_reward") and getattr(env.unwrapped, "domain", "") == "walker"
        )

    def shaped_reward(self, speed: float, stand: float = 1.0) -> float:
        """The reshaped reward for a torso ``speed`` (m/s) and standing term ``stand`` in ``[0, 1]``."""
        h = float(reshape_speed(speed / self.run_speed, self.shape, self.exp_scale))
        return stand * (5.0 * h + 1.0) / 6.0 if self._has_stand else h

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        base = self.env.unwrapped
        speed = float(base.speed())
        stand = float(base.stand_reward()) if self._has_stand else 1.0
        info = dict(info, original_reward=reward, speed=speed)
        return obs, self.shaped_reward(speed, stand), terminated, truncated, info


def check_env_id(env_id: str) -> str:
    """``env_id`` itself if :func:`make_env` knows it (a DMC id or a Gymnasium task ``-v4`` / ``-v5``).

    Raises:
        ValueError: unknown id (the message lists the known ones).
    """
    return env_id if env_id in DMC_TASKS else _canonical_gym_id(env_id)


def _canonical_gym_id(env_id: str) -> str:
    name, _, version = env_id.partition("-")
    if name not in GYM_TASKS or version not in ("v4", "v5"):
        known = [f"{t}-v4" for t in GYM_TASKS] + list(DMC_TASKS)
        raise ValueError(
            f"unknown control env {env_id!r}; known: {known} (v5 accepted for the Gymnasium tasks)"
        )
    return env_id


def make_env(
    env_id: str, *, seed: int | None = None, reward_shape: str | None = None, exp_scale: float = 3.0
) -> gym.Env:
    """Build one env with actions rescaled to ``[-1, 1]`` (the policy's action box).

    Args:
        env_id: ``"HalfCheetah-v4"`` (any of :data:`GYM_TASKS`, ``-v4`` or ``-v5``) or ``"dmc/cheetah-run"``,
            ``"dmc/walker-run"``.
        seed: seeds the action space (the env itself is seeded by its first ``reset(seed=...)``).
        reward_shape: for DMC tasks, one of :data:`REWARD_SHAPES` (None keeps the original reward).
        exp_scale: steepness of the ``exp`` reward shape.

    Raises:
        ValueError: unknown ``env_id``, or a ``reward_shape`` for a Gymnasium task.
    """
    if env_id in DMC_TASKS:
        domain, task, run_speed = DMC_TASKS[env_id]
        env: gym.Env = DMCEnv(domain, task, seed=seed)
        if reward_shape is not None:
            env = SpeedRewardReshape(env, reward_shape, run_speed, exp_scale)
    else:
        if reward_shape is not None:
            raise ValueError(f"reward_shape is only defined for {list(DMC_TASKS)}, not {env_id!r}")
        env = gym.make(_canonical_gym_id(env_id))
    shape = env.action_space.shape
    env = gym.wrappers.RescaleAction(env, np.full(shape, -1.0, np.float32), np.full(shape, 1.0, np.float32))
    env = gym.wrappers.RecordEpisodeStatistics(env)
    if seed is not None:
        env.action_space.seed(seed)
    return env


def make_vector_env(
    env_id: str,
    num_envs: int = 5,
    *,
    seed: int = 0,
    reward_shape: str | None = None,
    exp_scale: float = 3.0,
    vectorization: str = "sync",
) -> gym.vector.VectorEnv:
    """``num_envs`` copies of :func:`make_env` in a Gymnasium vector env, auto-reset in the same step.

    With ``AutoresetMode.SAME_STEP`` the observation returned at the end of an episode is already the next
    episode's first one; the true last observation is in ``info["final_obs"][i]`` (``info["_final_obs"][i]``
    marks which envs ended). Env ``i`` is seeded with ``seed + i`` at the first reset.

    Args:
        vectorization: ``"sync"`` (one process; best on few cores) or ``"async"`` (one process per env).

    Raises:
        ValueError: ``num_envs < 1`` or unknown ``vectorization``.
    """
    if num_envs < 1:
        raise ValueError(f"num_envs must be >= 1, got {num_envs}")
    fns: list[Callable[[], gym.Env]] = [
        (lambda i=i: make_env(env_id, seed=seed + i, reward_shape=reward_shape, exp_scale=exp_scale))
        for i in range(num_envs)
    ]
    mode = gym.vector.AutoresetMode.SAME_STEP
    if vectorization == "sync":
        return gym.vector.SyncVectorEnv(fns, autoreset_mode=mode)
    if vectorization == "async":
        return gym.vector.AsyncVectorEnv(fns, autoreset_mode=mode)
    raise ValueError(f"vectorization must be 'sync' or 'async', got {vectorization!r}")


# ---------------------------------------------------------------------------------------------------- env state
#: Attributes of env / wrapper layers that are construction-time constants, not state (never snapshotted).
_STATIC_ATTRS = frozenset({
    "env", "_saved_kwargs", "_ezpickle_args", "_ezpickle_kwargs", "spec", "_cached_spec", "model", "fullpath",
    "mujoco_renderer", "metadata", "_metadata", "_suite", "func", "_action_space", "_observation_space",
    "action_space", "observation_space", "episode_start_time", "time_queue",
})  # fmt: skip


def _integration_state(model, data) -> np.ndarray:
    """MuJoCo's full integration state (``mjSTATE_INTEGRATION``: time, qpos, qvel, act, warm start, ctrl, ...)."""
    import mujoco

    spec = mujoco.mjtState.mjSTATE_INTEGRATION
    state = np.empty(mujoco.mj_stateSize(model, spec), dtype=np.float64)
    mujoco.mj_getState(model, data, state, spec)
    return state


def _set_integration_state(model, data, state: np.ndarray) -> None:
    import mujoco

    mujoco.mj_setState(model, data, np.asarray(state, dtype=np.float64), mujoco.mjtState.mjSTATE_INTEGRATION)
    mujoco.mj_forward(model, data)  # derived quantities (sensors, contacts) of the restored state


def _layer_state(layer: Any) -> dict[str, Any]:
    import pickle

    import mujoco

    state: dict[str, Any] = {}
    for key, value in vars(layer).items():
        if key in _STATIC_ATTRS or callable(value) or isinstance(value, mujoco.MjModel):
            continue
        if isinstance(value, mujoco.MjData):
            state[key] = ("mjdata", _integration_state(layer.model, value))
        elif type(value).__name__ == "Environment" and hasattr(value, "physics"):  # a dm_control Environment
            physics = value.physics
            state[key] = ("dm_control", {
                "physics": _integration_state(physics.model.ptr, physics.data.ptr),
                "env": {k: v for k, v in vars(value).items() if isinstance(v, (bool, int, float))},
                "task": pickle.dumps({k: v for k, v in vars(value.task).items()
                                      if isinstance(v, (bool, int, float, np.random.RandomState))}),
            })  # fmt: skip
        else:
            try:
                blob = pickle.dumps(value)
                safe_loads(blob)  # what set_env_state can restore; other objects are not simulation state
            except Exception:  # noqa: BLE001 - unpicklable attributes (handles, closures) are not simulation state
                continue
            state[key] = ("pickle", blob)
    return state


def _set_layer_state(layer: Any, state: dict[str, Any]) -> None:
    for key, (kind, value) in state.items():
        if kind == "mjdata":
            _set_integration_state(layer.model, getattr(layer, key), value)
        elif kind == "dm_control":
            environment = getattr(layer, key)
            physics = environment.physics
            with physics.reset_context():  # dm_control recomputes its derived quantities on leaving the context
                _set_integration_state(physics.model.ptr, physics.data.ptr, value["physics"])
            for k, v in value["env"].items():
                setattr(environment, k, v)
            for k, v in safe_loads(value["task"]).items():
                setattr(environment.task, k, v)
        else:
            setattr(layer, key, safe_loads(value))


def env_state(env: gym.Env) -> list[dict[str, Any]]:
    """A picklable snapshot of everything that evolves in ``env`` (one dict per wrapper layer, outermost first).

    Captured: the simulator's full integration state (MuJoCo ``mjSTATE_INTEGRATION``: time, positions,
    velocities, actuator state and the solver's warm start, so that stepping on from a restored state is bit-for-bit
    the same as stepping on from the original), the random generators of the env and its spaces, the time-limit
    step counter, the episode-statistics counters and dm_control's task random state and step counter. Not captured:
    construction-time constants (the model, file paths), wall-clock episode times and attributes that
    :func:`simpo_bio.safe_pickle.loads` would not restore (objects other than numpy data and random generators).

    Raises:
        ImportError: ``mujoco`` is not installed.
    """
    layers = []
    layer: Any = env
    while True:
        layers.append(_layer_state(layer))
        if not hasattr(layer, "env"):
            return layers
        layer = layer.env


def set_env_state(env: gym.Env, state: list[dict[str, Any]]) -> None:
    """Restore a snapshot of :func:`env_state` into an env built the same way (same id, wrappers and options).

    Raises:
        ValueError: the snapshot has a different number of wrapper layers than ``env``.
    """
    layers: list[Any] = [env]
    while hasattr(layers[-1], "env"):
        layers.append(layers[-1].env)
    if len(layers) != len(state):
        raise ValueError(f"env snapshot has {len(state)} wrapper layers, the env has {len(layers)}")
    for layer, layer_state in zip(layers, state):
        _set_layer_state(layer, layer_state)


def vector_env_state(envs: gym.vector.VectorEnv) -> list[list[dict[str, Any]]]:
    """:func:`env_state` of every copy of a :class:`gymnasium.vector.SyncVectorEnv`.

    Raises:
        TypeError: not a ``SyncVectorEnv`` (an ``AsyncVectorEnv`` keeps its envs in other processes).
    """
    if not isinstance(envs, gym.vector.SyncVectorEnv):
        raise TypeError(f"only a SyncVectorEnv's state can be saved, got {type(envs).__name__}")
    return [env_state(env) for env in envs.envs]


def set_vector_env_state(envs: gym.vector.VectorEnv, state: list[list[dict[str, Any]]]) -> None:
    """Inverse of :func:`vector_env_state` (the vector env must have been reset once and built the same way).

    Raises:
        TypeError: not a ``SyncVectorEnv``. ValueError: a different number of copies or of wrapper layers.
    """
    if not isinstance(envs, gym.vector.SyncVectorEnv):
        raise TypeError(f"only a SyncVectorEnv's state can be restored, got {type(envs).__name__}")
    if len(state) != len(envs.envs):
        raise ValueError(f"env snapshot has {len(state)} copies, the vector env has {len(envs.envs)}")
    for env, env_snapshot in zip(envs.envs, state):
        set_env_state(env, env_snapshot)
