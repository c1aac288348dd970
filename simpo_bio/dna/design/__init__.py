"""After fitting: sample runs, pool, select (``selection``), evaluate and write FASTA / tables / plots (``designs``,
``plots``), synthesis constraints (``synthesis``), the top-k export (``export``) and export-hf (``hf_export``).

Imports every DNA layer above it; nothing imports it but :mod:`simpo_bio.dna.cli`.
"""
