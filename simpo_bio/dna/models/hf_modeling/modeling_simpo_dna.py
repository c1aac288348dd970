"""Modelling code of a simpo-bio masked diffusion generator of DNA for ``transformers`` (self-contained).

The model is an MDLM masked diffusion model (Sahoo et al. 2024): absorbing mask state, log-linear schedule
``m(t) = (1 - eps) t``, ``subs`` parameterisation. :class:`SimpoDNAForMaskedLM` wraps its denoiser, either

* :class:`DilatedCNN`, a copy of ``simpo_bio/dna/models/backbones.py`` ``DilatedCNN`` with the same parameter names
  (``tests/dna/test_hf.py`` checks that both give the same logits), or
* :class:`TransformerDenoiser`, a bidirectional BERT encoder (``transformers.BertModel``, no pretrained weights,
  no time input), the transformer backbone of simpo-bio (``simpo_bio/dna/models/transformer.py`` re-exports it).

The state dict is ``backbone.*`` exactly as in ``simpo_bio/diffusion/masked.py`` ``MaskedDiffusion``, so weights
move between the two one tensor to one tensor. This file imports only ``torch`` and ``transformers``:
``simpo-bio export-hf`` (``simpo_bio/dna/models/hf.py``) copies it into the exported directory for ``trust_remote_code``.

Inputs: ``input_ids [B, L]`` (``A=0, C=1, G=2, T=3, [MASK]=4``) and the noise level ``sigma [B]`` or the time
``t [B]`` in ``[0, 1]`` (``sigma = -log(1 - (1 - eps) t)``); both backbones of the shipped models ignore the noise
level (``time_conditioning`` off, which is valid under ``subs``). Output: ``MaskedLMOutput.logits [B, L, 5]``, the
raw denoiser logits; :meth:`SimpoDNAForMaskedLM.subs_log_probs` applies the ``subs`` rule and
:meth:`SimpoDNAForMaskedLM.sample_sequences` draws sequences with the ancestral sampler.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import PreTrainedModel
from transformers.modeling_outputs import MaskedLMOutput

from .configuration_simpo_dna import SimpoDNAConfig

__all__ = ["DilatedCNN", "TransformerDenoiser", "build_backbone", "SimpoDNAForMaskedLM"]


# ------------------------------------------------------------------------------------------ dilated CNN
class GaussianFourierProjection(nn.Module):
    """Random Fourier features of the noise level; ``W`` is frozen (stored under ``time_embedder.0.W``)."""

    def __init__(self, embed_dim: int, scale: float = 30.0) -> None:
        super().__init__()
        self.W = nn.Parameter(torch.randn(embed_dim // 2) * scale, requires_grad=False)

    def forward(self, t: Tensor) -> Tensor:
        proj = t.to(self.W.dtype)[:, None] * self.W[None, :] * (2 * math.pi)
        return torch.cat([torch.sin(proj), torch.cos(proj)], dim=-1)


class _Dense(nn.Module):
    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.dense = nn.Linear(in_dim, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.dense(x)


class DilatedCNN(nn.Module):
    """Dilated residual CNN denoiser (copy of ``simpo_bio/dna/models/backbones.py``; same arguments and names).

    ``forward(tokens [B, L] or [B, L, V] one-hot, sigma [B]) -> logits [B, L, V]``.
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
        if kernel_size % 2 == 0 or block_order not in ("grouped", "interleaved"):
            raise ValueError(f"DilatedCNN: bad kernel_size {kernel_size} or block_order {block_order!r}")
        self.vocab_size = vocab_size
        self.time_conditioning = time_conditioning
        dilations = tuple(int(d) for d in dilations)
        if block_order == "grouped":
            block_dilations = [d for d in dilations for _ in range(num_stacks)]
        else:
            block_dilations = [d for _ in range(num_stacks) for d in dilations]
        pad = kernel_size // 2
        self.linear = nn.Conv1d(vocab_size, hidden_dim, kernel_size, padding=pad)
        self.time_embedder = nn.Sequential(
            GaussianFourierProjection(hidden_dim, fourier_scale), nn.Linear(hidden_dim, hidden_dim)
        )
        self.convs = nn.ModuleList(
            nn.Conv1d(hidden_dim, hidden_dim, kernel_size, dilation=d, padding=pad * d) for d in block_dilations
        )
        self.time_layers = nn.ModuleList(_Dense(hidden_dim, hidden_dim) for _ in block_dilations)
        self.norms = nn.ModuleList(nn.LayerNorm(hidden_dim) for _ in block_dilations)
        self.final_conv = nn.Sequential(
            nn.Conv1d(hidden_dim, hidden_dim, 1), nn.ReLU(), nn.Conv1d(hidden_dim, vocab_size, 1)
        )
        self.dropout = nn.Dropout(dropout)

    def forward(self, tokens: Tensor, sigma: Tensor | None = None) -> Tensor:
        if tokens.dim() == 2:
            feat = F.one_hot(tokens, self.vocab_size).to(self.linear.weight.dtype).transpose(1, 2)
        else:
            feat = tokens.to(self.linear.weight.dtype).transpose(1, 2)
        batch = feat.shape[0]
        if sigma is None or not self.time_conditioning:
            sigma = feat.new_zeros(batch)
        elif sigma.dim() == 0:
            sigma = sigma.expand(batch)
        time_emb = F.relu(self.time_embedder(sigma.reshape(batch).to(feat.dtype)))
        time_shift = torch.stack([layer(time_emb) for layer in self.time_layers], dim=1)
        feat = F.relu(self.linear(feat))
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms)):
            h = self.dropout(feat).transpose(1, 2) + time_shift[:, i, None, :]
            h = F.layer_norm(h, norm.normalized_shape, norm.weight, norm.bias, norm.eps)
            feat = feat + F.relu(conv(h.transpose(1, 2)))
        return self.final_conv(feat).transpose(1, 2)


# ------------------------------------------------------------------------------------------ transformer
class TransformerDenoiser(nn.Module):
    """Bidirectional transformer denoiser: a ``transformers.BertModel`` encoder and a BERT-style output head.

    Built from a ``BertConfig`` with the DNA vocabulary (5 ids, no padding id, one token type, absolute
    positions); no pretrained weights and no time input: the noise level is ignored, which the ``subs``
    parameterisation allows (MDLM, Sahoo et al. 2024: the masked positions already tell the model the noise).

    Args:
        vocab_size: token ids including the mask token (5).
        hidden_size: model width.
        num_layers: encoder layers.
        num_heads: attention heads (must divide ``hidden_size``).
        intermediate_size: feed-forward width (default ``4 * hidden_size``).
        max_len: longest sequence (number of learned position embeddings).
        dropout: dropout of the hidden states and attention probabilities.
        attn_implementation: ``"sdpa"`` (PyTorch scaled-dot-product attention) or ``"eager"``.

    Shapes: ``forward(tokens [B, L] long or [B, L, V] one-hot/probabilities, sigma [B] ignored) -> [B, L, V]``.
    """

    def __init__(
        self,
        vocab_size: int = 5,
        hidden_size: int = 128,
        num_layers: int = 4,
        num_heads: int = 4,
        intermediate_size: int | None = None,
        max_len: int = 512,
        dropout: float = 0.0,
        attn_implementation: str = "sdpa",
    ) -> None:
        super().__init__()
        from transformers import BertConfig, BertModel

        if min(vocab_size, hidden_size, num_layers, num_heads, max_len) <= 0 or hidden_size % num_heads:
            raise ValueError(
                f"TransformerDenoiser: sizes must be positive and num_heads ({num_heads}) must divide "
                f"hidden_size ({hidden_size})"
            )
        self.vocab_size = int(vocab_size)
        self.hidden_size = int(hidden_size)
        self.num_layers = int(num_layers)
        self.num_heads = int(num_heads)
        self.intermediate_size = int(intermediate_size or 4 * hidden_size)
        self.max_len = int(max_len)
        self.dropout_p = float(dropout)
        self.attn_implementation = attn_implementation
        bert_config = BertConfig(
            vocab_size=self.vocab_size, hidden_size=self.hidden_size, num_hidden_layers=self.num_layers,
            num_attention_heads=self.num_heads, intermediate_size=self.intermediate_size, hidden_act="gelu",
            hidden_dropout_prob=self.dropout_p, attention_probs_dropout_prob=self.dropout_p,
            max_position_embeddings=self.max_len, type_vocab_size=1, pad_token_id=None,
        )
        bert_config._attn_implementation = attn_implementation
        self.encoder = BertModel(bert_config, add_pooling_layer=False)
        self.head = nn.Sequential(
            nn.Linear(self.hidden_size, self.hidden_size), nn.GELU(),
            nn.LayerNorm(self.hidden_size, eps=bert_config.layer_norm_eps), nn.Linear(self.hidden_size, vocab_size),
        )

    def config(self) -> dict[str, Any]:
        """Constructor arguments plus ``architecture: "transformer"`` (what :func:`build_backbone` reads)."""
        return {
            "architecture": "transformer",
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "num_layers": self.num_layers,
            "num_heads": self.num_heads,
            "intermediate_size": self.intermediate_size,
            "max_len": self.max_len,
            "dropout": self.dropout_p,
            "attn_implementation": self.attn_implementation,
        }

    def forward(self, tokens: Tensor, sigma: Tensor | None = None) -> Tensor:
        if tokens.shape[1] > self.max_len:
            raise ValueError(f"TransformerDenoiser: length {tokens.shape[1]} > max_len {self.max_len}")
        if tokens.dim() == 2:
            hidden = self.encoder(input_ids=tokens).last_hidden_state
        else:
            table = self.encoder.embeddings.word_embeddings.weight
            hidden = self.encoder(inputs_embeds=tokens.to(table.dtype) @ table).last_hidden_state
        return self.head(hidden)


def build_backbone(config: dict[str, Any]) -> nn.Module:
    """The denoiser a backbone config describes (``architecture``: ``dilated_cnn`` (default) / ``transformer``).

    Raises:
        ValueError: an unknown ``architecture``.
    """
    cfg = dict(config)
    arch = cfg.pop("architecture", "dilated_cnn")
    if arch == "transformer":
        return TransformerDenoiser(**cfg)
    if arch == "dilated_cnn":
        return DilatedCNN(**{k: v for k, v in cfg.items() if v is not None})
    raise ValueError(f"unknown backbone architecture {arch!r} (expected 'dilated_cnn' or 'transformer')")


# ------------------------------------------------------------------------------------------ the model
class SimpoDNAPreTrainedModel(PreTrainedModel):
    config_class = SimpoDNAConfig
    base_model_prefix = "simpo_dna"
    main_input_name = "input_ids"

    def _init_weights(self, module: nn.Module) -> None:
        """Keep each module's own initialisation (weights are loaded from ``model.safetensors`` anyway)."""


class SimpoDNAForMaskedLM(SimpoDNAPreTrainedModel):
    """The denoiser of a simpo-bio masked diffusion model as a ``transformers`` masked LM.

    ``forward(input_ids [B, L], sigma [B] | None, t [B] | None, labels [B, L] | None)`` returns
    ``MaskedLMOutput(logits [B, L, vocab])``, the raw denoiser logits, identical to
    ``MaskedDiffusion.backbone(input_ids, sigma)`` of simpo-bio. ``labels`` (``-100`` = ignored) adds the mean
    cross-entropy as ``loss``. ``attention_mask`` / ``token_type_ids`` are accepted and ignored (fixed length).
    """

    def __init__(self, config: SimpoDNAConfig) -> None:
        super().__init__(config)
        self.backbone = build_backbone(config.backbone_config)
        self.post_init()

    def noise_level(self, t: Tensor) -> Tensor:
        """``sigma(t) = -log(1 - (1 - eps) t)`` of the log-linear schedule."""
        return -torch.log1p(-(1.0 - self.config.eps) * t.float())

    def forward(
        self,
        input_ids: Tensor,
        sigma: Tensor | None = None,
        t: Tensor | None = None,
        labels: Tensor | None = None,
        return_dict: bool | None = None,
        **kwargs: Any,
    ) -> MaskedLMOutput | tuple:
        batch = input_ids.shape[0]
        if sigma is None:
            sigma = input_ids.new_zeros(batch, dtype=torch.float) if t is None else self.noise_level(
                torch.as_tensor(t, device=input_ids.device).reshape(-1).expand(batch))
        logits = self.backbone(input_ids, torch.as_tensor(sigma, device=input_ids.device))
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100)
        if return_dict is False:
            return (logits,) if loss is None else (loss, logits)
        return MaskedLMOutput(loss=loss, logits=logits)

    def subs_log_probs(self, input_ids: Tensor, logits: Tensor) -> Tensor:
        """``subs`` log-probabilities ``[B, L, V]``: mask token never predicted, unmasked tokens carried over."""
        mask = self.config.mask_index
        logits = logits.float().index_fill(-1, torch.tensor([mask], device=logits.device), float("-inf"))
        log_probs = torch.log_softmax(logits, dim=-1)
        carried = torch.full_like(log_probs, float("-inf")).scatter_(-1, input_ids.unsqueeze(-1), 0.0)
        return torch.where((input_ids != mask).unsqueeze(-1), carried, log_probs)

    @torch.no_grad()
    def sample_sequences(self, num_samples: int, seq_len: int | None = None, num_steps: int | None = None,
                         generator: torch.Generator | None = None) -> Tensor:
        """Ancestral sampling (MDLM, Sahoo et al. 2024) on the grid ``t_i = 1 - i / N``: ``[B, L]`` token ids.

        A position masked at ``t`` is revealed at ``s < t`` with probability ``(m(t) - m(s)) / m(t)``, its base
        drawn from the ``subs`` distribution; the last step (``s = 0``) reveals everything.
        """
        seq_len = int(seq_len or self.config.seq_len)
        num_steps = int(num_steps or self.config.num_steps or 128)
        device = next(self.parameters()).device
        mask, eps = self.config.mask_index, self.config.eps
        x = torch.full((num_samples, seq_len), mask, dtype=torch.long, device=device)
        grid = torch.linspace(1.0, 0.0, num_steps + 1, device=device)
        was_training = self.training
        self.eval()
        for i in range(num_steps):
            masked = x == mask
            if not bool(masked.any()):
                break
            m_t, m_s = (1 - eps) * grid[i], (1 - eps) * grid[i + 1]
            sigma = self.noise_level(grid[i]).expand(num_samples)
            probs = self.subs_log_probs(x, self(x, sigma=sigma).logits).exp()
            reveal = masked & (torch.rand(x.shape, device=device, generator=generator) < (m_t - m_s) / m_t)
            if bool(reveal.any()):
                x[reveal] = torch.multinomial(probs[reveal], 1, generator=generator).squeeze(-1)
        self.train(was_training)
        return x

    def decode(self, tokens: Tensor) -> list[str]:
        """Token ids ``[B, L]`` -> strings over ``config.alphabet`` (``N`` for the mask token)."""
        chars = self.config.alphabet + "N"
        return ["".join(chars[int(v)] for v in row) for row in tokens.cpu()]
