"""``simpo-bio evaluate --fasta`` on big files: wall time and peak memory against the number of records.

Writes FASTA files of random 200-bp records (fixed seed) into a temporary folder and runs the command on each, in
a child process of its own (``python -m simpo_bio.cli evaluate --fasta F --pretrained '' --no-novelty --out ''``,
``--no-jaspar`` unless said), timing it from start to exit (imports, reading the file, loading the oracle and the
reference sets included) and reading the child's peak resident memory (``ru_maxrss`` of ``os.wait4``). Rows:

- ``--sizes`` (default 10,000, 30,000, 100,000) without JASPAR: linear scaling, and the gate of the issue
  (100,000 records in under 60 s and under 1 GB, 10^9 bytes);
- ``--jaspar-size`` (default 10,000) with the JASPAR correlation (879 motifs);
- ``--loglik-size`` (default 1,000) with App-Log-Lik (the pretrained model's ELBO, 16 draws per sequence: the
  cost that sets the time of a big file whenever it is on, so the gate rows skip it with ``--pretrained ''``).

Usage::

    OMP_NUM_THREADS=1 .venv/bin/python bench/dna_evaluate_big.py

Prints one markdown table (``bench/results/trust-and-io.md``) and exits 1 if the gate is missed.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
GATE_RECORDS, GATE_SECONDS, GATE_MIB = 100_000, 60.0, 1e9 / 2**20  # under 60 s and 1 GB (10^9 bytes)


def write_fasta(path: Path, n: int, length: int = 200, seed: int = 0) -> Path:
    """``n`` uniform random ACGT records ``seq-000000 ...`` (the same records for the same seed: a prefix)."""
    rng = np.random.default_rng(seed)
    bases = np.frombuffer(b"ACGT", dtype=np.uint8)
    with open(path, "w") as fh:
        for s in range(0, n, 10_000):
            block = bases[rng.integers(0, 4, (min(10_000, n - s), length))]
            fh.writelines(f">seq-{s + i:06d}\n{row.tobytes().decode()}\n" for i, row in enumerate(block))
    return path


def run_evaluate(fasta: Path, *, jaspar: bool, loglik: bool, threads: int) -> dict:
    """One ``simpo-bio evaluate`` in a child process: wall seconds, peak resident MiB and its stdout."""
    cmd = [sys.executable, "-m", "simpo_bio.cli", "evaluate", "--fasta", str(fasta), "--no-novelty", "--out", "",
           "--threads", str(threads)]
    if not jaspar:
        cmd.append("--no-jaspar")
    if not loglik:
        cmd += ["--pretrained", ""]
    env = {**os.environ, "WANDB_MODE": "offline", "OMP_NUM_THREADS": str(threads)}
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}:\n{stderr[-3000:]}")
    return {"seconds": seconds, "peak_mib": usage.ru_maxrss / 1024, "stdout": stdout}  # ru_maxrss: KiB on Linux


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 30_000, GATE_RECORDS])
    p.add_argument("--jaspar-size", type=int, default=10_000, help="records of the JASPAR row (0: none)")
    p.add_argument("--loglik-size", type=int, default=1_000, help="records of the App-Log-Lik row (0: none)")
    p.add_argument("--length", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    runs = [(n, False, False) for n in a.sizes]
    runs += [(a.jaspar_size, True, False)] if a.jaspar_size else []
    runs += [(a.loglik_size, False, True)] if a.loglik_size else []
    print(f"# {platform.node()}: {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"load average at start {os.getloadavg()[0]:.2f}, threads {a.threads}", flush=True)
    lines = ["| records | JASPAR | App-Log-Lik | wall s | s per 10k records | peak MiB |",
             "|---:|---|---|---:|---:|---:|"]
    gate = None
    with tempfile.TemporaryDirectory() as tmp:
        files: dict[int, Path] = {}
        for n, jaspar, loglik in runs:
            if n not in files:
                files[n] = write_fasta(Path(tmp) / f"random-{n}.fa", n, a.length, a.seed)
            r = run_evaluate(files[n], jaspar=jaspar, loglik=loglik, threads=a.threads)
            lines.append(f"| {n:,} | {'yes' if jaspar else 'no'} | {'yes' if loglik else 'no'} | {r['seconds']:.1f} "
                         f"| {r['seconds'] / n * 10_000:.1f} | {r['peak_mib']:.0f} |")
            print(lines[-1], flush=True)
            if n == GATE_RECORDS and not jaspar and not loglik:
                gate = r
                sampled = [line for line in r["stdout"].splitlines() if line.startswith("Diversity of")]
                print(f"# the 100,000-record table says: {sampled[0] if sampled else '(no sampled-pairs line)'}")
    print(f"\nload average at the end {os.getloadavg()[0]:.2f}\n")
    print("\n".join(lines))
    if gate is None:
        return 0
    ok_time, ok_memory = gate["seconds"] < GATE_SECONDS, gate["peak_mib"] < GATE_MIB
    print(f"\ngate, 100,000 records: under {GATE_SECONDS:.0f} s {'met' if ok_time else 'MISSED'} "
          f"({gate['seconds']:.1f} s); under 1 GB = {GATE_MIB:.0f} MiB {'met' if ok_memory else 'MISSED'} "
          f"({gate['peak_mib']:.0f} MiB)")
    ok = ok_time and ok_memory
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
