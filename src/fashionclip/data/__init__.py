"""Data the models see: image decoding, catalog tables, captions."""

from __future__ import annotations

from fashionclip.data.images import ImageInput, load_image

__all__ = ["ImageInput", "load_image"]
