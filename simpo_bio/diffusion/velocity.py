"""The velocity network of the flow-matching policies: an MLP ``v_theta(a_t, t, s)`` with a time embedding.

Used by :mod:`simpo_bio.diffusion.flow` (which re-exports every name here), the bandit and the control agent.
The paper's control networks are 3 hidden layers of 256 units with Mish (paper Appendix F): the defaults.

Imports: torch only.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

__all__ = ["ACTIVATIONS", "VelocityFn", "VelocityMLP", "timestep_embedding"]

#: Activation name -> module class, shared by the velocity MLP and the control critics.
ACTIVATIONS: dict[str, type[nn.Module]] = {
    "mish": nn.Mish,
    "silu": nn.SiLU,
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
}


def timestep_embedding(t: Tensor, dim: int, *, max_period: float = 10_000.0, scale: float = 1000.0) -> Tensor:
    """Sinusoidal embedding of flow time.

    Args:
        t: ``[B]`` flow times in ``[0, 1]``.
        dim: embedding size (even or odd; an odd size is zero-padded by one column).
        max_period: longest period of the sinusoids (in units of ``scale * t``).
        scale: ``t`` is multiplied by ``scale`` first so that ``[0, 1]`` spans many periods of the fast features.

    Returns:
        ``[B, dim]`` tensor ``[cos(scale t f_k), sin(scale t f_k)]`` with geometric frequencies
        ``f_k = max_period ** (-k / half)``.
    """
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=t.dtype) / max(half, 1))
    args = scale * t[:, None] * freqs[None, :]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


class VelocityMLP(nn.Module):
    """MLP velocity field ``v_theta(a_t, t, s) -> R^A`` with a sinusoidal time embedding.

    The input of the MLP is ``[a_t, time_mlp(emb(t)), s]`` (``s`` only when ``state_dim > 0``). The paper's control
    networks are 3 hidden layers of 256 units with Mish (Appendix F, table of hyper-parameters): the defaults.

    Args:
        action_dim: ``A``, size of an action.
        state_dim: ``S``, size of the conditioning state; ``0`` for an unconditional (bandit) policy.
        hidden: width of each hidden layer.
        depth: number of hidden layers (``>= 1``).
        time_embed_dim: size of the sinusoidal time embedding (then mapped by a 2-layer MLP of the same size).
        activation: one of :data:`ACTIVATIONS` (``"mish"`` by default).
        layer_norm: add a LayerNorm after each hidden linear layer.

    Raises:
        ValueError: non-positive sizes or an unknown activation name.
    """

    def __init__(
        self,
        action_dim: int,
        state_dim: int = 0,
        hidden: int = 256,
        depth: int = 3,
        time_embed_dim: int = 32,
        activation: str = "mish",
        layer_norm: bool = False,
    ) -> None:
        super().__init__()
        if action_dim < 1 or state_dim < 0 or hidden < 1 or depth < 1 or time_embed_dim < 2:
            raise ValueError(
                f"VelocityMLP: need action_dim >= 1, state_dim >= 0, hidden >= 1, depth >= 1, time_embed_dim >= 2; "
                f"got action_dim={action_dim}, state_dim={state_dim}, hidden={hidden}, depth={depth}, "
                f"time_embed_dim={time_embed_dim}"
            )
        if activation not in ACTIVATIONS:
            raise ValueError(f"VelocityMLP: unknown activation {activation!r}; choose from {sorted(ACTIVATIONS)}")
        act = ACTIVATIONS[activation]
        self.action_dim = action_dim
        self.state_dim = state_dim
        self.time_embed_dim = time_embed_dim
        self.time_mlp = nn.Sequential(
            nn.Linear(time_embed_dim, time_embed_dim), act(), nn.Linear(time_embed_dim, time_embed_dim)
        )
        layers: list[nn.Module] = []
        width = action_dim + time_embed_dim + state_dim
        for _ in range(depth):
            layers.append(nn.Linear(width, hidden))
            if layer_norm:
                layers.append(nn.LayerNorm(hidden))
            layers.append(act())
            width = hidden
        layers.append(nn.Linear(width, action_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, action_t: Tensor, t: Tensor, state: Tensor | None = None) -> Tensor:
        """Velocity at the point ``action_t`` of the path.

        Args:
            action_t: ``[B, A]`` point on the path.
            t: ``[B]`` (or ``[B, 1]`` or a scalar) flow time in ``[0, 1]``.
            state: ``[B, S]`` conditioning state; required iff ``state_dim > 0``.

        Returns:
            ``[B, A]`` velocity (action units per unit flow time).

        Raises:
            ValueError: wrong shapes or a missing / unexpected state.
        """
        if action_t.dim() != 2 or action_t.shape[-1] != self.action_dim:
            raise ValueError(f"VelocityMLP: action_t must be [B, {self.action_dim}], got {tuple(action_t.shape)}")
        batch = action_t.shape[0]
        t = torch.as_tensor(t, dtype=action_t.dtype, device=action_t.device).reshape(-1)
        if t.numel() == 1:
            t = t.expand(batch)
        if t.shape[0] != batch:
            raise ValueError(f"VelocityMLP: t must have {batch} entries, got {t.shape[0]}")
        parts = [action_t, self.time_mlp(timestep_embedding(t, self.time_embed_dim))]
        if self.state_dim > 0:
            if state is None or state.shape != (batch, self.state_dim):
                got = None if state is None else tuple(state.shape)
                raise ValueError(f"VelocityMLP: state must be [{batch}, {self.state_dim}], got {got}")
            parts.append(state.to(action_t.dtype))
        elif state is not None and state.numel() > 0:
            raise ValueError("VelocityMLP: got a state but the network was built with state_dim=0")
        return self.net(torch.cat(parts, dim=-1))


#: A velocity field: ``(a_t [M, A], t [M], state [M, S] | None) -> [M, A]``.
VelocityFn = Callable[[Tensor, Tensor, "Tensor | None"], Tensor]
