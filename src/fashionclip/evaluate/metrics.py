"""Classification and ranking metrics in plain numpy.

Written independently of scikit-learn so that the tests can check them against it.

Undefined values are never reported as zero: a metric that cannot be computed is ``None`` and the
reason is recorded in the result's ``undefined`` mapping (metric name -> reason).

Tie handling in rankings (pessimistic, the default): when a relevant item and a non-relevant item
have exactly the same score, the non-relevant one is ranked first. A model that gives every item
the same score therefore ranks its target last, never first. ``ties="optimistic"`` ranks relevant
items first among equal scores (an upper bound; the gap between the two shows how many ties a
system produces). Among relevant items with equal scores the order does not matter to any metric.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

Ties = Literal["pessimistic", "optimistic"]


# --------------------------------------------------------------------------------------------
# Classification
# --------------------------------------------------------------------------------------------


@dataclass
class ClassificationMetrics:
    """Accuracy, F1 scores and the confusion matrix of one set of predictions.

    ``confusion[i, j]`` counts items of true class ``labels[i]`` predicted as ``labels[j]``.
    Per-class F1 is ``2TP / (2TP + FP + FN)``; it is undefined (None) for a class that is neither
    in the truth nor in the predictions. ``macro_f1`` averages the defined per-class F1 values
    (equal weights); ``weighted_f1`` weights them by support (number of true items), which is the
    FashionCLIP paper's headline "weighted macro F1".
    """

    labels: list[str]
    accuracy: float | None
    macro_f1: float | None
    weighted_f1: float | None
    per_class_f1: dict[str, float | None]
    support: dict[str, int]
    confusion: np.ndarray
    n: int
    undefined: dict[str, str] = field(default_factory=dict)

    def scalars(self) -> dict[str, float | None]:
        """The headline numbers: accuracy, macro F1, weighted F1."""
        return {
            "weighted_f1": self.weighted_f1,
            "macro_f1": self.macro_f1,
            "accuracy": self.accuracy,
        }


def classification_metrics(
    y_true: Sequence[str] | np.ndarray,
    y_pred: Sequence[str] | np.ndarray,
    labels: Sequence[str] | None = None,
) -> ClassificationMetrics:
    """Score predictions against the truth.

    ``labels`` fixes the class list (and the confusion-matrix order); by default it is the sorted
    union of true and predicted labels. Items whose true label is not in ``labels`` are an error
    (filter them before scoring); predictions outside ``labels`` count as wrong (a false negative
    for the true class) and appear in no column of the confusion matrix.
    """
    true = np.asarray([str(v) for v in y_true], dtype=object)
    pred = np.asarray([str(v) for v in y_pred], dtype=object)
    if true.shape != pred.shape:
        raise ValueError(f"y_true has {true.size} items but y_pred has {pred.size}")
    if labels is None:
        labels = sorted(set(true.tolist()) | set(pred.tolist()))
    labels = [str(v) for v in labels]
    if len(set(labels)) != len(labels):
        raise ValueError("labels contain duplicates")
    index = {label: i for i, label in enumerate(labels)}
    unknown = sorted(set(true.tolist()) - set(labels))
    if unknown:
        raise ValueError(f"true labels not in the label list: {unknown[:5]}")

    k = len(labels)
    confusion = np.zeros((k, k), dtype=np.int64)
    true_idx = np.array([index[v] for v in true.tolist()], dtype=np.int64)
    pred_idx = np.array([index.get(v, -1) for v in pred.tolist()], dtype=np.int64)
    inside = pred_idx >= 0
    np.add.at(confusion, (true_idx[inside], pred_idx[inside]), 1)

    support = np.bincount(true_idx, minlength=k) if true_idx.size else np.zeros(k, dtype=np.int64)
    predicted = confusion.sum(axis=0)
    tp = np.diag(confusion)
    fp = predicted - tp
    fn = support - tp
    denom = 2 * tp + fp + fn

    undefined: dict[str, str] = {}
    per_class: dict[str, float | None] = {}
    for i, label in enumerate(labels):
        per_class[label] = float(2 * tp[i] / denom[i]) if denom[i] > 0 else None
    defined = [v for v in per_class.values() if v is not None]
    n = int(true.size)

    if n == 0:
        accuracy = None
        undefined["accuracy"] = "no items to score"
    else:
        accuracy = float(np.sum(true == pred) / n)
    if defined:
        macro = float(np.mean(defined))
    else:
        macro = None
        undefined["macro_f1"] = "no class has items or predictions"
    if support.sum() > 0:
        f1 = np.array([per_class[label] or 0.0 for label in labels])  # None only where support 0
        weighted = float(np.sum(f1 * support) / support.sum())
    else:
        weighted = None
        undefined["weighted_f1"] = "no items to score"
    missing = [label for label, v in per_class.items() if v is None]
    if missing:
        undefined["per_class_f1"] = (
            f"F1 undefined for {len(missing)} class(es) with no items and no predictions"
        )
    return ClassificationMetrics(
        labels=labels,
        accuracy=accuracy,
        macro_f1=macro,
        weighted_f1=weighted,
        per_class_f1=per_class,
        support={label: int(support[i]) for i, label in enumerate(labels)},
        confusion=confusion,
        n=n,
        undefined=undefined,
    )


# --------------------------------------------------------------------------------------------
# Ranking
# --------------------------------------------------------------------------------------------


@dataclass
class RankingMetrics:
    """Ranking quality over a set of queries.

    - ``recall@k``: fraction of queries with at least one relevant item in the top k (the usual
      CLIP retrieval "recall@k"; with one target product per query it is the hit rate).
    - ``precision@k``: mean over queries of (relevant items in the top k) / k.
    - ``mrr``: mean over queries of 1 / rank of the first relevant item.

    Queries without any relevant item cannot be scored: they are left out and counted in
    ``n_skipped``; if no query can be scored every metric is None with a reason.
    ``first_rank`` (1-based, per scored query) lets callers draw recall@k curves.
    """

    values: dict[str, float | None]
    n_queries: int
    n_skipped: int
    first_rank: np.ndarray
    ties: Ties
    undefined: dict[str, str] = field(default_factory=dict)

    def recall_curve(self, ks: Sequence[int]) -> list[float | None]:
        """recall@k for every k in ``ks`` (None when no query could be scored)."""
        if self.first_rank.size == 0:
            return [None for _ in ks]
        return [float(np.mean(self.first_rank <= k)) for k in ks]


def _relevance_matrix(
    relevant: np.ndarray | Sequence[Sequence[int]], shape: tuple[int, int]
) -> np.ndarray:
    if isinstance(relevant, np.ndarray) and relevant.dtype == bool:
        if relevant.shape != shape:
            raise ValueError(f"relevance mask has shape {relevant.shape}, scores {shape}")
        return relevant
    n_queries, n_items = shape
    if len(relevant) != n_queries:
        raise ValueError(f"{len(relevant)} relevance sets for {n_queries} queries")
    mask = np.zeros(shape, dtype=bool)
    for q, items in enumerate(relevant):
        idx = np.asarray(list(items), dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= n_items):
            raise ValueError(f"query {q}: relevant index out of range 0..{n_items - 1}")
        mask[q, idx] = True
    return mask


def first_relevant_rank(
    scores: np.ndarray, relevant: np.ndarray, ties: Ties = "pessimistic"
) -> np.ndarray:
    """1-based rank of the best-ranked relevant item per query (0 where none is relevant).

    Pessimistic: 1 + number of non-relevant items scoring >= the best relevant score.
    Optimistic: 1 + number of non-relevant items scoring > it.
    """
    has_rel = relevant.any(axis=1)
    best = np.where(relevant, scores, -np.inf).max(axis=1)
    if ties == "pessimistic":
        ahead = (scores >= best[:, None]) & ~relevant
    elif ties == "optimistic":
        ahead = (scores > best[:, None]) & ~relevant
    else:
        raise ValueError(f"ties must be 'pessimistic' or 'optimistic', not {ties!r}")
    rank = 1 + ahead.sum(axis=1)
    return np.where(has_rel, rank, 0)


def relevant_in_top_k(
    scores: np.ndarray, relevant: np.ndarray, k: int, ties: Ties = "pessimistic"
) -> np.ndarray:
    """Number of relevant items among the top k of each query, ties broken as documented."""
    n_items = scores.shape[1]
    k = min(k, n_items)
    # The k-th highest score is the threshold: items above it are surely in the top k, items
    # equal to it fill the remaining slots (non-relevant first when pessimistic).
    kth = -np.partition(-scores, k - 1, axis=1)[:, k - 1]
    above = scores > kth[:, None]
    equal = scores == kth[:, None]
    slots = k - above.sum(axis=1)
    rel_above = (above & relevant).sum(axis=1)
    rel_equal = (equal & relevant).sum(axis=1)
    nonrel_equal = (equal & ~relevant).sum(axis=1)
    taken = np.clip(slots - nonrel_equal, 0, None) if ties == "pessimistic" else slots
    return rel_above + np.minimum(taken, rel_equal)


def ranking_metrics(
    scores: np.ndarray,
    relevant: np.ndarray | Sequence[Sequence[int]],
    recall_ks: Sequence[int] = (1, 5, 10),
    precision_ks: Sequence[int] = (5, 10),
    ties: Ties = "pessimistic",
    exclude: np.ndarray | None = None,
    chunk_size: int = 1024,
) -> RankingMetrics:
    """Recall@k, precision@k and MRR of a (queries x items) score matrix.

    ``relevant`` is a boolean mask of the same shape or one sequence of item indices per query.
    ``exclude`` (boolean mask, same shape) removes items from a query's candidates altogether,
    e.g. the query image itself in image-to-image retrieval.
    Scores must be finite; higher is better.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2:
        raise ValueError(f"scores must be 2-D (queries x items), got shape {scores.shape}")
    if not np.all(np.isfinite(scores)):
        raise ValueError("scores contain NaN or infinite values")
    mask = _relevance_matrix(relevant, scores.shape)
    if exclude is not None:
        exclude = np.asarray(exclude, dtype=bool)
        if exclude.shape != scores.shape:
            raise ValueError(f"exclude mask has shape {exclude.shape}, scores {scores.shape}")
        mask = mask & ~exclude
    n_queries, n_items = scores.shape
    recall_ks = [int(k) for k in recall_ks]
    precision_ks = [int(k) for k in precision_ks]
    if any(k <= 0 for k in [*recall_ks, *precision_ks]):
        raise ValueError("k must be positive")

    ranks: list[np.ndarray] = []
    hits: dict[int, list[np.ndarray]] = {k: [] for k in precision_ks}
    for start in range(0, n_queries, chunk_size):
        s = scores[start : start + chunk_size]
        m = mask[start : start + chunk_size]
        if exclude is not None:
            # Excluded items rank below everything and are never relevant.
            s = np.where(exclude[start : start + chunk_size], -np.inf, s)
        keep = m.any(axis=1)
        s, m = s[keep], m[keep]
        if not s.shape[0]:
            continue
        ranks.append(first_relevant_rank(s, m, ties))
        for k in precision_ks:
            hits[k].append(relevant_in_top_k(s, m, k, ties))

    first = np.concatenate(ranks) if ranks else np.zeros(0, dtype=np.int64)
    n_scored = int(first.size)
    values: dict[str, float | None] = {}
    undefined: dict[str, str] = {}
    names = [f"recall@{k}" for k in recall_ks] + [f"precision@{k}" for k in precision_ks] + ["mrr"]
    if n_scored == 0:
        reason = "no query has a relevant item" if n_queries else "no queries"
        for name in names:
            values[name] = None
            undefined[name] = reason
    else:
        for k in recall_ks:
            values[f"recall@{k}"] = float(np.mean(first <= k))
        for k in precision_ks:
            if k > n_items:
                values[f"precision@{k}"] = None
                undefined[f"precision@{k}"] = f"k={k} exceeds the {n_items} candidates"
            else:
                values[f"precision@{k}"] = float(np.mean(np.concatenate(hits[k]) / k))
        values["mrr"] = float(np.mean(1.0 / first))
    return RankingMetrics(
        values=values,
        n_queries=n_queries,
        n_skipped=n_queries - n_scored,
        first_rank=first,
        ties=ties,
        undefined=undefined,
    )
