"""Fixtures of the index tests: synthetic catalogs and a fake image model (no torch)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from fashionclip.index import Catalog

DIM = 16


def clustered(n: int, dim: int = DIM, seed: int = 0, clusters: int = 12) -> np.ndarray:
    """``n`` unit rows around ``clusters`` random centres."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim))
    rows = centres[rng.integers(0, clusters, size=n)] + 0.3 * rng.normal(size=(n, dim))
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


@dataclass
class _Failure:
    index: int
    reason: str


@dataclass
class _Encoding:
    embeddings: np.ndarray
    ok_indices: list[int]
    failures: list[_Failure] = field(default_factory=list)


class FakeImageModel:
    """Embeds an image file as a vector seeded by its bytes; sleeps ``delay`` s per call."""

    def __init__(self, dim: int = DIM, delay: float = 0.0) -> None:
        self.identity = {"name": "fake", "kind": "test", "embedding_dim": dim, "fingerprint": "f"}
        self.dim = dim
        self.delay = delay
        self.calls = 0

    def _vector(self, path: str) -> np.ndarray:
        seed = int.from_bytes(Path(path).read_bytes()[:8].ljust(8, b"\0"), "little")
        return np.random.default_rng(seed).normal(size=self.dim).astype(np.float32)

    def try_encode_images(self, images: list[str], batch_size: int = 32) -> _Encoding:
        self.calls += 1
        time.sleep(self.delay)
        ok, rows, failures = [], [], []
        for i, path in enumerate(images):
            if Path(path).read_bytes().startswith(b"bad"):
                failures.append(_Failure(i, "not an image"))
            else:
                ok.append(i)
                rows.append(self._vector(path))
        embeddings = np.stack(rows) if rows else np.zeros((0, self.dim), np.float32)
        return _Encoding(embeddings, ok, failures)

    def encode_text(self, text: str) -> np.ndarray:
        return np.ones(self.dim, dtype=np.float32)

    def encode_images(self, image: object) -> np.ndarray:
        return self._vector(str(image))


@pytest.fixture
def fake_model() -> type[FakeImageModel]:
    """The fake image model class (call it with ``dim``/``delay``)."""
    return FakeImageModel


@pytest.fixture
def vector_catalog(tmp_path):
    """A model-less catalog of 300 clustered vectors with two metadata columns."""
    identity = {"name": "synthetic", "kind": "test", "embedding_dim": DIM, "fingerprint": "s"}
    cat = Catalog.create(tmp_path / "vectors", identity)
    vectors = clustered(300)
    meta = [{"half": "ab"[i % 2], "tenth": i % 10} for i in range(300)]
    cat.add_embeddings([f"v{i}" for i in range(300)], vectors, meta)
    yield cat, vectors
    cat.close()
