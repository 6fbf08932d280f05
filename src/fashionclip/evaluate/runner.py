"""The whole benchmark: every model and baseline on every task, written to one folder.

``run_evaluation(EvaluationConfig(models=[...], out_dir=...))`` writes ``results.json``,
``details.json`` (confusion matrices, recall curves), ``report.md`` and ``plots/*.png``.
``fashionclip evaluate`` is a thin wrapper around it.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from fashionclip.errors import FashionCLIPError
from fashionclip.evaluate import report as rep
from fashionclip.evaluate.baselines import (
    RRF_K,
    BM25Scorer,
    RandomEmbeddingModel,
    majority_class,
    reciprocal_rank_fusion,
)
from fashionclip.evaluate.datasets import (
    KAGL_ATTRIBUTES,
    FashionMnist,
    KaglSplit,
    LabelSet,
    build_label_set,
    default_data_dir,
    duplicate_groups,
    load_fashion_mnist,
    load_kagl,
)
from fashionclip.evaluate.encoding import (
    EmbeddingCache,
    EncodedImages,
    EncoderModel,
    encode_images,
    encode_texts,
)
from fashionclip.evaluate.linear_probe import LinearProbeEvaluator
from fashionclip.evaluate.metrics import RankingMetrics, classification_metrics
from fashionclip.evaluate.retrieval import ImageRetrievalEvaluator, RetrievalEvaluator
from fashionclip.evaluate.zero_shot import (
    DEFAULT_TEMPLATES,
    ZeroShotEvaluator,
    check_templates,
    class_embeddings,
    classification_result,
)

TASKS = ("zero-shot", "linear-probe", "retrieval")
DATASETS = ("kagl", "fashion-mnist")
#: Category-to-product query, as in Marqo's fashion benchmark.
DEFAULT_CATEGORY_TEMPLATE = "a photo of {}"
CURVE_KS = (1, 2, 3, 5, 7, 10, 15, 20, 30, 50, 70, 100)


@dataclass
class EvaluationConfig:
    """What to evaluate and where to write it. Paths may be str or Path."""

    #: Folders / hub ids for ``fashionclip.load``; empty means the default (shipped) model.
    models: list[str] = field(default_factory=list)
    out_dir: Path | str = "evaluation"
    tasks: Sequence[str] = TASKS
    datasets: Sequence[str] = DATASETS
    attributes: Sequence[str] = KAGL_ATTRIBUTES
    data_dir: Path | str | None = None  # default: $FASHIONCLIP_DATA_DIR or ../shared/data
    cache_dir: Path | str | None = None  # default: <out_dir>/cache
    limit: int | None = None  # at most this many items from every split used
    probe_train_size: int = 10_000  # training items per linear probe (seeded subsample)
    min_class_size: int = 10  # classes with fewer test items are dropped
    templates: Sequence[str] = DEFAULT_TEMPLATES
    category_template: str = DEFAULT_CATEGORY_TEMPLATE
    probe_C: float = 1.0
    probe_max_iter: int = 1000
    probe_threads: int | None = (
        1  # BLAS/OpenMP threads for the probe fit (see LinearProbeEvaluator)
    )
    baselines: bool = True
    plots: bool = True
    batch_size: int = 64
    device: str | None = None
    allow_pickle: bool = False
    seed: int = 0
    show_progress: bool = True
    command: str | None = None  # recorded in the report

    def validate(self) -> None:
        unknown = sorted(set(self.tasks) - set(TASKS))
        if unknown or not self.tasks:
            raise FashionCLIPError(f"unknown task(s) {unknown}; choose from {', '.join(TASKS)}")
        unknown = sorted(set(self.datasets) - set(DATASETS))
        if unknown or not self.datasets:
            raise FashionCLIPError(
                f"unknown dataset(s) {unknown}; choose from {', '.join(DATASETS)}"
            )
        unknown = sorted(set(self.attributes) - set(KAGL_ATTRIBUTES))
        if unknown:
            raise FashionCLIPError(
                f"unknown KAGL attribute(s) {unknown}; choose from {', '.join(KAGL_ATTRIBUTES)}"
            )
        if self.limit is not None and self.limit <= 0:
            raise FashionCLIPError(f"--limit must be positive, got {self.limit}")
        if self.probe_train_size <= 0:
            raise FashionCLIPError("the probe train size must be positive")
        if self.min_class_size < 1:
            raise FashionCLIPError("the minimum class size must be at least 1")
        if self.batch_size <= 0:
            raise FashionCLIPError("the batch size must be positive")
        check_templates(self.templates)
        check_templates([self.category_template])


@dataclass
class EvaluationRun:
    """What a run produced."""

    records: list[rep.Record]
    out_dir: Path
    results_path: Path
    report_path: Path
    details_path: Path
    plots: list[Path]
    seconds: float


class _Data:
    """The evaluation splits, loaded on first use and subsampled with the run's seed."""

    def __init__(self, config: EvaluationConfig) -> None:
        self.config = config
        self.root = Path(config.data_dir) if config.data_dir else default_data_dir()

    def _size(self, default: int | None) -> int | None:
        sizes = [s for s in (default, self.config.limit) if s is not None]
        return min(sizes) if sizes else None

    @cached_property
    def kagl_test(self) -> KaglSplit:
        return load_kagl("test", self.root).sample(self._size(None), self.config.seed)

    @cached_property
    def kagl_train(self) -> KaglSplit:
        size = self._size(self.config.probe_train_size)
        return load_kagl("train", self.root).sample(size, self.config.seed)

    @cached_property
    def fmnist_test(self) -> FashionMnist:
        return load_fashion_mnist("test", self.root).sample(self._size(None), self.config.seed)

    @cached_property
    def fmnist_train(self) -> FashionMnist:
        size = self._size(self.config.probe_train_size)
        return load_fashion_mnist("train", self.root).sample(size, self.config.seed)

    @cached_property
    def fmnist_test_images(self):
        return self.fmnist_test.images()

    @cached_property
    def fmnist_train_images(self):
        return self.fmnist_train.images()

    @cached_property
    def label_sets(self) -> dict[str, LabelSet]:
        """Class lists per classification dataset, built from the test labels."""
        out: dict[str, LabelSet] = {}
        n = self.config.min_class_size
        if "kagl" in self.config.datasets:
            for attribute in self.config.attributes:
                values = self.kagl_test.attributes[attribute]
                out[f"kagl-test/{attribute}"] = build_label_set(values, attribute, n)
        if "fashion-mnist" in self.config.datasets:
            out["fashion-mnist-test"] = build_label_set(self.fmnist_test.label_names, "label", n)
        return out


def _kagl_keys(split: KaglSplit) -> list[str]:
    return [f"{i}-{h[:16]}" for i, h in zip(split.ids, split.image_sha256, strict=True)]


@dataclass
class _ClassificationSet:
    """One classification dataset, aligned with an encoding of its test (and train) images."""

    name: str
    classes: list[str]
    test_labels: list[str]
    test_emb: np.ndarray
    train_labels: list[str] | None
    train_emb: np.ndarray | None
    n_failed: int


class Runner:
    """Runs the configured tasks for models and baselines and collects records."""

    def __init__(self, config: EvaluationConfig, log: Callable[[str], None] | None = None):
        config.validate()
        self.config = config
        self.out_dir = Path(config.out_dir)
        self.cache = EmbeddingCache(
            Path(config.cache_dir) if config.cache_dir else self.out_dir / "cache"
        )
        self.data = _Data(config)
        self.records: list[rep.Record] = []
        self.systems: list[str] = []
        self.details: dict[str, Any] = {"confusion": {}, "per_class_f1": {}, "recall_curves": {}}
        self.data_notes: list[str] = []
        self.failures: dict[str, int] = {}
        self._log = log or (lambda message: None)
        self._start = time.perf_counter()
        self._bm25: dict[tuple[str, ...], np.ndarray] = {}
        self._bm25_corpus: tuple[str, ...] | None = None
        self._bm25_scorer: BM25Scorer | None = None

    def log(self, message: str) -> None:
        self._log(f"[{time.perf_counter() - self._start:7.1f}s] {message}")

    # ------------------------------------------------------------------ encodings
    def _encode_kagl(self, model: EncoderModel, split: KaglSplit, cached: bool) -> EncodedImages:
        self.log(f"{_name(model)}: encoding {len(split)} KAGL {split.split} images")
        return encode_images(
            model,
            split.image_paths,
            keys=_kagl_keys(split),
            namespace=f"kagl-{split.split}",
            cache=self.cache if cached else None,
            batch_size=self.config.batch_size,
            show_progress=self.config.show_progress,
        )

    def _encode_fmnist(self, model: EncoderModel, data: FashionMnist, images, cached: bool):
        self.log(f"{_name(model)}: encoding {len(data)} Fashion-MNIST {data.split} images")
        return encode_images(
            model,
            images,
            keys=data.keys,
            namespace=f"fashion-mnist-{data.split}",
            cache=self.cache if cached else None,
            batch_size=self.config.batch_size,
            show_progress=self.config.show_progress,
        )

    def _classification_sets(self, model: EncoderModel, cached: bool) -> list[_ClassificationSet]:
        """Aligned (embeddings, labels) per classification dataset."""
        need_train = "linear-probe" in self.config.tasks
        sets: list[_ClassificationSet] = []
        if "kagl" in self.config.datasets:
            test = self.data.kagl_test
            enc = self._encode_kagl(model, test, cached)
            train = self.data.kagl_train if need_train else None
            enc_train = self._encode_kagl(model, train, cached) if train is not None else None
            for attribute in self.config.attributes:
                name = f"kagl-test/{attribute}"
                classes = self.data.label_sets[name].classes
                sets.append(
                    _subset(name, classes, test.attributes[attribute], enc,
                            train.attributes[attribute] if train is not None else None, enc_train)
                )  # fmt: skip
        if "fashion-mnist" in self.config.datasets:
            test_f = self.data.fmnist_test
            enc = self._encode_fmnist(model, test_f, self.data.fmnist_test_images, cached)
            enc_train = None
            if need_train:
                train_f = self.data.fmnist_train
                enc_train = self._encode_fmnist(
                    model, train_f, self.data.fmnist_train_images, cached
                )
            name = "fashion-mnist-test"
            sets.append(
                _subset(name, self.data.label_sets[name].classes, test_f.label_names, enc,
                        self.data.fmnist_train.label_names if need_train else None, enc_train)
            )  # fmt: skip
        return sets

    # ------------------------------------------------------------------ tasks
    def _add_classification(
        self, system: str, kind: str, task: str, dataset: str, result: dict[str, Any], plots: bool
    ) -> None:
        n = result.get("n")
        self.records += rep.records_from_metrics(
            system, kind, task, dataset, result, rep.TABLE_METRICS[task], n
        )
        self.records += rep.per_class_records(system, kind, task, dataset, result)
        if plots and result.get("confusion_matrix") is not None:
            self.details["confusion"].setdefault(task, {}).setdefault(dataset, {})[system] = {
                "labels": result["labels"],
                "matrix": result["confusion_matrix"],
            }
            self.details["per_class_f1"].setdefault(task, {}).setdefault(dataset, {})[system] = (
                result["per_class_f1"]
            )

    def _classification(self, system: str, kind: str, model: EncoderModel, cached: bool) -> None:
        tasks = [t for t in ("zero-shot", "linear-probe") if t in self.config.tasks]
        if not tasks:
            return
        is_model = kind == "model"
        for data in self._classification_sets(model, cached):
            if len(data.classes) < 2:
                reason = (
                    f"{len(data.classes)} class(es) with {self.config.min_class_size} or more "
                    "test items; classification needs 2"
                )
                for task in tasks:
                    for metric in rep.TABLE_METRICS[task]:
                        self.records.append(
                            rep.Record(system, kind, task, data.name, metric, None, reason, 0)
                        )
                continue
            if "zero-shot" in tasks:
                self.log(f"{system}: zero-shot {data.name} ({len(data.classes)} classes)")
                evaluator = ZeroShotEvaluator(
                    images=[None] * len(data.test_labels),
                    labels=data.test_labels,
                    class_names=data.classes,
                    templates=self.config.templates,
                )
                class_emb = class_embeddings(
                    model, data.classes, self.config.templates, cache=self.cache if cached else None
                )
                result = evaluator.compute(data.test_emb, class_emb, n_failed_images=data.n_failed)
                self._add_classification(system, kind, "zero-shot", data.name, result, is_model)
            if "linear-probe" in tasks:
                self.log(
                    f"{system}: linear probe {data.name} (train {len(data.train_labels or [])})"
                )
                probe = LinearProbeEvaluator(
                    train_images=[],
                    train_labels=[],
                    test_images=[],
                    test_labels=data.test_labels,
                    class_names=data.classes,
                    C=self.config.probe_C,
                    max_iter=self.config.probe_max_iter,
                    seed=self.config.seed,
                    n_threads=self.config.probe_threads,
                )
                result = probe.compute(
                    data.train_emb, data.train_labels or [], data.test_emb, data.test_labels,
                    n_failed_images=data.n_failed,
                )  # fmt: skip
                if result.get("converged") is False:
                    self.data_notes.append(
                        f"{system} · linear probe {data.name}: L-BFGS hit max_iter="
                        f"{self.config.probe_max_iter} before converging"
                    )
                self._add_classification(system, kind, "linear-probe", data.name, result, is_model)

    def _majority(self) -> None:
        tasks = [t for t in ("zero-shot", "linear-probe") if t in self.config.tasks]
        if not tasks:
            return
        for name, label_set in self.data.label_sets.items():
            if name == "fashion-mnist-test":
                values = self.data.fmnist_test.label_names
            else:
                values = self.data.kagl_test.attributes[label_set.attribute]
            labels = [v for v in values if v in set(label_set.classes)]
            if len(label_set.classes) < 2:
                continue  # reported as n/a for the models; no baseline row either
            constant = majority_class(labels)
            metrics = classification_metrics(labels, [constant] * len(labels), label_set.classes)
            result = classification_result(metrics)
            for task in tasks:
                self._add_classification("majority", "baseline", task, name, result, False)

    def _retrieval(self, system: str, kind: str, model: EncoderModel, cached: bool) -> None:
        if "retrieval" not in self.config.tasks or "kagl" not in self.config.datasets:
            return
        test = self.data.kagl_test
        enc = self._encode_kagl(model, test, cached)
        if not enc.ok.all():
            keep = np.flatnonzero(enc.ok)
            self.data_notes.append(
                f"{system}: {len(test) - len(keep)} KAGL test image(s) failed to decode and "
                "were left out of retrieval"
            )
            test = test.subset(keep.tolist())
        image_emb = enc.embeddings
        cache = self.cache if cached else None

        # Product name -> image (and image -> name); byte-identical duplicates are the same product.
        names = RetrievalEvaluator(
            test.names, relevant=duplicate_groups(test.image_sha256), precision_ks=(5, 10)
        )
        self.log(f"{system}: retrieval, {len(test)} product names")
        text_emb = encode_texts(model, test.names, cache=cache)
        scores = text_emb @ image_emb.T
        ranks = names.rankings_from_scores(scores)
        self._add_ranking(system, kind, "kagl-test/text-to-image", ranks["text_to_image"])
        self._add_ranking(system, kind, "kagl-test/image-to-text", ranks["image_to_text"])
        if self.config.baselines and kind == "model":
            bm25_scores = self._bm25_scores(test, names.query_texts)
            fused = reciprocal_rank_fusion([bm25_scores, scores])
            ranks = names.rankings_from_scores(fused, image_to_text=False)
            self._add_ranking(
                f"hybrid ({system})", "baseline", "kagl-test/text-to-image", ranks["text_to_image"]
            )

        # Category -> product.
        category = self._category_evaluator(test)
        if category is not None:
            evaluator, _ = category
            text_emb = encode_texts(model, evaluator.query_texts, cache=cache)
            scores = text_emb @ image_emb.T
            ranks = evaluator.rankings_from_scores(scores)
            dataset = "kagl-test/category-to-product"
            self._add_ranking(system, kind, dataset, ranks["text_to_image"])
            if self.config.baselines and kind == "model":
                bm25_scores = self._bm25_scores(test, evaluator.query_texts)
                fused = reciprocal_rank_fusion([bm25_scores, scores])
                ranks = evaluator.rankings_from_scores(fused)
                self._add_ranking(f"hybrid ({system})", "baseline", dataset, ranks["text_to_image"])
        else:
            self._add_no_category(system, kind)
            if self.config.baselines and kind == "model":
                self._add_no_category(f"hybrid ({system})", "baseline")

        # Image -> image: same articleType and baseColour.
        groups = [
            f"{a}|{c}"
            for a, c in zip(
                test.attributes["articleType"], test.attributes["baseColour"], strict=True
            )
        ]
        ranks = ImageRetrievalEvaluator(images=[], groups=groups).rankings(image_emb, groups)
        self._add_ranking(system, kind, "kagl-test/image-to-image", ranks["image_to_image"])

    def _category_evaluator(self, test: KaglSplit):
        types = self.data.label_sets.get("kagl-test/articleType")
        classes = (
            types.classes
            if types is not None
            else build_label_set(test.attributes["articleType"], "articleType",
                                 self.config.min_class_size).classes
        )  # fmt: skip
        if not classes:
            return None
        article = test.attributes["articleType"]
        relevant = [[i for i, a in enumerate(article) if a == t] for t in classes]
        queries = [self.config.category_template.format(t) for t in classes]
        evaluator = RetrievalEvaluator(
            queries, relevant=relevant, recall_ks=(), precision_ks=(1, 10), image_to_text=False
        )
        return evaluator, classes

    def _bm25_scores(self, test: KaglSplit, queries: Sequence[str]) -> np.ndarray:
        """BM25 scores of ``queries`` against the products of ``test`` (memoised)."""
        corpus = tuple(test.ids)
        if self._bm25_corpus != corpus:
            self.log(f"bm25: indexing {len(test)} product texts")
            self._bm25_scorer = BM25Scorer([test.product_text(i) for i in range(len(test))])
            self._bm25_corpus = corpus
            self._bm25.clear()
        key = tuple(queries)
        if key not in self._bm25:
            self._bm25[key] = self._bm25_scorer.scores(queries)
        return self._bm25[key]

    def _bm25_baseline(self) -> None:
        if "retrieval" not in self.config.tasks or "kagl" not in self.config.datasets:
            return
        test = self.data.kagl_test
        names = RetrievalEvaluator(test.names, relevant=duplicate_groups(test.image_sha256))
        scores = self._bm25_scores(test, test.names)
        ranks = names.rankings_from_scores(scores, image_to_text=False)
        self._add_ranking("bm25", "baseline", "kagl-test/text-to-image", ranks["text_to_image"])
        category = self._category_evaluator(test)
        if category is not None:
            evaluator, _ = category
            scores = self._bm25_scores(test, evaluator.query_texts)
            ranks = evaluator.rankings_from_scores(scores)
            self._add_ranking(
                "bm25", "baseline", "kagl-test/category-to-product", ranks["text_to_image"]
            )
        else:
            self._add_no_category("bm25", "baseline")

    def _add_no_category(self, system: str, kind: str) -> None:
        reason = f"no articleType has {self.config.min_class_size} or more test products"
        for metric in ("precision@1", "precision@10", "mrr"):
            self.records.append(
                rep.Record(
                    system,
                    kind,
                    "retrieval",
                    "kagl-test/category-to-product",
                    metric,
                    None,
                    reason,
                    0,
                )
            )

    def _add_ranking(self, system: str, kind: str, dataset: str, ranking: RankingMetrics) -> None:
        n = ranking.n_queries - ranking.n_skipped
        for metric, value in ranking.values.items():
            reason = ranking.undefined.get(metric) if value is None else None
            self.records.append(
                rep.Record(system, kind, "retrieval", dataset, metric, value, reason, n)
            )
        self.records.append(
            rep.Record(
                system, kind, "retrieval", dataset, "n_skipped_queries", ranking.n_skipped, None, n
            )
        )
        ks = list(CURVE_KS)
        self.details["recall_curves"].setdefault(dataset, {})[system] = {
            "k": ks,
            "recall": ranking.recall_curve(ks),
        }

    # ------------------------------------------------------------------ driver
    def evaluate_system(self, system: str, kind: str, model: EncoderModel, cached: bool) -> None:
        if system not in self.systems:
            self.systems.append(system)
        self._classification(system, kind, model, cached)
        self._retrieval(system, kind, model, cached)

    def describe_data(self) -> None:
        c = self.config
        if "kagl" in c.datasets:
            test = self.data.kagl_test
            groups = duplicate_groups(test.image_sha256)
            dup = sum(1 for g in groups if len(g) > 1)
            by_name: dict[str, set[str]] = {}
            for name, sha in zip(test.names, test.image_sha256, strict=True):
                by_name.setdefault(name, set()).add(sha)
            ambiguous = sum(1 for name in test.names if len(by_name[name]) > 1)
            self.data_notes.append(
                f"KAGL test split: {len(test)} products"
                + (f" (seeded sample, --limit {c.limit})" if c.limit else "")
                + f"; {dup} of them share a byte-identical image with another test product "
                f"(counted as the same product in retrieval); {ambiguous} product-name queries "
                "are shared with a product whose image differs (no model can rank both first)"
            )
            if "linear-probe" in c.tasks:
                self.data_notes.append(
                    f"KAGL linear-probe training set: {len(self.data.kagl_train)} products "
                    f"(seeded sample of the train split, probe train size {c.probe_train_size})"
                )
        if "fashion-mnist" in c.datasets:
            self.data_notes.append(
                f"Fashion-MNIST test set: {len(self.data.fmnist_test)} images"
                + (f" (seeded sample, --limit {c.limit})" if c.limit else "")
                + "; 28x28 grayscale replicated to RGB, resized by each model's image processor"
            )
            if "linear-probe" in c.tasks:
                self.data_notes.append(
                    f"Fashion-MNIST linear-probe training set: {len(self.data.fmnist_train)} "
                    "images (seeded sample of the official train set)"
                )
        for name, label_set in self.data.label_sets.items():
            self.data_notes.append(
                f"{name}: {len(label_set.classes)} classes kept, {len(label_set.dropped)} dropped "
                f"(< {label_set.min_class_size} test items)"
            )


def _name(model: Any) -> str:
    return str(getattr(getattr(model, "identity", None), "name", "model"))


def _subset(
    name: str,
    classes: list[str],
    test_values: Sequence[str],
    enc: EncodedImages,
    train_values: Sequence[str] | None,
    enc_train: EncodedImages | None,
) -> _ClassificationSet:
    """Test items of the kept classes that decoded, aligned with their embeddings."""
    kept = set(classes)
    ok_values = [v for v, ok in zip(test_values, enc.ok, strict=True) if ok]
    mask = np.array([v in kept for v in ok_values], dtype=bool)
    test_emb = enc.embeddings[mask] if len(mask) else enc.embeddings
    test_labels = [v for v, m in zip(ok_values, mask, strict=True) if m]
    train_labels = train_emb = None
    n_failed = int((~enc.ok).sum())
    if enc_train is not None and train_values is not None:
        train_labels = [v for v, ok in zip(train_values, enc_train.ok, strict=True) if ok]
        train_emb = enc_train.embeddings
        n_failed += int((~enc_train.ok).sum())
    return _ClassificationSet(
        name, classes, test_labels, test_emb, train_labels, train_emb, n_failed
    )


def _unique_names(models: Sequence[Any]) -> list[str]:
    names: list[str] = []
    for model in models:
        base = _name(model)
        name, i = base, 2
        while name in names or name in ("majority", "random", "bm25"):
            name, i = f"{base}#{i}", i + 1
        names.append(name)
    return names


def _definitions(config: EvaluationConfig, random_dim: int | None) -> list[str]:
    return [
        "weighted_f1: per-class F1 averaged with weights = number of test items of the class "
        "(the FashionCLIP paper's 'weighted macro F1'); macro_f1: unweighted mean; accuracy.",
        f"Zero-shot: prompt(s) {list(config.templates)}; an image gets the class whose (mean) "
        "prompt embedding has the highest cosine similarity.",
        f"Linear probe: StandardScaler + multinomial LogisticRegression (C={config.probe_C}, "
        f"L-BFGS, max_iter={config.probe_max_iter}) on frozen image embeddings; KAGL train split "
        "-> test split, Fashion-MNIST official train -> test.",
        "majority: predicts the most frequent class of the *test* labels for every item.",
        f"random: seeded random unit vectors (dim {random_dim}) per distinct image/text content, "
        "not a randomly initialised network; chance-level reference for every task.",
        "bm25: BM25 (bm25s, Lucene, English stop words) over each product's name + gender, "
        "master/sub category, article type, colour and usage.",
        f"hybrid (model): reciprocal rank fusion of bm25 and the model's ranking, "
        f"1/({RRF_K}+rank) summed.",
        "text-to-image: query = productDisplayName, target = that product (byte-identical "
        "duplicate images count as the same product); image-to-text: the reverse.",
        f"category-to-product: query = '{config.category_template}'.format(articleType), relevant "
        "= every test product of that type (types with >= min class size items).",
        "image-to-image: relevant = other test products with the same articleType and "
        "baseColour (the query itself excluded); queries without such a product are skipped.",
        "recall@k = share of queries with a relevant item in the top k; precision@k = relevant "
        "items in the top k / k; mrr = mean of 1/rank of the first relevant item.",
        "Ties are pessimistic: on equal scores non-relevant items rank before relevant ones "
        "(a constant scorer gets the worst possible rank, never a lucky one).",
    ]


def run_evaluation(
    config: EvaluationConfig,
    models: Sequence[EncoderModel] | None = None,
    log: Callable[[str], None] | None = None,
) -> EvaluationRun:
    """Evaluate ``models`` (or load ``config.models``) and write the result files."""
    start = time.perf_counter()
    config.validate()
    runner = Runner(config, log=log)
    sources: list[str]
    if models is None:
        from fashionclip.models import load

        loaded = []
        for source in config.models or [None]:
            runner.log(f"loading model {source or '(default)'}")
            loaded.append(load(source, device=config.device, allow_pickle=config.allow_pickle))
        models = loaded
        sources = [str(s) for s in config.models] or ["default model"]
    else:
        models = list(models)
        sources = (
            [str(s) for s in config.models]
            if len(config.models) == len(models)
            else [""] * len(models)
        )
    if not models:
        raise FashionCLIPError("no model to evaluate")
    runner.out_dir.mkdir(parents=True, exist_ok=True)
    runner.describe_data()

    names = _unique_names(models)
    for name, model in zip(names, models, strict=True):
        runner.evaluate_system(name, "model", model, cached=True)
    random_dim = int(getattr(models[0], "embedding_dim", 0) or models[0].identity.embedding_dim)
    if config.baselines:
        runner.log("baselines: majority, random embeddings, bm25")
        runner._majority()
        runner.systems.append("majority")
        runner.evaluate_system(
            "random", "baseline", RandomEmbeddingModel(random_dim, config.seed), cached=False
        )
        runner._bm25_baseline()
        runner.systems.append("bm25")
        runner.systems += [f"hybrid ({n})" for n in names]

    plots: list[Path] = []
    if config.plots:
        runner.log("plots")
        plots = _write_plots(runner)

    seconds = time.perf_counter() - start
    meta = _meta(config, runner, models, names, sources, seconds, random_dim)
    details_path = rep.write_json(runner.out_dir / "details.json", runner.details)
    results_path = rep.write_results_json(runner.out_dir / "results.json", runner.records, meta)
    report_path = rep.write_report_md(
        runner.out_dir / "report.md", runner.records, meta, runner.systems, plots
    )
    runner.log(f"done in {seconds:.1f}s: {report_path}")
    return EvaluationRun(
        records=runner.records,
        out_dir=runner.out_dir,
        results_path=results_path,
        report_path=report_path,
        details_path=details_path,
        plots=plots,
        seconds=seconds,
    )


def _meta(config, runner: Runner, models, names, sources, seconds: float, random_dim: int):
    from fashionclip import __version__

    settings = {
        k: (list(v) if isinstance(v, (list, tuple)) else (str(v) if isinstance(v, Path) else v))
        for k, v in asdict(config).items()
        if k not in ("models", "command", "show_progress")
    }
    settings["cache_dir"] = str(runner.cache.root)
    settings["ties"] = "pessimistic"
    dropped = {name: ls.dropped for name, ls in runner.data.label_sets.items()}
    device = str(getattr(models[0], "device", config.device or "cpu"))
    return {
        "command": config.command,
        "fashionclip_version": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "device": device,
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "run_time_seconds": round(seconds, 2),
        "models": [
            {
                "name": name,
                "kind": getattr(m.identity, "kind", ""),
                "embedding_dim": getattr(m.identity, "embedding_dim", None),
                "fingerprint": m.identity.fingerprint,
                "source": source,
            }
            for name, m, source in zip(names, models, sources, strict=True)
        ],
        "systems": runner.systems,
        "settings": settings,
        "data_dir": str(runner.data.root),
        "data_notes": runner.data_notes,
        "dropped_classes": dropped,
        "definitions": _definitions(config, random_dim),
    }


def _write_plots(runner: Runner) -> list[Path]:
    folder = runner.out_dir / "plots"
    # Plots of an earlier run into the same folder would no longer match report.md.
    for stale in folder.glob("*.png"):
        stale.unlink()
    plots: list[Path] = []
    for task, datasets in runner.details["per_class_f1"].items():
        for dataset, per_system in datasets.items():
            path = folder / f"{task}__{rep.slug(dataset)}__per_class_f1.png"
            plots.append(
                rep.plot_per_class_f1(path, f"{task} · {dataset}: per-class F1", per_system)
            )
    for task, datasets in runner.details["confusion"].items():
        for dataset, per_system in datasets.items():
            for system, cm in per_system.items():
                path = folder / f"{task}__{rep.slug(dataset)}__confusion__{rep.slug(system)}.png"
                title = f"{system} · {task} · {dataset}"
                plots.append(rep.plot_confusion(path, title, cm["labels"], cm["matrix"]))
    for dataset, per_system in runner.details["recall_curves"].items():
        curves = {s: (c["k"], c["recall"]) for s, c in per_system.items()}
        path = folder / f"retrieval__{rep.slug(dataset)}__recall_at_k.png"
        plots.append(rep.plot_recall_curves(path, f"retrieval · {dataset}", curves))
    return plots


def stderr_log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
