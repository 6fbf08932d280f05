"""Contrastive fine-tuning of CLIP-style models on image-caption pairs.

``train(load_train_config("configs/kagl-finetune-clip.toml", ["epochs=3"]))`` runs a training;
see :class:`TrainConfig` for every setting. Layout (as open_clip's trainer): ``loop`` (the
``train`` orchestrator), ``setup`` (data, resume point, model, loss, optimizer, schedule),
``epoch`` (``train_one_epoch``), ``features`` (step module, frozen-feature caches),
``validation`` (the evaluators on the validation set), ``saving`` (``last/``, ``best/``, resume),
``runlog`` (``log.jsonl``), ``state`` (the run's state objects), ``loss`` (``create_loss``).
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
from fashionclip.train.loss import LOSSES, ClipLoss, SigLipLoss, create_loss

__all__ = [
    "AugmentConfig",
    "CaptionConfig",
    "ClipLoss",
    "DataConfig",
    "LOSSES",
    "LossConfig",
    "ModelConfig",
    "OptimConfig",
    "SigLipLoss",
    "TrainConfig",
    "TrainResult",
    "create_loss",
    "load_train_config",
    "train",
]
