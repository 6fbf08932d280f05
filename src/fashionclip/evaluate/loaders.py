"""Evaluation data loaders: the KAGL canonical split, Fashion-MNIST and CCP garment crops.

KAGL (Fashion Product Images, small) lives in ``<data>/kagl``: ``styles.csv`` (22 malformed lines
whose product name holds unquoted commas; we parse every line with ``line.split(',', 9)``, so the
name keeps its commas), ``images/<id>.jpg`` and ``splits.csv`` (id, split, image_sha256); both
tables are read by :mod:`fashionclip.data.kagl`.
Fashion-MNIST lives in ``<data>/fashion_mnist`` as the official gzip IDX files.
CCP garments live in ``<data>/ccp_garments``: ``<class>/<file>.jpg`` crops of street photos,
``manifest.csv`` (class, ``is_dominant``, ...) and ``splits.csv`` (file, split by source photo).

Every split object offers what the runner needs (:class:`fashionclip.evaluate.datasets.EvalData`):
``split``, ``len()``, ``sample(limit, seed)``, ``encoding_inputs()`` (images and cache keys) and
``label_values(target)``.

The data folder is ``$FASHIONCLIP_DATA_DIR`` or ``../shared/data`` next to the repository.
"""

from __future__ import annotations

import csv
import gzip
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
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


def sample_indices(n: int, limit: int | None, seed: int = 0) -> np.ndarray | None:
    """Sorted seeded random indices of ``limit`` of ``n`` items; None when all are kept."""
    if limit is None or limit >= n:
        return None
    if limit <= 0:
        raise FashionCLIPError(f"limit must be positive, got {limit}")
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=limit, replace=False))


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
        idx = sample_indices(len(self), limit, seed)
        return self if idx is None else self.subset(idx.tolist())

    def encoding_inputs(self) -> tuple[list[Path], list[str]]:
        """Image paths and cache keys (id and image hash: a changed image is re-encoded)."""
        keys = [f"{i}-{h[:16]}" for i, h in zip(self.ids, self.image_sha256, strict=True)]
        return self.image_paths, keys

    def label_values(self, target: str) -> list[str]:
        """One value of attribute ``target`` per product."""
        return self.attributes[target]

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

    @cached_property
    def _rgb_images(self) -> list[Image.Image]:
        return self.images()

    def encoding_inputs(self) -> tuple[list[Image.Image], list[str]]:
        """The RGB images (built once per object) and their cache keys."""
        return self._rgb_images, self.keys

    def label_values(self, target: str = "label") -> list[str]:
        """Class names of the items (the only target is ``label``)."""
        return self.label_names

    def sample(self, limit: int | None, seed: int = 0) -> FashionMnist:
        """A seeded random subset of ``limit`` items (in file order); all if None."""
        idx = sample_indices(len(self), limit, seed)
        if idx is None:
            return self
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
# CCP garments
# --------------------------------------------------------------------------------------------


@dataclass
class CcpGarments:
    """Garment crops of street photos (Clothing Co-Parsing), one split, in ``splits.csv`` order.

    ``files`` are paths relative to the folder (``<class>/<name>.jpg``); ``classes`` the garment
    class of each crop.
    """

    split: str
    files: list[str]
    classes: list[str]
    root: Path

    def __len__(self) -> int:
        return len(self.files)

    @property
    def image_paths(self) -> list[Path]:
        return [self.root / f for f in self.files]

    def sample(self, limit: int | None, seed: int = 0) -> CcpGarments:
        """A seeded random subset of ``limit`` crops (kept in split order); all if None."""
        idx = sample_indices(len(self), limit, seed)
        if idx is None:
            return self
        files = [self.files[i] for i in idx.tolist()]
        return CcpGarments(self.split, files, [self.classes[i] for i in idx.tolist()], self.root)

    def encoding_inputs(self) -> tuple[list[Path], list[str]]:
        """Image paths (decoded by the model with ``load_image``) and their cache keys."""
        return self.image_paths, list(self.files)

    def label_values(self, target: str = "class") -> list[str]:
        """Garment class of each crop (the only target is ``class``)."""
        return self.classes


def _read_csv(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        raise FashionCLIPError(
            f"CCP garments file not found: {path} (set FASHIONCLIP_DATA_DIR or pass --data-dir "
            "to the folder holding ccp_garments/)"
        )
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def load_ccp_garments(
    split: str = "test", data_dir: Path | str | None = None, dominant_only: bool = True
) -> CcpGarments:
    """One split (train / val / test, by source photo) of the CCP garment crops.

    ``dominant_only`` keeps the crops whose labelled garment has the most pixels in the crop
    (``is_dominant == 1`` in the manifest); the others mostly show another garment on top.
    """
    root = (Path(data_dir) if data_dir is not None else default_data_dir()) / "ccp_garments"
    splits = {row["file"]: row["split"] for row in _read_csv(root / "splits.csv")}
    manifest = {row["file"]: row for row in _read_csv(root / "manifest.csv")}
    if split not in set(splits.values()):
        raise FashionCLIPError(f"{root / 'splits.csv'}: no crops in split {split!r}")
    files: list[str] = []
    classes: list[str] = []
    for file, file_split in splits.items():
        if file_split != split:
            continue
        row = manifest.get(file)
        if row is None:
            raise FashionCLIPError(f"{root / 'manifest.csv'}: no row for {file}")
        if dominant_only and row.get("is_dominant", "1") != "1":
            continue
        files.append(file)
        classes.append(row["class"])
    return CcpGarments(split, files, classes, root)
