"""Encoding with an on-disk embedding cache, so a second run never re-encodes the same images.

Layout: ``<cache_dir>/<model fingerprint>/<namespace>.npy`` (float32, one row per item) next to
``<namespace>.keys.txt`` (one item key per line, same order). A namespace names a dataset
(``kagl-test``, ``fmnist-train``, ``text``); a key names one item within it (a KAGL id with its
image hash, a Fashion-MNIST index, a hash of a text). Lookups encode only the missing keys and
append them, so a ``--limit 500`` run warms the cache for the full run and vice versa.
The fingerprint is a hash of the weights: the same weights loaded from another folder share
the cache. Images that fail to decode are not cached; they are reported on every run.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from fashionclip.errors import FashionCLIPError, ImageDecodeError


class EncoderModel(Protocol):
    """What the evaluators need from a model (see docs/architecture.md).

    The encoders return (n, D) L2-normalised rows (anything ``np.asarray`` turns into them).
    """

    @property
    def identity(self) -> Any: ...

    def encode_images(
        self, images: Sequence[Any], batch_size: int = ..., show_progress: bool = ...
    ) -> Any: ...

    def encode_text(
        self, texts: Sequence[str], batch_size: int = ..., show_progress: bool = ...
    ) -> Any: ...


@dataclass
class EncodedImages:
    """Embeddings of the images that decoded, and which ones did not."""

    embeddings: np.ndarray  # (n_ok, D), rows in input order
    ok: np.ndarray  # (n,) bool
    failures: list[tuple[int, str]] = field(default_factory=list)  # (input index, reason)


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)[:120] or "_"


class EmbeddingCache:
    """Per-model, per-namespace cache of embeddings keyed by item."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def _paths(self, fingerprint: str, namespace: str) -> tuple[Path, Path]:
        folder = self.root / _safe_name(fingerprint)
        name = _safe_name(namespace)
        return folder / f"{name}.npy", folder / f"{name}.keys.txt"

    def load(self, fingerprint: str, namespace: str) -> dict[str, np.ndarray]:
        """Everything cached for this model and namespace, as key -> embedding row."""
        arrays, keys_path = self._paths(fingerprint, namespace)
        if not arrays.is_file() or not keys_path.is_file():
            return {}
        keys = keys_path.read_text(encoding="utf-8").splitlines()
        matrix = np.load(arrays)
        if matrix.ndim != 2 or len(keys) != matrix.shape[0]:
            return {}  # a torn or foreign file: ignore it and re-encode
        return dict(zip(keys, matrix, strict=True))

    def store(self, fingerprint: str, namespace: str, rows: dict[str, np.ndarray]) -> None:
        """Replace the cache file with ``rows`` (written atomically)."""
        arrays, keys_path = self._paths(fingerprint, namespace)
        arrays.parent.mkdir(parents=True, exist_ok=True)
        keys = list(rows)
        for key in keys:
            if "\n" in key:
                raise ValueError("cache keys cannot contain newlines")
        matrix = np.stack([rows[k] for k in keys]).astype(np.float32) if keys else np.zeros((0, 0))
        tmp_arrays = arrays.with_suffix(f".tmp{os.getpid()}.npy")
        tmp_keys = keys_path.with_suffix(f".tmp{os.getpid()}")
        np.save(tmp_arrays, matrix)
        tmp_keys.write_text("\n".join(keys) + ("\n" if keys else ""), encoding="utf-8")
        os.replace(tmp_arrays, arrays)
        os.replace(tmp_keys, keys_path)

    def get_or_encode(
        self,
        fingerprint: str,
        namespace: str,
        keys: Sequence[str],
        encode_missing: Callable[[list[int]], EncodedImages],
    ) -> EncodedImages:
        """Embeddings for ``keys``; ``encode_missing(indices)`` encodes the uncached ones."""
        cached = self.load(fingerprint, namespace)
        missing = [i for i, k in enumerate(keys) if k not in cached]
        failures: list[tuple[int, str]] = []
        if missing:
            fresh = encode_missing(missing)
            ok_missing = [i for i, ok in zip(missing, fresh.ok, strict=True) if ok]
            for i, row in zip(ok_missing, fresh.embeddings, strict=True):
                cached[keys[i]] = np.asarray(row, dtype=np.float32)
            failures = [(missing[j], reason) for j, reason in fresh.failures]
            if ok_missing:
                self.store(fingerprint, namespace, cached)
        ok = np.array([k in cached for k in keys], dtype=bool)
        rows = [cached[k] for k, good in zip(keys, ok, strict=True) if good]
        dim = next(iter(cached.values())).shape[0] if cached else 0
        emb = np.stack(rows).astype(np.float32) if rows else np.zeros((0, dim), np.float32)
        return EncodedImages(emb, ok, failures)


def _encode_images_now(
    model: EncoderModel, images: Sequence[Any], batch_size: int, show_progress: bool
) -> EncodedImages:
    n = len(images)
    if n == 0:
        return EncodedImages(np.zeros((0, 0), np.float32), np.zeros(0, bool), [])
    try_encode = getattr(model, "try_encode_images", None)
    if try_encode is not None:
        result = try_encode(list(images), batch_size=batch_size, show_progress=show_progress)
        ok = np.zeros(n, dtype=bool)
        ok[list(result.ok_indices)] = True
        failures = [(f.index, f.reason) for f in result.failures]
        return EncodedImages(np.asarray(result.embeddings, np.float32), ok, failures)
    emb = model.encode_images(list(images), batch_size=batch_size, show_progress=show_progress)
    return EncodedImages(np.asarray(emb, np.float32).reshape(n, -1), np.ones(n, dtype=bool), [])


def fingerprint_of(model: Any) -> str:
    identity = getattr(model, "identity", None)
    fingerprint = getattr(identity, "fingerprint", None)
    if not fingerprint:
        raise FashionCLIPError("the model has no identity.fingerprint: cannot cache its embeddings")
    return str(fingerprint)


def encode_images(
    model: EncoderModel,
    images: Sequence[Any],
    keys: Sequence[str] | None = None,
    namespace: str | None = None,
    cache: EmbeddingCache | None = None,
    batch_size: int = 32,
    show_progress: bool = False,
) -> EncodedImages:
    """Encode images, through the cache when ``cache``, ``keys`` and ``namespace`` are given.

    ``images`` are paths or PIL images (paths are decoded lazily by the model).
    """
    if cache is None or keys is None or namespace is None:
        return _encode_images_now(model, images, batch_size, show_progress)
    if len(keys) != len(images):
        raise ValueError(f"{len(keys)} keys for {len(images)} images")

    def encode_missing(indices: list[int]) -> EncodedImages:
        return _encode_images_now(model, [images[i] for i in indices], batch_size, show_progress)

    return cache.get_or_encode(fingerprint_of(model), namespace, keys, encode_missing)


def encode_texts(
    model: EncoderModel,
    texts: Sequence[str],
    cache: EmbeddingCache | None = None,
    batch_size: int = 256,
    show_progress: bool = False,
) -> np.ndarray:
    """Encode texts (through the cache, keyed by a hash of each text, when given)."""
    from fashionclip.evaluate.datasets import stable_key

    texts = list(texts)
    if not texts:
        raise FashionCLIPError("no texts to encode")

    def encode_missing(indices: list[int]) -> EncodedImages:
        emb = model.encode_text(
            [texts[i] for i in indices], batch_size=batch_size, show_progress=show_progress
        )
        emb = np.asarray(emb, np.float32).reshape(len(indices), -1)
        return EncodedImages(emb, np.ones(len(indices), dtype=bool), [])

    if cache is None:
        return encode_missing(list(range(len(texts)))).embeddings
    keys = [stable_key(t) for t in texts]
    result = cache.get_or_encode(fingerprint_of(model), "text", keys, encode_missing)
    return result.embeddings


def require_all_encoded(result: EncodedImages, what: str) -> None:
    """Raise when some images failed (for evaluators whose pairing cannot skip items)."""
    if result.failures or not result.ok.all():
        first = result.failures[0][1] if result.failures else "unknown reason"
        raise ImageDecodeError(
            f"{(~result.ok).sum()} {what} image(s) could not be decoded: {first}"
        )
