"""The evaluator contract: name, primary_metric in the result, SequentialEvaluator prefixes."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from fashionclip.evaluate import (
    Evaluator,
    ImageRetrievalEvaluator,
    LinearProbe,
    LinearProbeEvaluator,
    RetrievalEvaluator,
    SequentialEvaluator,
    ZeroShotEvaluator,
    image_to_image_rankings,
    zero_shot_metrics,
)
from fashionclip.evaluate.baselines import RandomEmbeddingModel


def _evaluators(images: list[Any]) -> list[Evaluator]:
    labels = ["red", "green", "blue", "white"]
    return [
        ZeroShotEvaluator(images, labels, class_names=labels),
        LinearProbeEvaluator(
            images, ["a", "b", "a", "b"], images, ["a", "b", "a", "b"], ["a", "b"]
        ),
        RetrievalEvaluator([f"a {c} product" for c in labels], images=images),
        ImageRetrievalEvaluator(images, groups=["x", "x", "y", "y"]),
    ]


def test_each_evaluator_returns_its_primary_metric(product_images) -> None:
    model = RandomEmbeddingModel(16, seed=0)
    evaluators = _evaluators(product_images)
    assert len({e.name for e in evaluators}) == len(evaluators)
    for evaluator in evaluators:
        assert isinstance(evaluator, Evaluator)
        result = evaluator(model)
        assert evaluator.primary_metric in result, evaluator.name
        value = result[evaluator.primary_metric]
        assert value is None or 0.0 <= value <= 1.0


def test_primary_metric_on_a_real_model(tiny_clip, product_images) -> None:
    for evaluator in _evaluators(product_images):
        assert evaluator.primary_metric in evaluator(tiny_clip)


def test_sequential_evaluator_prefixes_keys(product_images) -> None:
    model = RandomEmbeddingModel(16, seed=0)
    zero_shot, probe, retrieval, images = _evaluators(product_images)
    sequence = SequentialEvaluator([zero_shot, retrieval, images])
    assert isinstance(sequence, Evaluator)
    result = sequence(model)
    assert sequence.primary_metric == "zero-shot/weighted_f1"
    assert sequence.primary_metric in result
    alone = retrieval(model)
    assert alone  # non-empty, so the loop below checks something
    for key, value in alone.items():
        assert result[f"retrieval/{key}"] == value
    assert result and all(
        k.split("/", 1)[0] in {"zero-shot", "retrieval", "image-retrieval"} for k in result
    )


def test_sequential_evaluator_refuses_repeated_names_and_nothing(product_images) -> None:
    zero_shot = _evaluators(product_images)[0]
    with pytest.raises(ValueError, match="distinct"):
        SequentialEvaluator([zero_shot, zero_shot])
    with pytest.raises(ValueError, match="at least one"):
        SequentialEvaluator([])
    renamed = ZeroShotEvaluator(
        zero_shot.images, zero_shot.labels, zero_shot.class_names, name="zero-shot-2"
    )
    assert "zero-shot-2/accuracy" in SequentialEvaluator([zero_shot, renamed])(
        RandomEmbeddingModel(8)
    )


def test_embedding_level_functions_need_no_images() -> None:
    rng = np.random.default_rng(0)
    classes = ["a", "b", "c"]
    class_emb = np.eye(3, 4, dtype=np.float32)
    image_emb = class_emb[[0, 1, 2, 2, 1]] + 0.01 * rng.standard_normal((5, 4)).astype(np.float32)
    labels = ["a", "b", "c", "c", "a"]
    result = zero_shot_metrics(image_emb, class_emb, labels, classes)
    assert result["accuracy"] == pytest.approx(0.8)
    via_evaluator = ZeroShotEvaluator([None] * 5, labels, classes).compute(image_emb, class_emb)
    assert via_evaluator == result

    train = rng.standard_normal((40, 4)) + np.repeat(np.eye(2, 4) * 5, 20, axis=0)
    train_labels = ["a"] * 20 + ["b"] * 20
    probe = LinearProbe(["a", "b"]).compute(train, train_labels, train[::4], train_labels[::4])
    assert probe["accuracy"] == pytest.approx(1.0)

    ranks = image_to_image_rankings(image_emb, labels)
    assert set(ranks) == {"image_to_image"} and ranks["image_to_image"].n_queries == 5
    assert ImageRetrievalEvaluator([], labels).compute(image_emb)["image_to_image/n_skipped"] == 1
