"""The whole benchmark: every model and baseline on every task, written to one folder.

``run_evaluation(EvaluationConfig(models=[...], out_dir=...))`` writes ``results.json``,
``details.json`` (confusion matrices, recall curves), ``report.md`` and ``plots/*.png``.
``fashionclip evaluate`` is a thin wrapper around it. The datasets come from the registry
(:mod:`fashionclip.evaluate.datasets`): the runner loops over the selected datasets' specs.
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
from fashionclip.evaluate.baselines import RandomEmbeddingModel, majority_class
from fashionclip.evaluate.datasets import (
    CLASSIFICATION_TASKS,
    DATASETS,
    DEFAULT_DATASETS,
    KAGL_ATTRIBUTES,
    TASKS,
    DatasetSpec,
    EvalData,
    KaglSplit,
    LabelSet,
    build_label_set,
    dataset_names,
    default_data_dir,
    get_dataset,
)
from fashionclip.evaluate.encoding import EmbeddingCache, EncodedImages, EncoderModel, encode_images
from fashionclip.evaluate.linear_probe import LinearProbe
from fashionclip.evaluate.metrics import classification_metrics
from fashionclip.evaluate.product_retrieval import ProductRetrieval
from fashionclip.evaluate.report import CURVE_KS, Results
from fashionclip.evaluate.zero_shot import (
    DEFAULT_TEMPLATES,
    class_embeddings,
    classification_result,
    require_templates,
    zero_shot_metrics,
)

__all__ = [
    "CURVE_KS",
    "DATASETS",
    "DEFAULT_CATEGORY_TEMPLATE",
    "TASKS",
    "EvaluationConfig",
    "EvaluationRun",
    "Runner",
    "run_evaluation",
    "stderr_log",
]

#: Category-to-product query, as in Marqo's fashion benchmark.
DEFAULT_CATEGORY_TEMPLATE = "a photo of {}"
BASELINE_NAMES = ("majority", "random", "bm25")


@dataclass
class EvaluationConfig:
    """What to evaluate and where to write it. Paths may be str or Path."""

    #: Folders / hub ids for ``fashionclip.load``; empty means the default (shipped) model.
    models: list[str] = field(default_factory=list)
    out_dir: Path | str = "evaluation"
    tasks: Sequence[str] = TASKS
    datasets: Sequence[str] = DEFAULT_DATASETS  # any of dataset_names()
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
        """Raise FashionCLIPError naming the choices for anything unknown or out of range."""
        unknown = sorted(set(self.tasks) - set(TASKS))
        if unknown or not self.tasks:
            raise FashionCLIPError(f"unknown task(s) {unknown}; choose from {', '.join(TASKS)}")
        unknown = sorted(set(self.datasets) - set(dataset_names()))
        if unknown or not self.datasets:
            raise FashionCLIPError(
                f"unknown dataset(s) {unknown}; choose from {', '.join(dataset_names())}"
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
        require_templates(self.templates)
        require_templates([self.category_template])


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


@dataclass
class _Target:
    """One classification result row group: a dataset's label column, and its kept classes."""

    name: str  # the ``dataset`` column, e.g. kagl-test/articleType
    spec: DatasetSpec
    target: str
    label_set: LabelSet


class _Data:
    """The selected datasets' splits, loaded on first use and subsampled with the run's seed."""

    def __init__(self, config: EvaluationConfig) -> None:
        self.config = config
        self.root = Path(config.data_dir) if config.data_dir else default_data_dir()
        #: Selected datasets in registry (report) order.
        self.specs = [get_dataset(n) for n in dataset_names() if n in set(config.datasets)]
        self._splits: dict[tuple[str, str], EvalData] = {}

    def _size(self, default: int | None) -> int | None:
        sizes = [s for s in (default, self.config.limit) if s is not None]
        return min(sizes) if sizes else None

    def test(self, spec: DatasetSpec) -> EvalData:
        """The scored split (``--limit`` sample)."""
        key = (spec.name, "test")
        if key not in self._splits:
            data = spec.load(spec.test_split, self.root)
            self._splits[key] = data.sample(self._size(None), self.config.seed)
        return self._splits[key]

    def train(self, spec: DatasetSpec) -> EvalData:
        """The linear probe's training split (``probe_train_size`` sample)."""
        key = (spec.name, "train")
        if key not in self._splits:
            data = spec.load(spec.train_split, self.root)
            size = self._size(self.config.probe_train_size)
            self._splits[key] = data.sample(size, self.config.seed)
        return self._splits[key]

    def tasks(self, spec: DatasetSpec, among: Sequence[str] = TASKS) -> list[str]:
        """The configured tasks ``spec`` supports, among ``among``, in TASKS order."""
        return [t for t in among if t in self.config.tasks and spec.supports(t)]

    def target_keys(self, spec: DatasetSpec) -> list[str]:
        return list(self.config.attributes) if spec.attribute_targets else list(spec.targets)

    @cached_property
    def targets(self) -> list[_Target]:
        """Classification targets of every selected dataset, classes built from the test labels."""
        out: list[_Target] = []
        n = self.config.min_class_size
        for spec in self.specs:
            if not any(spec.supports(t) for t in CLASSIFICATION_TASKS):
                continue
            test = self.test(spec)
            for key in self.target_keys(spec):
                label_set = build_label_set(test.label_values(key), key, n)
                out.append(_Target(spec.label_set_name(key), spec, key, label_set))
        return out

    @property
    def label_sets(self) -> dict[str, LabelSet]:
        return {t.name: t.label_set for t in self.targets}


@dataclass
class _ClassificationSet:
    """One classification target, aligned with an encoding of its test (and train) images."""

    name: str
    tasks: list[str]
    classes: list[str]
    test_labels: list[str]
    test_emb: np.ndarray
    train_labels: list[str] | None
    train_emb: np.ndarray | None
    n_failed: int


class Runner:
    """Runs the configured tasks for models and baselines and collects their results.

    ``run(models)`` does everything and writes the files; ``evaluate_system`` and
    ``evaluate_baselines`` are its steps, for callers that want the records only.
    """

    def __init__(
        self,
        config: EvaluationConfig,
        log: Callable[[str], None] | None = None,
        results: Results | None = None,
    ) -> None:
        config.validate()
        self.config = config
        self.out_dir = Path(config.out_dir)
        self.cache = EmbeddingCache(
            Path(config.cache_dir) if config.cache_dir else self.out_dir / "cache"
        )
        self.data = _Data(config)
        self.results = results or Results()
        self._log = log or (lambda message: None)
        self._start = time.perf_counter()
        self._retrieval: dict[str, ProductRetrieval] = {}

    @property
    def records(self) -> list[rep.Record]:
        return self.results.records

    @property
    def systems(self) -> list[str]:
        return self.results.systems

    def log(self, message: str) -> None:
        self._log(f"[{time.perf_counter() - self._start:7.1f}s] {message}")

    # ------------------------------------------------------------------ encodings
    def _encode(
        self, model: EncoderModel, spec: DatasetSpec, data: EvalData, cached: bool
    ) -> EncodedImages:
        self.log(f"{_name(model)}: encoding {len(data)} {spec.title} {data.split} images")
        images, keys = data.encoding_inputs()
        return encode_images(
            model,
            images,
            keys=keys,
            namespace=f"{spec.name}-{data.split}",
            cache=self.cache if cached else None,
            batch_size=self.config.batch_size,
            show_progress=self.config.show_progress,
        )

    def _classification_sets(self, model: EncoderModel, cached: bool) -> list[_ClassificationSet]:
        """Aligned (embeddings, labels) per classification target of the selected datasets."""
        sets: list[_ClassificationSet] = []
        for spec in self.data.specs:
            tasks = self.data.tasks(spec, CLASSIFICATION_TASKS)
            if not tasks:
                continue
            test = self.data.test(spec)
            enc = self._encode(model, spec, test, cached)
            train = self.data.train(spec) if "linear-probe" in tasks else None
            enc_train = self._encode(model, spec, train, cached) if train is not None else None
            for target in self.data.targets:
                if target.spec is not spec:
                    continue
                sets.append(
                    _subset(target.name, tasks, target.label_set.classes,
                            test.label_values(target.target), enc,
                            train.label_values(target.target) if train is not None else None,
                            enc_train)
                )  # fmt: skip
        return sets

    # ------------------------------------------------------------------ tasks
    def _classification(self, system: str, kind: str, model: EncoderModel, cached: bool) -> None:
        is_model = kind == "model"
        for data in self._classification_sets(model, cached):
            if len(data.classes) < 2:
                reason = (
                    f"{len(data.classes)} class(es) with {self.config.min_class_size} or more "
                    "test items; classification needs 2"
                )
                for task in data.tasks:
                    self.results.add_undefined(
                        system, kind, task, data.name, rep.TABLE_METRICS[task], reason
                    )
                continue
            if "zero-shot" in data.tasks:
                result = self._zero_shot(system, model, data, cached)
                self.results.add_classification(
                    system, kind, "zero-shot", data.name, result, is_model
                )
            if "linear-probe" in data.tasks:
                result = self._linear_probe(system, data)
                self.results.add_classification(
                    system, kind, "linear-probe", data.name, result, is_model
                )

    def _zero_shot(
        self, system: str, model: EncoderModel, data: _ClassificationSet, cached: bool
    ) -> dict[str, Any]:
        self.log(f"{system}: zero-shot {data.name} ({len(data.classes)} classes)")
        cache = self.cache if cached else None
        class_emb = class_embeddings(model, data.classes, self.config.templates, cache=cache)
        return zero_shot_metrics(
            data.test_emb, class_emb, data.test_labels, data.classes, self.config.templates,
            n_failed_images=data.n_failed,
        )  # fmt: skip

    def _linear_probe(self, system: str, data: _ClassificationSet) -> dict[str, Any]:
        train_labels = data.train_labels or []
        self.log(f"{system}: linear probe {data.name} (train {len(train_labels)})")
        train_emb = data.train_emb if data.train_emb is not None else np.zeros((0, 1))
        probe = LinearProbe(
            data.classes,
            C=self.config.probe_C,
            max_iter=self.config.probe_max_iter,
            seed=self.config.seed,
            n_threads=self.config.probe_threads,
        )
        result = probe.compute(
            train_emb, train_labels, data.test_emb, data.test_labels, n_failed_images=data.n_failed
        )
        if result.get("converged") is False:
            self.results.notes.append(
                f"{system} · linear probe {data.name}: L-BFGS hit max_iter="
                f"{self.config.probe_max_iter} before converging"
            )
        return result

    def _majority(self) -> None:
        """The ``majority`` rows: the most frequent test class for every item."""
        for target in self.data.targets:
            tasks = self.data.tasks(target.spec, CLASSIFICATION_TASKS)
            classes = target.label_set.classes
            if not tasks or len(classes) < 2:
                continue  # reported as n/a for the models; no baseline row either
            values = self.data.test(target.spec).label_values(target.target)
            labels = [v for v in values if v in set(classes)]
            constant = majority_class(labels)
            metrics = classification_metrics(labels, [constant] * len(labels), classes)
            result = classification_result(metrics)
            for task in tasks:
                self.results.add_classification(
                    "majority", "baseline", task, target.name, result, False
                )

    def _product_retrieval(self, spec: DatasetSpec) -> tuple[ProductRetrieval, KaglSplit]:
        test = self.data.test(spec)
        if not isinstance(test, KaglSplit):
            raise FashionCLIPError(f"{spec.name}: retrieval needs product data (a KaglSplit)")
        if spec.name not in self._retrieval:
            types = self.data.label_sets.get(spec.label_set_name("articleType"))
            self._retrieval[spec.name] = ProductRetrieval(
                self.results,
                prefix=f"{spec.name}-{spec.test_split}",
                category_template=self.config.category_template,
                min_class_size=self.config.min_class_size,
                baselines=self.config.baselines,
                article_classes=types.classes if types is not None else None,
                log=self.log,
            )
        return self._retrieval[spec.name], test

    def _retrieval_specs(self) -> list[DatasetSpec]:
        return [s for s in self.data.specs if self.data.tasks(s, ("retrieval",))]

    def _retrieval_task(self, system: str, kind: str, model: EncoderModel, cached: bool) -> None:
        for spec in self._retrieval_specs():
            retrieval, test = self._product_retrieval(spec)
            encoded = self._encode(model, spec, test, cached)
            retrieval.evaluate(system, kind, model, test, encoded, self.cache if cached else None)

    # ------------------------------------------------------------------ driver
    def evaluate_system(self, system: str, kind: str, model: EncoderModel, cached: bool) -> None:
        """Every configured task for one model-shaped system (``cached``: use the cache)."""
        self.results.add_system(system)
        self._classification(system, kind, model, cached)
        self._retrieval_task(system, kind, model, cached)

    def evaluate_baselines(self, model_names: Sequence[str], random_dim: int) -> None:
        """majority, random embeddings of ``random_dim``, bm25 and hybrid (one per model)."""
        self.log("baselines: majority, random embeddings, bm25")
        self._majority()
        self.results.add_system("majority")
        random = RandomEmbeddingModel(random_dim, self.config.seed)
        self.evaluate_system("random", "baseline", random, cached=False)
        for spec in self._retrieval_specs():
            retrieval, test = self._product_retrieval(spec)
            retrieval.bm25_baseline(test)
        self.results.add_system("bm25")
        for name in model_names:
            self.results.add_system(f"hybrid ({name})")

    def describe_data(self) -> None:
        """Data notes for the report: sizes and sampling per dataset, classes kept per target."""
        c = self.config
        for spec in self.data.specs:
            train = self.data.train(spec) if self.data.tasks(spec, ("linear-probe",)) else None
            self.results.notes += spec.notes(
                self.data.test(spec), train, c.limit, c.probe_train_size
            )
        for name, label_set in self.data.label_sets.items():
            self.results.notes.append(
                f"{name}: {len(label_set.classes)} classes kept, {len(label_set.dropped)} dropped "
                f"(< {label_set.min_class_size} test items)"
            )

    def run(self, models: Sequence[EncoderModel], sources: Sequence[str]) -> EvaluationRun:
        """Evaluate ``models`` (and the baselines) and write every result file."""
        if not models:
            raise FashionCLIPError("no model to evaluate")
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.describe_data()
        names = _unique_names(models)
        for name, model in zip(names, models, strict=True):
            self.evaluate_system(name, "model", model, cached=True)
        random_dim = int(getattr(models[0], "embedding_dim", 0) or models[0].identity.embedding_dim)
        if self.config.baselines:
            self.evaluate_baselines(names, random_dim)
        plots: list[Path] = []
        if self.config.plots:
            self.log("plots")
            plots = rep.write_plots(self.out_dir / "plots", self.results.details)
        seconds = time.perf_counter() - self._start
        meta = _meta(self, models, names, sources, seconds, random_dim)
        details_path = rep.write_json(self.out_dir / "details.json", self.results.details)
        results_path = rep.write_results_json(self.out_dir / "results.json", self.records, meta)
        report_path = rep.write_report_md(
            self.out_dir / "report.md", self.records, meta, self.systems, plots
        )
        self.log(f"done in {seconds:.1f}s: {report_path}")
        return EvaluationRun(
            self.records, self.out_dir, results_path, report_path, details_path, plots, seconds
        )


def _name(model: Any) -> str:
    return str(getattr(getattr(model, "identity", None), "name", "model"))


def _subset(
    name: str,
    tasks: list[str],
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
    train_labels: list[str] | None = None
    train_emb: np.ndarray | None = None
    n_failed = int((~enc.ok).sum())
    if enc_train is not None and train_values is not None:
        train_labels = [v for v, ok in zip(train_values, enc_train.ok, strict=True) if ok]
        train_emb = enc_train.embeddings
        n_failed += int((~enc_train.ok).sum())
    return _ClassificationSet(
        name, tasks, classes, test_labels, test_emb, train_labels, train_emb, n_failed
    )


def _unique_names(models: Sequence[Any]) -> list[str]:
    names: list[str] = []
    for model in models:
        base = _name(model)
        name, i = base, 2
        while name in names or name in BASELINE_NAMES:
            name, i = f"{base}#{i}", i + 1
        names.append(name)
    return names


def run_evaluation(
    config: EvaluationConfig,
    models: Sequence[EncoderModel] | None = None,
    log: Callable[[str], None] | None = None,
) -> EvaluationRun:
    """Evaluate ``models`` (or load ``config.models``) and write the result files."""
    runner = Runner(config, log=log)
    if models is None:
        from fashionclip.models import load

        loaded: list[EncoderModel] = []
        sources: list[str | None] = list(config.models) or [None]
        for source in sources:
            runner.log(f"loading model {source or '(default)'}")
            loaded.append(load(source, device=config.device, allow_pickle=config.allow_pickle))
        return runner.run(loaded, [str(s) for s in config.models] or ["default model"])
    models = list(models)
    same = len(config.models) == len(models)
    return runner.run(models, [str(s) for s in config.models] if same else [""] * len(models))


def _meta(
    runner: Runner,
    models: Sequence[EncoderModel],
    names: Sequence[str],
    sources: Sequence[str],
    seconds: float,
    random_dim: int,
) -> dict[str, Any]:
    from fashionclip import __version__

    config = runner.config
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
        "data_notes": runner.results.notes,
        "dropped_classes": dropped,
        "definitions": rep.definitions(
            config.templates,
            config.category_template,
            config.probe_C,
            config.probe_max_iter,
            random_dim,
        ),  # fmt: skip
    }


def stderr_log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
