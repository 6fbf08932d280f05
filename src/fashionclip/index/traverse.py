"""Comparative recommendations by walking the embedding space ("like this, but darker").

After GradREC (Chia et al., "'Does it come in black?' CLIP-like models are zero-shot
recommenders", ECNLP 2022). Two pieces, both pure numpy over unit vectors:

* a **direction** from a start phrase to an end phrase. ``gradrec``: the per-dimension
  signal-to-noise ratio of the start phrase's top ``start_n`` products (exemplars) against the
  end phrase's top ``end_n`` products (population), negated so that it points start -> end;
  when the walk keeps a column (``keep="articleType"``), the same ratio estimated within each
  of its values (:func:`gradrec_within`), so that it does not also point from one kind of
  product to another. ``arithmetic``: the difference of the two text vectors (the baseline).
* a **walk** from the seed along that direction (:func:`walk`). The original steps a point by
  a fixed ``alpha * v`` and pulls it back with the mean of its nearest products; on a real
  catalog that saturates after a step or two or jumps into another category. Here the walk
  stays on the data and is calibrated to it: it runs over the seed's nearest products that lie
  *further along* the direction than the seed, ordered by their projection; step ``i`` covers
  the ``i``-th equal share of them (or a band ``step_size`` standard deviations wide) and shows
  the products of that share closest to the walk point — the seed moved to that projection,
  the rest of it kept (GradREC's "change one attribute, keep the rest").

Both methods share the walk, so comparisons measure the direction alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from fashionclip.errors import InvalidQueryError
from fashionclip.utils import normalise_rows

METHODS = ("gradrec", "arithmetic")
MAX_STEPS = 20
MAX_PER_STEP = 20
#: The column the CLI and the web service keep at the seed's value when the catalog has it.
DEFAULT_KEEP = "articleType"
#: With ``keep``, the GradREC direction is estimated within each value of the kept column:
#: each group's top quarter for the start phrase against its top quarter for the end phrase
#: (chosen on KAGL val seeds, docs/recommend.md); groups under MIN_GROUP products are left out.
WITHIN_SHARE = 0.25
MIN_GROUP = 5
_EPS = 1e-6


@dataclass(frozen=True)
class WalkSettings:
    """How far and how finely to walk; defaults chosen on KAGL val seeds (docs/recommend.md).

    ``neighbourhood``: how many of the seed's nearest products further along the direction the
    walk runs over (its reach). ``step_size``: band width in standard deviations of their
    projections; None splits them into ``steps`` equal shares (calibrated to the catalog).
    ``start_n`` / ``end_n``: exemplars and population of the GradREC direction.
    """

    steps: int = 5
    per_step: int = 6
    step_size: float | None = None
    neighbourhood: int = 300
    start_n: int = 100
    end_n: int = 1000

    def check(self, n_products: int, needs_population: bool = True) -> None:
        """Clear errors for settings no walk can use on a catalog of ``n_products``
        (``needs_population``: the direction is GradREC's, from start_n and end_n products)."""
        _whole("steps", self.steps, 1, MAX_STEPS)
        _whole("per_step", self.per_step, 1, MAX_PER_STEP)
        _whole("neighbourhood", self.neighbourhood, 1, 100_000)
        _whole("start_n", self.start_n, 1, 100_000)
        _whole("end_n", self.end_n, 1, 100_000)
        if self.step_size is not None and (
            isinstance(self.step_size, bool)
            or not isinstance(self.step_size, int | float)
            or not 0 < float(self.step_size) <= 10
        ):
            raise InvalidQueryError(f"step_size must be in (0, 10], got {self.step_size!r}")
        needed = max(self.start_n, self.end_n) + 1 if needs_population else 2
        if n_products < needed:
            raise InvalidQueryError(
                f"the catalog has {n_products} products to walk over; "
                + (
                    f"a direction from {self.start_n} exemplars against {self.end_n} products "
                    f"needs at least {needed} (lower start_n / end_n)"
                    if needs_population
                    else f"a walk needs at least {needed}"
                )
            )


def _whole(name: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidQueryError(
            f"{name} must be a whole number from {low} to {high}, got {value!r}"
        )


def gradrec_from_sets(exemplars: np.ndarray, population: np.ndarray) -> np.ndarray:
    """Unit vector from the start phrase's products to the end phrase's (GradREC's SNR).

    ``exemplars``: the start phrase's top ``start_n`` products; ``population``: the end
    phrase's top ``end_n``. Per dimension, each exemplar's z-score against the population; the
    direction is their mean over std (signal to noise), negated to point start -> end.
    """
    direction = gradrec_within([(exemplars, population)])
    assert direction is not None  # one set given
    return direction


def within_sets(
    scores: np.ndarray,
    groups: np.ndarray,
    share: float = WITHIN_SHARE,
    min_group: int = MIN_GROUP,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per group, the positions of its exemplars and of its population.

    ``scores``: (n, 2) similarity of every row to the start and the end phrase (-inf: not a
    candidate); ``groups``: (n,) group code per row, -1 for none (e.g. the articleType value).
    A group of at least ``min_group`` candidates gives its top ``share`` by the start phrase
    (exemplars, at least 1) and its top ``share`` by the end phrase (population, at least 2).
    """
    groups = np.asarray(groups)
    usable = (groups >= 0) & np.isfinite(scores[:, 0]) & np.isfinite(scores[:, 1])
    rows = np.flatnonzero(usable)
    rows = rows[np.argsort(groups[rows], kind="stable")]
    cuts = np.flatnonzero(np.diff(groups[rows])) + 1
    sets: list[tuple[np.ndarray, np.ndarray]] = []
    for members in np.split(rows, cuts):
        n = len(members)
        if n < max(min_group, 2):
            continue
        exemplars = members[top(scores[members, 0], max(1, round(share * n)))]
        population = members[top(scores[members, 1], max(2, round(share * n)))]
        sets.append((exemplars, population))
    return sets


def gradrec_within(sets: Iterable[tuple[np.ndarray, np.ndarray]]) -> np.ndarray | None:
    """GradREC's signal-to-noise direction with each exemplar scored against its own group.

    ``sets``: per group, (exemplar vectors, population vectors) as from :func:`within_sets`.
    Each exemplar's per-dimension z-score is taken against its group's population mean and the
    population spread pooled over all groups, and the mean over std runs over the exemplars of
    every group (negated: start -> end). A catalog-wide GradREC direction also separates *kinds*
    of product (the start phrase's top products are mostly one kind, the end phrase's another);
    within groups that difference cancels, leaving what the phrases change inside a kind. The
    spread is pooled because a small kind's population (2 products for a kind of 5-8) says
    little about it: scored against their own spread, many small kinds' exemplars gave large
    z-scores in arbitrary dimensions that took over the direction. With one group this is
    :func:`gradrec_from_sets` exactly. None when no group is given.
    """
    groups = [(np.asarray(e, np.float64), np.asarray(p, np.float64)) for e, p in sets]
    if not groups:
        return None
    squares = sum(((p - p.mean(axis=0)) ** 2).sum(axis=0) for _, p in groups)
    spread = np.sqrt(squares / sum(len(p) for _, p in groups)) + _EPS
    deltas = np.concatenate([(e - p.mean(axis=0)) / spread for e, p in groups])
    mean = deltas.mean(axis=0)
    std = deltas.std(axis=0)
    return _unit(-mean / (std + _EPS), "the start and end phrases select the same products")


def arithmetic_direction(start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Unit vector of e(end) - e(start): text arithmetic, the baseline."""
    return _unit(
        np.asarray(end, np.float64) - np.asarray(start, np.float64),
        "the start and end phrases embed to the same vector",
    )


def walk(
    seed: np.ndarray, pool: np.ndarray, direction: np.ndarray, settings: WalkSettings
) -> list[list[tuple[int, float]]]:
    """Indices into ``pool`` and scores of the products shown at each step.

    ``pool``: the seed's nearest products (seed excluded), nearest first; only those further
    along ``direction`` than the seed are walked over, the ``settings.neighbourhood`` nearest
    of them. Scores are cosine similarities to the walk point of the step. No index appears
    twice; steps never come back (a product of step ``i + 1`` lies further along than every
    product of step ``i``). Fewer steps come back when fewer products lie ahead.
    """
    u = np.asarray(direction, np.float32)
    seed = normalise_rows(np.asarray(seed, np.float32))
    pool = np.asarray(pool, np.float32)
    if len(pool) == 0:
        return []
    z = pool @ u
    z0 = float(seed @ u)
    ahead = np.flatnonzero(z > z0)[: settings.neighbourhood]
    if len(ahead) == 0:
        return []
    rest = seed - z0 * u
    rest_norm = float(np.linalg.norm(rest))
    rest = rest / rest_norm if rest_norm > _EPS else np.zeros_like(rest)
    path: list[list[tuple[int, float]]] = []
    for group in _groups(ahead, z, z0, settings):
        target = float(np.median(z[group]))
        point = rest * np.sqrt(max(1.0 - target * target, 0.0)) + target * u
        scores = pool[group] @ point
        best = np.argsort(-scores, kind="stable")[: settings.per_step]
        path.append([(int(group[i]), float(scores[i])) for i in best])
    return path


def _groups(
    ahead: np.ndarray, z: np.ndarray, z0: float, settings: WalkSettings
) -> list[np.ndarray]:
    """The products ahead, split by projection into at most ``steps`` non-empty steps."""
    order = ahead[np.argsort(z[ahead], kind="stable")]
    if settings.step_size is None:
        groups = np.array_split(order, min(settings.steps, len(order)))
    else:
        width = float(settings.step_size) * (float(z[ahead].std()) or _EPS)
        band = np.floor((z[order] - z0) / width).astype(np.int64)
        groups = [order[band == i] for i in range(settings.steps)]
    return [g for g in groups if len(g)]


def top(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest scores, best first."""
    k = min(int(k), len(scores))
    if k <= 0:
        return np.zeros(0, np.int64)
    part = np.argpartition(-scores, k - 1)[:k]
    return part[np.argsort(-scores[part], kind="stable")]


def _unit(vector: np.ndarray, why_zero: str) -> np.ndarray:
    norm = float(np.linalg.norm(vector))
    if not np.isfinite(norm) or norm < _EPS:
        raise InvalidQueryError(f"no direction to walk: {why_zero}")
    return (vector / norm).astype(np.float32)


def check_phrases(start: object, end: object) -> tuple[str, str]:
    """Both phrases non-empty strings, different after folding white space and case."""
    cleaned: list[str] = []
    for name, value in (("start", start), ("end", end)):
        if not isinstance(value, str) or not " ".join(value.split()):
            raise InvalidQueryError(f"the {name} phrase is empty")
        text = " ".join(value.split())
        if len(text) > 200:
            raise InvalidQueryError(f"the {name} phrase is longer than 200 characters")
        cleaned.append(text)
    if cleaned[0].casefold() == cleaned[1].casefold():
        raise InvalidQueryError("the start and end phrases are the same; nothing to walk towards")
    return cleaned[0], cleaned[1]


def check_method(method: object) -> str:
    """One of METHODS, else an error that lists them."""
    if method not in METHODS:
        raise InvalidQueryError(f"unknown method {method!r}; choose one of: {', '.join(METHODS)}")
    return str(method)


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman rank correlation (average ranks for ties); nan when either side is constant."""
    a, b = _ranks(np.asarray(x, np.float64)), _ranks(np.asarray(y, np.float64))
    if len(a) < 2 or a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def _ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values), np.float64)
    ranks[order] = np.arange(len(values), dtype=np.float64)
    for value in np.unique(values):  # ties share their mean rank
        tied = values == value
        if tied.sum() > 1:
            ranks[tied] = ranks[tied].mean()
    return ranks
