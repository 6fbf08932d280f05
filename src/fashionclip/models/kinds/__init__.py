"""The shipped model kinds; importing this package registers their adapters.

To add a kind: write its :class:`~fashionclip.models.registry.ModelKind` adapter (a module here,
or an instance of :class:`~fashionclip.models.kinds.hf.TransformersKind` for another transformers
dual encoder), register it with :func:`~fashionclip.models.registry.register_model_kind`, import
it below, and give it a tiny builder in :data:`fashionclip.models.testing.TINY_BUILDERS`.
"""

from __future__ import annotations

from fashionclip.models.kinds.dual_encoder import FASHIONCLIP_DUAL_ENCODER, DualEncoderKind
from fashionclip.models.kinds.hf import CLIP, SIGLIP, VISION_TEXT_DUAL_ENCODER, TransformersKind

__all__ = [
    "CLIP",
    "FASHIONCLIP_DUAL_ENCODER",
    "SIGLIP",
    "VISION_TEXT_DUAL_ENCODER",
    "DualEncoderKind",
    "TransformersKind",
]
