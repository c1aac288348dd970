"""simpo_bio.control: SiMPO with flow-matching policies on Gymnasium MuJoCo and DeepMind Control (paper Sec. 5.2).

Needs the ``[control]`` extra (``pip install 'simpo-bio[control]'``: mujoco, gymnasium, dm_control,
stable-baselines3). Layout:

* :mod:`simpo_bio.control.envs` -- env construction, DMC speed-reward reshaping (formulas documented there);
* :mod:`simpo_bio.control.agent` -- :class:`SiMPOAgent` (double Q critic, batched particle sampling, group
  weights by scheme name, reweighted flow matching, automatic temperature);
* :mod:`simpo_bio.control.rsm` -- :class:`SDACAgent` and :class:`DPMDAgent` (Reweighted Score Matching, Ma et al.
  ICML 2025) on the same harness, selected by ``agent.algorithm`` (:func:`make_agent`);
* :mod:`simpo_bio.control.train` -- the training loop and ``simpo-bio control`` (:func:`cli_main`).

Names are imported lazily so that ``import simpo_bio.control`` does not pull MuJoCo in until it is used.

Imports: nothing at import time (``importlib`` only); the names above resolve to the modules on first use.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "AgentConfig": "agent",
    "SiMPOAgent": "agent",
    "make_agent": "agent",
    "SDACAgent": "rsm",
    "DPMDAgent": "rsm",
    "DoubleQCritic": "agent",
    "critic_target": "agent",
    "make_env": "envs",
    "make_vector_env": "envs",
    "reshape_speed": "envs",
    "SpeedRewardReshape": "envs",
    "DMCEnv": "envs",
    "env_state": "envs",
    "set_env_state": "envs",
    "vector_env_state": "envs",
    "set_vector_env_state": "envs",
    "EnvConfig": "train",
    "TrainConfig": "train",
    "evaluate": "train",
    "configs_from_checkpoint": "train",
    "load_checkpoint": "train",
    "check_resume": "train",
    "config_hash": "train",
    "CheckpointError": "train",
    "ResumeMismatchError": "train",
    "cli_main": "train",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        try:
            module = importlib.import_module(f"simpo_bio.control.{_EXPORTS[name]}")
        except ImportError as err:  # pragma: no cover - depends on the environment
            raise ImportError(
                f"simpo_bio.control.{name} needs the [control] extra (pip install 'simpo-bio[control]'): {err}"
            ) from err
        return getattr(module, name)
    raise AttributeError(f"module 'simpo_bio.control' has no attribute {name!r}")
