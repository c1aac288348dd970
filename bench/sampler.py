"""Speed of the masked-diffusion ancestral sampler: sequences/s and the share of its time spent in the backbone.

Samples ``--batch`` sequences of ``--length`` bp with ``--steps`` steps from the pretrained model (or a fresh
backbone of the same shape) and reports, from the same run:

* sequences per second of :meth:`MaskedDiffusion.sample`;
* the share of its wall time spent inside the backbone forward (timed with forward hooks; target >= 80%, i.e.
  the sampler's own overhead <= 20%);
* the same numbers for a step-by-step reference sampler (MDLM's: the denoiser on the whole batch at every step,
  Gumbel-max draws over ``[B, L, V]`` at every step), and the speed-up of ours over it;
* optionally (``--finetune-breakdown``) the time split of one SiMPO fine-tuning iteration done with the same
  calls the fine-tuning loop makes: sample a group, score it with the fine-tuning oracle, a weighted ELBO update.

    OMP_NUM_THREADS=1 .venv/bin/python bench/sampler.py
    .venv/bin/python bench/sampler.py --threads 2 --batch 256 --steps 128 --length 200 --finetune-breakdown
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from simpo_bio.diffusion.masked import MaskedDiffusion
from simpo_bio.dna.models.backbones import DilatedCNN

DEFAULT_CKPT = "checkpoints/dna/pretrained_dhs.ckpt"


class BackboneTimer:
    """Accumulates wall time spent inside ``module.forward`` (forward pre/post hooks)."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.seconds, self.calls, self.rows, self._t0 = 0.0, 0, 0, 0.0
        module.register_forward_pre_hook(self._pre)
        module.register_forward_hook(self._post)

    def _pre(self, module, args):
        self._t0 = time.perf_counter()

    def _post(self, module, args, output):
        self.seconds += time.perf_counter() - self._t0
        self.calls += 1
        self.rows += int(args[0].shape[0])

    def reset(self) -> None:
        self.seconds, self.calls, self.rows = 0.0, 0, 0


@torch.no_grad()
def reference_sample(model: MaskedDiffusion, batch: int, length: int, steps: int, gen: torch.Generator):
    """Step-by-step MDLM ancestral sampler: every step runs the denoiser on the whole batch."""
    mask = model.mask_index
    x = torch.full((batch, length), mask, dtype=torch.long)
    grid = torch.linspace(1.0, 0.0, steps + 1)
    sched = model.schedule
    for i in range(steps):
        t, s = grid[i], grid[i + 1]
        p_x0 = model(x, sched.sigma(t).expand(batch)).exp()
        m_t, m_s = float(sched.move_chance(t)), float(sched.move_chance(s))
        q = p_x0 * ((m_t - m_s) / m_t)
        q[..., mask] = m_s / m_t
        gumbel = -(torch.rand(q.shape, generator=gen) + 1e-10).log()
        draw = (q / gumbel).argmax(-1)
        x = torch.where(x == mask, draw, x)
    return x


def build_model(ckpt: str | None, hidden: int, stacks: int) -> tuple[MaskedDiffusion, str]:
    if ckpt and Path(ckpt).exists():
        from simpo_bio.dna.models.pretrain import load_pretrained

        model = load_pretrained(ckpt)
        bb = model.backbone
        params = sum(p.numel() for p in bb.parameters())
        if hasattr(bb, "convs"):  # the dilated CNN
            return model, f"{ckpt} (DilatedCNN, hidden {bb.hidden_dim}, {len(bb.convs)} blocks, {params:,} params)"
        return model, f"{ckpt} ({type(bb).__name__}, {params:,} params)"  # e.g. the transformer denoiser
    torch.manual_seed(0)
    bb = DilatedCNN(hidden_dim=hidden, num_stacks=stacks, block_order="interleaved")
    return MaskedDiffusion(bb).eval(), f"fresh DilatedCNN (hidden {hidden}, {len(bb.convs)} blocks)"


def finetune_breakdown(model: MaskedDiffusion, length: int, steps: int, group: int, epochs: int, oracle_path: str):
    """Seconds of sample / reward / update for one fine-tuning iteration made of the fine-tuning loop's calls."""
    out = {}
    t0 = time.perf_counter()
    x = model.sample(group, length, num_steps=steps, seed=1)
    out["sample"] = time.perf_counter() - t0
    reward = None
    if Path(oracle_path).exists():
        from simpo_bio.dna.oracles.oracle import load_oracle

        oracle = load_oracle(oracle_path)
        t0 = time.perf_counter()
        reward = oracle(x)
        out["reward"] = time.perf_counter() - t0
    if reward is None:
        reward = torch.randn(group)
        out["reward"] = float("nan")
    weight = torch.softmax(reward, 0).detach()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    model.train()
    t0 = time.perf_counter()
    for _ in range(epochs):
        loss = (weight * model.elbo_loss(x)).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    out["update"] = time.perf_counter() - t0
    model.eval()
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ckpt", default=DEFAULT_CKPT, help="pretrained checkpoint (fresh backbone if missing)")
    p.add_argument("--hidden", type=int, default=64, help="width of the fresh backbone when no checkpoint")
    p.add_argument("--stacks", type=int, default=2)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--length", type=int, default=200)
    p.add_argument("--steps", type=int, default=128)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=1, help="timed runs of our sampler (after one warm-up batch)")
    p.add_argument("--no-reference", action="store_true", help="skip the step-by-step reference sampler")
    p.add_argument("--finetune-breakdown", action="store_true")
    p.add_argument("--group", type=int, default=64, help="group size for --finetune-breakdown")
    p.add_argument("--epochs", type=int, default=2, help="gradient epochs for --finetune-breakdown")
    p.add_argument("--oracle", default="checkpoints/dna/oracle_ft.ckpt")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    model, desc = build_model(args.ckpt, args.hidden, args.stacks)
    timer = BackboneTimer(model.backbone)
    print(f"model: {desc}; torch threads {torch.get_num_threads()}")
    print(f"sampling {args.batch} x {args.length} bp, {args.steps} steps")
    model.sample(8, args.length, num_steps=8, seed=0)  # warm-up (allocator, oneDNN primitives)

    rows = []
    timer.reset()
    t0 = time.perf_counter()
    for r in range(args.repeats):
        x = model.sample(args.batch, args.length, num_steps=args.steps, seed=r)
    total = time.perf_counter() - t0
    assert (x != model.mask_index).all()
    rows.append(("ours (reveal-step sampler)", total / args.repeats, timer.seconds / args.repeats,
                 timer.rows / args.repeats / args.batch))  # fmt: skip

    if not args.no_reference:
        timer.reset()
        t0 = time.perf_counter()
        reference_sample(model, args.batch, args.length, args.steps, torch.Generator().manual_seed(0))
        total = time.perf_counter() - t0
        rows.append(("reference (step-by-step MDLM)", total, timer.seconds, timer.rows / args.batch))

    print("\n| sampler | seconds / batch | sequences / s | backbone share | denoiser rows / sequence |")
    print("|---|---|---|---|---|")
    for name, secs, bb, fwd in rows:
        print(f"| {name} | {secs:.2f} | {args.batch / secs:.2f} | {100 * bb / secs:.1f}% | {fwd:.1f} |")
    ours = rows[0]
    print(f"\nbackbone share of our sampler: {100 * ours[2] / ours[1]:.1f}% (target >= 80%): "
          f"{'PASS' if ours[2] / ours[1] >= 0.8 else 'FAIL'}")  # fmt: skip
    if len(rows) > 1:
        print(f"speed-up over the step-by-step reference: {rows[1][1] / ours[1]:.2f}x")

    if args.finetune_breakdown:
        br = finetune_breakdown(model, args.length, args.steps, args.group, args.epochs, args.oracle)
        tot = sum(v for v in br.values() if v == v)
        print(f"\nfine-tuning iteration (group {args.group}, {args.epochs} gradient epochs):")
        print("| phase | seconds | share |\n|---|---|---|")
        for k, v in br.items():
            print(f"| {k} | {v:.2f} | {100 * v / tot:.1f}% |" if v == v else f"| {k} | n/a (no oracle at {args.oracle}) | |")


if __name__ == "__main__":
    main()
