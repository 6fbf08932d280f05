"""Training data: caption builders, table/KAGL reading, skipping bad rows, augmentation, batching."""

from __future__ import annotations

import random
from collections import Counter

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from fashionclip.data.captions import (
    ColumnCaptionBuilder,
    TemplateCaptionBuilder,
    caption_id,
    kagl_caption_builder,
    load_article_broader,
    load_article_synonyms,
    sample_rng,
    singular_label,
)
from fashionclip.errors import FashionCLIPError
from fashionclip.train.config import AugmentConfig, CaptionConfig, DataConfig
from fashionclip.train.data import (
    EpochBatchSampler,
    PairSampleDataset,
    augment_image,
    load_pair_datasets,
    read_kagl_split,
)

SHIRT = {
    "id": "15970",
    "gender": "Men",
    "masterCategory": "Apparel",
    "subCategory": "Topwear",
    "articleType": "Shirts",
    "baseColour": "Navy Blue",
    "season": "Fall",
    "year": "2011",
    "usage": "Casual",
    "productDisplayName": "Turtle Check Men Navy Blue Shirt",
}


def test_kagl_builder_varies_captions_deterministically():
    builder = kagl_caption_builder()
    candidates = builder.candidates(SHIRT)
    assert "Turtle Check Men Navy Blue Shirt" in candidates
    assert "a photo of a Shirts" in candidates
    assert "a photo of a shirt" in candidates
    assert "Men Navy Blue Shirts" in candidates
    assert "Casual Shirts for Men" in candidates
    draws = [builder.sample(SHIRT, sample_rng(0, epoch, 3)) for epoch in range(200)]
    assert set(draws) <= set(candidates)
    counts = Counter(draws)
    assert len(counts) >= 6  # varied
    # the product name has the largest weight by default
    assert counts.most_common(1)[0][0] == "Turtle Check Men Navy Blue Shirt"
    again = [builder.sample(SHIRT, sample_rng(0, epoch, 3)) for epoch in range(200)]
    assert draws == again
    assert builder.eval_caption(SHIRT) == "Turtle Check Men Navy Blue Shirt"


def test_article_synonym_field_draws_every_synonym():
    builder = TemplateCaptionBuilder(
        ["{name}", "a photo of a {article_synonym}"],
        [1, 3],
        aliases={"name": "productDisplayName"},
        article_synonyms={"Shirts": ["dress shirt", "polo shirt"], "Jeans": []},
    )
    candidates = builder.candidates(SHIRT)
    assert candidates == [
        "Turtle Check Men Navy Blue Shirt",
        "a photo of a dress shirt",
        "a photo of a polo shirt",
    ]
    draws = Counter(builder.sample(SHIRT, sample_rng(0, epoch, 1)) for epoch in range(400))
    assert set(draws) == set(candidates)
    assert draws["a photo of a dress shirt"] > draws["Turtle Check Men Navy Blue Shirt"]
    # a type without synonyms (or with an empty list) never gets the template
    jeans = dict(SHIRT, articleType="Jeans")
    assert builder.candidates(jeans) == ["Turtle Check Men Navy Blue Shirt"]
    assert {builder.sample(jeans, random.Random(i)) for i in range(20)} == {
        "Turtle Check Men Navy Blue Shirt"
    }


def test_packaged_wordnet_synonyms_reach_the_default_kagl_builder(tmp_path):
    table = load_article_synonyms("wordnet")
    assert "pullover" in table["Sweaters"] and "jumper" in table["Sweaters"]
    assert table and all(names and all(n.strip() for n in names) for names in table.values())
    sweater = dict(SHIRT, articleType="Sweaters", productDisplayName="Nike Men Grey Sweater")
    assert "a photo of a pullover" in kagl_caption_builder().candidates(sweater)
    without = kagl_caption_builder(article_synonyms=None).candidates(sweater)
    assert not any("pullover" in c for c in without)
    from fashionclip.train.data import build_caption_builder

    off = build_caption_builder(
        CaptionConfig(builder="kagl", article_synonyms="none"), DataConfig()
    )
    assert off.candidates(sweater) == without
    own = tmp_path / "synonyms.json"
    own.write_text('{"Sweaters": ["knit top"]}')
    assert "a photo of a knit top" in kagl_caption_builder(article_synonyms=own).candidates(sweater)
    own.write_text('{"Sweaters": "knit top"}')
    with pytest.raises(FashionCLIPError, match="list of names"):
        load_article_synonyms(own)
    with pytest.raises(FashionCLIPError, match="not found"):
        load_article_synonyms(tmp_path / "missing.json")


def test_article_broader_field_uses_the_tables_broader_words(tmp_path):
    jacket = dict(SHIRT, articleType="Jackets", productDisplayName="Roadster Men Black Jacket")
    # the packaged table: a jacket is a kind of coat ("coat" names no KAGL article type)
    assert load_article_broader("wordnet")["Jackets"] == ["coat"]
    broad = kagl_caption_builder(["{name}", "a photo of a {article_broader}"], [1, 1])
    assert broad.candidates(jacket) == ["Roadster Men Black Jacket", "a photo of a coat"]
    # the default templates do not use the field: v3's captions are unchanged
    assert "a photo of a coat" not in kagl_caption_builder().candidates(jacket)
    # a table of one's own without broader words: the template is never drawn
    own = tmp_path / "synonyms.json"
    own.write_text('{"aliases": {"Jackets": ["parka"]}}')
    assert load_article_broader(own) == {}
    mine = kagl_caption_builder(
        ["{name}", "a photo of a {article_broader}"], [1, 1], article_synonyms=own
    )
    assert mine.candidates(jacket) == ["Roadster Men Black Jacket"]
    with pytest.raises(FashionCLIPError, match="at most one"):
        TemplateCaptionBuilder(["{article_synonym} or {article_broader}"])


def test_article_everyday_field_uses_the_searchs_everyday_names():
    jacket = dict(SHIRT, articleType="Jackets", productDisplayName="Roadster Men Black Jacket")
    shoe = dict(SHIRT, articleType="Sports Shoes", productDisplayName="Nike Men Shoe")
    everyday = kagl_caption_builder(["{name}", "a photo of a {article_everyday}"], [1, 1])
    # the words query understanding reads as Jackets / Sports Shoes (one table for both)
    assert "a photo of a coat" in everyday.candidates(jacket)
    assert "a photo of a parka" in everyday.candidates(jacket)
    assert "a photo of a sneaker" in everyday.candidates(shoe)
    assert everyday.candidates(SHIRT) == ["Turtle Check Men Navy Blue Shirt"]  # none for Shirts
    # the default templates do not use the field: captions are unchanged
    assert not any("parka" in c for c in kagl_caption_builder().candidates(jacket))
    with pytest.raises(FashionCLIPError, match="at most one"):
        TemplateCaptionBuilder(["{article_everyday} or {article_synonym}"])


def test_templates_with_missing_fields_are_skipped():
    builder = TemplateCaptionBuilder(
        ["{usage} {articleType}", "a photo of a {articleType}"], [10, 1]
    )
    record = dict(SHIRT, usage="NA")
    assert builder.candidates(record) == ["a photo of a Shirts"]
    assert {builder.sample(record, random.Random(i)) for i in range(20)} == {"a photo of a Shirts"}
    with pytest.raises(ValueError):
        builder.sample({"usage": "", "articleType": ""}, random.Random(0))
    with pytest.raises(FashionCLIPError, match="named fields"):
        TemplateCaptionBuilder(["a {} photo"])


def test_column_builder_and_singular_labels():
    builder = ColumnCaptionBuilder(["caption", "alt"])
    record = {"caption": "red dress", "alt": "a dress"}
    assert builder.candidates(record) == ["red dress", "a dress"]
    assert builder.eval_caption(record) == "red dress"
    assert builder.eval_caption({"caption": "", "alt": "b"}) == "b"
    assert singular_label("Watches") == "watch"
    assert singular_label("Tshirts") == "t-shirt"
    assert singular_label("Jeans") == "jeans"
    assert singular_label("Casual Shoes") == "pair of casual shoes"
    assert caption_id("a") == caption_id("a") != caption_id("b")


def _table(tmp_path, rows):
    path = tmp_path / "pairs.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_bad_rows_are_skipped_and_counted(tmp_path):
    (tmp_path / "ok.png").parent.mkdir(exist_ok=True)
    Image.new("RGB", (8, 8), "red").save(tmp_path / "ok.png")
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "corrupt.jpg").write_bytes(b"not a jpeg at all")
    rows = [
        {"image": "ok.png", "caption": "red"},
        {"image": "missing.png", "caption": "x"},
        {"image": "empty.jpg", "caption": "x"},
        {"image": "corrupt.jpg", "caption": "x"},
        {"image": "ok.png", "caption": ""},
        {"image": "", "caption": "y"},
    ]
    data = DataConfig(train=str(_table(tmp_path, rows)))
    train, val = load_pair_datasets(data, CaptionConfig(), progress=False)
    assert len(train) == 1 and val is None
    assert train.skipped == {
        "file not found": 1,
        "empty file": 1,
        "not an image or unknown format": 1,
        "no caption": 1,
        "no image path": 1,
    }


def test_input_errors_before_training(tmp_path):
    Image.new("RGB", (8, 8), "red").save(tmp_path / "ok.png")
    path = _table(tmp_path, [{"image": "ok.png", "text": "red"}])
    with pytest.raises(FashionCLIPError, match="caption column 'caption' not found.*text"):
        load_pair_datasets(DataConfig(train=str(path)), CaptionConfig(), progress=False)
    path = _table(tmp_path, [{"image": "missing.png", "caption": "red"}])
    with pytest.raises(FashionCLIPError, match="no usable rows.*file not found: 1"):
        load_pair_datasets(DataConfig(train=str(path)), CaptionConfig(), progress=False)
    empty = tmp_path / "empty.csv"
    empty.write_text("image,caption\n")
    with pytest.raises(FashionCLIPError, match="empty"):
        load_pair_datasets(DataConfig(train=str(empty)), CaptionConfig(), progress=False)
    with pytest.raises(FashionCLIPError, match="not found"):
        load_pair_datasets(
            DataConfig(train=str(tmp_path / "nope.csv")), CaptionConfig(), progress=False
        )


def test_sampler_splits_global_batches_over_ranks():
    single = list(EpochBatchSampler(20, 8, epoch=1, seed=3))
    assert len(single) == 2 and all(len(b) == 8 for b in single)
    rank0 = list(EpochBatchSampler(20, 8, epoch=1, seed=3, rank=0, world_size=2))
    rank1 = list(EpochBatchSampler(20, 8, epoch=1, seed=3, rank=1, world_size=2))
    for whole, a, b in zip(single, rank0, rank1, strict=True):
        assert whole == a + b
    resumed = list(EpochBatchSampler(20, 8, epoch=1, seed=3, start=1))
    assert resumed == single[1:]
    assert list(EpochBatchSampler(20, 8, epoch=2, seed=3)) != single


def test_augmentation_is_deterministic_and_keeps_rgb():
    image = Image.new("RGB", (60, 80), "white")
    image.paste(Image.new("RGB", (30, 40), (200, 20, 20)), (15, 20))
    cfg = AugmentConfig(grayscale=0.5, lowres=0.5, invert=0.5)
    outs = [augment_image(image, sample_rng(0, 0, i), cfg) for i in range(20)]
    again = [augment_image(image, sample_rng(0, 0, i), cfg) for i in range(20)]
    assert outs and all(a.tobytes() == b.tobytes() for a, b in zip(outs, again, strict=True))
    assert outs and all(o.mode == "RGB" for o in outs)
    assert len({o.tobytes() for o in outs}) > 10
    inverted = augment_image(
        image,
        random.Random(0),
        AugmentConfig(
            scale_min=1, ratio_jitter=0, hflip=0, color_jitter=0, grayscale=0, lowres=0, invert=1.0
        ),
    )
    assert inverted.getpixel((0, 0)) == (0, 0, 0)
    assert augment_image(image, random.Random(0), AugmentConfig(enabled=False)) is image


def test_negative_thumbnail_is_grey_inverted_and_low_resolution():
    """Fashion-MNIST's recipe at once: grey, light-on-black, 28 px of detail."""
    image = Image.new("RGB", (60, 80), "white")
    image.paste(Image.new("RGB", (30, 40), (200, 20, 20)), (15, 20))
    for x in range(15, 45, 2):  # fine stripes that 28 px cannot keep
        image.paste(Image.new("RGB", (1, 40), (0, 0, 200)), (x, 20))
    plain = dict(scale_min=1, ratio_jitter=0, hflip=0, color_jitter=0, grayscale=0, lowres=0)
    out = augment_image(image, random.Random(0), AugmentConfig(**plain, negative_thumbnail=1.0))
    pixels = np.asarray(out).astype(int)
    assert out.size == image.size and out.mode == "RGB"
    assert (pixels[..., 0] == pixels[..., 1]).all() and (pixels[..., 1] == pixels[..., 2]).all()
    assert pixels[0, 0, 0] == 0  # white background -> black
    assert pixels[40, 30, 0] > 100  # dark product -> light
    stripes = np.asarray(image.convert("L")).astype(int)[40, 15:45]
    assert np.ptp(pixels[40, 17:43, 0]) < np.ptp(stripes) / 2  # stripes blurred away
    untouched = augment_image(image, random.Random(0), AugmentConfig(**plain, invert=0))
    assert untouched.tobytes() == image.tobytes()


def test_kagl_split_parsing_and_captions(kagl_dir):
    rows = read_kagl_split(kagl_dir, "val")
    assert len(rows) == 4444
    assert rows and all(r["_image"].endswith(f"{r['id']}.jpg") for r in rows[:5])
    with pytest.raises(FashionCLIPError, match="split 'dev'"):
        read_kagl_split(kagl_dir, "dev")
    data = DataConfig(
        source="kagl", kagl_dir=str(kagl_dir), max_train_samples=64, max_val_samples=32
    )
    train, val = load_pair_datasets(data, CaptionConfig(builder="kagl"), progress=False)
    assert len(train) == 64 and len(val) == 32 and not train.skipped
    dataset = PairSampleDataset(train, AugmentConfig(), seed=0)
    image, caption, index, view = dataset[(0, 5)]
    assert image.mode == "RGB" and index == 5 and view == -1
    assert caption in train.captions.candidates(train.records[5])
    assert len(train.caption_candidates()) > 64
