"""simpo-bio: SiMPO (Signed Measure Policy Optimization) for diffusion models.

Subpackages
-----------
weighting  rewards -> per-sample weights (the shared core; pure torch)
diffusion  masked discrete diffusion (MDLM) and continuous flow matching
dna        enhancer design: data, backbones, oracles, pretraining, SiMPO fine-tuning, metrics
bandit     the paper's 1-D bandit experiments
control    MuJoCo / DeepMind Control actor-critic with flow policies (extra: ``[control]``)

``cli`` is the ``simpo-bio`` dispatcher and ``lightning_cli`` its LightningCLI entry point; no subpackage imports
``cli``, and ``weighting`` imports nothing else of the package (``tests/test_imports.py``).
"""

__version__ = "0.1.0"
