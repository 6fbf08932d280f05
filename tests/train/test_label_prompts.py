"""The label-prompt loss (loss.label_prompts): prompts per column value, its cross-entropy, and a
training run that uses it."""

from __future__ import annotations

import json
import random

import pytest
import torch
import torch.nn.functional as F

from fashionclip.errors import FashionCLIPError
from fashionclip.train import load_train_config, train
from fashionclip.train.label_prompts import LabelPromptLoss, build_label_prompts
from test_train_support import base_overrides, make_pairs

RECORDS = [
    {"baseColour": "Black", "articleType": "Shirts"},
    {"baseColour": "Charcoal", "articleType": "Shirts"},
    {"baseColour": "", "articleType": "Dresses"},  # no colour: no colour target
    {"articleType": "dress"},  # a CCP-like row without the column
    {"baseColour": "Black", "articleType": "Heels"},
]


def test_prompts_are_every_value_and_targets_point_at_the_items_own():
    found = build_label_prompts(["a photo of a {baseColour}", "a {colour} thing"], RECORDS)
    assert found.prompts == (
        "a photo of a Black",
        "a photo of a Charcoal",
        "a black thing",  # derived field, as the caption templates fill it
        "a charcoal thing",
    )
    assert found.spans == ((0, 2), (2, 4))
    assert found.targets.tolist() == [[0, 2], [1, 3], [-1, -1], [-1, -1], [0, 2]]


def test_rows_of_another_vocabulary_are_not_asked_and_give_no_prompts():
    """A CCP crop's "dress" beside KAGL's "Dresses" would make synonyms each other's negatives."""
    from fashionclip.train.label_prompts import VOCABULARY_KEY

    rows = [*RECORDS, {"articleType": "skirt", VOCABULARY_KEY: "ccp"}]
    rows[3] = {**rows[3], VOCABULARY_KEY: "ccp"}  # the CCP-like "dress" row
    found = build_label_prompts(["a photo of a {articleType}"], rows)
    assert found.prompts == (
        "a photo of a Dresses",
        "a photo of a Heels",
        "a photo of a Shirts",
    )
    assert found.targets[:, 0].tolist() == [2, 2, 0, -1, 1, -1]


@pytest.mark.parametrize(
    ("template", "needle"),
    [
        ("a photo", "exactly one field"),
        ("{baseColour} {articleType}", "exactly one field"),
        ("a photo of a {}", "exactly one field"),
        ("a photo of a {usage}", "0 distinct"),  # no record has it: a typo would train nothing
    ],
)
def test_bad_templates_are_clear_errors(template, needle):
    with pytest.raises(FashionCLIPError, match=needle):
        build_label_prompts([template], RECORDS)


def test_loss_is_the_cross_entropy_over_each_templates_prompts():
    torch.manual_seed(0)
    found = build_label_prompts(["a photo of a {baseColour}", "{articleType}"], RECORDS)
    loss = LabelPromptLoss(found, weight=0.5)
    image = torch.randn(3, 8, requires_grad=True)
    prompts = torch.randn(len(found.prompts), 8)
    scale = torch.tensor(2.0)  # log temperature: multiplier e^2
    indices = [4, 2, 1]
    got = loss(image, prompts, scale, indices)
    im, tx = F.normalize(image, dim=-1), F.normalize(prompts, dim=-1)
    colour = F.cross_entropy(
        scale.exp() * im[[0, 2]] @ tx[0:2].T, torch.tensor([0, 1]), reduction="sum"
    )
    kinds = F.cross_entropy(
        scale.exp() * im @ tx[2:].T, found.targets[indices, 1] - 2, reduction="sum"
    )
    assert got.item() == pytest.approx(0.5 * (colour + kinds).item() / 5, rel=1e-5)
    # per-template weights make it a weighted mean over image-template pairs
    weighted = LabelPromptLoss(found, weight=0.5, template_weights=[1.0, 0.25])
    expected = 0.5 * (colour + 0.25 * kinds).item() / (2 + 0.25 * 3)
    assert weighted(image, prompts, scale, indices).item() == pytest.approx(expected, rel=1e-5)
    for bad in ([1.0], [1.0, 0.0]):
        with pytest.raises(FashionCLIPError, match="template weights"):
            LabelPromptLoss(found, weight=0.5, template_weights=bad)
    # a gradient step moves each image towards its own prompt
    got.backward()
    with torch.no_grad():
        after = loss(image - 0.5 * image.grad, prompts, scale, indices)
    assert after < got
    with pytest.raises(ValueError, match="temperature"):
        loss(image, prompts, None, indices)


def test_training_with_label_prompts_runs_and_changes_the_loss(tmp_path, tiny_model_dirs):
    train_csv, val_csv = make_pairs(tmp_path / "pairs")
    model_dir = tiny_model_dirs["fashionclip-dual-encoder"]

    def run(folder, *extra):
        items = base_overrides(tmp_path / folder, model_dir, train_csv, val_csv)
        result = train(load_train_config(None, [*items, "epochs=1", *extra]))
        rows = [json.loads(line) for line in result.log_path.read_text().splitlines()]
        return [r["loss"] for r in rows if r["type"] == "train"]

    plain = run("plain")
    labelled = run("labelled", 'loss.label_prompts=["a photo of a {colour} product"]')
    # same data, seeds and weights: the first step's loss differs only by the added term
    assert labelled[0] > plain[0]
    with pytest.raises(FashionCLIPError, match="exactly one field"):
        load_train_config(
            None, ["model.init=dual-encoder", 'loss.label_prompts=["{colour} {caption}"]']
        )
    with pytest.raises(FashionCLIPError, match="label_prompt_weight"):
        load_train_config(None, ["model.init=dual-encoder", "loss.label_prompt_weight=0"])
    with pytest.raises(FashionCLIPError, match="label_prompt_template_weights"):
        load_train_config(
            None,
            [
                "model.init=dual-encoder",
                'loss.label_prompts=["a photo of a {colour} product"]',
                "loss.label_prompt_template_weights=[1.0, 2.0]",
            ],
        )
    weighted = run(
        "weighted",
        'loss.label_prompts=["a photo of a {colour} product"]',
        "loss.label_prompt_template_weights=[3.0]",
    )
    # one template: its weight cancels in the weighted mean
    assert weighted[0] == pytest.approx(labelled[0], rel=1e-5)


def test_grey_views_are_not_asked_their_colour():
    from PIL import Image

    from fashionclip.train.config import AugmentConfig
    from fashionclip.train.data import augment_image, shows_colour

    red = Image.new("RGB", (20, 30), (200, 30, 30))
    assert shows_colour(red)
    assert not shows_colour(red.convert("L"))
    assert not shows_colour(red.convert("L").convert("RGB"))
    grey = augment_image(red, random.Random(0), AugmentConfig(negative_thumbnail=1.0))
    assert not shows_colour(grey)
    assert not shows_colour(Image.new("RGB", (4, 4), (255, 255, 255)))  # no colour to see

    found = build_label_prompts(["a photo of a {baseColour}", "{articleType}"], RECORDS)
    loss = LabelPromptLoss(found, weight=1.0)
    torch.manual_seed(1)
    image, prompts, scale = torch.randn(2, 8), torch.randn(len(found.prompts), 8), torch.tensor(1.0)
    both = loss(image, prompts, scale, [0, 1], [True, True])
    grey_first = loss(image, prompts, scale, [0, 1], [False, True])
    im, tx = F.normalize(image, dim=-1), F.normalize(prompts, dim=-1)
    colour = F.cross_entropy(scale.exp() * im[1:] @ tx[0:2].T, torch.tensor([1]), reduction="sum")
    kinds = F.cross_entropy(
        scale.exp() * im @ tx[2:].T, found.targets[[0, 1], 1] - 2, reduction="sum"
    )
    # the grey row keeps its article-type term and loses only its colour term
    assert grey_first.item() == pytest.approx((colour + kinds).item() / 3, rel=1e-5)
    assert grey_first.item() != pytest.approx(both.item())


def test_cached_views_remember_whether_they_show_colour():
    from types import SimpleNamespace

    from fashionclip.train.data import Batch
    from fashionclip.train.epoch import shows_colour_per_row
    from fashionclip.train.features import ImageViewCache

    cache = ImageViewCache(num_items=3, views=2, device=torch.device("cpu"))
    run = SimpleNamespace(image_cache=cache)

    def batch(colour):
        return Batch(
            None,
            ["a", "b"],
            torch.zeros(2),
            [0, 2],
            [1, 1],
            [c is not None for c in colour],
            0,
            colour,
        )

    assert shows_colour_per_row(run, batch([False, True])) == [False, True]  # decoded: recorded
    assert shows_colour_per_row(run, batch([None, None])) == [False, True]  # cached: remembered
    assert shows_colour_per_row(SimpleNamespace(image_cache=None), batch([False, None])) == [
        False,
        True,
    ]


def test_the_collate_checks_colour_only_when_asked():
    from PIL import Image

    from fashionclip.train.data import PairCollate

    def processor(images, return_tensors):
        return {"pixel_values": torch.zeros(len(images), 3, 4, 4)}

    red = Image.new("RGB", (6, 6), (200, 30, 30))
    samples = [(red, "a", 0, -1), (red.convert("L").convert("RGB"), "b", 1, -1), (None, "c", 2, 0)]
    assert PairCollate(processor, colour=True)(samples).colour == [True, False, None]
    assert PairCollate(processor)(samples).colour == [None, None, None]
