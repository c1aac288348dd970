"""Metrics of a set of designs (``metrics``: the evaluation oracle, 3-mer and JASPAR correlations, naturalness,
diversity) and the DRAKES evaluation protocol (``drakes_protocol``).

Imports :mod:`simpo_bio.dna.data`, :mod:`simpo_bio.dna.models`, :mod:`simpo_bio.dna.oracles`, :mod:`simpo_bio.dna.finetune`.
"""
