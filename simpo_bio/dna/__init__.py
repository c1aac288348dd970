"""Enhancer design: the path of a 200-bp DNA sequence through the package, one concept per module.

Sequences in: ``alphabet`` (tokens, validation) -> ``data`` (FASTA / table loaders, splits) -> ``dhs`` (the
embedded ENCODE DHS default) -> ``datamodules`` (LightningDataModules). Models: ``backbones`` (the denoiser),
``checkpoints`` (loading with clear errors), ``oracle`` (frozen reward oracles, scoring, the finite-reward check)
and ``oracle_training`` (training the oracle), ``baselines`` (Markov chains), ``pretrain`` (the masked diffusion
model). SiMPO: ``finetune`` (fine-tuning, ``load_policy``). Designs out: ``metrics``, ``naturalness``, ``designs``
(sampling, evaluation, FASTA / tables / plots, the export callback). Commands: ``cli``.

Each module imports only modules listed before it (``tests/test_imports.py`` checks for cycles); none imports
:mod:`simpo_bio.cli`. Nothing is imported here: ``import simpo_bio.dna.<module>``.
"""
