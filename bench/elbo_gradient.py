"""How well one step's gradient of the weighted ELBO points where the exact one points, per ELBO estimator.

The fine-tuning loss is ``sum_i w_i ELBO_i`` over a group of ``G`` sampled sequences with signed weights summing to 1
(``square_neg``, eta 1: negative mass about -11). Each estimator of ``ELBO_i`` gives a noisy gradient; this bench
measures, on the shipped pretrained model and a group of its own samples weighted by the fine-tuning oracle:

- ``cos``: the mean cosine between one draw's gradient and a reference gradient (the mean of ``--ref-draws`` draws
  of the count form with independent noise, drawn separately), higher = less noise;
- ``s/grad``: seconds per gradient (forward + backward of the group), the cost.

Estimators: ``time`` (``t ~ U[eps, 1]``, weight ``1 / t``: the pretraining loss), ``count`` (``k ~ U{1..L}``, weight
``L / k``), ``count+shared`` (the same masks for every sequence of the group), each with 1 or 4 draws per sequence.

Usage (one process, 1 thread)::

    OMP_NUM_THREADS=1 python bench/elbo_gradient.py
"""

from __future__ import annotations

import argparse
import time

import torch


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--group-size", type=int, default=32)
    p.add_argument("--draws", type=int, default=24, help="gradients per estimator")
    p.add_argument("--ref-draws", type=int, default=48)
    p.add_argument("--seed", type=int, default=7)
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    from simpo_bio.dna.models.pretrain import load_pretrained
    from simpo_bio.dna.oracles.oracle import load_oracle, oracle_scores
    from simpo_bio.weighting import compute_weights, get_scheme, group_advantages

    model = load_pretrained("checkpoints/dna/pretrained_dhs.ckpt")
    x = model.sample(a.group_size, 200, num_steps=16, seed=a.seed)
    reward = oracle_scores(load_oracle("checkpoints/dna/oracle_ft.ckpt"), x)
    adv = group_advantages(reward.view(1, -1), normalize=True)
    w = compute_weights(adv, get_scheme("square_neg", eta=1.0), torch.tensor(1.0)).weight.reshape(-1).detach()
    params = list(model.parameters())

    def grad(fn):
        model.zero_grad()
        (w * fn()).sum().backward()
        return torch.cat([(q.grad if q.grad is not None else torch.zeros_like(q)).reshape(-1) for q in params])

    g = torch.Generator().manual_seed(a.seed)
    ref = torch.stack([grad(lambda: model.elbo_loss_by_count(x, generator=g)) for _ in range(a.ref_draws)]).mean(0)
    variants = {
        "time, 1 draw": lambda: model.elbo_loss(x, generator=g),
        "count, 1 draw": lambda: model.elbo_loss_by_count(x, generator=g),
        "count+shared, 1 draw": lambda: model.elbo_loss_by_count(x, shared_noise=True, generator=g),
        "count, 4 draws": lambda: model.elbo_loss_by_count(x, num_draws=4, generator=g),
        "count+shared, 4 draws": lambda: model.elbo_loss_by_count(x, num_draws=4, shared_noise=True, generator=g),
    }
    print(f"group of {a.group_size} pretrained samples, square_neg weights (negative mass "
          f"{w[w < 0].sum().item():.2f}); reference = mean of {a.ref_draws} count-form draws")
    print(f"{'estimator':24s} {'cos to reference':>17s} {'s/grad':>8s}")
    for name, fn in variants.items():
        t0 = time.perf_counter()
        grads = torch.stack([grad(fn) for _ in range(a.draws)])
        sec = (time.perf_counter() - t0) / a.draws
        cos = torch.nn.functional.cosine_similarity(grads, ref[None], dim=1)
        print(f"{name:24s} {cos.mean().item():10.3f} +- {cos.std().item() / a.draws ** 0.5:.3f} {sec:8.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
