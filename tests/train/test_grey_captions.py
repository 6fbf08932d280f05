"""Captions for views that show no colour (captions.grey_template_weights)."""

from __future__ import annotations

import io
import json
from collections import Counter

import pytest
import torch
from PIL import Image

from fashionclip.data.captions import TemplateCaptionBuilder, sample_rng
from fashionclip.errors import FashionCLIPError
from fashionclip.train import train
from fashionclip.train.config import AugmentConfig, load_train_config
from fashionclip.train.data import PairDataset, PairSampleDataset

SHIRT = {"productDisplayName": "Turtle Men Navy Blue Shirt", "articleType": "Shirts"}
SHIRT["baseColour"] = "Navy Blue"
TEMPLATES = ["{name}", "a photo of a {baseColour} {articleType}", "a photo of a {articleType}"]
NO_COLOUR = "a photo of a Shirts"


def _builder(grey=(0.0, 0.0, 1.0)) -> TemplateCaptionBuilder:
    return TemplateCaptionBuilder(
        TEMPLATES, [4.0, 1.0, 1.0], aliases={"name": "productDisplayName"}, grey_weights=grey
    )


def test_grey_views_draw_from_the_grey_weights_and_colour_views_as_before():
    builder, plain = _builder(), _builder(grey=None)
    grey = {builder.sample(SHIRT, sample_rng(0, e, 1), colour=False) for e in range(100)}
    assert grey == {NO_COLOUR}
    coloured = [builder.sample(SHIRT, sample_rng(0, e, 1)) for e in range(100)]
    assert coloured == [plain.sample(SHIRT, sample_rng(0, e, 1)) for e in range(100)]
    assert len(set(coloured)) == 3
    # without grey weights a grey view is captioned like any other
    assert len({plain.sample(SHIRT, sample_rng(0, e, 1), colour=False) for e in range(100)}) == 3
    for bad in ([1.0, 1.0], [0.0, 0.0, 0.0], [-1.0, 1.0, 1.0]):
        with pytest.raises(FashionCLIPError, match="grey template weights"):
            _builder(grey=bad)


def _dataset(negative: float, cached=None, colour=None) -> PairSampleDataset:
    buffer = io.BytesIO()
    Image.new("RGB", (60, 80), (200, 30, 30)).save(buffer, format="PNG")
    pairs = PairDataset([SHIRT] * 4, ["x.png"] * 4, [buffer.getvalue()] * 4, _builder())
    augment = AugmentConfig(hflip=0.0, negative_thumbnail=negative)
    return PairSampleDataset(
        pairs, augment, seed=0, views=2 if cached is not None else 0, cached=cached, colour=colour
    )


def test_a_grey_view_gets_a_colourless_caption_decoded_or_cached():
    grey = _dataset(negative=1.0)
    assert grey.grey_captions
    assert {grey[(e, i)][1] for e in range(10) for i in range(4)} == {NO_COLOUR}
    coloured = Counter(_dataset(negative=0.0)[(e, 0)][1] for e in range(60))
    assert len(coloured) == 3 and coloured.most_common(1)[0][0] == SHIRT["productDisplayName"]
    # cached views: the image is not decoded; the cache's colour flags decide
    cached = torch.ones(4, 2, dtype=torch.bool)
    colour = torch.tensor([[False, True]] * 4)
    dataset = _dataset(negative=0.0, cached=cached, colour=colour)
    view0 = {dataset[(e, 1)][1] for e in range(0, 40, 2)}  # epoch % 2 == 0: view 0, grey
    view1 = {dataset[(e, 1)][1] for e in range(1, 40, 2)}
    assert view0 == {NO_COLOUR} and len(view1) == 3
    assert dataset[(0, 1)][0] is None


def test_config_checks_the_grey_weights():
    with pytest.raises(FashionCLIPError, match="grey_template_weights has 1 entries"):
        load_train_config(
            None,
            [
                "model.init=dual-encoder",
                "captions.builder=kagl",
                "captions.grey_template_weights=[1.0]",
            ],
        )
    with pytest.raises(FashionCLIPError, match="grey_template_weights needs captions.builder"):
        load_train_config(None, ["model.init=dual-encoder", "captions.grey_template_weights=[1.0]"])


@pytest.mark.slow
def test_a_run_with_grey_captions_and_cached_views(tmp_path, kagl_dir, tiny_model_dirs):
    """Three epochs over 64 KAGL images, two cached views, half of them grey: the third epoch
    captions its cached views from the colour flags the first two recorded."""
    weights = "[4.0, 1.0, 1.0]"
    config = load_train_config(
        None,
        [
            f"output_dir={tmp_path / 'run'}",
            f"model.init={tiny_model_dirs['fashionclip-dual-encoder']}",
            "data.source=kagl",
            f"data.kagl_dir={kagl_dir}",
            "data.max_train_samples=64",
            "data.max_val_samples=16",
            "captions.builder=kagl",
            f"captions.templates={json.dumps(TEMPLATES)}",
            f"captions.template_weights={weights}",
            "captions.grey_template_weights=[0.0, 0.0, 1.0]",
            "augment.enabled=true",
            "augment.negative_thumbnail=0.5",
            "model.lock_image=true",
            "model.cache_image_views=2",
            "batch_size=16",
            "epochs=3",
            "num_threads=1",
            "device=cpu",
            "progress=false",
        ],
    )
    result = train(config)
    assert result.finished and result.global_step == 12
    rows = [json.loads(line) for line in result.log_path.read_text().splitlines()]
    assert [r["epoch"] for r in rows if r["type"] == "val"][-1] == 3
