"""Shared fixtures: tiny random models (built once per session) and real-data locations."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("FASHIONCLIP_DATA_DIR", REPO.parent / "shared" / "data"))
KAGL_DIR = DATA_DIR / "kagl"
FASHION_MNIST_DIR = DATA_DIR / "fashion_mnist"


@pytest.fixture(scope="session")
def tiny_model_dirs(tmp_path_factory) -> dict[str, Path]:
    """One saved tiny model folder per supported kind."""
    from fashionclip.models import testing

    return {
        kind: build(tmp_path_factory.mktemp(kind.replace("-", "_")))
        for kind, build in testing.TINY_BUILDERS.items()
    }


@pytest.fixture(scope="session")
def tiny_clip_dir(tiny_model_dirs) -> Path:
    return tiny_model_dirs["clip"]


@pytest.fixture(scope="session")
def tiny_clip(tiny_clip_dir):
    import fashionclip

    return fashionclip.load(tiny_clip_dir, device="cpu", precision="fp32")


@pytest.fixture(scope="session")
def kagl_dir() -> Path:
    if not (KAGL_DIR / "styles.csv").is_file():
        pytest.skip(f"KAGL data not found at {KAGL_DIR}")
    return KAGL_DIR


@pytest.fixture
def product_images(tmp_path) -> list[Path]:
    """Four small distinct RGB images written to tmp_path."""
    from PIL import Image

    paths = []
    for i, colour in enumerate([(200, 30, 30), (30, 200, 30), (30, 30, 200), (240, 240, 240)]):
        path = tmp_path / f"product_{i}.png"
        Image.new("RGB", (40 + 8 * i, 50), colour).save(path)
        paths.append(path)
    return paths


@pytest.fixture(autouse=True)
def _deterministic_ann_graphs(monkeypatch):
    """HNSW graphs built on one thread: a multi-threaded build differs from run to run and, on
    the tiny indexes of tests, misses a true top-5 about 1 build in 20 (measured: 15-16 of 300
    builds of 100 vectors on all cores, 0 of 300 on one thread, bf16 and f16 alike)."""
    from fashionclip.index.backends import usearch

    monkeypatch.setattr(usearch, "BUILD_THREADS", 1)
