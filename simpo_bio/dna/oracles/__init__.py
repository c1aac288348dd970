"""Reward oracles ``tokens [B, L] -> rewards [B]``: the frozen CNN oracles (``oracle``), gReLU's (``grelu``), the
conservative ensemble (``ensemble``) and the training of the cell-type oracle (``training``).

Imports :mod:`simpo_bio.dna.data` and :mod:`simpo_bio.dna.models`.
"""
