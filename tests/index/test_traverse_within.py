"""GradREC's direction estimated within the kept column's values (index/traverse.py
within_sets / gradrec_within, index/traverse_catalog.direction_for(within=...)).

A synthetic catalog where the kind of product (articleType) lies along e1 and "darkness" along
e0, independent of it; the fake start phrase ("light") also prefers one kind, as real phrases
do. The catalog-wide GradREC direction then also points from one kind to another; the
within-kind one must not.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fashionclip.errors import InvalidQueryError
from fashionclip.index import Catalog
from fashionclip.index import traverse as T
from fashionclip.index.traverse_catalog import DIRECTIONS, direction_for

DIM = 12
N = 900
TYPES = ("Shirts", "Heels", "Dress")


def _confounded(n: int = N, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Unit rows (kind along e1, darkness along e0) and their kind codes."""
    rng = np.random.default_rng(seed)
    kinds = np.arange(n) % len(TYPES)
    rows = 0.3 * rng.normal(size=(n, DIM))
    rows[:, 1] = np.array([2.0, -2.0, 0.0])[kinds] + 0.2 * rng.normal(size=n)
    rows[:, 0] = rng.uniform(-1.5, 1.5, size=n)
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32), kinds


class ConfoundedText:
    """ "light" -> mostly -e0 but also +e1 (the Shirts kind); "dark" -> +e0."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, prompts: list[str]) -> np.ndarray:
        self.calls += 1
        dark = np.array(["dark" in prompt for prompt in prompts])
        out = np.zeros((len(prompts), DIM), np.float32)
        out[:, 0] = np.where(dark, 1.0, -1.0)
        out[~dark, 1] = 1.0
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def _phrase_scores(rows: np.ndarray) -> np.ndarray:
    phrases = ConfoundedText()(["light", "dark"])
    return rows @ phrases.T


def test_within_sets_takes_each_groups_top_share() -> None:
    scores = np.array(
        [[5, 0], [4, 1], [3, 2], [2, 3], [1, 4], [0, 5], [9, 9], [8, 8], [7, 7]], np.float32
    )
    groups = np.array([0, 0, 0, 0, 0, 0, -1, 1, 1])  # row 6: no group; group 1 too small
    sets = T.within_sets(scores, groups, share=0.34, min_group=3)
    assert len(sets) == 1
    exemplars, population = sets[0]
    assert exemplars.tolist() == [0, 1] and population.tolist() == [5, 4]
    scores[0, 0] = -np.inf  # not a candidate (a dead row)
    exemplars, population = T.within_sets(scores, groups, share=0.34, min_group=3)[0]
    assert 0 not in exemplars and 0 not in population
    assert T.within_sets(scores, np.full(9, -1)) == []


def test_gradrec_within_cancels_the_kind() -> None:
    rows, kinds = _confounded()
    scores = _phrase_scores(rows)
    overall = T.gradrec_from_sets(rows[T.top(scores[:, 0], 60)], rows[T.top(scores[:, 1], 300)])
    sets = T.within_sets(scores, kinds)
    within = T.gradrec_within((rows[e], rows[p]) for e, p in sets)
    assert within is not None
    assert abs(overall[1]) > 0.3  # the catalog-wide direction also changes the kind
    assert within[0] > 0.9 and abs(within[1]) < 0.5 * abs(overall[1])


def test_gradrec_within_without_groups_or_difference() -> None:
    assert T.gradrec_within([]) is None
    same = np.ones((4, DIM))
    with pytest.raises(InvalidQueryError, match="same products"):
        T.gradrec_within([(same, same)])


@pytest.fixture
def catalog(tmp_path: Path) -> Catalog:
    identity = {"name": "fake", "kind": "test", "embedding_dim": DIM, "fingerprint": "w"}
    cat = Catalog.create(tmp_path / "cat", identity)
    rows, kinds = _confounded()
    meta = [{"articleType": TYPES[k], "sku": f"s{i}"} for i, k in enumerate(kinds)]
    cat.add_embeddings([f"p{i}" for i in range(N)], rows, meta)
    DIRECTIONS.clear()
    return cat


def _direction(cat: Catalog, within: str | None, encoder: ConfoundedText) -> np.ndarray:
    settings = T.WalkSettings(start_n=60, end_n=300)
    return direction_for(cat, cat.snapshot(), "light", "dark", "gradrec", settings, encoder, within)


def test_a_kept_walk_uses_the_within_direction(catalog: Catalog) -> None:
    encoder = ConfoundedText()
    steps = catalog.traverse("p0", "light", "dark", keep="articleType", start_n=60, end_n=300,
                             encode_texts=encoder)  # fmt: skip
    assert steps and encoder.calls == 1
    within = _direction(catalog, "articleType", encoder)
    assert encoder.calls == 1  # the walk cached exactly this direction
    overall = _direction(catalog, None, encoder)
    assert encoder.calls == 2  # the catalog-wide one is another cache entry
    assert within[0] > 0.9 and abs(within[1]) < abs(overall[1])
    darkness = [np.mean([catalog.vector(r.id)[0] for r in step]) for step in steps]
    assert darkness == sorted(darkness)


def test_groups_too_small_fall_back_to_the_catalog_wide_direction(catalog: Catalog) -> None:
    encoder = ConfoundedText()
    by_sku = _direction(catalog, "sku", encoder)  # one product per value: no usable group
    overall = _direction(catalog, None, encoder)
    np.testing.assert_allclose(by_sku, overall, atol=1e-6)


def test_small_groups_noisy_spread_does_not_take_over_the_direction() -> None:
    """Many small kinds (a population of 2: what within_sets gives a kind of 5-8 products) whose
    two population rows almost agree in one dimension: their z-scores there, against their own
    spread, were huge and consistent, and that dimension took over the direction, which then
    ordered nothing (seen with a trained model on KAGL val: a light -> dark walk going lighter).
    Against the spread pooled over every group, the darkness signal of the big kinds wins."""
    rng = np.random.default_rng(3)
    sets = []
    for _ in range(4):  # big kinds: darkness along e0, exemplars light, population dark
        exemplars = 0.3 * rng.normal(size=(40, DIM))
        exemplars[:, 0] -= 1.0
        population = 0.3 * rng.normal(size=(40, DIM))
        population[:, 0] += 1.0
        sets.append((exemplars, population))
    for _ in range(40):  # small kinds: a tiny, consistent offset along e5 vs a near-zero spread
        population = 0.3 * rng.normal(size=(2, DIM))
        population[:, 5] = 0.0 + 1e-4 * rng.normal(size=2)
        exemplar = 0.3 * rng.normal(size=(1, DIM))
        exemplar[:, 5] = -0.01
        sets.append((exemplar, population))
    direction = T.gradrec_within(sets)
    assert direction is not None
    assert direction[0] > 0.9 and abs(direction[5]) < 0.2, direction.round(2)
