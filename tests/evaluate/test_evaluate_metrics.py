"""Metrics checked against independent computations: scikit-learn and hand-worked rankings."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

from fashionclip.evaluate.baselines import (
    BM25Scorer,
    RandomEmbeddingModel,
    majority_class,
    reciprocal_rank_fusion,
)
from fashionclip.evaluate.linear_probe import LinearProbeEvaluator
from fashionclip.evaluate.metrics import classification_metrics, ranking_metrics
from fashionclip.evaluate.retrieval import ImageRetrievalEvaluator, RetrievalEvaluator
from fashionclip.evaluate.zero_shot import ZeroShotEvaluator

# ------------------------------------------------------------------------- classification


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_classification_metrics_match_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = ["bag", "dress", "shirt", "shoe", "watch"]
    # Skewed truth, noisy predictions; one class never predicted for seed 0.
    y_true = rng.choice(labels, size=300, p=[0.4, 0.3, 0.15, 0.1, 0.05]).tolist()
    y_pred = [t if rng.random() < 0.6 else rng.choice(labels[: 4 + (seed > 0)]) for t in y_true]
    m = classification_metrics(y_true, y_pred, labels=labels)
    assert m.accuracy == pytest.approx(accuracy_score(y_true, y_pred))
    assert m.weighted_f1 == pytest.approx(
        f1_score(y_true, y_pred, labels=labels, average="weighted", zero_division=0)
    )
    assert m.macro_f1 == pytest.approx(
        f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)
    )
    per_class = f1_score(y_true, y_pred, labels=labels, average=None, zero_division=0)
    assert [m.per_class_f1[c] for c in labels] == pytest.approx(per_class.tolist())
    np.testing.assert_array_equal(m.confusion, confusion_matrix(y_true, y_pred, labels=labels))
    assert m.support == {c: y_true.count(c) for c in labels}
    assert m.undefined == {}


def test_class_without_items_or_predictions_is_undefined_not_zero() -> None:
    y_true = ["a", "a", "b", "b"]
    y_pred = ["a", "b", "b", "b"]
    m = classification_metrics(y_true, y_pred, labels=["a", "b", "c"])
    assert m.per_class_f1["c"] is None
    assert "per_class_f1" in m.undefined
    # Macro averages only the defined classes, like sklearn's zero_division=nan.
    expected = f1_score(
        y_true, y_pred, labels=["a", "b", "c"], average="macro", zero_division=np.nan
    )
    assert m.macro_f1 == pytest.approx(expected)
    assert m.weighted_f1 == pytest.approx(f1_score(y_true, y_pred, average="weighted"))


def test_class_with_items_but_no_predictions_scores_zero() -> None:
    m = classification_metrics(["a", "b", "b"], ["a", "a", "a"], labels=["a", "b"])
    assert m.per_class_f1["b"] == 0.0  # defined: 2*0 / (0 + 0 + 2)
    assert m.per_class_f1["a"] == pytest.approx(0.5)


def test_predictions_outside_the_label_list_count_as_errors() -> None:
    y_true, y_pred = ["a", "b", "b"], ["a", "zzz", "b"]
    m = classification_metrics(y_true, y_pred, labels=["a", "b"])
    assert m.accuracy == pytest.approx(2 / 3)
    assert m.per_class_f1["b"] == pytest.approx(
        f1_score(y_true, y_pred, labels=["a", "b"], average=None)[1]
    )
    assert m.confusion.sum() == 2


def test_no_items_gives_none_with_reasons() -> None:
    m = classification_metrics([], [], labels=["a", "b"])
    assert m.accuracy is None and m.macro_f1 is None and m.weighted_f1 is None
    assert {"accuracy", "macro_f1", "weighted_f1"} <= set(m.undefined)


def test_unknown_true_label_is_an_error() -> None:
    with pytest.raises(ValueError, match="not in the label list"):
        classification_metrics(["x"], ["a"], labels=["a"])


# ------------------------------------------------------------------------- ranking

# Hand-worked example: 5 items, 4 queries.
#   q0 scores [.9 .5 .5 .1 .0], relevant {2}: item 1 ties with the target.
#      pessimistic rank 3 (items 0 and 1 first), optimistic rank 2.
#   q1 scores [.2 .8 .3 .8 .1], relevant {1, 3} (a duplicate pair tied on top): rank 1 either way.
#   q2 all scores .5, relevant {4}: pessimistic rank 5, optimistic rank 1.
#   q3 relevant {}: cannot be scored, skipped.
SCORES = np.array(
    [
        [0.9, 0.5, 0.5, 0.1, 0.0],
        [0.2, 0.8, 0.3, 0.8, 0.1],
        [0.5, 0.5, 0.5, 0.5, 0.5],
        [0.1, 0.2, 0.3, 0.4, 0.5],
    ]
)
RELEVANT = [[2], [1, 3], [4], []]


def test_ranking_hand_worked_pessimistic() -> None:
    r = ranking_metrics(SCORES, RELEVANT, recall_ks=(1, 2, 3, 5), precision_ks=(2, 5, 10))
    assert r.n_queries == 4 and r.n_skipped == 1
    assert r.first_rank.tolist() == [3, 1, 5]
    v = r.values
    assert v["recall@1"] == pytest.approx(1 / 3)
    assert v["recall@2"] == pytest.approx(1 / 3)
    assert v["recall@3"] == pytest.approx(2 / 3)
    assert v["recall@5"] == pytest.approx(1.0)
    assert v["mrr"] == pytest.approx((1 / 3 + 1 + 1 / 5) / 3)
    # Top 2: q0 {0, 1} -> 0 relevant; q1 {1, 3} -> 2; q2 four non-relevant ties first -> 0.
    assert v["precision@2"] == pytest.approx((0 + 1 + 0) / 3)
    assert v["precision@5"] == pytest.approx((1 / 5 + 2 / 5 + 1 / 5) / 3)
    assert v["precision@10"] is None
    assert "exceeds" in r.undefined["precision@10"]


def test_ranking_hand_worked_optimistic() -> None:
    r = ranking_metrics(SCORES, RELEVANT, recall_ks=(1,), precision_ks=(2,), ties="optimistic")
    assert r.first_rank.tolist() == [2, 1, 1]
    assert r.values["recall@1"] == pytest.approx(2 / 3)
    assert r.values["mrr"] == pytest.approx((1 / 2 + 1 + 1) / 3)
    assert r.values["precision@2"] == pytest.approx((1 / 2 + 1 + 1 / 2) / 3)


def test_ranking_boolean_mask_equals_index_lists() -> None:
    mask = np.zeros(SCORES.shape, dtype=bool)
    for q, items in enumerate(RELEVANT):
        mask[q, items] = True
    a = ranking_metrics(SCORES, RELEVANT).values
    b = ranking_metrics(SCORES, mask).values
    assert a == b


def _reference_ranking(scores, relevant, k_list, ties):
    """Independent implementation: sort every row explicitly (relevance breaks ties)."""
    firsts, precisions = [], {k: [] for k in k_list}
    for s, rel in zip(scores, relevant, strict=True):
        if not rel.any():
            continue
        tie_key = rel.astype(int) if ties == "pessimistic" else -rel.astype(int)
        order = np.lexsort((tie_key, -s))  # by score desc, then the tie rule
        ranked = rel[order]
        firsts.append(int(np.argmax(ranked)) + 1)
        for k in k_list:
            precisions[k].append(ranked[:k].sum() / k)
    firsts = np.array(firsts)
    return firsts, {k: float(np.mean(p)) for k, p in precisions.items()}


@pytest.mark.parametrize("ties", ["pessimistic", "optimistic"])
def test_ranking_matches_explicit_sort_with_many_ties(ties: str) -> None:
    rng = np.random.default_rng(7)
    scores = rng.integers(0, 4, size=(60, 25)).astype(float)  # coarse scores: ties everywhere
    relevant = rng.random((60, 25)) < 0.15
    first, precision = _reference_ranking(scores, relevant, (1, 3, 10), ties)
    r = ranking_metrics(scores, relevant, (1, 5, 10), (1, 3, 10), ties=ties, chunk_size=7)
    np.testing.assert_array_equal(r.first_rank, first)
    assert r.values["mrr"] == pytest.approx(np.mean(1 / first))
    assert r.values["recall@5"] == pytest.approx(np.mean(first <= 5))
    for k in (1, 3, 10):
        assert r.values[f"precision@{k}"] == pytest.approx(precision[k])


def test_no_query_with_relevant_items_is_reported_not_zero() -> None:
    r = ranking_metrics(np.ones((2, 3)), [[], []])
    assert r.values and all(v is None for v in r.values.values())
    assert r.undefined["mrr"] == "no query has a relevant item"
    assert r.recall_curve([1, 5]) == [None, None]


def test_exclude_removes_the_query_item() -> None:
    # Image-to-image: the query itself (score 1.0) must not count or occupy a rank.
    scores = np.array([[1.0, 0.2, 0.9], [0.2, 1.0, 0.3], [0.9, 0.3, 1.0]])
    same_group = np.array([[1, 0, 1], [0, 1, 0], [1, 0, 1]], dtype=bool)
    r = ranking_metrics(scores, same_group, (1,), (1,), exclude=np.eye(3, dtype=bool))
    assert r.n_skipped == 1  # item 1 is alone in its group
    assert r.first_rank.tolist() == [1, 1]
    emb = np.eye(3, dtype=np.float32)
    # Orthogonal embeddings: every other item scores 0, a tie -> pessimistic rank 2.
    out = ImageRetrievalEvaluator(images=[], groups=["a", "b", "a"]).compute(emb)
    assert out["image_to_image/n_skipped"] == 1
    assert out["image_to_image/recall@1"] == 0.0
    assert out["image_to_image/mrr"] == pytest.approx(0.5)


def test_constant_scores_rank_the_target_last() -> None:
    r = ranking_metrics(np.zeros((4, 4)), [[0], [1], [2], [3]], (1, 4), ())
    assert r.first_rank.tolist() == [4, 4, 4, 4]
    assert r.values["recall@1"] == 0.0 and r.values["recall@4"] == 1.0


def test_non_finite_scores_are_refused() -> None:
    with pytest.raises(ValueError, match="NaN"):
        ranking_metrics(np.array([[np.nan, 1.0]]), [[0]])


# ------------------------------------------------------------------------- evaluators


def test_retrieval_evaluator_paired_and_duplicates() -> None:
    emb = np.eye(4, dtype=np.float32)
    out = RetrievalEvaluator(["a", "b", "c", "d"]).compute(emb, emb)
    assert out["text_to_image/recall@1"] == 1.0 and out["image_to_text/mrr"] == 1.0
    # Images 0 and 1 are duplicates of one product: both are relevant to texts 0 and 1.
    text = np.array([[1, 0, 0], [1, 0, 0], [0, 0, 1]], dtype=np.float32)
    images = np.array([[0, 1, 0], [1, 0, 0], [0, 0, 1]], dtype=np.float32)
    ev = RetrievalEvaluator(["x", "x", "z"], relevant=[[0, 1], [0, 1], [2]], precision_ks=(2,))
    out = ev.compute(text, images)
    assert out["text_to_image/recall@1"] == 1.0  # image 1 (a duplicate) ranks first
    # Top 2, pessimistic: text 0 -> image 1 (1.0), then images 0 (relevant) and 2 tie at 0.0 and
    # image 2 goes first -> 1/2; text 1 likewise 1/2; text 2 -> image 2, then a tie -> 1/2.
    assert out["text_to_image/precision@2"] == pytest.approx(0.5)
    # Image to text: image 0 scores 0.0 with every text; text 2 (not relevant) ties with its
    # relevant texts 0 and 1 and goes first -> rank 2. Images 1 and 2 rank a relevant text first.
    ranks = ev.rankings(text, images)["image_to_text"].first_rank.tolist()
    assert ranks == [2, 1, 1]


def test_zero_shot_evaluator_matches_sklearn() -> None:
    rng = np.random.default_rng(0)
    classes = ["bag", "dress", "shoe"]
    class_emb = np.eye(3, dtype=np.float32)
    truth = rng.integers(0, 3, size=40)
    noisy = np.where(rng.random(40) < 0.7, truth, rng.integers(0, 3, size=40))
    image_emb = np.eye(3, dtype=np.float32)[noisy] + 0.01 * rng.standard_normal((40, 3))
    labels = [classes[i] for i in truth]
    ev = ZeroShotEvaluator(images=[None] * 40, labels=labels, class_names=classes)
    out = ev.compute(image_emb.astype(np.float32), class_emb)
    predicted = [classes[i] for i in noisy]
    assert out["accuracy"] == pytest.approx(accuracy_score(labels, predicted))
    assert out["weighted_f1"] == pytest.approx(f1_score(labels, predicted, average="weighted"))
    assert out["macro_f1"] == pytest.approx(f1_score(labels, predicted, average="macro"))
    assert out["confusion_matrix"] == confusion_matrix(labels, predicted, labels=classes).tolist()


def test_zero_shot_evaluator_rejects_labels_outside_classes() -> None:
    from fashionclip.errors import FashionCLIPError

    with pytest.raises(FashionCLIPError, match="not among the class names"):
        ZeroShotEvaluator(images=[None], labels=["hat"], class_names=["bag"])
    with pytest.raises(FashionCLIPError, match="exactly once"):
        ZeroShotEvaluator(images=[None], labels=["bag"], class_names=["bag"], templates=["x"])


def test_linear_probe_separable_and_degenerate() -> None:
    rng = np.random.default_rng(0)
    centers = np.eye(3) * 5
    train_y = rng.integers(0, 3, size=90)
    test_y = rng.integers(0, 3, size=30)
    train_x = centers[train_y] + rng.standard_normal((90, 3)) * 0.1
    test_x = centers[test_y] + rng.standard_normal((30, 3)) * 0.1
    names = np.array(["a", "b", "c"])
    probe = LinearProbeEvaluator([], [], [], names[test_y].tolist(), ["a", "b", "c"])
    out = probe.compute(train_x, names[train_y].tolist(), test_x, names[test_y].tolist())
    assert out["accuracy"] == 1.0 and out["weighted_f1"] == 1.0
    # One training class only: the probe cannot be fitted -> undefined, not zero.
    out = probe.compute(train_x[:5], ["a"] * 5, test_x, names[test_y].tolist())
    assert out["accuracy"] is None and "needs 2" in out["undefined"]["accuracy"]


def test_majority_and_rrf_and_bm25() -> None:
    assert majority_class(["b", "a", "b", "a", "c"]) == "a"  # tie -> alphabetical
    fused = reciprocal_rank_fusion([np.array([[3.0, 2.0, 2.0]]), np.array([[0.0, 1.0, 2.0]])], k=1)
    # Ranks (min for ties): system 1 -> 1, 2, 2; system 2 -> 3, 2, 1.
    np.testing.assert_allclose(fused, [[1 / 2 + 1 / 4, 1 / 3 + 1 / 3, 1 / 3 + 1 / 2]])
    bm25 = BM25Scorer(["red leather handbag", "blue denim jeans", "red cotton dress"])
    scores = bm25.scores(["red dress", "zebra"])
    assert scores[0].argmax() == 2 and scores[0, 1] == 0.0
    assert (scores[1] == 0).all()  # no known word: all tied, ranked pessimistically downstream


def test_random_model_is_deterministic_and_content_keyed(tmp_path) -> None:
    from PIL import Image

    a, b = tmp_path / "a.png", tmp_path / "b.png"
    Image.new("RGB", (4, 4), (255, 0, 0)).save(a)
    b.write_bytes(a.read_bytes())  # byte-identical duplicate
    model = RandomEmbeddingModel(dim=16, seed=3)
    emb = model.encode_images([a, b, Image.new("RGB", (4, 4))])
    assert emb.shape == (3, 16) and np.allclose(np.linalg.norm(emb, axis=1), 1)
    assert np.array_equal(emb[0], emb[1]) and not np.allclose(emb[0], emb[2])
    np.testing.assert_array_equal(
        model.encode_text(["x"]), RandomEmbeddingModel(16, 3).encode_text(["x"])
    )
