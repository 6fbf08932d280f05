"""Writing results: ``results.json`` (flat records), ``report.md`` (comparison tables) and plots.

A record is one model (or baseline) x task x dataset x metric:
``{"model", "kind", "task", "dataset", "metric", "value", "reason", "n"}``; ``value`` is None
exactly when the metric could not be computed, and ``reason`` then says why.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fashionclip.evaluate.baselines import RRF_K
from fashionclip.evaluate.metrics import RankingMetrics

#: Metrics shown in the report tables, per task, in order (all: higher is better).
TABLE_METRICS = {
    "zero-shot": ("weighted_f1", "macro_f1", "accuracy"),
    "linear-probe": ("weighted_f1", "macro_f1", "accuracy"),
    "retrieval": (
        "recall@1",
        "recall@5",
        "recall@10",
        "precision@1",
        "precision@5",
        "precision@10",
        "mrr",
    ),
}
#: The k of the recall@k curves in details.json and the plots.
CURVE_KS = (1, 2, 3, 5, 7, 10, 15, 20, 30, 50, 70, 100)
TASK_TITLES = {
    "zero-shot": "Zero-shot classification",
    "linear-probe": "Linear probe (logistic regression on frozen image embeddings)",
    "retrieval": "Retrieval",
}


@dataclass
class Record:
    """One figure of the results table."""

    model: str
    kind: str  # "model" or "baseline"
    task: str
    dataset: str
    metric: str
    value: float | None
    reason: str | None = None
    n: int | None = None

    def __post_init__(self) -> None:
        if self.value is not None:
            value = float(self.value)
            if not math.isfinite(value):
                raise ValueError(f"{self.metric}: non-finite value {value}; use None and a reason")
            self.value = value
        elif not self.reason:
            raise ValueError(f"{self.model}/{self.dataset}/{self.metric}: None needs a reason")


def records_from_metrics(
    model: str,
    kind: str,
    task: str,
    dataset: str,
    metrics: dict[str, Any],
    names: Sequence[str],
    n: int | None,
    prefix: str = "",
) -> list[Record]:
    """Records for the scalar metrics ``names`` of an evaluator's dict (``prefix`` + name)."""
    undefined = metrics.get("undefined") or {}
    out = []
    for name in names:
        key = prefix + name
        if key not in metrics:
            continue
        value = metrics[key]
        reason = undefined.get(key) if value is None else None
        if value is None and not reason:
            reason = "not computable"
        out.append(Record(model, kind, task, dataset, name, value, reason, n))
    return out


def per_class_records(
    model: str, kind: str, task: str, dataset: str, metrics: dict[str, Any]
) -> list[Record]:
    """One ``f1[<class>]`` record per class (None with a reason when undefined)."""
    out = []
    for label, value in (metrics.get("per_class_f1") or {}).items():
        support = (metrics.get("support") or {}).get(label)
        reason = None
        if value is None:
            reason = (metrics.get("undefined") or {}).get(
                "weighted_f1" if metrics.get("weighted_f1") is None else "per_class_f1",
                "class has no items and no predictions",
            )
        out.append(Record(model, kind, task, dataset, f"f1[{label}]", value, reason, support))
    return out


def _details() -> dict[str, Any]:
    return {"confusion": {}, "per_class_f1": {}, "recall_curves": {}}


@dataclass
class Results:
    """What a run collects: records, plot details (details.json), data notes and systems."""

    records: list[Record] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=_details)
    notes: list[str] = field(default_factory=list)
    systems: list[str] = field(default_factory=list)

    def add_system(self, system: str) -> None:
        if system not in self.systems:
            self.systems.append(system)

    def add_undefined(
        self, system: str, kind: str, task: str, dataset: str, metrics: Sequence[str], reason: str
    ) -> None:
        """``metrics`` as n/a with ``reason`` (n = 0)."""
        for metric in metrics:
            self.records.append(Record(system, kind, task, dataset, metric, None, reason, 0))

    def add_classification(
        self, system: str, kind: str, task: str, dataset: str, result: dict[str, Any], plots: bool
    ) -> None:
        """Records of a classification result; with ``plots`` its confusion matrix and F1s."""
        self.records += records_from_metrics(
            system, kind, task, dataset, result, TABLE_METRICS[task], result.get("n")
        )
        self.records += per_class_records(system, kind, task, dataset, result)
        if plots and result.get("confusion_matrix") is not None:
            self.details["confusion"].setdefault(task, {}).setdefault(dataset, {})[system] = {
                "labels": result["labels"],
                "matrix": result["confusion_matrix"],
            }
            self.details["per_class_f1"].setdefault(task, {}).setdefault(dataset, {})[system] = (
                result["per_class_f1"]
            )

    def add_ranking(self, system: str, kind: str, dataset: str, ranking: RankingMetrics) -> None:
        """Records of one retrieval direction, and its recall@k curve."""
        n = ranking.n_queries - ranking.n_skipped
        for metric, value in ranking.values.items():
            reason = ranking.undefined.get(metric) if value is None else None
            self.records.append(
                Record(system, kind, "retrieval", dataset, metric, value, reason, n)
            )
        self.records.append(
            Record(
                system, kind, "retrieval", dataset, "n_skipped_queries", ranking.n_skipped, None, n
            )
        )
        ks = list(CURVE_KS)
        self.details["recall_curves"].setdefault(dataset, {})[system] = {
            "k": ks,
            "recall": ranking.recall_curve(ks),
        }


def definitions(
    templates: Sequence[str],
    category_template: str,
    probe_C: float,
    probe_max_iter: int,
    random_dim: int | None,
) -> list[str]:
    """The report's definitions of every metric, task and baseline, with the run's settings."""
    return [
        "weighted_f1: per-class F1 averaged with weights = number of test items of the class "
        "(the FashionCLIP paper's 'weighted macro F1'); macro_f1: unweighted mean; accuracy.",
        f"Zero-shot: prompt(s) {list(templates)}; an image gets the class whose (mean) "
        "prompt embedding has the highest cosine similarity.",
        f"Linear probe: StandardScaler + multinomial LogisticRegression (C={probe_C}, "
        f"L-BFGS, max_iter={probe_max_iter}) on frozen image embeddings; KAGL train split "
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
        f"category-to-product: query = '{category_template}'.format(articleType), relevant "
        "= every test product of that type (types with >= min class size items).",
        "image-to-image: relevant = other test products with the same articleType and "
        "baseColour (the query itself excluded); queries without such a product are skipped.",
        "recall@k = share of queries with a relevant item in the top k; precision@k = relevant "
        "items in the top k / k; mrr = mean of 1/rank of the first relevant item.",
        "Ties are pessimistic: on equal scores non-relevant items rank before relevant ones "
        "(a constant scorer gets the worst possible rank, never a lucky one).",
    ]


# --------------------------------------------------------------------------------------------
# results.json
# --------------------------------------------------------------------------------------------


def _json_default(value: Any) -> Any:
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot serialise {type(value)}")


def write_json(path: Path, payload: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(payload, indent=1, ensure_ascii=False, default=_json_default, allow_nan=False)
        + "\n",
        encoding="utf-8",
    )
    return path


def write_results_json(path: Path, records: Sequence[Record], meta: dict[str, Any]) -> Path:
    return write_json(path, {"meta": meta, "records": [asdict(r) for r in records]})


# --------------------------------------------------------------------------------------------
# report.md
# --------------------------------------------------------------------------------------------


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def comparison_table(
    records: Sequence[Record], task: str, systems: Sequence[str], metrics: Sequence[str]
) -> tuple[list[str], list[str]]:
    """Markdown table lines (dataset x metric rows, one column per system; best in bold) and
    the footnotes explaining every n/a."""
    by_key = {(r.dataset, r.metric, r.model): r for r in records if r.task == task}
    datasets = list(dict.fromkeys(r.dataset for r in records if r.task == task))
    columns = [s for s in systems if any(k[2] == s for k in by_key)]
    lines = [
        "| dataset | metric | " + " | ".join(columns) + " |",
        "| --- | --- | " + " | ".join("---:" for _ in columns) + " |",
    ]
    notes: list[str] = []
    for dataset in datasets:
        for metric in metrics:
            row = [by_key.get((dataset, metric, s)) for s in columns]
            if all(r is None for r in row):
                continue
            # Compare the figures as shown, so equal-looking cells are all bold or none is.
            values = [round(r.value, 3) for r in row if r is not None and r.value is not None]
            best = max(values) if values else None
            cells = []
            for system, r in zip(columns, row, strict=True):
                if r is None:
                    cells.append("")
                elif r.value is None:
                    notes.append(f"{system} · {dataset} · {metric}: n/a ({r.reason})")
                    cells.append("n/a")
                elif best is not None and round(r.value, 3) == best and len(set(values)) > 1:
                    cells.append(f"**{_fmt(r.value)}**")
                else:
                    cells.append(_fmt(r.value))
            lines.append(f"| {dataset} | {metric} | " + " | ".join(cells) + " |")
    return lines, notes


def write_report_md(
    path: Path,
    records: Sequence[Record],
    meta: dict[str, Any],
    systems: Sequence[str],
    plots: Sequence[Path] = (),
) -> Path:
    """The human-readable comparison (one table per task)."""
    lines = ["# FashionCLIP evaluation report", ""]
    seconds = meta.get("run_time_seconds")
    lines += [
        f"- Command: `{meta.get('command') or '(library call)'}`",
        f"- Total run time: {seconds:.1f} s ({seconds / 60:.1f} min) on {meta.get('cpu_count')} CPU "
        f"core(s), device {meta.get('device', 'n/a')} (loading, encoding, metrics and plots; "
        "embedding-cache hits make repeated runs faster)"
        if seconds is not None
        else "- Total run time: n/a",
        f"- Date: {meta.get('finished_at', 'n/a')} · fashionclip {meta.get('fashionclip_version')}",
        "",
        "## Models",
        "",
        "| name | kind | dim | fingerprint | source |",
        "| --- | --- | ---: | --- | --- |",
    ]
    for m in meta.get("models", []):
        lines.append(
            f"| {m['name']} | {m['kind']} | {m['embedding_dim']} | `{str(m['fingerprint'])[:16]}` "
            f"| {m.get('source', '')} |"
        )
    settings = meta.get("settings", {})
    lines += ["", "## Settings", ""]
    lines += [f"- {key}: `{value}`" for key, value in settings.items()]
    lines += ["", "## Data", ""]
    lines += [f"- {line}" for line in meta.get("data_notes", [])]

    all_notes: list[str] = []
    for task, title in TASK_TITLES.items():
        if not any(r.task == task for r in records):
            continue
        table, notes = comparison_table(records, task, systems, TABLE_METRICS[task])
        lines += ["", f"## {title}", ""] + table
        all_notes += notes
    lines += [
        "",
        "Best figure per row in **bold**, compared as shown to 3 decimals (none when all are "
        "equal); all metrics: higher is better; n/a = could not be computed (reasons below).",
    ]
    lines += ["", "## Baselines and definitions", ""]
    lines += [f"- {line}" for line in meta.get("definitions", [])]
    if all_notes:
        lines += ["", "## Figures that could not be computed", ""]
        lines += [f"- {note}" for note in all_notes]
    dropped = meta.get("dropped_classes") or {}
    if any(dropped.values()):
        lines += ["", "## Classes dropped (fewer test items than the minimum class size)", ""]
        for dataset, classes in dropped.items():
            if classes:
                listed = ", ".join(f"{c} ({n})" for c, n in classes.items())
                lines.append(f"- {dataset}: {listed}")
    if plots:
        lines += ["", "## Plots", ""]
        for plot in plots:
            rel = plot.relative_to(path.parent) if plot.is_relative_to(path.parent) else plot
            lines.append(f"- [{rel}]({rel})")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# --------------------------------------------------------------------------------------------
# plots
# --------------------------------------------------------------------------------------------


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")[:80] or "x"


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_per_class_f1(
    path: Path, title: str, per_class: dict[str, dict[str, float | None]]
) -> Path:
    """Grouped horizontal bars: per-class F1 of each system (classes in label order)."""
    plt = _pyplot()
    systems = list(per_class)
    classes = list(next(iter(per_class.values())))
    height = max(3.0, 0.22 * len(classes) * max(1, len(systems)) + 1.2)
    fig, ax = plt.subplots(figsize=(8, min(height, 60)))
    bar = 0.8 / max(1, len(systems))
    y = np.arange(len(classes))
    for i, system in enumerate(systems):
        values = [per_class[system].get(c) for c in classes]
        ax.barh(
            y + i * bar,
            [np.nan if v is None else v for v in values],
            height=bar,
            label=system,
        )
    ax.set_yticks(y + bar * (len(systems) - 1) / 2)
    ax.set_yticklabels(classes, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("F1")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def plot_confusion(
    path: Path, title: str, labels: Sequence[str], matrix: Sequence[Sequence[int]]
) -> Path:
    """Row-normalised confusion matrix (rows: true class, columns: predicted)."""
    plt = _pyplot()
    counts = np.asarray(matrix, dtype=np.float64)
    rows = counts.sum(axis=1, keepdims=True)
    normalised = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)
    size = min(4 + 0.18 * len(labels), 24)
    fig, ax = plt.subplots(figsize=(size, size))
    image = ax.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)))
    ax.set_yticks(range(len(labels)))
    font = 7 if len(labels) <= 40 else 5
    ax.set_xticklabels(labels, rotation=90, fontsize=font)
    ax.set_yticklabels(labels, fontsize=font)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def plot_recall_curves(
    path: Path, title: str, curves: dict[str, tuple[list[int], list[float | None]]]
) -> Path:
    """recall@k against k (log scale) for each system."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for system, (ks, values) in curves.items():
        ax.plot(ks, [np.nan if v is None else v for v in values], label=system)
    ax.set_xscale("log")
    ax.set_ylim(0, 1)
    ax.set_xlabel("k")
    ax.set_ylabel("recall@k")
    ax.set_title(title, fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def write_plots(folder: Path, details: dict[str, Any]) -> list[Path]:
    """Every plot of a run's ``details`` into ``folder`` (stale PNGs removed first)."""
    # Plots of an earlier run into the same folder would no longer match report.md.
    for stale in folder.glob("*.png"):
        stale.unlink()
    plots: list[Path] = []
    for task, datasets in details["per_class_f1"].items():
        for dataset, per_system in datasets.items():
            path = folder / f"{task}__{slug(dataset)}__per_class_f1.png"
            plots.append(plot_per_class_f1(path, f"{task} · {dataset}: per-class F1", per_system))
    for task, datasets in details["confusion"].items():
        for dataset, per_system in datasets.items():
            for system, cm in per_system.items():
                path = folder / f"{task}__{slug(dataset)}__confusion__{slug(system)}.png"
                title = f"{system} · {task} · {dataset}"
                plots.append(plot_confusion(path, title, cm["labels"], cm["matrix"]))
    for dataset, per_system in details["recall_curves"].items():
        curves = {s: (c["k"], c["recall"]) for s, c in per_system.items()}
        path = folder / f"retrieval__{slug(dataset)}__recall_at_k.png"
        plots.append(plot_recall_curves(path, f"retrieval · {dataset}", curves))
    return plots
