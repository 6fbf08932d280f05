"""Photo-like augmentation of studio images and CCP garment crops as extra training pairs."""

from __future__ import annotations

import csv
import random
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fashionclip.data.captions import kagl_caption_builder
from fashionclip.errors import FashionCLIPError
from fashionclip.train.config import AugmentConfig, CaptionConfig, DataConfig, TrainConfig
from fashionclip.train.data import augment_image, load_pair_datasets, read_ccp_pairs
from fashionclip.train.photo import PhotoLikeParams, photo_like


def _studio_image() -> Image.Image:
    """A red product on a white background, like a KAGL thumbnail."""
    image = Image.new("RGB", (60, 80), (255, 255, 255))
    image.paste((200, 20, 20), (15, 20, 45, 60))
    return image


def test_photo_like_replaces_the_white_background_and_keeps_the_colour() -> None:
    params = PhotoLikeParams(background=1.0, rotate=0.0, zoom_min=1.0, lighting=0.0, blur=0.0)
    out = np.asarray(photo_like(_studio_image(), random.Random(3), params), np.int32)
    assert out.shape == (171, 128, 3)  # shorter side scaled to 128
    corner = out[:10, :10].reshape(-1, 3)
    assert corner.min(axis=1).mean() < 235  # no longer plain white
    centre = out[80:90, 60:70].reshape(-1, 3).mean(axis=0)
    assert centre[0] > 150 and centre[1] < 70 and centre[2] < 70  # still red


def test_photo_like_is_deterministic_per_seed() -> None:
    first = np.asarray(photo_like(_studio_image(), random.Random(5)))
    again = np.asarray(photo_like(_studio_image(), random.Random(5)))
    other = np.asarray(photo_like(_studio_image(), random.Random(6)))
    assert np.array_equal(first, again)
    assert first.shape != other.shape or not np.array_equal(first, other)


def test_photo_like_augmentation_is_off_by_default_and_on_when_asked() -> None:
    image = _studio_image()
    plain = AugmentConfig(scale_min=1.0, ratio_jitter=0.0, hflip=0.0, color_jitter=0.0,
                          grayscale=0.0, lowres=0.0)  # fmt: skip
    assert augment_image(image, random.Random(0), plain).size == image.size
    photo = AugmentConfig(**{**plain.__dict__, "photo_like": 1.0})
    assert augment_image(image, random.Random(0), photo).size != image.size


def _make_ccp(root: Path) -> Path:
    folder = root / "ccp_garments"
    rows = []
    for photo, split in enumerate(["train", "val", "test"]):
        for cls in ("dress", "t-shirt"):
            file = f"{cls}/ccp_{photo:04d}_{cls}.jpg"
            (folder / cls).mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (64, 96), (90, 90, 200)).save(folder / file)
            rows.append((file, cls, split, "1"))
    rows.append(("dress/ccp_0009_dress.jpg", "dress", "train", "0"))
    Image.new("RGB", (64, 96)).save(folder / "dress/ccp_0009_dress.jpg")
    with (folder / "manifest.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "class", "is_dominant"])
        writer.writerows((f, c, d) for f, c, _, d in rows)
    with (folder / "splits.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "split"])
        writer.writerows((f, s) for f, _, s, _ in rows)
    return root


def test_ccp_pairs_are_dominant_crops_captioned_by_class(tmp_path: Path) -> None:
    rows = read_ccp_pairs(_make_ccp(tmp_path), "train")
    assert [r["articleType"] for r in rows] == ["dress", "t-shirt"]  # non-dominant crop dropped
    assert all(Path(r["_image"]).is_file() for r in rows)
    captions = kagl_caption_builder().candidates(
        {k: v for k, v in rows[1].items() if k != "_image"}
    )
    assert "a photo of a t-shirt" in captions and "t-shirt" in captions
    assert not any("{" in c for c in captions)
    # CCP's class names are not KAGL's: the label-prompt loss must not ask these rows
    from fashionclip.train.label_prompts import build_label_prompts

    kagl_row = {"articleType": "Dresses"}
    found = build_label_prompts(
        ["a photo of a {articleType}"], [kagl_row, {"articleType": "Shirts"}, *rows]
    )
    assert found.prompts == ("a photo of a Dresses", "a photo of a Shirts")
    assert found.targets[2:].eq(-1).all()
    with pytest.raises(FashionCLIPError, match="test split"):
        read_ccp_pairs(tmp_path, "test")


def test_ccp_pairs_join_the_kagl_training_set(tmp_path: Path, kagl_dir: Path) -> None:
    ccp_root = _make_ccp(tmp_path)
    data = DataConfig(source="kagl", kagl_dir=str(kagl_dir), max_train_samples=8,
                      max_val_samples=4, ccp_split="train", ccp_repeat=3, ccp_dir=str(ccp_root))  # fmt: skip
    train, _ = load_pair_datasets(data, CaptionConfig(builder="kagl"), progress=False)
    assert len(train) == 8 + 2 * 3  # max_train_samples caps the KAGL rows only
    assert [r["articleType"] for r in train.records[8:10]] == ["dress", "t-shirt"]
    with pytest.raises(FashionCLIPError, match="test split"):
        TrainConfig(data=DataConfig(ccp_split="test"), model=_model_init()).validate()


def _model_init():  # type: ignore[no-untyped-def]
    from fashionclip.train.config import ModelConfig

    return ModelConfig(init="dual-encoder")
