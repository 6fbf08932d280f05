"""Colour lightness and the ``tone`` caption field."""

from __future__ import annotations

import random

import pytest

from fashionclip.data.captions import TemplateCaptionBuilder
from fashionclip.data.colours import COLOUR_SRGB, colour_tone, lightness


def test_lightness_is_cie_lstar():
    assert lightness("#000000") == pytest.approx(0.0)
    assert lightness("#ffffff") == pytest.approx(100.0)
    assert lightness("#808080") == pytest.approx(53.59, abs=0.01)  # CIE L* of sRGB mid grey
    assert lightness("#ff0000") == pytest.approx(53.24, abs=0.01)


def test_tones_of_clear_darks_and_lights_only():
    assert [colour_tone(c) for c in ("Black", "Navy Blue", "Maroon", " charcoal ")] == ["dark"] * 4
    assert [colour_tone(c) for c in ("White", "Off White", "Cream", "Beige")] == ["light"] * 4
    # mid tones and names with no single colour get no tone word
    assert [colour_tone(c) for c in ("Red", "Grey", "Blue", "Multi", "Metallic", "")] == [""] * 6
    assert all(name == name.lower() for name in COLOUR_SRGB)


def test_tone_templates_are_drawn_only_for_items_with_a_tone():
    builder = TemplateCaptionBuilder(["{name}", "a photo of a {tone} {article}"], [0.0, 1.0])
    dark = {"name": "x", "articleType": "Shirts", "baseColour": "Navy Blue"}
    assert builder.candidates(dark) == ["x", "a photo of a dark shirt"]
    mid = {"name": "x", "articleType": "Shirts", "baseColour": "Red"}
    assert builder.candidates(mid) == ["x"]
    with pytest.raises(ValueError, match="no caption template"):
        builder.sample(mid, random.Random(0))
