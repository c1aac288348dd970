"""Enhancer design on 200-bp DNA, by concern; each folder imports only the folders above it in this list:

- ``data``        sequences in: alphabet, the embedded DHS download, FASTA / table readers, k-mer and composition
                  helpers, datamodules, the DRAKES asset fetcher;
- ``models``      generators: backbones, the pretraining module, Markov baselines, the checkpoint formats (own,
                  DRAKES, gReLU readers, HF), ``load_policy``;
- ``oracles``     rewards: the frozen oracles, gReLU oracles, the ensemble, their training;
- ``finetune``    the SiMPO LightningModule, its typed config, the leash and the natural range;
- ``evaluation``  metrics of a set of designs, the DRAKES protocol;
- ``design``      after fitting: sample runs, pool, select, write FASTA / CSV, synthesis constraints, export, plots;
- ``cli``         thin: parse, call the pipeline, print.

The module map with every contract is ``docs/interfaces.md``. Loading a model or an oracle imports no evaluation,
design or CLI code (``tests/test_imports.py``). Nothing is imported here.
"""
