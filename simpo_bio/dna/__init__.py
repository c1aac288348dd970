"""Enhancer design: the path of a 200-bp DNA sequence through the package, one concept per module.

Sequences in:
    ``alphabet``         tokens and validation (A C G T + mask)
    ``data``             FASTA / table readers, splits
    ``dhs``              the embedded ENCODE DHS default (download, checksums, tokenised copy)
    ``datamodules``      LightningDataModules
Denoisers:
    ``backbones``        the dilated CNN (DRAKES layout)
    ``hf_modeling``      self-contained Hugging Face config / model code (torch + transformers only)
    ``transformer``      the BERT-encoder denoiser; building a denoiser from its recorded config
    ``baselines``        Markov chains (bits per base to beat)
Scoring a sequence:
    ``checkpoints``      loading with clear errors; resumable ``last.ckpt``
    ``grelu_oracle``     gReLU oracles of the DRAKES setting; restricted reader of foreign checkpoints
    ``oracle``           frozen reward oracles, scoring, the finite-reward check
    ``oracle_training``  training the cell-type oracle, the k-mer baseline
    ``ensemble``         conservative ensemble reward ``mean - k * std``
    ``naturalness``      GC, windowed GC, homopolymers, DUST, 3-mer distance; the natural-range constraints
    ``metrics``          DRAKES-style metrics of a set of designs
Generators:
    ``drakes``           the DRAKES pretrained model, data archive and evaluation protocol
    ``pretrain``         the masked diffusion model (pretraining, ``load_pretrained``)
    ``hf``               the Hugging Face format: Auto-class registration, loading an exported directory
SiMPO:
    ``leash``            KL-regularised reward, bounded repulsion, constraints from a config
    ``finetune``         SiMPO fine-tuning, ``load_policy``
Designs out:
    ``synthesis``        a vendor's synthesis constraints on DnaChisel (sites from Bio.Restriction), repair
    ``designs``          sampling, evaluation, FASTA / tables / plots, the export callback
    ``export``           ``simpo-bio export``: top-k of a design table, flagged, filtered or repaired
    ``hf_export``        ``simpo-bio export-hf``: a checkpoint as a Hugging Face directory
Commands:
    ``inputs``           checks of options and configs before any model is loaded
    ``cli``              ``simpo-bio sample | evaluate | export | demo | data``

Each module imports only modules listed before it (``tests/test_imports.py`` checks for cycles); none imports
:mod:`simpo_bio.cli`. Nothing is imported here: ``import simpo_bio.dna.<module>``.
"""
