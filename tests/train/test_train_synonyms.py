"""Synonym alignment: the search's words for a catalog value, taught to the text side."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import fashionclip
from fashionclip.errors import FashionCLIPError
from fashionclip.models.testing import build_tiny_clip, build_tiny_dual_encoder
from fashionclip.train.synonyms import AlignConfig, align_synonyms, synonym_table

VALUES = {
    "articleType": ["Jackets", "Casual Shoes", "Sports Shoes", "Tshirts", "Shorts"],
    "gender": ["Men", "Women"],
    "baseColour": ["Navy Blue", "Black"],
}


def test_synonym_table_reads_the_words_the_search_understands() -> None:
    table = synonym_table(VALUES)
    assert table["coat"] == ["Jackets"]  # an everyday name
    assert table["sneaker"] == ["Casual Shoes", "Sports Shoes"]  # one word, two values
    assert table["jacket"] == ["Jackets"]  # the singular of a value
    assert table["tee"] == ["Tshirts"]
    assert "shorts" not in table and "tshirts" not in table  # a value's own name
    assert "navy" not in table  # another column's synonym
    assert not any(values == ["Men"] for values in table.values())
    with pytest.raises(FashionCLIPError, match="no column"):
        synonym_table(VALUES, column="usage")


def test_align_config_refuses_bad_settings() -> None:
    with pytest.raises(FashionCLIPError, match="beta"):
        AlignConfig(beta=1.0).check()
    with pytest.raises(FashionCLIPError, match="steps"):
        AlignConfig(steps=0).check()


def test_alignment_moves_synonyms_and_leaves_images_and_anchors(tmp_path: Path) -> None:
    model = fashionclip.load(
        build_tiny_dual_encoder(tmp_path / "m"), device="cpu", precision="fp32"
    )
    images = [Image.new("RGB", (40, 40), c) for c in ("red", "white", "navy")]
    pixels_before = model.encode_images(images)
    table = {"coat": ["Jackets"], "sneaker": ["Casual Shoes", "Sports Shoes"]}
    names = ["Roadster Men Blue Jacket", "Nike Women White Running Shoes"]
    before = model.encode_text(["a photo of a coat", "a photo of a Jackets", names[0]])
    config = AlignConfig(steps=60, batch_size=4, anchor_batch_size=8, lr=3e-3, unlocked_layers=1)
    losses: list[float] = []
    figures = align_synonyms(model, table, names, config, lambda s, loss: losses.append(loss))
    after = model.encode_text(["a photo of a coat", "a photo of a Jackets", names[0]])
    assert len(losses) == 60
    assert figures["after/train_cos"] > figures["before/train_cos"]
    assert figures["after/held_out_cos"] > figures["before/held_out_cos"]
    assert figures["after/anchor_cos"] > 0.95
    # "coat" came closer to "Jackets" than it was
    assert after[0] @ after[1] > before[0] @ before[1]
    assert float(after[2] @ before[2]) > 0.95  # an anchor kept its vector
    np.testing.assert_array_equal(model.encode_images(images), pixels_before)
    assert not any(p.requires_grad for p in model.module.parameters())


def test_alignment_with_nothing_to_align_is_an_error(tmp_path: Path) -> None:
    model = fashionclip.load(
        build_tiny_dual_encoder(tmp_path / "m"), device="cpu", precision="fp32"
    )
    with pytest.raises(FashionCLIPError, match="no synonyms"):
        align_synonyms(model, {}, ["x"])


def test_alignment_refuses_another_kind_of_model(tmp_path: Path) -> None:
    model = fashionclip.load(build_tiny_clip(tmp_path / "clip"), device="cpu", precision="fp32")
    with pytest.raises(FashionCLIPError, match="dual encoder"):
        align_synonyms(model, {"coat": ["Jackets"]}, ["x"])
