"""Configuration of a simpo-bio masked diffusion generator of DNA (MDLM, Sahoo et al. 2024) for ``transformers``.

Self-contained (imports only ``transformers``): ``simpo-bio export-hf`` copies this file into the exported
directory for ``trust_remote_code`` loading; simpo-bio registers the same class locally
(``simpo_bio/dna/models/hf.py``).
"""

from __future__ import annotations

from transformers import PretrainedConfig

#: Defaults of ``simpo_bio/dna/models/backbones.py`` ``DilatedCNN`` (the shipped pretrained model's architecture aside).
DEFAULT_BACKBONE = {
    "architecture": "dilated_cnn",
    "vocab_size": 5,
    "hidden_dim": 128,
    "num_stacks": 4,
    "dilations": [1, 1, 4, 16, 64],
    "kernel_size": 9,
    "block_order": "grouped",
    "time_conditioning": False,
    "dropout": 0.0,
    "fourier_scale": 30.0,
}


class SimpoDNAConfig(PretrainedConfig):
    """A masked diffusion model of DNA: the denoiser (``backbone_config``) and its diffusion settings.

    Args:
        backbone_config: constructor arguments of the denoiser plus ``architecture``: ``"dilated_cnn"``
            (``DilatedCNN``) or ``"transformer"`` (``TransformerDenoiser``), both in ``modeling_simpo_dna.py``.
        mask_index: id of the absorbing mask token (tokens are ``A=0, C=1, G=2, T=3, [MASK]=4``).
        eps: offset of the log-linear schedule, mask probability ``m(t) = (1 - eps) t``; the noise level the
            denoiser receives is ``sigma(t) = -log(1 - m(t))``.
        seq_len: length (bp) of the sequences the model was trained / fine-tuned on.
        num_steps: sampler steps recorded by the run (``None``: not recorded; 128 is the project default).
        alphabet: characters of tokens ``0..3``.
        simpo_bio: provenance recorded at export (kind, scheme, oracle, data checksum, ...).
    """

    model_type = "simpo_dna"

    def __init__(
        self,
        backbone_config: dict | None = None,
        mask_index: int = 4,
        eps: float = 1e-3,
        seq_len: int = 200,
        num_steps: int | None = None,
        alphabet: str = "ACGT",
        simpo_bio: dict | None = None,
        **kwargs,
    ) -> None:
        cfg = dict(DEFAULT_BACKBONE if backbone_config is None else backbone_config)
        cfg.setdefault("architecture", "dilated_cnn")
        self.backbone_config = cfg
        self.vocab_size = int(cfg.get("vocab_size", 5))
        self.mask_index = int(mask_index)
        self.eps = float(eps)
        self.seq_len = int(seq_len)
        self.num_steps = None if num_steps is None else int(num_steps)
        self.alphabet = alphabet
        self.simpo_bio = dict(simpo_bio or {})
        kwargs.setdefault("tie_word_embeddings", False)
        super().__init__(**kwargs)
