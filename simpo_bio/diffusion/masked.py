"""Absorbing-state (masked) discrete diffusion, as in MDLM (Sahoo et al. 2024), with a per-sample ELBO.

Forward process (continuous time ``t in [0, 1]``, log-linear schedule): every token is independently replaced by
the mask token with probability ``m(t) = (1 - eps) * t`` (total noise ``sigma(t) = -log(1 - m(t))``).

Reverse model (``subs`` parameterisation): the denoiser predicts the clean token at every position; the mask token
gets probability 0 and already unmasked tokens are copied through unchanged.

Loss (paper section 5.3 and its footnote 2; ``docs/method.md`` section 8): the continuous-time negative ELBO of one
sequence,
``ELBO_loss(x) = E_t [ m'(t) / m(t) * sum_{l masked in z_t} -log p_theta(x^l | z_t) ]``; for the log-linear
schedule ``m'(t) / m(t) = 1 / t``. :meth:`MaskedDiffusion.elbo_loss` returns one Monte-Carlo draw of it per
sequence (shape ``[B]``, nats) so that fine-tuning can weight sequences individually (``sum_i w_i ELBO_loss(x_i)``).

Sampler: the ancestral sampler of the discretised reverse process on the grid ``t_i = 1 - i / N``. Its key
property is that *when* a masked position is revealed does not depend on the model: a position still masked at
``t_i`` stays masked with probability ``m(t_{i+1}) / m(t_i)`` whatever ``p_theta`` says. So the reveal step of every
position is drawn up front (for the log-linear schedule it is uniform over the N steps), one uniform per position
draws its base by inverse CDF when it is revealed, and the denoiser runs only on the sequences that reveal at least
one position at that step. This is the same distribution as the step-by-step MDLM sampler (ending at ``t = 0``, so
no final greedy "noise removal" step is needed), with ``2 * B * L`` random numbers in total and no wasted forwards.

DRAKES-matching option (Wang et al. 2024, ``drakes_dna/diffusion_gosai_update.py``, ``_sample``): ``grid_end=1e-5,
noise_removal=True`` runs the grid ``t_i = 1 - i (1 - 1e-5) / N`` instead, so a position is still masked after the
last step with probability ``m(1e-5) / m(1)``; one final denoiser call then fills those positions with the argmax
base. The default (``grid_end=0``, no noise removal) is unchanged.

Imports: torch only (the denoiser is passed in, e.g. :class:`simpo_bio.dna.models.backbones.DilatedCNN`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["LogLinearSchedule", "MaskedDiffusion", "antithetic_times", "random_subset_mask"]


class LogLinearSchedule:
    """Log-linear noise schedule of MDLM: mask probability ``m(t) = (1 - eps) t``.

    Args:
        eps: keeps ``m(1) = 1 - eps < 1`` so ``sigma(1)`` is finite; also the smallest training time.
    """

    def __init__(self, eps: float = 1e-3) -> None:
        if not 0.0 < eps < 1.0:
            raise ValueError(f"LogLinearSchedule: eps must be in (0, 1), got {eps}")
        self.eps = float(eps)

    def move_chance(self, t: Tensor) -> Tensor:
        """Probability that a token is masked at time ``t`` (``[...]`` -> ``[...]``)."""
        return (1.0 - self.eps) * t

    def sigma(self, t: Tensor) -> Tensor:
        """Total noise ``sigma(t) = -log(1 - m(t))`` (what a time-conditioned backbone receives)."""
        return -torch.log1p(-(1.0 - self.eps) * t)

    def elbo_weight(self, t: Tensor) -> Tensor:
        """Weight of the masked-token cross-entropy in the continuous-time ELBO: ``m'(t) / m(t) = 1 / t``."""
        return 1.0 / t


def antithetic_times(
    batch_size: int,
    *,
    eps: float = 1e-3,
    antithetic: bool = True,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Diffusion times for a batch, ``[batch_size]`` in ``[eps, 1]``.

    With ``antithetic`` (low-discrepancy) sampling, ``u_b = (u_0 + b / B) mod 1`` for a single uniform ``u_0``, so
    the batch covers ``[0, 1)`` evenly and the ELBO estimate of a batch has a much lower variance; each ``t_b`` is
    still marginally uniform, so every per-sample estimate stays unbiased. ``t = eps + (1 - eps) u``.
    """
    if antithetic:
        u0 = torch.rand(1, generator=generator, device=device)
        u = (u0 + torch.arange(batch_size, device=device) / batch_size) % 1.0
    else:
        u = torch.rand(batch_size, generator=generator, device=device)
    return eps + (1.0 - eps) * u


def random_subset_mask(k: Tensor, length: int, *, generator: torch.Generator | None = None,
                       shared: bool = False) -> Tensor:
    """``[B, length]`` bool mask with ``k[b]`` positions chosen uniformly at random in row ``b`` (``k``: ``[B]`` long).

    With ``shared`` one random order serves every row (the same positions wherever the ``k`` are equal).
    """
    batch = k.shape[0]
    rows = 1 if shared else batch
    order = torch.rand(rows, length, generator=generator, device=k.device).argsort(dim=1).expand(batch, -1)
    masked = torch.zeros(batch, length, dtype=torch.bool, device=k.device)
    return masked.scatter_(1, order, torch.arange(length, device=k.device).expand(batch, -1) < k[:, None])


class MaskedDiffusion(nn.Module):
    """MDLM masked diffusion around a denoising backbone (absorbing state, log-linear schedule, ``subs``).

    Args:
        backbone: module mapping ``(tokens [B, L] long, sigma [B]) -> logits [B, L, V]`` with ``V`` including the
            mask token (e.g. :class:`simpo_bio.dna.models.backbones.DilatedCNN`).
        mask_index: id of the mask token (4 for the DNA alphabet A, C, G, T, [MASK]).
        eps: schedule offset (:class:`LogLinearSchedule`); also the smallest training time.
        vocab_size: ``V``; read from ``backbone.vocab_size`` when not given, else ``mask_index + 1``.

    Raises:
        ValueError: if ``mask_index`` is outside ``[0, V)``.
    """

    def __init__(self, backbone: nn.Module, mask_index: int = 4, eps: float = 1e-3, vocab_size: int | None = None):
        super().__init__()
        self.backbone = backbone
        self.vocab_size = int(vocab_size or getattr(backbone, "vocab_size", mask_index + 1))
        if not 0 <= mask_index < self.vocab_size:
            raise ValueError(f"MaskedDiffusion: mask_index {mask_index} outside the vocabulary [0, {self.vocab_size})")
        self.mask_index = int(mask_index)
        self.schedule = LogLinearSchedule(eps)
        self.eps = float(eps)
        keep = [v for v in range(self.vocab_size) if v != self.mask_index]
        self.register_buffer("_data_tokens", torch.tensor(keep, dtype=torch.long), persistent=False)

    # ------------------------------------------------------------------ model
    def forward(self, z_t: Tensor, sigma: Tensor) -> Tensor:
        """``subs`` log-probabilities of the clean sequence given the noisy one.

        Args:
            z_t: ``[B, L]`` long tokens, mask token where masked.
            sigma: ``[B]`` total noise level (passed to the backbone).

        Returns:
            ``[B, L, V]`` float32 log-probabilities: at masked positions a log-softmax over the data tokens (the
            mask token has log-probability ``-inf``); at unmasked positions 0 for the observed token and ``-inf``
            for every other one (the token is carried over).
        """
        logits = self.backbone(z_t, sigma).float()
        neg_inf = float("-inf")
        mask_col = torch.tensor([self.mask_index], device=logits.device)
        logits = logits.index_fill(-1, mask_col, neg_inf)  # subs: the mask token is never predicted
        log_probs = torch.log_softmax(logits, dim=-1)
        carried = torch.full_like(log_probs, neg_inf).scatter_(-1, z_t.unsqueeze(-1), 0.0)
        unmasked = (z_t != self.mask_index).unsqueeze(-1)
        return torch.where(unmasked, carried, log_probs)

    def _check_tokens(self, x: Tensor) -> None:
        if x.dim() != 2 or x.dtype != torch.long:
            raise ValueError(f"MaskedDiffusion: expected a [B, L] long token tensor, got {tuple(x.shape)} {x.dtype}")
        bad = (x < 0) | (x >= self.vocab_size) | (x == self.mask_index)
        if bool(bad.any()):
            b, pos = (int(v) for v in bad.nonzero()[0])
            raise ValueError(
                f"MaskedDiffusion: clean sequences must hold data tokens only; sequence {b} has token "
                f"{int(x[b, pos])} at position {pos} (mask index {self.mask_index}, vocab {self.vocab_size})"
            )

    def elbo_loss(
        self,
        x: Tensor,
        *,
        antithetic: bool = True,
        generator: torch.Generator | None = None,
        t: Tensor | None = None,
    ) -> Tensor:
        """One-draw Monte-Carlo estimate of the negative ELBO of every sequence (``docs/method.md`` section 8).

        ``ELBO_loss(x) = (1 / t) * sum_{l : z_t^l = MASK} -log p_theta(x^l | z_t)`` with ``t ~ U[eps, 1]``
        (antithetic across the batch) and ``z_t`` drawn from the forward process. Its expectation over ``t`` and
        ``z_t`` upper-bounds ``-log p_theta(x)``; divide by ``L * ln 2`` for bits per base.

        Args:
            x: ``[B, L]`` long clean tokens (no mask token).
            antithetic: stratify the batch's times (:func:`antithetic_times`).
            generator: RNG for the times and the masking (reproducible estimates).
            t: optional ``[B]`` times in ``(0, 1]`` to use instead of sampling them.

        Returns:
            ``[B]`` float32 negative ELBO per sequence, in nats (differentiable w.r.t. the backbone).

        Raises:
            ValueError: on a non-``[B, L]`` / non-long input or a token outside the data alphabet.
        """
        self._check_tokens(x)
        batch, length = x.shape
        if t is None:
            t = antithetic_times(batch, eps=self.eps, antithetic=antithetic, generator=generator, device=x.device)
        else:
            t = t.to(device=x.device, dtype=torch.float32).reshape(batch)
        move = self.schedule.move_chance(t)
        masked = torch.rand(batch, length, generator=generator, device=x.device) < move[:, None]
        z_t = torch.where(masked, torch.full_like(x, self.mask_index), x)
        log_probs = self(z_t, self.schedule.sigma(t))
        # Unmasked positions gather their carried-over log-probability 0, so the sum runs over masked ones only.
        log_px = log_probs.gather(-1, x.unsqueeze(-1)).squeeze(-1)
        nll = -(log_px * masked).sum(-1)
        return nll * self.schedule.elbo_weight(t)

    def elbo_loss_by_count(
        self,
        x: Tensor,
        *,
        num_draws: int = 1,
        shared_noise: bool = False,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Negative ELBO of every sequence written over the number ``k`` of masked positions (differentiable).

        The same bound as :meth:`elbo_loss` in its any-order form (for the log-linear schedule
        ``E_t[(1/t) 1{k masked}] = 1/k``; the ``eps`` offset of the schedule aside)::

            -ELBO(x) = E_{k ~ U{1..L}} (L / k) E_{S : |S| = k} sum_{l in S} -log p_theta(x^l | x outside S)

        Every draw masks ``k >= 1`` positions with a weight ``L / k <= L``, so the estimate never is 0 and never
        carries the ``1 / t`` weight of a near-empty mask (up to ``1 / eps`` in :meth:`elbo_loss`); the
        ``num_draws`` values of ``k`` are stratified over ``1..L``. With ``shared_noise`` every sequence of the
        batch uses the same ``k`` and the same masked positions (common random numbers): each sequence's estimate
        is still unbiased, and the noise of a *difference* of estimates (a zero-sum weighted ELBO) mostly cancels.
        Time-conditioned backbones get ``sigma(k / L)``.

        Args:
            x: ``[B, L]`` long clean tokens.
            num_draws: masked subsets per sequence (one network call each, for the whole batch).
            shared_noise: the same subsets for every sequence of the batch.
            generator: RNG of the subsets (reproducible estimates).

        Returns:
            ``[B]`` float32 negative ELBO per sequence, nats (``>= -log p``; differentiable w.r.t. the backbone).

        Raises:
            ValueError: bad tokens (as :meth:`elbo_loss`) or ``num_draws < 1``.
        """
        self._check_tokens(x)
        if num_draws < 1:
            raise ValueError(f"num_draws must be >= 1, got {num_draws}")
        batch, length = x.shape
        rows = 1 if shared_noise else batch
        u = torch.rand(rows, 1, generator=generator, device=x.device)
        strata = (torch.arange(num_draws, device=x.device)[None, :] + u) / num_draws  # [rows, D] in [0, 1)
        counts = ((strata * length).long().clamp_(0, length - 1) + 1).expand(batch, -1)  # k in 1..L
        total = torch.zeros(batch, device=x.device)
        for d in range(num_draws):
            k = counts[:, d]
            masked = random_subset_mask(k, length, generator=generator, shared=shared_noise)
            z = torch.where(masked, torch.full_like(x, self.mask_index), x)
            log_probs = self(z, self.schedule.sigma(k.float() / length))
            log_px = log_probs.gather(-1, x.unsqueeze(-1)).squeeze(-1)
            total = total - (log_px * masked).sum(-1) * (length / k.float())
        return total / num_draws

    @torch.no_grad()
    def log_likelihood(self, x: Tensor, *, num_draws: int = 16, generator: torch.Generator | None = None) -> Tensor:
        """Per-sequence ELBO lower bound on ``log p_theta(x)`` (nats), an estimate that is usable one sequence at a time.

        :meth:`elbo_loss` draws one time ``t`` per sequence and weighs the masked positions by ``1 / t``; with
        ``t`` near ``eps`` a 200-bp sequence often has no masked position at all (estimate exactly 0: probability
        ``(1 - t)^L``, about 3 sequences in 640 with antithetic times) or a single one weighted up to ``1 / eps``
        (estimates far below the mean). Averaged over a batch that is fine; per sequence it is not. This is
        ``-`` :meth:`elbo_loss_by_count` with ``num_draws`` stratified masked subsets per sequence.

        Args:
            x: ``[B, L]`` long clean tokens.
            num_draws: masked subsets per sequence (one network call each, for the whole batch).
            generator: RNG of the subsets (reproducible estimates).

        Returns:
            ``[B]`` float32 estimates of the ELBO (``<= log p``), nats per sequence; higher = more likely.

        Raises:
            ValueError: bad tokens (as :meth:`elbo_loss`) or ``num_draws < 1``.
        """
        return -self.elbo_loss_by_count(x, num_draws=num_draws, generator=generator)

    # ---------------------------------------------------------------- sampler
    def reveal_step_probs(self, num_steps: int, device: torch.device | str | None = None,
                          grid_end: float = 0.0) -> Tensor:
        """``[num_steps]`` probability that a position is revealed at step ``i`` of the ancestral sampler.

        On the grid ``t_i = 1 - i (1 - grid_end) / N`` a position masked at ``t_i`` stays masked with probability
        ``m(t_{i+1}) / m(t_i)``, independently of the model, so ``P(reveal at i) = (m(t_i) - m(t_{i+1})) / m(t_0)``
        (uniform ``1 / N`` for the log-linear schedule). With ``grid_end = 0`` the last step ends at ``t = 0`` and
        reveals everything; otherwise ``m(grid_end) / m(1)`` of the mass is left for the noise-removal step.
        """
        grid = torch.linspace(1.0, grid_end, num_steps + 1, device=device, dtype=torch.float64)
        move = self.schedule.move_chance(grid)
        return ((move[:-1] - move[1:]) / move[0]).float()

    @torch.no_grad()
    def sample(
        self,
        num_samples: int,
        seq_len: int,
        *,
        num_steps: int = 128,
        batch_size: int | None = None,
        generator: torch.Generator | None = None,
        seed: int | None = None,
        device: torch.device | str | None = None,
        grid_end: float = 0.0,
        noise_removal: bool = False,
        reference: MaskedDiffusion | None = None,
        return_log_probs: bool = False,
    ) -> Tensor | tuple[Tensor, Tensor, Tensor]:
        """Draw sequences with the ancestral sampler (``num_steps`` steps from ``t = 1`` to ``t = grid_end``).

        Args:
            num_samples: number of sequences ``B``.
            seq_len: length ``L``.
            num_steps: number of reverse steps ``N`` (the denoiser runs at most ``N`` times per sequence, and
                only at steps where that sequence reveals something).
            batch_size: sequences per chunk (default: all at once).
            generator: RNG for every draw; with ``seed`` instead, a fresh generator seeded with it is used. The
                same seed, sizes and device give the same sequences.
            device: where to sample (default: the model's device).
            grid_end: last time of the grid (DRAKES: ``1e-5``); ``0`` reveals every position by the last step.
            noise_removal: after the last step, one denoiser call sets every still-masked position to its argmax
                base (DRAKES ``sampling.noise_removal``); required when ``grid_end > 0``.
            reference: a second model with the same vocabulary, run on the same noisy sequences when
                ``return_log_probs`` (e.g. the frozen pretrained model of fine-tuning).
            return_log_probs: also return the trajectory log-probabilities of every sequence, see Returns.

        Returns:
            ``[num_samples, seq_len]`` long tokens, never the mask token. With ``return_log_probs``:
            ``(tokens, log_p [B], log_q [B])``, the sums over revealed positions of the log-probability of the
            drawn base under this model and under ``reference`` (zeros without one), nats. The reveal order does
            not depend on the model, so ``log_p - log_q`` is the log-ratio of the two models' sampling
            trajectories and its mean estimates the path KL ``KL(p || q)`` (an upper bound of the KL of the
            sequences' distributions). Noise-removal picks are deterministic and add 0.

        Raises:
            ValueError: on non-positive sizes, when both ``generator`` and ``seed`` are given, or on a
                ``grid_end`` outside ``[0, 1)`` / without ``noise_removal``.
        """
        if num_samples <= 0 or seq_len <= 0 or num_steps <= 0:
            raise ValueError(
                f"MaskedDiffusion.sample: num_samples, seq_len, num_steps must be positive, got "
                f"{num_samples}, {seq_len}, {num_steps}"
            )
        if generator is not None and seed is not None:
            raise ValueError("MaskedDiffusion.sample: pass either generator or seed, not both")
        if not 0.0 <= grid_end < 1.0 or (grid_end > 0 and not noise_removal):
            raise ValueError(f"MaskedDiffusion.sample: grid_end must be in [0, 1) and needs noise_removal=True when "
                             f"> 0 (else masks would remain), got grid_end={grid_end}, noise_removal={noise_removal}")
        if device is None:
            param = next(self.parameters(), None)
            device = param.device if param is not None else torch.device("cpu")
        device = torch.device(device)
        if seed is not None:
            generator = torch.Generator(device=device).manual_seed(int(seed))
        batch_size = int(batch_size or num_samples)
        was_training = self.training
        self.eval()
        try:
            reveal_cdf = self.reveal_step_probs(num_steps, device, grid_end).cumsum(0)
            grid = torch.linspace(1.0, grid_end, num_steps + 1, device=device)
            sigmas = self.schedule.sigma(grid)  # [N + 1]: the last one is the noise-removal step's
            out = [
                self._sample_chunk(min(batch_size, num_samples - start), seq_len, reveal_cdf, sigmas, generator, device,
                                   leftover=grid_end > 0, reference=reference, log_probs=return_log_probs)
                for start in range(0, num_samples, batch_size)
            ]
        finally:
            self.train(was_training)
        x = torch.cat([o[0] for o in out], dim=0)
        if not return_log_probs:
            return x
        return x, torch.cat([o[1] for o in out]), torch.cat([o[2] for o in out])

    def relaxed_sample(
        self,
        num_samples: int,
        seq_len: int,
        *,
        reference: MaskedDiffusion,
        num_steps: int = 128,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor]:
        """The ancestral sampler made differentiable: sequences as base probabilities with a gradient, and their
        exact trajectory KL to ``reference`` (reward backpropagation through the sampler, ``docs/method.md``).

        The reveal step of every position is drawn as in :meth:`sample` (it does not depend on the model). At its
        step a position takes a straight-through Gumbel-softmax draw (temperature 1) of this model's base
        distribution: the forward value is the one-hot of the drawn base (up to float rounding), the gradient that
        of the relaxed softmax. Later steps read the relaxed sequence, so the gradient runs through the whole
        trajectory. The model runs in its current mode (train mode keeps dropout, as in fine-tuning) and with grad
        when grad is enabled.

        Args:
            num_samples, seq_len: ``B`` and ``L``.
            reference: the frozen model the KL is to (same vocabulary), run on the same partial sequences.
            num_steps: reverse steps ``N`` (grid ``t = 1 -> 0``; every position is revealed by the last step).
            generator: RNG of the reveal steps and the Gumbel noise (on the CPU or the model's device).

        Returns:
            ``(probs [B, L, 4], kl [B])``: the sequences over the data tokens (one-hot forward values) and
            ``sum over revealed positions of KL(p_theta || p_ref)`` of the two models' base distributions on the
            same partial sequence, nats per sequence (exact given the path; its mean over paths is the path KL).

        Raises:
            ValueError: non-positive sizes.
        """
        if num_samples <= 0 or seq_len <= 0 or num_steps <= 0:
            raise ValueError(f"MaskedDiffusion.relaxed_sample: num_samples, seq_len and num_steps must be positive, "
                             f"got {num_samples}, {seq_len}, {num_steps}")
        param = next(self.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        gdev = generator.device if generator is not None else device
        data = self._data_tokens
        cdf = self.reveal_step_probs(num_steps).cumsum(0)
        step = torch.searchsorted(cdf, torch.rand(num_samples * seq_len, generator=generator, device=gdev).cpu(),
                                  right=True)
        step = step.clamp_(max=num_steps - 1).reshape(num_samples, seq_len).to(device)
        sigmas = self.schedule.sigma(torch.linspace(1.0, 0.0, num_steps + 1)).to(device)
        x = F.one_hot(torch.full((num_samples, seq_len), self.mask_index, device=device), self.vocab_size).float()
        kl = torch.zeros(num_samples, device=device)
        for i in range(num_steps):
            rev = step == i
            if not rev.any():
                continue
            sig = sigmas[i].expand(num_samples)
            logp = self.backbone(x, sig).float().index_select(-1, data).log_softmax(-1)  # [B, L, 4]
            logq = reference.backbone(x, sig).float().index_select(-1, data).log_softmax(-1)
            kl = kl + ((logp.exp() * (logp - logq)).sum(-1) * rev).sum(-1)
            u = torch.rand(logp.shape, generator=generator, device=gdev).to(device).clamp_(1e-10, 1.0 - 1e-7)
            soft = (logp - torch.log(-torch.log(u))).softmax(-1)
            hard = F.one_hot(soft.argmax(-1), data.numel()).float()
            pick = hard + soft - soft.detach()  # straight-through: one-hot forward, relaxed gradient
            x = torch.where(rev[..., None], torch.zeros_like(x).index_copy(-1, data, pick), x)
        return x.index_select(-1, data), kl

    def _sample_chunk(
        self,
        batch: int,
        length: int,
        reveal_cdf: Tensor,
        sigmas: Tensor,
        generator: torch.Generator | None,
        device: torch.device,
        leftover: bool = False,
        reference: MaskedDiffusion | None = None,
        log_probs: bool = False,
    ) -> tuple[Tensor, Tensor, Tensor]:
        # leftover: grid_end > 0, so step N means "still masked after the grid", filled by noise removal
        num_steps = reveal_cdf.numel()
        # Reveal step of every position (inverse CDF), then one uniform per position for its base.
        u_step = torch.rand(batch, length, generator=generator, device=device)
        step = torch.searchsorted(reveal_cdf, u_step.reshape(-1), right=True)
        step = step.clamp_(max=num_steps if leftover else num_steps - 1)
        step = step.reshape(batch, length)
        u_token = torch.rand(batch, length, generator=generator, device=device)
        x = torch.full((batch, length), self.mask_index, dtype=torch.long, device=device)
        log_p = torch.zeros(batch, device=device)
        log_q = torch.zeros(batch, device=device)
        # Visit positions grouped by step: one sort instead of a [B, L] comparison per step.
        flat_step = step.reshape(-1)
        order = torch.argsort(flat_step, stable=True)
        counts = torch.bincount(flat_step, minlength=num_steps + 1).tolist()[:num_steps]
        rows_all = order // length
        cols_all = order % length
        data_tokens = self._data_tokens.to(device)
        start = 0
        for i, count in enumerate(counts):
            if count == 0:
                continue  # no position is revealed at this step: the denoiser output would not be used
            rows = rows_all[start:start + count]
            cols = cols_all[start:start + count]
            start += count
            active, slot = torch.unique(rows, sorted=True, return_inverse=True)
            x_in = x if active.numel() == batch else x.index_select(0, active)
            logits = self.backbone(x_in, sigmas[i].expand(active.numel()))
            logits = logits[slot, cols].float().index_select(-1, data_tokens)  # [E, V-1], mask column dropped
            cdf = torch.softmax(logits, dim=-1).cumsum_(-1)
            # Count how many CDF knots lie below u; the last knot is never compared, so the pick is in range.
            choice = (cdf[:, :-1] < u_token[rows, cols, None]).sum(-1)
            if log_probs:
                log_p.index_add_(0, rows, torch.log_softmax(logits, -1).gather(-1, choice[:, None]).squeeze(-1))
                if reference is not None:
                    ref = reference.backbone(x_in, sigmas[i].expand(active.numel()))
                    ref = ref[slot, cols].float().index_select(-1, data_tokens)
                    log_q.index_add_(0, rows, torch.log_softmax(ref, -1).gather(-1, choice[:, None]).squeeze(-1))
            x[rows, cols] = data_tokens[choice]
        if leftover and start < order.numel():  # noise removal: argmax base of every still-masked position
            rows, cols = rows_all[start:], cols_all[start:]
            active, slot = torch.unique(rows, sorted=True, return_inverse=True)
            logits = self.backbone(x.index_select(0, active), sigmas[num_steps].expand(active.numel()))
            best = logits[slot, cols].float().index_select(-1, data_tokens).argmax(-1)
            x[rows, cols] = data_tokens[best]
        return x, log_p, log_q

    def sample_stats(self, num_steps: int, seq_len: int) -> dict[str, float]:
        """Expected denoiser calls per sequence for the ancestral sampler (steps where something is revealed)."""
        probs = self.reveal_step_probs(num_steps).double()
        expected = float((1.0 - (1.0 - probs) ** seq_len).sum())
        return {"num_steps": float(num_steps), "expected_forwards_per_sequence": expected,
                "saved_fraction": 1.0 - expected / num_steps if num_steps else math.nan}
