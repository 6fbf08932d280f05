"""Loading checkpoints and encoding images and texts."""

from __future__ import annotations

from fashionclip.models.loading import DEFAULT_MODEL, FASHION_CLIP_HUB_ID, load
from fashionclip.models.model import (
    FashionCLIP,
    ImageEncoding,
    ImageFailure,
    ModelIdentity,
    ZeroShotPrediction,
)
from fashionclip.models.registry import (
    ModelKind,
    kind_of,
    model_kind,
    model_kinds,
    register_model_kind,
)

__all__ = [
    "DEFAULT_MODEL",
    "FASHION_CLIP_HUB_ID",
    "FashionCLIP",
    "ImageEncoding",
    "ImageFailure",
    "ModelIdentity",
    "ModelKind",
    "ZeroShotPrediction",
    "kind_of",
    "load",
    "model_kind",
    "model_kinds",
    "register_model_kind",
]
