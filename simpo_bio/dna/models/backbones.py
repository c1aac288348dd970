"""Sequence backbones for masked diffusion over DNA.

:class:`DilatedCNN` is the dilated convolutional network that DRAKES inherited from Dirichlet flow matching
(Stark et al. 2024) and trained as the denoiser of its pretrained masked diffusion model (``data/README.md``,
tier 2): a width-9 input convolution over one-hot tokens, ``5 * num_stacks`` residual blocks
``x + relu(conv_dilated(LayerNorm(x + time_layer(time_embedding))))`` and a two-layer 1x1 convolution head that
returns one logit per vocabulary entry (A, C, G, T, [MASK]).

Module and parameter names follow the DRAKES layout (``linear``, ``time_embedder.0.W``, ``time_embedder.1``,
``convs.{i}``, ``time_layers.{i}.dense``, ``norms.{i}``, ``final_conv.{0,2}``) so that
:func:`load_drakes_state_dict` maps the DRAKES checkpoint onto this module one tensor to one tensor.

Note on the order of the dilated blocks: the DRAKES / Dirichlet-flow-matching code builds its block list
*layer-major* (every copy of the first conv of the stack, then every copy of the second, ...), so with the
default ``dilations=(1, 1, 4, 16, 64)`` and 4 stacks the blocks run with dilations
``1 x 8, 4 x 4, 16 x 4, 64 x 4``. ``block_order="grouped"`` reproduces that order (needed for DRAKES weights);
``block_order="interleaved"`` runs the stacks one after the other (``1, 1, 4, 16, 64, 1, 1, 4, ...``), which grows
the receptive field in every stack and is the better choice for shallow models trained from scratch.

Imports: torch only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["DilatedCNN", "GaussianFourierProjection", "load_drakes_state_dict", "drakes_config"]


class GaussianFourierProjection(nn.Module):
    """Random Fourier features of a scalar time / noise level (Tancik et al. 2020; Song et al. 2021).

    ``W`` is drawn once as ``N(0, scale^2)`` and frozen (``requires_grad=False``; it is a parameter, not a
    buffer, because the DRAKES state dict stores it under ``time_embedder.0.W``).

    Args:
        embed_dim: output width (even).
        scale: standard deviation of the random frequencies.

    Shapes: ``forward(t [B]) -> [B, embed_dim]`` = ``[sin(2 pi t W), cos(2 pi t W)]``.
    """

    def __init__(self, embed_dim: int, scale: float = 30.0) -> None:
        super().__init__()
        if embed_dim % 2:
            raise ValueError(f"GaussianFourierProjection: embed_dim must be even, got {embed_dim}")
        self.W = nn.Parameter(torch.randn(embed_dim // 2) * scale, requires_grad=False)

    def forward(self, t: Tensor) -> Tensor:
        proj = t.to(self.W.dtype)[:, None] * self.W[None, :] * (2 * math.pi)
        return torch.cat([torch.sin(proj), torch.cos(proj)], dim=-1)


class _Dense(nn.Module):
    """A linear layer kept in its own module so parameter names read ``time_layers.{i}.dense.*`` (DRAKES)."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.dense = nn.Linear(in_dim, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.dense(x)


class DilatedCNN(nn.Module):
    """Dilated residual CNN denoiser: tokens ``[B, L]`` and noise level ``sigma [B]`` -> logits ``[B, L, V]``.

    Args:
        vocab_size: number of token ids including the mask token (5 for A, C, G, T, [MASK]).
        hidden_dim: channels of every convolution (DRAKES: 128).
        num_stacks: number of stacks; the network has ``len(dilations) * num_stacks`` residual blocks (DRAKES: 4).
        dilations: dilations of the blocks of one stack (DRAKES: ``(1, 1, 4, 16, 64)``).
        kernel_size: width of the input and dilated convolutions (odd; DRAKES: 9).
        block_order: ``"grouped"`` (the DRAKES order, see the module docstring) or ``"interleaved"``.
        time_conditioning: add the Gaussian-Fourier embedding of ``sigma`` in every block. DRAKES' pretrained
            model was trained *without* it (its diffusion module feeds ``sigma = 0``); when False the time
            path is still built (so DRAKES weights load) but ``sigma`` is replaced by zeros.
        dropout: dropout on the residual stream before each block (DRAKES: 0).
        fourier_scale: scale of the random Fourier frequencies.

    Raises:
        ValueError: on an even ``kernel_size``, an unknown ``block_order`` or non-positive sizes.
    """

    def __init__(
        self,
        vocab_size: int = 5,
        hidden_dim: int = 128,
        num_stacks: int = 4,
        dilations: Sequence[int] = (1, 1, 4, 16, 64),
        kernel_size: int = 9,
        block_order: str = "grouped",
        time_conditioning: bool = False,
        dropout: float = 0.0,
        fourier_scale: float = 30.0,
    ) -> None:
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"DilatedCNN: kernel_size must be odd, got {kernel_size}")
        if block_order not in ("grouped", "interleaved"):
            raise ValueError(f"DilatedCNN: block_order must be 'grouped' or 'interleaved', got {block_order!r}")
        if min(vocab_size, hidden_dim, num_stacks, len(dilations)) <= 0:
            raise ValueError("DilatedCNN: vocab_size, hidden_dim, num_stacks and dilations must be positive")
        self.vocab_size = vocab_size
        self.hidden_dim = hidden_dim
        self.num_stacks = num_stacks
        self.dilations = tuple(int(d) for d in dilations)
        self.kernel_size = kernel_size
        self.block_order = block_order
        self.time_conditioning = time_conditioning
        self.fourier_scale = float(fourier_scale)
        if block_order == "grouped":
            block_dilations = [d for d in self.dilations for _ in range(num_stacks)]
        else:
            block_dilations = [d for _ in range(num_stacks) for d in self.dilations]
        self.block_dilations = tuple(block_dilations)
        num_blocks = len(block_dilations)
        pad = kernel_size // 2
        # Registration order = DRAKES parameter order (matters for EMA shadow lists, see load_drakes_state_dict).
        self.linear = nn.Conv1d(vocab_size, hidden_dim, kernel_size, padding=pad)
        self.time_embedder = nn.Sequential(
            GaussianFourierProjection(hidden_dim, fourier_scale), nn.Linear(hidden_dim, hidden_dim)
        )
        self.convs = nn.ModuleList(
            nn.Conv1d(hidden_dim, hidden_dim, kernel_size, dilation=d, padding=pad * d) for d in block_dilations
        )
        self.time_layers = nn.ModuleList(_Dense(hidden_dim, hidden_dim) for _ in range(num_blocks))
        self.norms = nn.ModuleList(nn.LayerNorm(hidden_dim) for _ in range(num_blocks))
        self.final_conv = nn.Sequential(
            nn.Conv1d(hidden_dim, hidden_dim, 1), nn.ReLU(), nn.Conv1d(hidden_dim, vocab_size, 1)
        )
        self.dropout = nn.Dropout(dropout)

    def config(self) -> dict[str, Any]:
        """The constructor arguments (saved next to weights so a checkpoint can be checked and rebuilt)."""
        return {
            "vocab_size": self.vocab_size,
            "hidden_dim": self.hidden_dim,
            "num_stacks": self.num_stacks,
            "dilations": list(self.dilations),
            "kernel_size": self.kernel_size,
            "block_order": self.block_order,
            "time_conditioning": self.time_conditioning,
            "dropout": self.dropout.p,
            "fourier_scale": self.fourier_scale,  # only matters at init: W itself is in the state dict
        }

    def forward(self, tokens: Tensor, sigma: Tensor | None = None) -> Tensor:
        """Logits of the clean token at every position.

        Args:
            tokens: ``[B, L]`` long token ids in ``[0, vocab_size)``, or ``[B, L, vocab_size]`` one-hot/probabilities.
            sigma: ``[B]`` total noise level of the masked diffusion (ignored, i.e. zero, unless
                ``time_conditioning``).

        Returns:
            ``[B, L, vocab_size]`` float logits (unnormalised; the diffusion applies the ``subs`` rule).
        """
        if tokens.dim() == 2:
            # A width-k conv over a one-hot input is a sum of k shifted embedding look-ups; one_hot + conv is
            # the simplest form and costs one narrow conv.
            feat = F.one_hot(tokens, self.vocab_size).to(self.linear.weight.dtype).transpose(1, 2)
        else:
            feat = tokens.to(self.linear.weight.dtype).transpose(1, 2)
        batch = feat.shape[0]
        if sigma is None or not self.time_conditioning:
            sigma = feat.new_zeros(batch)
        elif sigma.dim() == 0:
            sigma = sigma.expand(batch)
        time_emb = F.relu(self.time_embedder(sigma.reshape(batch).to(feat.dtype)))  # [B, H]
        # All blocks' time shifts in one matmul: [B, num_blocks, H].
        time_shift = torch.stack([layer(time_emb) for layer in self.time_layers], dim=1)
        feat = F.relu(self.linear(feat))  # [B, H, L]
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms)):
            h = self.dropout(feat).transpose(1, 2) + time_shift[:, i, None, :]  # [B, L, H]
            h = F.layer_norm(h, norm.normalized_shape, norm.weight, norm.bias, norm.eps)
            feat = feat + F.relu(conv(h.transpose(1, 2)))
        return self.final_conv(feat).transpose(1, 2)


def drakes_config() -> dict[str, Any]:
    """Constructor arguments of :class:`DilatedCNN` matching the DRAKES / DFM pretrained CNN (``data/README.md``, tier 2)."""
    return {
        "vocab_size": 5,
        "hidden_dim": 128,
        "num_stacks": 4,
        "dilations": (1, 1, 4, 16, 64),
        "kernel_size": 9,
        "block_order": "grouped",
        "time_conditioning": False,
    }


_DRAKES_PREFIXES = ("backbone.", "model.backbone.", "module.backbone.", "_orig_mod.")


def load_drakes_state_dict(
    module: DilatedCNN,
    checkpoint: Mapping[str, Any],
    *,
    use_ema: bool = True,
    strict: bool = True,
) -> DilatedCNN:
    """Load a DRAKES (MDLM + DFM CNN) checkpoint or state dict into ``module`` in place.

    Accepts the Lightning checkpoint dict of DRAKES' ``outputs_gosai/pretrained.ckpt`` (``{"state_dict": ...,
    "ema": {"shadow_params": [...]}}``) or a bare state dict. Keys are stripped of the ``backbone.`` prefix;
    entries that belong to the diffusion wrapper (noise schedule, metrics) are ignored. With ``use_ema`` and an
    ``ema`` entry present, the EMA shadow tensors replace the trainable parameters in registration order (MDLM's
    EMA keeps a list of the ``requires_grad`` parameters of the backbone, in ``parameters()`` order; the frozen
    Fourier frequencies ``time_embedder.0.W`` are not in it).

    Args:
        module: a :class:`DilatedCNN` built with :func:`drakes_config` (or the same shapes).
        checkpoint: the loaded checkpoint / state dict (``torch.load(path, map_location="cpu")``).
        use_ema: apply the EMA weights when the checkpoint carries them (DRAKES samples with them).
        strict: require every backbone tensor to be present with the right shape.

    Returns:
        ``module`` (for chaining).

    Raises:
        ValueError: when tensors are missing / unexpected (``strict``) or have shapes that do not match the
            module, naming the offending keys and shapes; or when the EMA list has the wrong length.
    """
    state = checkpoint.get("state_dict", checkpoint)
    if not isinstance(state, Mapping):
        raise ValueError("load_drakes_state_dict: checkpoint has no state dict mapping")
    own = module.state_dict()
    mapped: dict[str, Tensor] = {}
    for key, value in state.items():
        if not torch.is_tensor(value):
            continue
        name = key
        for prefix in _DRAKES_PREFIXES:
            if name.startswith(prefix):
                name = name[len(prefix):]
        if name in own:
            mapped[name] = value
    missing = sorted(set(own) - set(mapped))
    if strict and missing:
        raise ValueError(
            f"load_drakes_state_dict: {len(missing)} backbone tensors missing from the checkpoint, e.g. "
            f"{missing[:5]}; is this a DRAKES / DFM CNN checkpoint?"
        )
    bad = [(k, tuple(v.shape), tuple(own[k].shape)) for k, v in mapped.items() if v.shape != own[k].shape]
    if bad:
        details = ", ".join(f"{k}: checkpoint {a} vs module {b}" for k, a, b in bad[:5])
        raise ValueError(
            f"load_drakes_state_dict: wrong architecture, {len(bad)} shape mismatches ({details}); build the "
            "module with simpo_bio.dna.models.backbones.drakes_config()"
        )
    module.load_state_dict(mapped, strict=strict)
    ema = checkpoint.get("ema") if use_ema else None
    if ema is not None:
        shadow = ema.get("shadow_params") if isinstance(ema, Mapping) else None
        if shadow is None:
            raise ValueError("load_drakes_state_dict: checkpoint 'ema' entry has no 'shadow_params' list")
        params = [p for p in module.parameters() if p.requires_grad]
        if len(shadow) != len(params):
            raise ValueError(
                f"load_drakes_state_dict: EMA holds {len(shadow)} tensors but the backbone has {len(params)} "
                "trainable parameters (the checkpoint's EMA may also cover a learned noise schedule)"
            )
        with torch.no_grad():
            for i, (p, s) in enumerate(zip(params, shadow)):
                if p.shape != s.shape:
                    raise ValueError(
                        f"load_drakes_state_dict: EMA tensor {i} has shape {tuple(s.shape)}, "
                        f"parameter expects {tuple(p.shape)}"
                    )
                p.copy_(s)
    return module
