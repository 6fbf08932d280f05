"""Comparative walks (index/traverse.py, index/traverse_catalog.py, Catalog.traverse).

A synthetic catalog whose first dimension is "darkness": a fake text encoder maps prompts with
"dark" to +e0 and "light" to -e0, so the walk's direction is known and must be followed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fashionclip.errors import InvalidQueryError
from fashionclip.index import Catalog, ProductNotFoundError
from fashionclip.index import traverse as T
from fashionclip.index.traverse_catalog import DIRECTIONS, direction_for

DIM = 16
N = 1200
TYPES = ("Shirts", "Dress", "Heels")


def _vectors(n: int = N, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(len(TYPES), DIM))
    centres[:, 0] = 0.0
    rows = centres[np.arange(n) % len(TYPES)] + 0.5 * rng.normal(size=(n, DIM))
    rows[:, 0] = rng.uniform(-1.5, 1.5, size=n)  # darkness, independent of the type
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


class FakeText:
    """Prompts about dark things -> +e0, light -> -e0, others -> a fixed other axis."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, prompts: list[str]) -> np.ndarray:
        self.calls += 1
        out = np.zeros((len(prompts), DIM), np.float32)
        for i, prompt in enumerate(prompts):
            out[i, 0] = 1.0 if "dark" in prompt else -1.0 if "light" in prompt else 0.0
            out[i, 1 + i % 3] = 0.3
        return out / np.linalg.norm(out, axis=1, keepdims=True)


@pytest.fixture
def catalog(tmp_path: Path) -> Catalog:
    identity = {"name": "fake", "kind": "test", "embedding_dim": DIM, "fingerprint": "f"}
    cat = Catalog.create(tmp_path / "cat", identity)
    vectors = _vectors()
    meta = [{"articleType": TYPES[i % len(TYPES)], "usage": "Casual"} for i in range(N)]
    cat.add_embeddings([f"p{i}" for i in range(N)], vectors, meta)
    DIRECTIONS.clear()
    return cat


def _walk(cat: Catalog, seed: str = "p7", **options: object) -> list[list[str]]:
    options.setdefault("encode_texts", FakeText())
    steps = cat.traverse(seed, "light", "dark", **options)  # type: ignore[arg-type]
    return [[r.id for r in step] for step in steps]


def test_walk_follows_a_known_direction(catalog: Catalog) -> None:
    seed = "p7"
    path = _walk(catalog, seed, steps=6, per_step=4)
    assert len(path) == 6 and all(len(step) == 4 for step in path)
    direction = direction_for(catalog, catalog.snapshot(), "light", "dark", "gradrec",
                              T.WalkSettings(), FakeText())  # fmt: skip
    assert direction[0] > 0.8  # GradREC found "darkness"
    darkness = [[float(catalog.vector(p)[0]) for p in step] for step in path]
    seed_dark = float(catalog.vector(seed)[0])
    projections = [[float(catalog.vector(p) @ direction) for p in step] for step in path]
    assert min(projections[0]) > float(catalog.vector(seed) @ direction)  # from the seed on
    for before, after in zip(projections, projections[1:], strict=False):
        assert min(after) >= max(before)  # never comes back
    means = [np.mean(step) for step in darkness]
    assert means == sorted(means) and means[0] > seed_dark - 0.1
    assert T.spearman(range(len(means)), means) > 0.99


def test_no_repeats_seed_excluded_and_deterministic(catalog: Catalog) -> None:
    first = _walk(catalog, "p3", steps=8, per_step=5)
    flat = [p for step in first for p in step]
    assert flat and len(flat) == len(set(flat)) and "p3" not in flat
    assert _walk(catalog, "p3", steps=8, per_step=5) == first


def test_keep_and_filters_are_respected(catalog: Catalog) -> None:
    seed_type = catalog.get("p4").metadata["articleType"]  # type: ignore[union-attr]
    kept = [p for step in _walk(catalog, "p4", keep="articleType") for p in step]
    assert kept and {catalog.get(p).metadata["articleType"] for p in kept} == {seed_type}  # type: ignore[union-attr]
    other = [p for step in _walk(catalog, "p4", filters={"articleType": "Heels"}) for p in step]
    assert other and {catalog.get(p).metadata["articleType"] for p in other} == {"Heels"}  # type: ignore[union-attr]


def test_keep_does_not_override_a_filter_on_the_same_column(catalog: Catalog) -> None:
    # p5 is a Heels product (TYPES[5 % 3]); keep and filters must both hold
    assert catalog.get("p5").metadata["articleType"] == "Heels"  # type: ignore[union-attr]
    both = _walk(catalog, "p5", keep="articleType", filters={"articleType": ["Shirts", "Heels"]})
    types = {catalog.get(p).metadata["articleType"] for s in both for p in s}  # type: ignore[union-attr]
    assert types == {"Heels"}
    assert _walk(catalog, "p5", keep="articleType", filters={"articleType": "Shirts"}) == []


def test_arithmetic_uses_the_same_walk(catalog: Catalog) -> None:
    path = _walk(catalog, method="arithmetic")
    flat = [p for step in path for p in step]
    assert len(path) == T.WalkSettings().steps and len(flat) == len(set(flat))
    darkness = [np.mean([catalog.vector(p)[0] for p in step]) for step in path]
    assert darkness == sorted(darkness)


def test_step_size_bands(catalog: Catalog) -> None:
    narrow = _walk(catalog, steps=3, step_size=0.1)
    wide = _walk(catalog, steps=3, step_size=1.0)
    assert narrow and wide
    assert catalog.vector(narrow[-1][0])[0] < catalog.vector(wide[-1][0])[0]


def test_nothing_ahead_gives_an_empty_walk(catalog: Catalog) -> None:
    direction = direction_for(catalog, catalog.snapshot(), "light", "dark", "gradrec",
                              T.WalkSettings(), FakeText())  # fmt: skip
    darkest = max(catalog.ids(), key=lambda p: float(catalog.vector(p) @ direction))
    assert _walk(catalog, darkest) == []


def test_direction_cache(catalog: Catalog) -> None:
    encoder = FakeText()
    _walk(catalog, encode_texts=encoder)
    _walk(catalog, "p9", encode_texts=encoder)
    assert encoder.calls == 1 and DIRECTIONS.hits >= 1
    _walk(catalog, method="arithmetic", encode_texts=encoder)
    assert encoder.calls == 2  # another method, another direction
    catalog.add_embeddings(["new"], _vectors(1, seed=5), [{"articleType": "Dress"}])
    _walk(catalog, encode_texts=encoder)
    assert encoder.calls == 3  # a new catalog generation


@pytest.mark.parametrize(
    ("start", "end", "options", "message"),
    [
        ("", "dark", {}, "start phrase is empty"),
        ("light", "  ", {}, "end phrase is empty"),
        ("Dark ", "dark", {}, "the same"),
        ("light", "dark", {"steps": 0}, "steps"),
        ("light", "dark", {"steps": 10**6}, "steps"),
        ("light", "dark", {"steps": True}, "steps"),
        ("light", "dark", {"per_step": 0}, "per_step"),
        ("light", "dark", {"step_size": -1.0}, "step_size"),
        ("light", "dark", {"method": "magic"}, "unknown method"),
        ("light", "dark", {"end_n": 5000}, "at least 5001"),
        ("light", "dark", {"keep": "colour"}, "unknown filter column"),
        ("light", "dark", {"filters": {"nope": "x"}}, "unknown filter column"),
    ],
)
def test_bad_input_is_a_clear_error(
    catalog: Catalog, start: str, end: str, options: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidQueryError, match=message):
        catalog.traverse("p1", start, end, encode_texts=FakeText(), **options)  # type: ignore[arg-type]


def test_unknown_product(catalog: Catalog) -> None:
    with pytest.raises(ProductNotFoundError):
        catalog.traverse("missing", "light", "dark", encode_texts=FakeText())


def test_seed_without_the_kept_value(catalog: Catalog) -> None:
    catalog.add_embeddings(["bare"], _vectors(1, seed=3), [{"usage": "Casual"}])
    with pytest.raises(InvalidQueryError, match="no 'articleType' value"):
        catalog.traverse("bare", "light", "dark", keep="articleType", encode_texts=FakeText())


def test_gradrec_sign_points_to_the_end_phrase() -> None:
    rng = np.random.default_rng(1)
    exemplars = rng.normal(size=(50, DIM)) - 3 * np.eye(DIM)[0]
    population = rng.normal(size=(200, DIM)) + 3 * np.eye(DIM)[0]
    assert T.gradrec_from_sets(exemplars, population)[0] > 0.9
    with pytest.raises(InvalidQueryError, match="same products"):
        same = np.ones((10, DIM))
        T.gradrec_from_sets(same, same)
    with pytest.raises(InvalidQueryError, match="same vector"):
        T.arithmetic_direction(np.ones(DIM), np.ones(DIM))


def test_pure_walk_on_a_line() -> None:
    """Products on a line along e0: each step's products lie further along than the last's."""
    rng = np.random.default_rng(2)
    pool = rng.normal(size=(400, DIM)).astype(np.float32)
    pool /= np.linalg.norm(pool, axis=1, keepdims=True)
    u = np.eye(DIM, dtype=np.float32)[0]
    seed = np.eye(DIM, dtype=np.float32)[1]
    path = T.walk(seed, pool, u, T.WalkSettings(steps=5, per_step=3, neighbourhood=100))
    z = [[float(pool[i] @ u) for i, _ in step] for step in path]
    assert len(path) == 5 and all(len(step) == 3 for step in z)
    assert min(z[0]) > 0 and all(min(b) >= max(a) for a, b in zip(z, z[1:], strict=False))
    assert T.walk(seed, pool[:0], u, T.WalkSettings()) == []


def test_spearman_and_phrases() -> None:
    assert T.spearman([0, 1, 2, 3], [10, 8, 8, 1]) < -0.9
    assert np.isnan(T.spearman([0, 1], [5, 5]))
    assert T.check_phrases("  light  colour", "dark") == ("light colour", "dark")
    with pytest.raises(InvalidQueryError, match="longer than 200"):
        T.check_phrases("x" * 201, "dark")


def test_a_picture_is_shown_once_and_never_the_seeds(tmp_path: Path) -> None:
    """Products with byte-identical images (one picture, several ids: 1.5% of what a KAGL val
    walk showed, in 11% of walks) are one product to the eye: a walk shows each picture once,
    the nearest of its products, and never the seed's own picture."""
    identity = {"name": "fake", "kind": "test", "embedding_dim": DIM, "fingerprint": "f"}
    cat = Catalog.create(tmp_path / "cat", identity)
    vectors = _vectors()
    meta = [{"articleType": TYPES[i % len(TYPES)]} for i in range(N)]
    ids = [f"p{i}" for i in range(N)]
    cat.add_embeddings(ids, vectors, meta, content_hashes=[f"h{i}" for i in range(N)])
    DIRECTIONS.clear()
    before = _walk(cat, "p7", keep="articleType")
    shown = [int(p[1:]) for step in before for p in step][::3]
    # the seed's picture again, a hair further along (batch float noise), and twins of what it shows
    twins = [7, *shown]
    nudge = np.zeros(DIM, np.float32)
    nudge[0] = 1e-3
    cat.add_embeddings(
        [f"twin{i}" for i in twins],
        vectors[twins] + nudge,
        [meta[i] for i in twins],
        content_hashes=[f"h{i}" for i in twins],
    )
    DIRECTIONS.clear()
    after = [p for step in _walk(cat, "p7", keep="articleType") for p in step]
    pictures = [cat.get(p).content_hash for p in after]  # type: ignore[union-attr]
    assert after and len(pictures) == len(set(pictures))
    assert "h7" not in pictures
