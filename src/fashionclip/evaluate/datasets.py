"""Evaluation data: the KAGL canonical split and Fashion-MNIST.

KAGL (Fashion Product Images, small) lives in ``<data>/kagl``: ``styles.csv`` (22 malformed lines
whose product name holds unquoted commas; we parse every line with ``line.split(',', 9)``, so the
name keeps its commas), ``images/<id>.jpg`` and ``splits.csv`` (id, split, image_sha256); both
tables are read by :mod:`fashionclip.data.kagl`.
Fashion-MNIST lives in ``<data>/fashion_mnist`` as the official gzip IDX files.

The data folder is ``$FASHIONCLIP_DATA_DIR`` or ``../shared/data`` next to the repository.
"""

from __future__ import annotations

import gzip
import hashlib
import struct
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from fashionclip.data.kagl import (
    KAGL_COLUMNS,
    default_data_dir,
    read_kagl_splits,
    read_kagl_styles,
)
from fashionclip.errors import FashionCLIPError

#: Attributes scored by zero-shot classification and linear probes (the FashionCLIP paper's set).
KAGL_ATTRIBUTES = ("articleType", "subCategory", "masterCategory", "baseColour", "gender", "usage")

#: Fashion-MNIST class names as published by Zalando (label index -> name).
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)


# --------------------------------------------------------------------------------------------
# KAGL
# --------------------------------------------------------------------------------------------


@dataclass
class KaglSplit:
    """The products of one KAGL split, in ``splits.csv`` order, with their attributes."""

    split: str
    ids: list[str]
    image_paths: list[Path]
    image_sha256: list[str]
    attributes: dict[str, list[str]]  # column -> one value per product
    root: Path

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def names(self) -> list[str]:
        return self.attributes["productDisplayName"]

    def subset(self, indices: Sequence[int]) -> KaglSplit:
        idx = list(indices)
        return KaglSplit(
            split=self.split,
            ids=[self.ids[i] for i in idx],
            image_paths=[self.image_paths[i] for i in idx],
            image_sha256=[self.image_sha256[i] for i in idx],
            attributes={k: [v[i] for i in idx] for k, v in self.attributes.items()},
            root=self.root,
        )

    def sample(self, limit: int | None, seed: int = 0) -> KaglSplit:
        """A seeded random subset of ``limit`` products (kept in split order); all if None."""
        if limit is None or limit >= len(self):
            return self
        if limit <= 0:
            raise FashionCLIPError(f"limit must be positive, got {limit}")
        rng = np.random.default_rng(seed)
        return self.subset(sorted(rng.choice(len(self), size=limit, replace=False).tolist()))

    def product_text(self, index: int) -> str:
        """Name and attributes of one product: the document BM25 searches."""
        a = self.attributes
        parts = [a["productDisplayName"][index]]
        parts += [a[c][index] for c in KAGL_COLUMNS[1:-1] if c not in ("year", "season")]
        return " ".join(p for p in parts if p)


def load_kagl(split: str = "test", data_dir: Path | str | None = None) -> KaglSplit:
    """Load one split (train / val / test) of the canonical KAGL split."""
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    kagl = root / "kagl"
    splits = read_kagl_splits(
        kagl, hint=" (set FASHIONCLIP_DATA_DIR or pass --data-dir to the folder holding kagl/)"
    )
    styles = read_kagl_styles(kagl).rows
    ids = splits.ids(split)
    if not ids:
        raise FashionCLIPError(f"{splits.path}: no products in split {split!r}")
    shas = [splits.entries[i][1] for i in ids]
    missing = [i for i in ids if i not in styles]
    if missing:
        raise FashionCLIPError(
            f"{len(missing)} ids of split {split!r} have no row in styles.csv, e.g. {missing[:3]}"
        )
    attributes = {c: [styles[i][c] for i in ids] for c in KAGL_COLUMNS[1:]}
    return KaglSplit(
        split=split,
        ids=ids,
        image_paths=[kagl / "images" / f"{i}.jpg" for i in ids],
        image_sha256=shas,
        attributes=attributes,
        root=kagl,
    )


# --------------------------------------------------------------------------------------------
# Fashion-MNIST
# --------------------------------------------------------------------------------------------


@dataclass
class FashionMnist:
    """Fashion-MNIST images (N, 28, 28) uint8 with integer labels; ``keys`` name each item."""

    split: str
    pixels: np.ndarray
    labels: np.ndarray
    indices: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def __post_init__(self) -> None:
        if self.indices.size == 0:
            self.indices = np.arange(len(self.labels))

    def __len__(self) -> int:
        return int(self.labels.size)

    @property
    def label_names(self) -> list[str]:
        return [FASHION_MNIST_CLASSES[i] for i in self.labels.tolist()]

    @property
    def keys(self) -> list[str]:
        """Stable item keys (the index in the official file) for the embedding cache."""
        return [str(i) for i in self.indices.tolist()]

    def images(self) -> list[Image.Image]:
        """RGB PIL images (the grayscale digit replicated on 3 channels)."""
        return [Image.fromarray(p, mode="L").convert("RGB") for p in self.pixels]

    def sample(self, limit: int | None, seed: int = 0) -> FashionMnist:
        """A seeded random subset of ``limit`` items (in file order); all if None."""
        if limit is None or limit >= len(self):
            return self
        if limit <= 0:
            raise FashionCLIPError(f"limit must be positive, got {limit}")
        rng = np.random.default_rng(seed)
        idx = np.sort(rng.choice(len(self), size=limit, replace=False))
        return FashionMnist(self.split, self.pixels[idx], self.labels[idx], self.indices[idx])


def _read_idx(path: Path, magic: int) -> np.ndarray:
    if not path.is_file():
        raise FashionCLIPError(f"Fashion-MNIST file not found: {path}")
    with gzip.open(path, "rb") as handle:
        data = handle.read()
    got, count = struct.unpack(">II", data[:8])
    if got != magic:
        raise FashionCLIPError(f"{path}: IDX magic {got}, expected {magic}")
    if magic == 2051:
        rows, cols = struct.unpack(">II", data[8:16])
        array = np.frombuffer(data, dtype=np.uint8, offset=16)
        if array.size != count * rows * cols:
            raise FashionCLIPError(
                f"{path}: truncated ({array.size} of {count * rows * cols} bytes)"
            )
        return array.reshape(count, rows, cols)
    array = np.frombuffer(data, dtype=np.uint8, offset=8)
    if array.size != count:
        raise FashionCLIPError(f"{path}: truncated ({array.size} of {count} labels)")
    return array


def load_fashion_mnist(split: str = "test", data_dir: Path | str | None = None) -> FashionMnist:
    """The official Fashion-MNIST train (60,000) or test (10,000) set."""
    root = (Path(data_dir) if data_dir is not None else default_data_dir()) / "fashion_mnist"
    prefix = {"test": "t10k", "train": "train"}.get(split)
    if prefix is None:
        raise FashionCLIPError(f"Fashion-MNIST split must be 'train' or 'test', not {split!r}")
    pixels = _read_idx(root / f"{prefix}-images-idx3-ubyte.gz", 2051)
    labels = _read_idx(root / f"{prefix}-labels-idx1-ubyte.gz", 2049).astype(np.int64)
    if len(pixels) != len(labels):
        raise FashionCLIPError(f"{root}: {len(pixels)} images but {len(labels)} labels")
    if labels.size and labels.max() >= len(FASHION_MNIST_CLASSES):
        raise FashionCLIPError(f"{root}: label {labels.max()} outside 0..9")
    return FashionMnist(split, np.ascontiguousarray(pixels), labels)


def write_idx_gz(path: Path, array: np.ndarray) -> None:
    """Write uint8 images (N, R, C) or labels (N,) as gzip IDX (used by tests and examples)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    if array.ndim == 3:
        header = struct.pack(">IIII", 2051, *array.shape)
    elif array.ndim == 1:
        header = struct.pack(">II", 2049, array.shape[0])
    else:
        raise ValueError("IDX arrays must be (N, R, C) images or (N,) labels")
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.tobytes())


# --------------------------------------------------------------------------------------------
# Label sets
# --------------------------------------------------------------------------------------------


@dataclass
class LabelSet:
    """Classes kept for one attribute, and which classes were dropped and why."""

    attribute: str
    classes: list[str]
    dropped: dict[str, int]  # class -> number of test items (below min_class_size)
    min_class_size: int


def build_label_set(values: Sequence[str], attribute: str, min_class_size: int = 10) -> LabelSet:
    """Classes with at least ``min_class_size`` items in ``values`` (sorted by name).

    Empty values are never a class.
    """
    if min_class_size < 1:
        raise FashionCLIPError(f"min class size must be at least 1, got {min_class_size}")
    counts = Counter(v for v in values if v)
    kept = sorted(c for c, n in counts.items() if n >= min_class_size)
    dropped = {c: n for c, n in sorted(counts.items()) if n < min_class_size}
    return LabelSet(attribute, kept, dropped, min_class_size)


def duplicate_groups(hashes: Sequence[str]) -> list[list[int]]:
    """For each item, the indices of every item with the same image hash (itself included)."""
    by_hash: dict[str, list[int]] = {}
    for i, h in enumerate(hashes):
        by_hash.setdefault(h, []).append(i)
    return [by_hash[h] for h in hashes]


def stable_key(text: str) -> str:
    """A short stable key for a text (embedding cache of prompts and queries)."""
    return hashlib.sha1(text.encode("utf-8")).hexdigest()
