"""Contrastive fine-tuning of CLIP-style models on image-caption pairs.

``train(load_train_config("configs/kagl-finetune-clip.toml", ["epochs=3"]))`` runs a training;
see :class:`TrainConfig` for every setting and :mod:`fashionclip.train.loop` for the loop.
"""

from __future__ import annotations

from fashionclip.train.config import (
    AugmentConfig,
    CaptionConfig,
    DataConfig,
    LossConfig,
    ModelConfig,
    OptimConfig,
    TrainConfig,
    load_train_config,
)
from fashionclip.train.loop import TrainResult, train
from fashionclip.train.loss import ClipLoss, SigLipLoss

__all__ = [
    "AugmentConfig",
    "CaptionConfig",
    "ClipLoss",
    "DataConfig",
    "LossConfig",
    "ModelConfig",
    "OptimConfig",
    "SigLipLoss",
    "TrainConfig",
    "TrainResult",
    "load_train_config",
    "train",
]
