"""Quality and latency of comparative walks (``Catalog.traverse``, docs/recommend.md).

Run (KAGL test-split catalog built with the default model, 50 seeds drawn with a fixed seed):

    python benchmarks/traverse_quality.py --catalog runs/kagl-test
    python benchmarks/traverse_quality.py --catalog runs/kagl-val --grid   # choose defaults
    python benchmarks/traverse_quality.py --latency [--size 50000]

Measured, per method (``gradrec``, ``arithmetic``), with the CLI's default ``keep``
(articleType) and without it:

* **light -> dark**: Spearman rho between the step number and the mean luminance of each
  returned product's pixels (Rec.709 luma of the pixels whose darkest channel is below 235,
  i.e. the white background left out): computed from the image files, independent of the model.
  Negative: products get darker step after step. Mean over the seeds whose walk has a rho.
  Two readings, both printed as ``per product / step means``: rho over every returned product
  (its step number against its luminance; the stricter one), and rho over the steps (the step
  number against the mean luminance of the step's products, the issue's wording).
* **casual -> formal**: rho between the step number and ``usage == "Formal"`` (many seeds
  give no rho: every product of their walk has the same usage), and the Formal share at the
  first and the last step.
* **keep**: share of returned products with the seed's articleType; **drift**: mean cosine
  similarity of the last step's products to the seed; **steps**: mean walk length.
* ``original`` rows: the public GradREC walk (p <- p + (1-lambda) alpha v + lambda mean of
  the k nearest to p, lambda 0.9, k 100, alpha 3), each step's nearest unseen products, as a
  reference for the calibrated walk.

``--latency``: p50/p99 of one 10-step traversal (direction cached) on synthetic clustered
vectors (benchmarks/search_latency.py) at ``--size`` products, and of the first call (direction
computed).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from fashionclip.index import Catalog
from fashionclip.index.traverse import WalkSettings, spearman, top
from fashionclip.index.traverse_catalog import DIRECTIONS, direction_for

ATTRIBUTES = (("light", "dark", "luminance"), ("casual", "formal", "formal"))


def luminance(path: Path) -> float:
    """Mean Rec.709 luma of an image's non-background pixels (darkest channel < 235)."""
    with Image.open(path) as image:
        a = np.asarray(image.convert("RGB"), np.float32)
    luma = 0.2126 * a[..., 0] + 0.7152 * a[..., 1] + 0.0722 * a[..., 2]
    fg = a.min(axis=2) < 235
    return float(luma[fg].mean() if fg.sum() > 20 else luma.mean())


class Judge:
    """The model-free values a walk is judged by, cached per product."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._lum: dict[str, float] = {}

    def value(self, product_id: str, metric: str) -> float:
        if metric == "formal":
            return float(self.meta(product_id).get("usage") == "Formal")
        if product_id not in self._lum:
            self._lum[product_id] = luminance(self.catalog.image_path(product_id))
        return self._lum[product_id]

    def meta(self, product_id: str) -> dict[str, Any]:
        product = self.catalog.get(product_id)
        return {} if product is None else dict(product.metadata)


Walker = Callable[[str, str, str], list[list[str]]]


def evaluate(catalog: Catalog, seeds: list[str], walker: Walker, judge: Judge) -> dict[str, float]:
    """Mean rho per attribute, keep share, drift and walk length over the seeds."""
    out: dict[str, float] = {}
    kept = shown = 0
    drift: list[float] = []
    lengths: list[int] = []
    for start, end, metric in ATTRIBUTES:
        rhos: list[float] = []
        step_rhos: list[float] = []
        first: list[float] = []
        last: list[float] = []
        for seed in seeds:
            path = walker(seed, start, end)
            lengths.append(len(path))
            xs = [i for i, step in enumerate(path) for _ in step]
            ys = [judge.value(pid, metric) for step in path for pid in step]
            rho = spearman(xs, ys)
            if np.isfinite(rho):
                rhos.append(rho)
            means = [float(np.mean([judge.value(p, metric) for p in step])) for step in path]
            step_rho = spearman(list(range(len(means))), means)
            if np.isfinite(step_rho):
                step_rhos.append(step_rho)
            if path:
                first.append(means[0])
                last.append(means[-1])
                seed_vector = catalog.vector(seed)
                drift.append(float(np.mean([catalog.vector(p) @ seed_vector for p in path[-1]])))
            seed_type = judge.meta(seed).get("articleType")
            for pid in (p for step in path for p in step):
                shown += 1
                kept += judge.meta(pid).get("articleType") == seed_type
        out[f"{metric}_rho"] = float(np.mean(rhos)) if rhos else float("nan")
        out[f"{metric}_n"] = len(rhos)
        out[f"{metric}_step_rho"] = float(np.mean(step_rhos)) if step_rhos else float("nan")
        out[f"{metric}_step_n"] = len(step_rhos)
        out[f"{metric}_first"] = float(np.mean(first)) if first else float("nan")
        out[f"{metric}_last"] = float(np.mean(last)) if last else float("nan")
    out["keep"] = kept / max(shown, 1)
    out["drift"] = float(np.mean(drift)) if drift else float("nan")
    out["steps"] = float(np.mean(lengths)) if lengths else 0.0
    return out


def library_walker(catalog: Catalog, method: str, keep: str | None, **options: Any) -> Walker:
    def walker(seed: str, start: str, end: str) -> list[list[str]]:
        steps = catalog.traverse(seed, start, end, method=method, keep=keep, **options)
        return [[r.id for r in step] for step in steps]

    return walker


def original_walker(catalog: Catalog, steps: int, per_step: int, alpha: float = 3.0) -> Walker:
    """The public GradREC walk with its defaults (lambda 0.9, k 100), for reference."""
    snap = catalog.snapshot()
    ids = catalog.ids()
    vectors = np.stack([catalog.vector(i) for i in ids])
    row = {pid: i for i, pid in enumerate(ids)}

    def walker(seed: str, start: str, end: str) -> list[list[str]]:
        v = direction_for(catalog, snap, start, end, "gradrec", WalkSettings())
        p = vectors[row[seed]].astype(np.float64)
        shown = {row[seed]}
        path = []
        for _ in range(steps):
            p = p / np.linalg.norm(p)
            near = top(vectors @ p, 100)
            p = p + 0.1 * alpha * v + 0.9 * vectors[near].mean(axis=0)
            scores = vectors @ (p / np.linalg.norm(p))
            scores[list(shown)] = -np.inf
            best = [int(i) for i in top(scores, per_step)]
            shown.update(best)
            path.append([ids[i] for i in best])
        return path

    return walker


def pick_seeds(catalog: Catalog, n: int, seed: int) -> list[str]:
    ids = sorted(catalog.ids())
    chosen = np.random.default_rng(seed).choice(len(ids), min(n, len(ids)), replace=False)
    return [ids[i] for i in chosen]


def _rhos(r: dict[str, float], metric: str) -> str:
    """'per product / step means (seeds)': the two readings of rho, and their seed counts."""
    counts = f"{r[metric + '_n']:.0f}"
    if r[metric + "_step_n"] != r[metric + "_n"]:
        counts += f" / {r[metric + '_step_n']:.0f}"
    return f"{r[metric + '_rho']:+.2f} / {r[metric + '_step_rho']:+.2f} ({counts})"


def _row(name: str, r: dict[str, float]) -> str:
    return (
        f"| {name} | {_rhos(r, 'luminance')} | "
        f"{r['luminance_first']:.0f} -> {r['luminance_last']:.0f} | "
        f"{_rhos(r, 'formal')} | "
        f"{r['formal_first']:.2f} -> {r['formal_last']:.2f} | {r['keep']:.2f} | "
        f"{r['drift']:.3f} | {r['steps']:.1f} |"
    )


HEADER = (
    "| walk | light->dark rho: per product / step means (seeds) | luminance 1st -> last step "
    "| casual->formal rho: per product / step means (seeds) "
    "| Formal share 1st -> last | same articleType | cos(seed, last step) | steps |\n"
    "|---|---|---|---|---|---|---|---|"
)


def quality(args: argparse.Namespace) -> None:
    import fashionclip

    catalog = Catalog.open(args.catalog, fashionclip.load(args.model))
    seeds = pick_seeds(catalog, args.seeds, args.seed)
    judge = Judge(catalog)
    options = {"steps": args.steps, "per_step": args.per_step, "neighbourhood": args.neighbourhood}
    print(
        f"{catalog.path}: {len(catalog)} products, {len(seeds)} seeds (rng seed {args.seed}), "
        f"settings {options}",
        flush=True,
    )
    print(HEADER)
    for method in ("gradrec", "arithmetic"):
        for keep in ("articleType", None):
            walker = library_walker(catalog, method, keep, step_size=args.step_size, **options)
            result = evaluate(catalog, seeds, walker, judge)
            print(_row(f"{method}, keep={keep or 'none'}", result), flush=True)
    result = evaluate(catalog, seeds, original_walker(catalog, args.steps, args.per_step), judge)
    print(_row("gradrec, original walk (public code), keep=none", result), flush=True)


def grid(args: argparse.Namespace) -> None:
    """Settings tried on a dev catalog to choose the defaults (gradrec, keep=articleType)."""
    import fashionclip

    catalog = Catalog.open(args.catalog, fashionclip.load(args.model))
    seeds = pick_seeds(catalog, args.seeds, args.seed)
    judge = Judge(catalog)
    print(HEADER)
    keep = args.keep or None
    # more products a step average the step's tone over more products (docs/recommend.md)
    for steps, per_step in ((6, 4), (6, 6), (5, 6), (5, 8), (8, 3), (10, 3)):
        for neighbourhood in (300, 1000) if keep is None else (300,):
            for step_size in (None, 0.25, 0.35, 0.5, 0.75, 1.0):
                walker = library_walker(
                    catalog,
                    "gradrec",
                    keep,
                    steps=steps,
                    per_step=per_step,
                    neighbourhood=neighbourhood,
                    step_size=step_size,
                )
                name = f"{steps}x{per_step} n={neighbourhood} step_size={step_size} keep={keep}"
                print(_row(name, evaluate(catalog, seeds, walker, judge)), flush=True)


def latency(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from search_latency import clustered_vectors

    dim = 512
    vectors, cluster, centres = clustered_vectors(args.size, dim, args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        identity = {"name": "synthetic", "kind": "bench", "embedding_dim": dim, "fingerprint": "0"}
        catalog = Catalog.create(Path(tmp) / "c", identity)
        ids = [f"p{i}" for i in range(args.size)]
        catalog.add_embeddings(ids, vectors, [{"articleType": f"t{c % 141}"} for c in cluster])
        rng = np.random.default_rng(args.seed)

        def encode(prompts: list[str]) -> np.ndarray:  # the model's cost is not the walk's
            out = centres[rng.integers(0, len(centres), size=len(prompts))]
            return np.asarray(out, np.float32)

        seeds = [ids[i] for i in rng.choice(args.size, 60, replace=False)]
        first, times = [], []
        for i, seed in enumerate(seeds):
            if i % 20 == 0:
                DIRECTIONS.clear()
            began = time.perf_counter()
            catalog.traverse(
                seed, "light", "dark", steps=10, keep="articleType", encode_texts=encode
            )
            (first if i % 20 == 0 else times).append(time.perf_counter() - began)
        ms = np.array(times) * 1000
        print(
            f"{args.size:,} products x {dim}: one 10-step traversal (direction cached) "
            f"p50 {np.percentile(ms, 50):.1f} ms, p99 {np.percentile(ms, 99):.1f} ms; "
            f"with the direction computed (no encoding) {np.mean(first) * 1000:.1f} ms"
        )
        catalog.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--catalog", default="runs/kagl-test")
    parser.add_argument("--model", default=None)
    parser.add_argument("--seeds", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    default = WalkSettings()
    parser.add_argument("--steps", type=int, default=default.steps)
    parser.add_argument("--per-step", type=int, default=default.per_step)
    parser.add_argument("--neighbourhood", type=int, default=default.neighbourhood)
    parser.add_argument("--step-size", type=float, default=None)
    parser.add_argument("--grid", action="store_true", help="try settings (on a dev catalog)")
    parser.add_argument("--keep", default="articleType", help="--grid: keep column ('' none)")
    parser.add_argument("--latency", action="store_true")
    parser.add_argument("--size", type=int, default=50_000)
    args = parser.parse_args()
    if args.latency:
        latency(args)
    elif args.grid:
        grid(args)
    else:
        quality(args)


if __name__ == "__main__":
    main()
