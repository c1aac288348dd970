"""Fine-tuning: SiMPO's LightningModule (``module``), the natural policy by reward backpropagation (``gradient``),
their typed configuration (``config``), the leash (``leash``).

``from simpo_bio.dna.finetune import SiMPOFineTuning, SamplingConfig, RewardConfig, WeightingConfig, UpdateConfig``;
``from simpo_bio.dna.finetune import RewardGradientFineTuning, GradientConfig``.
"""

from simpo_bio.dna.finetune.config import (
           GradientConfig,
           RewardConfig,
           SamplingConfig,
           UpdateConfig,
           WeightingConfig,
)
from simpo_bio.dna.finetune.gradient import RewardGradientFineTuning
from simpo_bio.dna.finetune.module import PolicyIterationDataModule, SiMPOFineTuning

__all__ = ["GradientConfig", "PolicyIterationDataModule", "RewardConfig", "RewardGradientFineTuning", "SamplingConfig",
           "SiMPOFineTuning", "UpdateConfig", "WeightingConfig"]
