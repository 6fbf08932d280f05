"""Retrieval evaluators: text -> image (and image -> text) and image -> image.

Scores are cosine similarities of normalised embeddings. Every metric follows the tie rule of
:mod:`fashionclip.evaluate.metrics` (pessimistic by default: on equal scores a non-relevant item
is ranked before the relevant one).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fashionclip.errors import FashionCLIPError
from fashionclip.evaluate.encoding import (
    EmbeddingCache,
    EncoderModel,
    encode_images,
    encode_texts,
    require_all_encoded,
)
from fashionclip.evaluate.metrics import RankingMetrics, Ties, ranking_metrics


def _flatten(rankings: dict[str, RankingMetrics]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    undefined: dict[str, str] = {}
    for direction, ranking in rankings.items():
        for name, value in ranking.values.items():
            result[f"{direction}/{name}"] = value
        for name, reason in ranking.undefined.items():
            undefined[f"{direction}/{name}"] = reason
        result[f"{direction}/n_queries"] = ranking.n_queries - ranking.n_skipped
        result[f"{direction}/n_skipped"] = ranking.n_skipped
    result["undefined"] = undefined
    return result


@dataclass
class RetrievalEvaluator:
    """Text-to-image (and image-to-text) retrieval; returns a flat dict of metrics.

    ``relevant[q]`` lists the image indices relevant to query ``q``; by default query ``i`` and
    image ``i`` form a pair (the training loop's validation set of captions and images).
    Image-to-text uses the transposed relevance: the texts whose relevant set holds the image.
    Keys look like ``text_to_image/recall@1``, ``image_to_text/mrr``.

    Use ``evaluator(model)`` to encode and score, or ``evaluator.compute(text_emb, image_emb)``
    with precomputed normalised embeddings (e.g. from a training loop).
    """

    query_texts: Sequence[str]
    images: Sequence[Any] = ()
    relevant: Sequence[Sequence[int]] | None = None
    recall_ks: Sequence[int] = (1, 5, 10)
    precision_ks: Sequence[int] = (5, 10)
    image_to_text: bool = True
    ties: Ties = "pessimistic"
    image_keys: Sequence[str] | None = None
    namespace: str | None = None
    cache: EmbeddingCache | None = None
    batch_size: int = 32
    show_progress: bool = False
    name: str = "retrieval"
    primary_metric: str = "text_to_image/mrr"

    def __post_init__(self) -> None:
        self.query_texts = list(self.query_texts)
        if not self.query_texts:
            raise FashionCLIPError("no retrieval queries")

    def relevance_mask(self, n_images: int) -> np.ndarray:
        """Boolean (queries x images) relevance matrix."""
        n_queries = len(self.query_texts)
        if self.relevant is None:
            if n_images != n_queries:
                raise ValueError(
                    f"paired retrieval needs as many images as texts ({n_images} vs {n_queries})"
                )
            return np.eye(n_queries, dtype=bool)
        if len(self.relevant) != n_queries:
            raise ValueError(f"{len(self.relevant)} relevance sets for {n_queries} queries")
        mask = np.zeros((n_queries, n_images), dtype=bool)
        for q, items in enumerate(self.relevant):
            idx = np.asarray(list(items), dtype=np.int64)
            if idx.size and (idx.min() < 0 or idx.max() >= n_images):
                raise ValueError(f"query {q}: relevant image index out of range")
            mask[q, idx] = True
        return mask

    def __call__(self, model: EncoderModel) -> dict[str, Any]:
        if not len(self.images):
            raise FashionCLIPError("RetrievalEvaluator(model) needs images; or call compute()")
        encoded = encode_images(
            model, self.images, self.image_keys, self.namespace, self.cache,
            self.batch_size, self.show_progress,
        )  # fmt: skip
        # Relevance refers to image positions: a missing image would shift them, so refuse.
        require_all_encoded(encoded, "retrieval")
        text_emb = encode_texts(model, self.query_texts, cache=self.cache)
        return self.compute(text_emb, encoded.embeddings)

    def rankings(self, text_emb: np.ndarray, image_emb: np.ndarray) -> dict[str, RankingMetrics]:
        """The full ranking results per direction (first-relevant ranks for recall curves)."""
        text_emb = np.asarray(text_emb, np.float32)
        image_emb = np.asarray(image_emb, np.float32)
        if text_emb.shape[0] != len(self.query_texts):
            raise ValueError(
                f"{text_emb.shape[0]} text embeddings for {len(self.query_texts)} queries"
            )
        return self.rankings_from_scores(text_emb @ image_emb.T)

    def rankings_from_scores(
        self, scores: np.ndarray, image_to_text: bool | None = None
    ) -> dict[str, RankingMetrics]:
        """Rankings from any (queries x images) score matrix, e.g. BM25 or a fusion."""
        scores = np.asarray(scores, np.float64)
        mask = self.relevance_mask(scores.shape[1])
        out = {
            "text_to_image": ranking_metrics(
                scores, mask, self.recall_ks, self.precision_ks, ties=self.ties
            )
        }
        if self.image_to_text if image_to_text is None else image_to_text:
            out["image_to_text"] = ranking_metrics(
                scores.T, mask.T, self.recall_ks, self.precision_ks, ties=self.ties
            )
        return out

    def compute(self, text_emb: np.ndarray, image_emb: np.ndarray) -> dict[str, Any]:
        """Metrics from precomputed normalised text (queries) and image embeddings."""
        return _flatten(self.rankings(text_emb, image_emb))

    def compute_from_scores(
        self, scores: np.ndarray, image_to_text: bool | None = None
    ) -> dict[str, Any]:
        """Metrics from a score matrix (queries x images); higher is better."""
        return _flatten(self.rankings_from_scores(scores, image_to_text))


def image_to_image_rankings(
    image_emb: np.ndarray,
    groups: Sequence[str],
    recall_ks: Sequence[int] = (1, 5, 10),
    precision_ks: Sequence[int] = (1, 5, 10),
    ties: Ties = "pessimistic",
) -> dict[str, RankingMetrics]:
    """Image-to-image rankings from precomputed embeddings: same group = relevant, self excluded."""
    group_array = np.asarray(list(groups), dtype=object)
    emb = np.asarray(image_emb, np.float32)
    if len(group_array) != len(emb):
        raise ValueError(f"{len(emb)} embeddings for {len(group_array)} groups")
    scores = emb @ emb.T
    codes = np.unique(group_array, return_inverse=True)[1]
    mask = codes[:, None] == codes[None, :]
    exclude = np.eye(len(group_array)).astype(bool)
    return {
        "image_to_image": ranking_metrics(
            scores, mask, recall_ks, precision_ks, ties=ties, exclude=exclude
        )
    }


@dataclass
class ImageRetrievalEvaluator:
    """Image-to-image retrieval: items with the same ``group`` are relevant, the query excluded.

    For KAGL the group is articleType + baseColour. Queries alone in their group have no
    relevant item and are skipped (counted in ``image_to_image/n_skipped``).
    With embeddings at hand, call :func:`image_to_image_rankings` (no images needed).
    """

    images: Sequence[Any]
    groups: Sequence[str]
    recall_ks: Sequence[int] = (1, 5, 10)
    precision_ks: Sequence[int] = (1, 5, 10)
    ties: Ties = "pessimistic"
    image_keys: Sequence[str] | None = None
    namespace: str | None = None
    cache: EmbeddingCache | None = None
    batch_size: int = 32
    show_progress: bool = False
    name: str = "image-retrieval"
    primary_metric: str = "image_to_image/mrr"

    def __call__(self, model: EncoderModel) -> dict[str, Any]:
        encoded = encode_images(
            model, self.images, self.image_keys, self.namespace, self.cache,
            self.batch_size, self.show_progress,
        )  # fmt: skip
        groups = [g for g, ok in zip(self.groups, encoded.ok, strict=True) if ok]
        return self.compute(encoded.embeddings, groups)

    def rankings(
        self, image_emb: np.ndarray, groups: Sequence[str] | None = None
    ) -> dict[str, RankingMetrics]:
        return image_to_image_rankings(
            image_emb,
            self.groups if groups is None else groups,
            self.recall_ks,
            self.precision_ks,
            self.ties,
        )

    def compute(self, image_emb: np.ndarray, groups: Sequence[str] | None = None) -> dict[str, Any]:
        """Metrics from precomputed normalised image embeddings."""
        return _flatten(self.rankings(image_emb, groups))
