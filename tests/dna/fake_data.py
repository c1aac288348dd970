"""A small table of the DHS layout and random sequences, for the DNA data tests (no network, no real cache)."""

import numpy as np
import pandas as pd

from simpo_bio.dna.data import dhs

RNG = np.random.default_rng(0)


def random_seqs(n, length=200):
    return ["".join(RNG.choice(list("ACGT"), size=length)) for _ in range(n)]


def dhs_table(n_per=(12, 3, 3)) -> pd.DataFrame:
    """A small table of the DHS layout: per split, ``n`` rows per cell type."""
    rows = []
    for split, chrom, n in zip(("training", "validation", "test"), ("chr5", "chr2", "chr1"), n_per):
        for tag in dhs.DHS_TAGS:
            for i, seq in enumerate(random_seqs(n)):
                rows.append({"dhs_id": f"{chrom}_{tag[:4]}_{i}", "chr": chrom, "start": 100 * i, "end": 100 * i + 200,
                             "numsamples": 2, "total_signal": 1.5, "sequence": seq.lower() if i == 0 else seq,
                             "TAG": tag, "data_label": split})  # fmt: skip
    return pd.DataFrame(rows)
