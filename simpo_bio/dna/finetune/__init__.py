"""SiMPO fine-tuning: the LightningModule (``module``), its typed configuration (``config``), the leash (``leash``).

``from simpo_bio.dna.finetune import SiMPOFineTuning, SamplingConfig, RewardConfig, WeightingConfig, UpdateConfig``.
"""

from simpo_bio.dna.finetune.config import RewardConfig, SamplingConfig, UpdateConfig, WeightingConfig
from simpo_bio.dna.finetune.module import PolicyIterationDataModule, SiMPOFineTuning

__all__ = ["PolicyIterationDataModule", "RewardConfig", "SamplingConfig", "SiMPOFineTuning", "UpdateConfig",
           "WeightingConfig"]
