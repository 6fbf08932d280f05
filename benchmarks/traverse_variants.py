"""Walk and direction variants tried for ``Catalog.traverse``, and why light -> dark is capped.

Run on a *validation* catalog (never the test catalog the closing figures come from):

    python benchmarks/traverse_variants.py --catalog runs/kagl-val --seeds 300 --seed 2
    python benchmarks/traverse_variants.py --catalog runs/kagl-val --diagnose

Judged exactly as benchmarks/traverse_quality.py (pixel luminance, ``usage == Formal``; its
``Judge`` and ``evaluate``), with ``keep=articleType`` and the library's default shape (steps x
products a step; 6 x 4 until session 10). Every variant uses only
the model's vectors and the catalog's metadata (the kept column); luminance only judges.

* ``library``: ``Catalog.traverse`` with the CLI defaults (calibrated shares of the seed's
  300 nearest products further along, each step's products nearest the walk point);
* ``ladder``: rungs at quantiles of those products' projections (first just past the seed,
  last at the furthest), each rung's products the ones nearest the rung in projection, then
  nearest the seed;
* ``bands D``: rung ``i`` at the seed's projection + ``i * D`` standard deviations of the kept
  category's projections (the step calibrated to the catalog's spread), +- D/2, the products
  of the whole category nearest the walk point; a rung with nothing on it is skipped;
The direction is the library's (GradREC within article types) unless the row says otherwise:

* ``catalog-wide``: GradREC's direction over the whole catalog (the library before);
* ``pca k``: that direction restricted to the catalog's top ``k`` principal axes;
* ``category``: GradREC's direction computed within the seed's category only (exemplars: its top
  5%, population: its top 30% for the phrases; the global one for categories under 40);
* ``agree``: only products further along both that direction and the arithmetic one,
  in shares of the sum of their ranks on the two, each share's products nearest the seed.

``--diagnose``: per seed of the CLI-default walk, its *headroom* (the share of its category
further along than it) and the per-product Spearman rho(projection, luminance) over the
products the walk could show; the walk's rho by headroom bucket.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from traverse_quality import HEADER, Judge, Walker, _row, evaluate, library_walker, pick_seeds

from fashionclip.index import Catalog
from fashionclip.index.traverse import WalkSettings, gradrec_from_sets, spearman, top
from fashionclip.index.traverse import walk as traverse_walk
from fashionclip.index.traverse_catalog import direction_for

_SHAPE = WalkSettings()

#: seed position, direction, (start, end) -> list of steps of positions
Walk = Callable[[int, np.ndarray], list[list[int]]]
Direction = Callable[[str, str, int], np.ndarray]


class Space:
    """The catalog as arrays: vectors, article types, directions per phrase pair."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.ids = catalog.ids()
        self.row = {pid: i for i, pid in enumerate(self.ids)}
        self.x = np.stack([catalog.vector(p) for p in self.ids]).astype(np.float32)
        types = [(catalog.get(p).metadata or {}).get("articleType") for p in self.ids]  # type: ignore[union-attr]
        self.types = np.array([str(t) for t in types])
        self._axes: np.ndarray | None = None

    def direction(
        self, start: str, end: str, method: str = "gradrec", within: str | None = "articleType"
    ) -> np.ndarray:
        """The library's direction (with keep=articleType: estimated within article types)."""
        snap = self.catalog.snapshot()
        return direction_for(self.catalog, snap, start, end, method, WalkSettings(), None, within)

    def axes(self, k: int) -> np.ndarray:
        """The catalog's top ``k`` principal axes, (k, D)."""
        if self._axes is None:
            centred = self.x - self.x.mean(axis=0)
            _, vectors = np.linalg.eigh(centred.T @ centred)
            self._axes = vectors[:, ::-1].T
        return self._axes[:k]

    def ahead(self, seed: int, z: np.ndarray, size: int = 300) -> np.ndarray:
        """The ``size`` products of the seed's type nearest it among those further along."""
        allowed = (self.types == self.types[seed]) & (z > z[seed])
        allowed[seed] = False
        return top(np.where(allowed, self.x @ self.x[seed], -np.inf), int(allowed.sum())).astype(
            np.int64
        )[:size]

    def walker(self, walk: Walk, direction: Direction) -> Walker:
        def run(seed_id: str, start: str, end: str) -> list[list[str]]:
            seed = self.row[seed_id]
            path = walk(seed, direction(start, end, seed))
            return [[self.ids[i] for i in step] for step in path if len(step)]

        return run


def ladder(space: Space, steps: int = _SHAPE.steps, per_step: int = _SHAPE.per_step) -> Walk:
    def walk(seed: int, u: np.ndarray) -> list[list[int]]:
        z = space.x @ u
        pool = space.ahead(seed, z)
        if len(pool) == 0:
            return []
        n = max(1, min(steps, len(pool) // per_step))
        targets = np.quantile(z[pool], np.linspace(0, 1, n) if n > 1 else [1.0])
        used = np.zeros(len(z), bool)
        path = []
        for target in targets:
            free = pool[~used[pool]]
            near = free[np.argsort(np.abs(z[free] - target), kind="stable")][:per_step]
            best = near[np.argsort(-(space.x[near] @ space.x[seed]), kind="stable")]
            used[best] = True
            path.append([int(i) for i in best])
        return path

    return walk


def bands(
    space: Space, delta: float, steps: int = _SHAPE.steps, per_step: int = _SHAPE.per_step
) -> Walk:
    def walk(seed: int, u: np.ndarray) -> list[list[int]]:
        z = space.x @ u
        kind = space.types == space.types[seed]
        width = delta * float(z[kind].std())
        rest = space.x[seed] - z[seed] * u
        rest = rest / max(float(np.linalg.norm(rest)), 1e-6)
        kind[seed] = False
        path = []
        for i in range(1, steps + 1):
            target = min(float(z[seed]) + i * width, 0.999)
            found = np.flatnonzero(kind & (np.abs(z - target) <= width / 2))
            if len(found):
                point = rest * np.sqrt(1 - target * target) + target * u
                best = found[np.argsort(-(space.x[found] @ point), kind="stable")][:per_step]
                path.append([int(j) for j in best])
        return path

    return walk


def library(space: Space) -> Walk:
    """The library's walk (index.traverse.walk) over the seed's kept-category pool."""

    def walk(seed: int, u: np.ndarray) -> list[list[int]]:
        pool = space.ahead(seed, space.x @ u)
        path = traverse_walk(space.x[seed], space.x[pool], u, WalkSettings())
        return [[int(pool[i]) for i, _ in step] for step in path]

    return walk


def agree(
    space: Space, second: np.ndarray, steps: int = _SHAPE.steps, per_step: int = _SHAPE.per_step
) -> Walk:
    """Only products ahead on ``second`` too, in shares of the sum of their two ranks."""

    def walk(seed: int, u: np.ndarray) -> list[list[int]]:
        z, z2 = space.x @ u, space.x @ second
        pool = space.ahead(seed, z)
        pool = pool[z2[pool] > z2[seed]]
        if len(pool) == 0:
            return []
        order = pool[np.argsort(_ranks(z[pool]) + _ranks(z2[pool]), kind="stable")]
        near = space.x @ space.x[seed]
        groups = np.array_split(order, min(steps, len(order)))
        return [[int(i) for i in g[np.argsort(-near[g], kind="stable")][:per_step]] for g in groups]

    return walk


def _ranks(values: np.ndarray) -> np.ndarray:
    return np.argsort(np.argsort(values, kind="stable"), kind="stable").astype(np.float64)


def variants(space: Space) -> dict[str, Walker]:
    """Every variant, named as in docs/recommend.md."""

    def plain(start: str, end: str, seed: int) -> np.ndarray:
        return space.direction(start, end)

    def pca(k: int) -> Direction:
        def direction(start: str, end: str, seed: int) -> np.ndarray:
            axes = space.axes(k)
            v = axes.T @ (axes @ space.direction(start, end))
            return (v / np.linalg.norm(v)).astype(np.float32)

        return direction

    cache: dict[tuple[str, str, str], np.ndarray] = {}

    def category(start: str, end: str, seed: int) -> np.ndarray:
        key = (start, end, str(space.types[seed]))
        if key not in cache:
            rows = np.flatnonzero(space.types == space.types[seed])
            if len(rows) < 40:  # too few to estimate a direction: the global one
                return space.direction(start, end)
            text = space.catalog._require_model("encode phrases").encode_text
            from fashionclip.models.prompts import ENSEMBLE_TEMPLATES, build_zero_shot_classifier

            phrases = build_zero_shot_classifier(text, [start, end], ENSEMBLE_TEMPLATES)
            scores = space.x[rows] @ phrases.T
            n = len(rows)
            exemplars = space.x[rows[top(scores[:, 0], max(3, n // 20))]]
            population = space.x[rows[top(scores[:, 1], max(10, (3 * n) // 10))]]
            cache[key] = gradrec_from_sets(exemplars, population)
        return cache[key]

    def catalog_wide(start: str, end: str, seed: int) -> np.ndarray:
        return space.direction(start, end, within=None)

    out: dict[str, Walker] = {
        "library walk, catalog-wide direction (before)": space.walker(library(space), catalog_wide),
        "ladder (quantile rungs)": space.walker(ladder(space), plain),
    }
    for delta in (0.3, 0.5):
        out[f"bands D={delta} sd of the category"] = space.walker(bands(space, delta), plain)
    for k in (8, 16):
        out[f"library walk, pca k={k} direction"] = space.walker(library(space), pca(k))
    out["library walk, category direction"] = space.walker(library(space), category)
    return out


def agree_walker(space: Space) -> Walker:
    def run(seed_id: str, start: str, end: str) -> list[list[str]]:
        walk = agree(space, space.direction(start, end, "arithmetic"))
        path = walk(space.row[seed_id], space.direction(start, end))
        return [[space.ids[i] for i in step] for step in path]

    return run


def diagnose(space: Space, seeds: list[str], judge: Judge) -> None:
    """Walk rho vs headroom, and the per-product rho over the walk's own candidates."""
    u = space.direction("light", "dark")
    z = space.x @ u
    rows = []
    for seed_id in seeds:
        seed = space.row[seed_id]
        kind = space.types == space.types[seed]
        headroom = float((z[kind] > z[seed]).mean())
        steps = space.catalog.traverse(seed_id, "light", "dark", keep="articleType")
        xs = [i for i, step in enumerate(steps) for _ in step]
        ys = [judge.value(r.id, "luminance") for step in steps for r in step]
        pool = space.ahead(seed, z)
        lum = [judge.value(space.ids[i], "luminance") for i in pool]
        rows.append(
            (headroom, spearman(xs, ys), spearman(z[pool], lum) if len(pool) > 5 else np.nan)
        )
    table = np.array(rows, np.float64)
    print("| seed's headroom | seeds with a rho | walk rho | per-product rho over its candidates |")
    print("|---|---|---|---|")
    for low, high in ((0, 0.2), (0.2, 0.5), (0.5, 0.8), (0.8, 1.01)):
        inside = (table[:, 0] >= low) & (table[:, 0] < high)
        walk_rho = table[inside & np.isfinite(table[:, 1]), 1]
        pool_rho = table[inside & np.isfinite(table[:, 2]), 2]
        print(f"| {low:.1f}-{min(high, 1):.1f} | {len(walk_rho)} | {np.mean(walk_rho):+.2f} | "
              f"{np.mean(pool_rho):+.2f} |")  # fmt: skip
    ok = np.isfinite(table[:, 1])
    both = ok & np.isfinite(table[:, 2])
    print(f"all: walk rho {np.mean(table[ok, 1]):+.2f} ({ok.sum()} seeds); per-product rho over "
          f"the walk's candidates {np.mean(table[both, 2]):+.2f}")  # fmt: skip


def main() -> None:
    import fashionclip

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--catalog", default="runs/kagl-val")
    parser.add_argument("--seeds", type=int, default=300)
    parser.add_argument("--seed", type=int, default=2)
    parser.add_argument("--diagnose", action="store_true")
    args = parser.parse_args()
    catalog = Catalog.open(args.catalog, fashionclip.load())
    space, judge = Space(catalog), Judge(catalog)
    seeds = pick_seeds(catalog, args.seeds, args.seed)
    print(f"{catalog.path}: {len(catalog)} products, {len(seeds)} seeds (rng seed {args.seed})")
    if args.diagnose:
        diagnose(space, seeds, judge)
        return
    print(HEADER)
    walkers = {"library (CLI defaults)": library_walker(catalog, "gradrec", "articleType")}
    walkers.update(variants(space))
    walkers["library walk, ahead on both directions (agree)"] = agree_walker(space)
    for name, walker in walkers.items():
        print(_row(name, evaluate(catalog, seeds, walker, judge)), flush=True)


if __name__ == "__main__":
    main()
