"""Baselines that share the result tables with the models.

- ``majority``: every item gets the most frequent class *of the test labels* (an oracle choice
  of the constant, so it is an upper bound for any constant classifier).
- ``random``: :class:`RandomEmbeddingModel`, seeded random unit vectors of the evaluated model's
  dimension (not a randomly initialised network), one fixed vector per distinct input: it gives
  chance-level figures for every task.
- ``bm25``: BM25 (bm25s, Lucene variant, English stop words) over each product's text (name and
  attributes) for text-to-image retrieval.
- ``hybrid``: reciprocal rank fusion of BM25 and a model's vector ranking.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from fashionclip.index.hybrid import RRF_K  # the one RRF constant (catalog search uses it too)


def majority_class(labels: Sequence[str]) -> str:
    """Most frequent label (ties: the alphabetically first)."""
    if not labels:
        raise ValueError("no labels")
    counts = Counter(labels)
    best = max(counts.values())
    return min(label for label, n in counts.items() if n == best)


@dataclass(frozen=True)
class RandomIdentity:
    name: str
    kind: str
    embedding_dim: int
    fingerprint: str


class RandomEmbeddingModel:
    """Model-shaped baseline: a seeded random unit vector per distinct image or text.

    The vector depends only on (seed, content): an image path's bytes on disk, a PIL image's
    pixels, a text's characters. Byte-identical images therefore get identical vectors.
    """

    def __init__(self, dim: int = 512, seed: int = 0) -> None:
        if dim <= 0:
            raise ValueError("dim must be positive")
        self.dim = dim
        self.seed = seed
        self.embedding_dim = dim
        self.identity = RandomIdentity(
            name="random", kind="random", embedding_dim=dim, fingerprint=f"random-d{dim}-s{seed}"
        )

    def _vector(self, kind: str, payload: bytes) -> np.ndarray:
        digest = hashlib.sha256(f"{self.seed}:{kind}:".encode() + payload).digest()
        rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
        v = rng.standard_normal(self.dim)
        return (v / np.linalg.norm(v)).astype(np.float32)

    @staticmethod
    def _image_bytes(image: Any) -> bytes:
        if isinstance(image, Image.Image):
            buffer = io.BytesIO()
            buffer.write(f"{image.mode}{image.size}".encode())
            buffer.write(image.tobytes())
            return buffer.getvalue()
        if isinstance(image, (bytes, bytearray, memoryview)):
            return bytes(image)
        with open(os.fspath(image), "rb") as handle:
            return handle.read()

    def encode_images(
        self, images: Sequence[Any], batch_size: int = 32, show_progress: bool = False
    ) -> np.ndarray:
        rows = [self._vector("image", self._image_bytes(im)) for im in images]
        return np.stack(rows) if rows else np.zeros((0, self.dim), np.float32)

    def encode_text(
        self, texts: Sequence[str], batch_size: int = 256, show_progress: bool = False
    ) -> np.ndarray:
        rows = [self._vector("text", t.encode("utf-8")) for t in texts]
        return np.stack(rows) if rows else np.zeros((0, self.dim), np.float32)


class BM25Scorer:
    """BM25 scores of text queries against a fixed set of documents (bm25s)."""

    def __init__(self, documents: Sequence[str], stopwords: str = "en") -> None:
        import bm25s

        self._bm25s = bm25s
        self.stopwords = stopwords
        tokens = bm25s.tokenize(list(documents), stopwords=stopwords, show_progress=False)
        self.vocab = set(tokens.vocab)
        self.n_documents = len(documents)
        self.retriever = bm25s.BM25()
        self.retriever.index(tokens, show_progress=False)

    def scores(self, queries: Sequence[str]) -> np.ndarray:
        """(queries x documents) BM25 scores; a query with no known word scores 0 everywhere."""
        tokenized = self._bm25s.tokenize(
            list(queries), stopwords=self.stopwords, show_progress=False, return_ids=False
        )
        out = np.zeros((len(queries), self.n_documents), dtype=np.float64)
        for q, words in enumerate(tokenized):
            known = [w for w in words if w in self.vocab]
            if known:
                out[q] = self.retriever.get_scores(known)
        return out


def reciprocal_rank_fusion(score_matrices: Sequence[np.ndarray], k: int = RRF_K) -> np.ndarray:
    """Fuse rankings: sum over systems of 1 / (k + rank), rank 1-based per query row.

    Tied scores share the best rank of their group ("min" ranking), so no system's ties are
    broken arbitrarily before the fusion.
    """
    from scipy.stats import rankdata

    if not score_matrices:
        raise ValueError("nothing to fuse")
    fused = np.zeros_like(np.asarray(score_matrices[0], dtype=np.float64))
    for scores in score_matrices:
        ranks = rankdata(-np.asarray(scores, dtype=np.float64), method="min", axis=1)
        fused += 1.0 / (k + ranks)
    return fused
