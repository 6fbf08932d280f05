"""The model-kind registry: one adapter per kind, each with a tiny offline model."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import fashionclip
from fashionclip.errors import FashionCLIPError, ModelNotFoundError
from fashionclip.models import registry, testing
from fashionclip.models.dual_encoder import FashionDualEncoder
from fashionclip.models.kinds import CLIP, FASHIONCLIP_DUAL_ENCODER, SIGLIP, TransformersKind
from fashionclip.models.registry import (
    kind_of,
    model_kind,
    model_kinds,
    register_model_kind,
)

SRC = Path(__file__).resolve().parents[2] / "src" / "fashionclip"
#: The only modules allowed to spell a model kind's name.
ADAPTER_FILES = {SRC / "models" / "registry.py", *(SRC / "models" / "kinds").glob("*.py")}
#: "clip" and "siglip" are also *loss* names in these training modules.
LOSS_FILES = {SRC / "train" / name for name in ("loss.py", "config.py", "loop.py")}
LOSS_NAMES = {"clip", "siglip"}


def _load(folder: Path) -> fashionclip.FashionCLIP:
    return fashionclip.load(folder, device="cpu", precision="fp32")


def test_every_registered_kind_has_a_tiny_builder():
    kinds = model_kinds()
    assert len(kinds) >= 4
    assert sorted(testing.TINY_BUILDERS) == kinds


@pytest.mark.parametrize("name", model_kinds())
def test_kind_round_trips_load_encode_save_load(name, tiny_model_dirs, product_images, tmp_path):
    model = _load(tiny_model_dirs[name])
    assert model.kind == name and kind_of(model) is model_kind(name)
    assert kind_of(model.module) is model_kind(name)  # a bare module: its config's model_type
    images, texts = model.encode_images(product_images), model.encode_text(["red shirt", "bag"])
    model.save_pretrained(tmp_path / "saved")
    again = _load(tmp_path / "saved")
    assert again.kind == name
    assert again.identity.fingerprint == model.identity.fingerprint
    assert again.identity.embedding_dim == model.identity.embedding_dim
    np.testing.assert_allclose(again.encode_images(product_images), images, atol=1e-5)
    np.testing.assert_allclose(again.encode_text(["red shirt", "bag"]), texts, atol=1e-5)


@pytest.mark.parametrize("name", model_kinds())
def test_training_towers_compose_to_the_encoders(name, tiny_model_dirs, product_images):
    model = _load(tiny_model_dirs[name])
    image, text = model_kind(name).towers(model.module)
    pixels = model.preprocess([Image.open(p).convert("RGB") for p in product_images])
    tokens = model.tokenize(["red shirt", "blue dress"])
    with torch.no_grad():
        image_out = image.forward(pixels)
        text_out = text.forward(**tokens)
        if image.head is not None:
            image_out = image.head(image_out)
        if text.head is not None:
            text_out = text.head(text_out)
        torch.testing.assert_close(image_out, model.image_embeddings(pixels), atol=1e-4, rtol=0)
        torch.testing.assert_close(text_out, model.text_embeddings(tokens), atol=1e-4, rtol=0)


def test_unknown_kind_is_a_clear_error_listing_the_supported_ones():
    with pytest.raises(ModelNotFoundError, match="unsupported model_type 'bert'") as info:
        model_kind("bert")
    for name in model_kinds():
        assert name in str(info.value)
    with pytest.raises(FashionCLIPError, match="cannot tell the model kind"):
        kind_of(object())


def test_register_model_kind_adds_a_kind_and_refuses_duplicates(monkeypatch):
    monkeypatch.setattr(registry, "_KINDS", dict(registry._KINDS))
    extra = TransformersKind("tiny-test-kind")
    assert register_model_kind(extra) is extra
    assert "tiny-test-kind" in model_kinds() and model_kind("tiny-test-kind") is extra
    assert register_model_kind(extra) is extra  # registering the same adapter again is fine
    with pytest.raises(FashionCLIPError, match="already registered"):
        register_model_kind(TransformersKind("tiny-test-kind"))
    replacement = TransformersKind("tiny-test-kind", text_padding="max_length")
    assert register_model_kind(replacement, replace=True) is model_kind("tiny-test-kind")


def test_text_inputs_follow_the_kind():
    tokens = {key: torch.ones(1, 3) for key in ("input_ids", "attention_mask", "token_type_ids")}
    assert list(SIGLIP.text_inputs(tokens)) == ["input_ids"]  # SigLIP: no attention mask
    assert SIGLIP.text_padding == "max_length"
    assert set(FASHIONCLIP_DUAL_ENCODER.text_inputs(tokens)) == set(tokens)


def test_package_towers_are_reported_and_released():
    config = testing.tiny_config(vocab_size=50, text_tower_source="package")
    module = FashionDualEncoder(config)
    assert FASHIONCLIP_DUAL_ENCODER.packaged_towers(module) == ("text",)
    FASHIONCLIP_DUAL_ENCODER.store_tower(module, "text")
    assert config.text_tower_source == "folder"
    assert FASHIONCLIP_DUAL_ENCODER.packaged_towers(module) == ()
    assert CLIP.packaged_towers(module) == ()
    with pytest.raises(FashionCLIPError, match="no tower from a package"):
        CLIP.store_tower(module, "image")


def _spellings(name: str) -> re.Pattern[str]:
    """A kind name as a string literal; hyphenated names anywhere (docstrings too)."""
    if "-" in name:
        return re.compile(re.escape(name))
    return re.compile(rf"""["']{re.escape(name)}["']""")


def test_no_module_outside_the_registry_spells_a_kind_name():
    sources = sorted(SRC.rglob("*.py"))
    names = model_kinds()
    assert len(sources) > 20 and names
    # The check can fire: the adapters themselves spell every name.
    adapters = "\n".join(path.read_text() for path in ADAPTER_FILES)
    assert names and all(_spellings(name).search(adapters) for name in names)
    offenders = []
    for path in sources:
        if path in ADAPTER_FILES:
            continue
        text = path.read_text()
        for name in names:
            if path in LOSS_FILES and name in LOSS_NAMES:
                continue
            if _spellings(name).search(text):
                offenders.append(f"{path.relative_to(SRC)}: {name}")
    assert not offenders, "use fashionclip.models.registry instead: " + ", ".join(offenders)
