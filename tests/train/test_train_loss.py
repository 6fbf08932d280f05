"""ClipLoss / SigLipLoss against straightforward reference formulas; the loss factory."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from fashionclip.errors import FashionCLIPError
from fashionclip.train.loss import (
    LOSSES,
    ClipLoss,
    SigLipLoss,
    clamp_logit_scale_,
    create_loss,
    loss_kinds,
    resolve_loss_kind,
)


def _features(n=6, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g), torch.randn(n, d, generator=g)


def test_clip_loss_matches_cross_entropy_reference():
    image, text = _features()
    log_scale = torch.tensor(math.log(10.0))
    logits = 10.0 * F.normalize(image, dim=-1) @ F.normalize(text, dim=-1).T
    target = torch.arange(6)
    expected = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
    assert torch.allclose(ClipLoss()(image, text, log_scale), expected, atol=1e-6)
    # distinct caption ids give the same loss as no ids
    ids = torch.arange(6) * 7 + 3
    assert torch.allclose(ClipLoss()(image, text, log_scale, labels=ids), expected, atol=1e-6)


def test_clip_loss_treats_identical_captions_as_positives():
    image, text = _features()
    text[3] = text[1]  # rows 1 and 3 have the same caption
    ids = torch.tensor([0, 1, 2, 1, 4, 5])
    log_scale = torch.tensor(math.log(10.0))
    logits = 10.0 * F.normalize(image, dim=-1) @ F.normalize(text, dim=-1).T
    targets = torch.eye(6)
    targets[1] = targets[3] = torch.tensor([0, 0.5, 0, 0.5, 0, 0])
    expected = (
        -(targets * F.log_softmax(logits, -1)).sum(-1).mean()
        - (targets * F.log_softmax(logits.T, -1)).sum(-1).mean()
    ) / 2
    got = ClipLoss()(image, text, log_scale, labels=ids)
    assert torch.allclose(got, expected, atol=1e-6)
    # For InfoNCE, identical caption embeddings make soft and one-hot targets the same function
    # (the duplicates' probabilities are equal), so ids change nothing here; they do for SigLIP.
    assert torch.allclose(got, ClipLoss()(image, text, log_scale), atol=1e-6)
    assert not torch.allclose(
        SigLipLoss()(image, text, log_scale, torch.tensor(-1.0), labels=ids),
        SigLipLoss()(image, text, log_scale, torch.tensor(-1.0)),
        atol=1e-4,
    )


def test_clip_loss_learns_temperature_and_caps_it():
    image, text = _features()
    loss_fn = ClipLoss(init_logit_scale=math.log(1 / 0.07))
    loss = loss_fn(image, text)
    loss.backward()
    assert loss_fn.logit_scale.grad is not None and loss_fn.logit_scale.grad.abs() > 0
    big = torch.tensor(10.0)  # exp(10) >> 100: capped
    capped = ClipLoss()(image, text, big)
    assert torch.allclose(capped, ClipLoss()(image, text, torch.tensor(math.log(100.0))))
    param = torch.nn.Parameter(torch.tensor(7.0))
    clamp_logit_scale_(param)
    assert math.isclose(float(param.detach()), math.log(100.0), rel_tol=1e-6)


def test_siglip_loss_matches_reference():
    image, text = _features()
    log_scale, bias = torch.tensor(math.log(10.0)), torch.tensor(-5.0)
    logits = 10.0 * F.normalize(image, dim=-1) @ F.normalize(text, dim=-1).T - 5.0
    signs = 2 * torch.eye(6) - 1
    expected = -F.logsigmoid(signs * logits).sum() / 6
    assert torch.allclose(SigLipLoss()(image, text, log_scale, bias), expected, atol=1e-5)
    ids = torch.tensor([0, 1, 2, 1, 4, 5])
    signs[1, 3] = signs[3, 1] = 1
    expected = -F.logsigmoid(signs * logits).sum() / 6
    assert torch.allclose(
        SigLipLoss()(image, text, log_scale, bias, labels=ids), expected, atol=1e-5
    )


def test_loss_is_lower_for_matching_pairs():
    image, _ = _features()
    log_scale = torch.tensor(math.log(20.0))
    matched = ClipLoss()(image, image.clone(), log_scale)
    shuffled = ClipLoss()(image, image.flip(0), log_scale)
    assert matched < shuffled


def test_create_loss_rejects_unknown_kinds_listing_the_registered_ones():
    with pytest.raises(FashionCLIPError, match="unknown loss kind 'triplet'.*clip, siglip"):
        create_loss("triplet")
    assert set(LOSSES) == {"clip", "siglip"} and loss_kinds() == ("auto", "clip", "siglip")


def test_created_losses_give_the_values_of_before_the_factory():
    """Values computed with ClipLoss / SigLipLoss before the common call signature existed."""
    image, text = _features()
    ids = torch.tensor([0, 1, 2, 1, 4, 5])
    log_scale, bias = torch.tensor(math.log(10.0)), torch.tensor(-5.0)
    clip, siglip = create_loss("clip"), create_loss("siglip")
    assert isinstance(clip, ClipLoss) and isinstance(siglip, SigLipLoss)
    # One call signature: the bias is passed to both (InfoNCE ignores it).
    assert math.isclose(float(clip(image, text, log_scale, bias)), 3.3175854682922363, rel_tol=1e-6)
    got = float(clip(image, text, log_scale, bias, labels=ids))
    assert math.isclose(got, 3.2605414390563965, rel_tol=1e-6)
    assert math.isclose(
        float(siglip(image, text, log_scale, bias)), 5.359208583831787, rel_tol=1e-6
    )
    got = float(siglip(image, text, log_scale, bias, labels=ids))
    assert math.isclose(got, 7.111190319061279, rel_tol=1e-6)


def test_created_losses_take_the_common_constructor_arguments():
    params = {"local_loss": True, "gather_with_grad": False, "rank": 0, "world_size": 1}
    for kind in LOSSES:
        loss = create_loss(kind, **params)
        assert loss.world_size == 1 and loss.gather_with_grad is False
    assert create_loss("clip", **params).local_loss is True
    assert not create_loss("clip").uses_logit_bias and create_loss("siglip").uses_logit_bias
    own_bias = create_loss("siglip", init_logit_bias=-10.0).logit_bias
    assert own_bias is not None and float(own_bias.detach()) == -10.0
    with pytest.raises(ValueError, match="ClipLoss has no logit bias"):
        create_loss("clip", init_logit_bias=-10.0)


def test_auto_kind_follows_the_models_logit_bias():
    assert resolve_loss_kind("auto", has_logit_bias=True) == "siglip"
    assert resolve_loss_kind("auto", has_logit_bias=False) == "clip"
    assert resolve_loss_kind("clip", has_logit_bias=True) == "clip"
