"""Sequences in: tokens (``alphabet``), the embedded DHS data (``dhs``), readers (``tables``), k-mer and composition
helpers (``composition``), datamodules, input checks (``inputs``), the DRAKES assets (``drakes_assets``).

Imports nothing above ``simpo_bio.dna.data``.
"""
