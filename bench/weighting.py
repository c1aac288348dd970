"""Benchmark of the per-group normalisers (issue 2): exact sort-based solvers vs bisection vs entmax.

Prints, for each input shape, the median wall time of every solver and the two ratios the issue gates on:
``bisection / exact`` (target >= 10 at [4096 x 32]) and ``exact / entmax`` (target <= 2 where entmax applies:
``linear`` = sparsemax, ``square`` = entmax15 on 2x). All timings come from the same run, interleaved.

    OMP_NUM_THREADS=1 .venv/bin/python bench/weighting.py            # [4096 x 32] and [1 x 1,000,000]
    .venv/bin/python bench/weighting.py --shapes 4096x32 --dtype float64 --repeats 21
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

import simpo_bio.weighting as sw

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


def _time(fn: Callable[[], object], repeats: int, min_seconds: float) -> float:
    """Median seconds per call over at least ``repeats`` calls (and at least ``min_seconds`` in total)."""
    fn()  # warm-up
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < repeats or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def run(shape: tuple[int, int], dtype: torch.dtype, repeats: int, min_seconds: float) -> list[dict]:
    gen = torch.Generator().manual_seed(0)
    x = sw.group_advantages(torch.randn(*shape, generator=gen, dtype=dtype))
    rows = []
    for name, p, eta, ref in CASES:
        w_exact, _ = sw.threshold_exact(x, p, eta)
        w_bis, _ = sw.threshold_bisect(x, p, eta)
        row = {
            "shape": f"{shape[0]} x {shape[1]:,}",
            "scheme": name,
            "exact_ms": 1e3 * _time(lambda: sw.threshold_exact(x, p, eta), repeats, min_seconds),  # noqa: B023
            "api_ms": 1e3 * _time(lambda: sw.compute_weights(x, name, eta=eta) if eta else  # noqa: B023
                                  sw.compute_weights(x, name), repeats, min_seconds),  # noqa: B023
            "bisect_ms": 1e3 * _time(lambda: sw.threshold_bisect(x, p, eta), repeats, min_seconds),  # noqa: B023
            "max_abs_diff_vs_bisect": float((w_exact - w_bis).abs().max()),
        }
        if ref is not None and sparsemax is not None:
            ref_fn = (lambda: sparsemax(x, dim=-1)) if ref == "sparsemax" else (lambda: entmax15(2 * x, dim=-1))
            row["entmax_ms"] = 1e3 * _time(ref_fn, repeats, min_seconds)
            row["entmax"] = ref
            row["max_abs_diff_vs_entmax"] = float((w_exact - ref_fn()).abs().max())
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", nargs="+", default=["4096x32", "1x1000000"], help="GROUPSxN")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--repeats", type=int, default=11, help="minimum timed calls per solver")
    parser.add_argument("--min-seconds", type=float, default=0.5, help="minimum timed seconds per solver")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    print(f"torch {torch.__version__}, {args.dtype}, {args.threads} thread(s); median ms per call")
    header = (f"{'shape':>14} {'scheme':>11} {'exact':>9} {'api':>9} {'bisect':>9} {'entmax':>9} "
              f"{'bisect/exact':>12} {'exact/entmax':>12} {'|exact-bisect|':>14}")
    print(header)
    for spec in args.shapes:
        groups, n = (int(v) for v in spec.lower().split("x"))
        for row in run((groups, n), dtype, args.repeats, args.min_seconds):
            entmax_ms = row.get("entmax_ms")
            ratio_e = f"{row['exact_ms'] / entmax_ms:12.2f}" if entmax_ms else f"{'-':>12}"
            print(f"{row['shape']:>14} {row['scheme']:>11} {row['exact_ms']:9.3f} {row['api_ms']:9.3f} "
                  f"{row['bisect_ms']:9.3f} {entmax_ms if entmax_ms else float('nan'):9.3f} "
                  f"{row['bisect_ms'] / row['exact_ms']:12.1f} {ratio_e} {row['max_abs_diff_vs_bisect']:14.2e}")


if __name__ == "__main__":
    main()
