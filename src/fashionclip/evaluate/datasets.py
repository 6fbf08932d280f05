"""Evaluation datasets: a registry of what each dataset offers, and the class lists built from it.

A dataset is registered once with :func:`register_dataset`: its splits, how a split is loaded
(``load(split, data_dir) -> EvalData``), which tasks it supports and which label columns
("targets") zero-shot and linear-probe classification score. The runner loops over the selected
datasets' specs; it has no per-dataset branch. Built in, in report order:

- ``kagl``: KAGL canonical split; zero-shot and linear probe on six attributes, retrieval.
- ``fashion-mnist``: the official Fashion-MNIST files; zero-shot and linear probe.
- ``ccp-garments``: street-photo garment crops (CCP, 18 classes); zero-shot and linear probe.
  Not in the default selection (``fashionclip evaluate --datasets ccp-garments``).

The loaders live in :mod:`fashionclip.evaluate.loaders` and are re-exported here.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from fashionclip.data.kagl import default_data_dir
from fashionclip.errors import FashionCLIPError
from fashionclip.evaluate.loaders import (
    FASHION_MNIST_CLASSES,
    KAGL_ATTRIBUTES,
    CcpGarments,
    FashionMnist,
    KaglSplit,
    load_ccp_garments,
    load_fashion_mnist,
    load_kagl,
    write_idx_gz,
)

#: Every task the runner knows, in report order.
TASKS = ("zero-shot", "linear-probe", "retrieval")
CLASSIFICATION_TASKS = ("zero-shot", "linear-probe")

__all__ = [
    "FASHION_MNIST_CLASSES",
    "KAGL_ATTRIBUTES",
    "TASKS",
    "CcpGarments",
    "DatasetSpec",
    "EvalData",
    "FashionMnist",
    "KaglSplit",
    "LabelSet",
    "build_label_set",
    "dataset_names",
    "default_data_dir",
    "default_datasets",
    "duplicate_groups",
    "get_dataset",
    "load_ccp_garments",
    "load_fashion_mnist",
    "load_kagl",
    "register_dataset",
    "stable_key",
    "write_idx_gz",
]


class EvalData(Protocol):
    """One loaded split, as the runner uses it."""

    @property
    def split(self) -> str: ...

    def __len__(self) -> int: ...

    def sample(self, limit: int | None, seed: int = 0) -> Any:
        """A seeded subset of ``limit`` items (all if None), of the same type."""
        ...

    def encoding_inputs(self) -> tuple[Sequence[Any], list[str]]:
        """Images (paths or PIL images) and one stable embedding-cache key per item."""
        ...

    def label_values(self, target: str) -> list[str]:
        """One class value per item for label column ``target``."""
        ...


#: ``describe(test, train_or_None, limit, probe_train_size) -> data notes`` for the report.
Describe = Callable[[Any, Any, "int | None", int], list[str]]


@dataclass(frozen=True)
class DatasetSpec:
    """What the runner needs to know about one dataset (see :func:`register_dataset`)."""

    name: str
    title: str
    load: Callable[[str, Path], EvalData]
    tasks: tuple[str, ...]
    splits: tuple[str, ...]
    targets: tuple[str, ...]
    test_split: str = "test"
    train_split: str = "train"
    attribute_targets: bool = False
    default: bool = False
    describe: Describe | None = None
    summary: str = ""

    def supports(self, task: str) -> bool:
        return task in self.tasks

    def label_set_name(self, target: str) -> str:
        """The ``dataset`` column of its classification results: ``kagl-test/articleType``."""
        base = f"{self.name}-{self.test_split}"
        return f"{base}/{target}" if self.attribute_targets else base

    def notes(self, test: Any, train: Any, limit: int | None, probe_train_size: int) -> list[str]:
        """Report lines describing the data used (size, sampling)."""
        if self.describe is not None:
            return self.describe(test, train, limit, probe_train_size)
        notes = [
            f"{self.title} {self.test_split} split: {len(test)} items"
            + (f" (seeded sample, --limit {limit})" if limit else "")
            + (f"; {self.summary}" if self.summary else "")
        ]
        if train is not None:
            notes.append(
                f"{self.title} linear-probe training set: {len(train)} items (seeded sample of "
                f"the {self.train_split} split, probe train size {probe_train_size})"
            )
        return notes


_REGISTRY: dict[str, DatasetSpec] = {}


def register_dataset(
    name: str,
    *,
    load: Callable[[str, Path], EvalData],
    tasks: Sequence[str],
    splits: Sequence[str] = ("train", "test"),
    targets: Sequence[str] = ("label",),
    title: str | None = None,
    test_split: str = "test",
    train_split: str = "train",
    attribute_targets: bool = False,
    default: bool = False,
    describe: Describe | None = None,
    summary: str = "",
    replace: bool = False,
) -> DatasetSpec:
    """Make dataset ``name`` selectable (``EvaluationConfig.datasets``, ``--datasets``).

    ``load(split, data_dir)`` returns an :class:`EvalData`; ``targets`` are the label columns
    classified (one result row each when ``attribute_targets``, chosen with ``--attributes``;
    otherwise the single target is named after the dataset). ``test_split`` is scored,
    ``train_split`` trains the linear probe. ``default`` datasets run when none is chosen.
    The report's data notes come from ``describe(test, train, limit, probe_train_size)``, or
    name the split sizes followed by ``summary``.
    """
    unknown = sorted(set(tasks) - set(TASKS))
    if unknown or not tasks:
        raise ValueError(f"{name}: unknown task(s) {unknown}; choose from {', '.join(TASKS)}")
    if test_split not in splits or ("linear-probe" in tasks and train_split not in splits):
        raise ValueError(f"{name}: test/train split not among the splits {list(splits)}")
    if not targets and any(t in CLASSIFICATION_TASKS for t in tasks):
        raise ValueError(f"{name}: classification needs at least one target")
    if name in _REGISTRY and not replace:
        raise ValueError(f"dataset {name!r} is already registered")
    spec = DatasetSpec(
        name=name,
        title=title or name,
        load=load,
        tasks=tuple(t for t in TASKS if t in tasks),
        splits=tuple(splits),
        targets=tuple(targets),
        test_split=test_split,
        train_split=train_split,
        attribute_targets=attribute_targets,
        default=default,
        describe=describe,
        summary=summary,
    )
    _REGISTRY[name] = spec
    return spec


def dataset_names() -> tuple[str, ...]:
    """Registered dataset names, in registration (report) order."""
    return tuple(_REGISTRY)


def default_datasets() -> tuple[str, ...]:
    """The datasets evaluated when none is chosen."""
    return tuple(name for name, spec in _REGISTRY.items() if spec.default)


def get_dataset(name: str) -> DatasetSpec:
    """The spec of a registered dataset; a clear error listing the names otherwise."""
    spec = _REGISTRY.get(name)
    if spec is None:
        raise FashionCLIPError(
            f"unknown dataset {name!r}; choose from {', '.join(dataset_names())}"
        )
    return spec


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


# --------------------------------------------------------------------------------------------
# Built-in datasets
# --------------------------------------------------------------------------------------------


def _describe_kagl(
    test: KaglSplit, train: KaglSplit | None, limit: int | None, probe_train_size: int
) -> list[str]:
    groups = duplicate_groups(test.image_sha256)
    dup = sum(1 for g in groups if len(g) > 1)
    by_name: dict[str, set[str]] = {}
    for name, sha in zip(test.names, test.image_sha256, strict=True):
        by_name.setdefault(name, set()).add(sha)
    ambiguous = sum(1 for name in test.names if len(by_name[name]) > 1)
    notes = [
        f"KAGL test split: {len(test)} products"
        + (f" (seeded sample, --limit {limit})" if limit else "")
        + f"; {dup} of them share a byte-identical image with another test product "
        f"(counted as the same product in retrieval); {ambiguous} product-name queries "
        "are shared with a product whose image differs (no model can rank both first)"
    ]
    if train is not None:
        notes.append(
            f"KAGL linear-probe training set: {len(train)} products "
            f"(seeded sample of the train split, probe train size {probe_train_size})"
        )
    return notes


def _describe_fashion_mnist(
    test: FashionMnist, train: FashionMnist | None, limit: int | None, probe_train_size: int
) -> list[str]:
    notes = [
        f"Fashion-MNIST test set: {len(test)} images"
        + (f" (seeded sample, --limit {limit})" if limit else "")
        + "; 28x28 grayscale replicated to RGB, resized by each model's image processor"
    ]
    if train is not None:
        notes.append(
            f"Fashion-MNIST linear-probe training set: {len(train)} "
            "images (seeded sample of the official train set)"
        )
    return notes


register_dataset(
    "kagl",
    title="KAGL",
    load=load_kagl,
    tasks=TASKS,
    splits=("train", "val", "test"),
    targets=KAGL_ATTRIBUTES,
    attribute_targets=True,
    default=True,
    describe=_describe_kagl,
)
register_dataset(
    "fashion-mnist",
    title="Fashion-MNIST",
    load=load_fashion_mnist,
    tasks=CLASSIFICATION_TASKS,
    splits=("train", "test"),
    targets=("label",),
    default=True,
    describe=_describe_fashion_mnist,
)
register_dataset(
    "ccp-garments",
    title="CCP garments",
    load=load_ccp_garments,
    tasks=CLASSIFICATION_TASKS,
    splits=("train", "val", "test"),
    targets=("class",),
    summary="street-photo crops whose labelled garment dominates the crop (is_dominant = 1); "
    "split by source photo",
)

#: The built-in dataset names (``dataset_names()`` also lists later registrations).
DATASETS = dataset_names()
#: The datasets evaluated when none is chosen.
DEFAULT_DATASETS = default_datasets()
