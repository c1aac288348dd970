"""Generators and their files: backbones, the masked-diffusion pretraining module (``pretrain``), Markov baselines,
the checkpoint formats (``checkpoints``: own Lightning files; ``formats``: foreign readers and gReLU sniffing;
``drakes``: DRAKES' pretrained model; ``hf``: Hugging Face directories) and ``policies.load_policy``.

Imports :mod:`simpo_bio.dna.data` only.
"""
