"""Benchmark of the per-group normalisers: exact sort-based / active-set solvers vs bisection vs entmax.

Prints, for each input shape, the median wall time of every solver and the two ratios the weighting is held to:
``bisection / exact`` (target >= 10 at [4096 x 32]) and ``exact / entmax`` (target <= 2 where entmax applies:
``linear`` = sparsemax, ``square`` = entmax15 on 2x). All timings come from the same run, interleaved.

    OMP_NUM_THREADS=1 .venv/bin/python bench/weighting.py            # [4096 x 32] and [1 x 1,000,000]
    OMP_NUM_THREADS=1 .venv/bin/python bench/weighting.py --shapes 4096x32 --dtype float64

``--clock cpu`` (default) times each call by the calling thread's CPU time (``time.thread_time``), which leaves
out the time the scheduler gives other processes on a shared machine; ``--clock wall`` uses
``time.perf_counter``. Run with one torch thread (the default) so that the thread's CPU time is the call's.

Imports: torch, :mod:`simpo_bio.weighting` (public API and ``group_ops``), entmax (optional, a [dev] extra).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import torch

import simpo_bio.weighting as sw
from simpo_bio.weighting.group_ops import finish_weights, signed_power

try:
    from entmax import entmax15, sparsemax
except ImportError:  # entmax is a [dev] extra
    entmax15 = sparsemax = None

# (scheme, p, eta, entmax reference or None)
CASES = [
    ("linear", 1.0, 0.0, "sparsemax"),
    ("square", 2.0, 0.0, "entmax15"),
    ("linear_neg", 1.0, 0.5, None),
    ("square_neg", 2.0, 0.5, None),
]


CLOCKS = {"cpu": time.thread_time, "wall": time.perf_counter}


def _time_interleaved(
    fns: dict[str, Callable[[], object]], repeats: int, clock: Callable[[], float] = time.thread_time
) -> dict[str, tuple[float, float]]:
    """``{name: (median ms, min ms)}``; the solvers are timed round-robin so load drift hits them all alike."""
    for fn in fns.values():
        fn()  # warm-up
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = clock()
            fn()
            times[name].append(clock() - t0)
    return {name: (1e3 * statistics.median(ts), 1e3 * min(ts)) for name, ts in times.items()}


def _floor(x: torch.Tensor, tau: torch.Tensor, p: float, eta: float) -> torch.Tensor:
    """The work ``threshold_exact`` does besides finding tau: group max, shift, weights at a given tau, final
    normalisation. No solver built from torch ops can be faster than this, so ``bisect / floor`` bounds the
    speed-up over bisection that any such exact solver can reach on this input."""
    hi = x.amax(-1, keepdim=True)
    d = x - hi
    t = tau.unsqueeze(-1) - hi
    return finish_weights(signed_power(d - t, p, eta), None, signed=eta > 0.0)


def run(shape: tuple[int, int], dtype: torch.dtype, repeats: int, clock: str = "cpu") -> list[dict]:
    gen = torch.Generator().manual_seed(0)
    x = sw.group_advantages(torch.randn(*shape, generator=gen, dtype=dtype))
    rows = []
    for name, p, eta, ref in CASES:
        params = {"eta": eta} if eta else {}
        fns: dict[str, Callable[[], object]] = {
            "exact": lambda: sw.threshold_exact(x, p, eta),  # noqa: B023
            "sort": lambda: sw.threshold_exact(x, p, eta, method="sort"),  # noqa: B023
            "api": lambda: sw.compute_weights(x, name, **params),  # noqa: B023
            "bisect": lambda: sw.threshold_bisect(x, p, eta),  # noqa: B023
        }
        tau = sw.threshold_exact(x, p, eta)[1]
        fns["floor"] = lambda: _floor(x, tau, p, eta)  # noqa: B023
        if ref is not None and sparsemax is not None:
            fns["entmax"] = (lambda: sparsemax(x, dim=-1)) if ref == "sparsemax" else (lambda: entmax15(2 * x, dim=-1))
        w_bis = sw.threshold_bisect(x, p, eta)[0]
        diff = max(float((fn()[0] - w_bis).abs().max()) for fn in (fns["exact"], fns["sort"]))
        if "entmax" in fns:
            diff_entmax = float((fns["entmax"]() - fns["exact"]()[0]).abs().max())
        else:
            diff_entmax = float("nan")
        timing = _time_interleaved(fns, repeats, CLOCKS[clock])
        rows.append({"shape": f"{shape[0]} x {shape[1]:,}", "scheme": name, "timing": timing,
                     "diff_bisect": diff, "diff_entmax": diff_entmax})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", nargs="+", default=["4096x32", "1x1000000"], help="GROUPSxN")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--repeats", type=int, default=15, help="timed calls per solver (round-robin)")
    parser.add_argument("--clock", default="cpu", choices=sorted(CLOCKS),
                        help="cpu: the thread's CPU time (robust to other processes); wall: perf_counter")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    print(f"torch {torch.__version__}, {args.dtype}, {args.threads} thread(s), {args.repeats} round-robin repeats, "
          f"{args.clock} clock, load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print("exact = threshold_exact (default: sort-free active set); sort = threshold_exact(method='sort');")
    print("api = compute_weights (adds input checks + diagnostics); bisect = threshold_bisect (the reference);")
    print("entmax = sparsemax (linear) / entmax15 on 2x (square); floor = exact minus its solve (weights at a")
    print("known tau): bisect / floor bounds what any exact solver made of torch ops can reach. Times: median ms (min ms).")
    print("Ratios: of medians (of mins); on a loaded machine the min is the least disturbed estimate.")
    print(f"{'shape':>14} {'scheme':>11} {'exact':>16} {'sort':>16} {'api':>16} {'bisect':>16} {'entmax':>16} "
          f"{'floor':>16} {'bis/exact':>12} {'bis/floor':>12} {'exact/entmax':>12} {'sort/entmax':>12} "
          f"{'|w-w_bis|':>9} {'|w-w_ent|':>9}")
    for spec in args.shapes:
        groups, n = (int(v) for v in spec.lower().split("x"))
        for row in run((groups, n), dtype, args.repeats, args.clock):
            tm = row["timing"]

            def cell(key: str, tm: dict = tm) -> str:
                return f"{tm[key][0]:8.3f} ({tm[key][1]:6.3f})" if key in tm else f"{'-':>16}"

            def ratio(num: str, den: str, tm: dict = tm) -> str:
                if den not in tm:
                    return f"{'-':>12}"
                return f"{tm[num][0] / tm[den][0]:5.2f} ({tm[num][1] / tm[den][1]:4.2f})"

            print(f"{row['shape']:>14} {row['scheme']:>11} {cell('exact')} {cell('sort')} {cell('api')} "
                  f"{cell('bisect')} {cell('entmax')} {cell('floor')} {ratio('bisect', 'exact')} {ratio('bisect', 'floor')} "
                  f"{ratio('exact', 'entmax')} "
                  f"{ratio('sort', 'entmax')} {row['diff_bisect']:9.1e} {row['diff_entmax']:9.1e}", flush=True)
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
