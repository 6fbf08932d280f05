"""`--engine ray`: Ray Data embeds what the local engine would, into the same catalog format.

One local Ray (2 CPUs, actors at 0.5 CPU each: whole CPUs would leave nothing for the driver)
is shared by the module; the engine reuses it instead of starting its own.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="the Ray engine needs the [ray] extra (ray[data])")

from fashionclip.cli import main  # noqa: E402
from fashionclip.data.tables import IdSubset, read_catalog_source  # noqa: E402
from fashionclip.errors import ModelMismatchError  # noqa: E402
from fashionclip.index import Catalog  # noqa: E402
from fashionclip.index.distributed import (  # noqa: E402
    EmbedActor,
    ModelSpec,
    RayEngine,
    RayEngineError,
    RayOptions,
    one_line,
    probe,
)
from fashionclip.models.loading import default_model_path  # noqa: E402

pytestmark = pytest.mark.slow

N_PRODUCTS = 200


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory):
    if ray.is_initialized():  # pragma: no cover - another module left one running
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    # The crash-once factory below lives in this test module, which workers cannot import.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield
    ray.shutdown()


class CrashOnce:
    """Loads the model; the first batch anywhere kills its worker process (a dying node)."""

    def __init__(self, factory: ModelSpec, marker: Path) -> None:
        self.factory = factory
        self.marker = marker

    def __call__(self) -> object:
        return _Crashing(self.factory(), self.marker)


class _Crashing:
    def __init__(self, model: object, marker: Path) -> None:
        self.model = model
        self.marker = marker
        self.identity = model.identity  # type: ignore[attr-defined]

    def try_encode_images(self, images: list[str], batch_size: int = 32) -> object:
        try:
            os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            return self.model.try_encode_images(images, batch_size=batch_size)  # type: ignore[attr-defined]
        os._exit(1)


def _records(kagl_dir: Path, tmp_path: Path) -> list:
    source = read_catalog_source(
        kagl_dir / "styles.csv",
        subset=IdSubset(kagl_dir / "splits.csv", "split", "test"),
        limit=N_PRODUCTS,
    )
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    first = source.records[0]
    broken = type(first)("broken-1", bad, dict(first.metadata))
    return [*source.records, broken]


@pytest.mark.skipif(default_model_path() is None, reason="the default model is not installed")
def test_ray_engine_matches_local_despite_a_dying_worker(local_ray, kagl_dir, tmp_path):
    import fashionclip

    records = _records(kagl_dir, tmp_path)
    model = fashionclip.load()  # what `fashionclip index` loads; the actors load the same
    with Catalog.create(tmp_path / "local", model) as local:
        local_report = local.index(records, commit_every=64)
        local_ids, local_vectors = local.ids(), np.stack([local.vector(i) for i in local.ids()])

    factory = CrashOnce(ModelSpec(None), tmp_path / "crashed")
    options = RayOptions(workers=2, num_cpus=0.5)
    with RayEngine(options, factory) as engine, Catalog.create(tmp_path / "ray", model) as cat:
        report = cat.index(records, commit_every=64, engine=engine)
        ids, vectors = cat.ids(), np.stack([cat.vector(i) for i in cat.ids()])
    assert (tmp_path / "crashed").exists(), "no worker was killed: the retry went untested"

    assert len(ids) == N_PRODUCTS and ids == local_ids  # same products, same slot order
    cosine = np.sum(vectors * local_vectors, axis=1)
    assert cosine.min() >= 0.9999, f"min cosine {cosine.min()}"
    assert (report.added, report.failed, report.embedded) == (N_PRODUCTS, 1, N_PRODUCTS)
    assert [f.id for f in report.failures] == [f.id for f in local_report.failures] == ["broken-1"]
    assert report.failures[0].reason == local_report.failures[0].reason
    files = sorted(p.name for p in (tmp_path / "ray").rglob("*") if p.is_file())
    local_files = sorted(p.name for p in (tmp_path / "local").rglob("*") if p.is_file())
    assert files == local_files and "catalog.sqlite" in files


def test_streamed_parquet_run_resumes_after_the_driver_dies(
    local_ray, tiny_clip_dir, product_images, tmp_path, monkeypatch, capsys
):
    """`index --engine ray` on Parquet: chunks of 2 rows; killed after 2 commits; rerun."""
    import pandas as pd

    from fashionclip.data import chunks
    from fashionclip.index import indexer

    table = tmp_path / "products.parquet"
    ids = [f"p{i}" for i in range(len(product_images))]
    pd.DataFrame({"id": ids, "image": [str(p) for p in product_images]}).to_parquet(table)
    monkeypatch.setattr(chunks, "DEFAULT_CHUNK_ROWS", 2)
    calls = []
    real_commit = indexer.Writer.commit

    def commit_then_die(self: indexer.Writer) -> None:
        real_commit(self)
        calls.append(1)
        if len(calls) == 2:  # the driver dies after two committed batches
            raise KeyboardInterrupt

    args = [
        "index",
        str(table),
        "--image-column",
        "image",
        "--catalog",
        str(tmp_path / "cat"),
        "--model",
        str(tiny_clip_dir),
        "--engine",
        "ray",
        "--workers",
        "1",
        "--ray-num-cpus",
        "0.5",
        "--batch-size",
        "1",
        "--commit-every",
        "1",
        "--no-progress",
        "--json",
    ]
    monkeypatch.setattr(indexer.Writer, "commit", commit_then_die)
    assert main(args) == 130
    saved = json.loads((tmp_path / "cat" / "index-report.json").read_text())
    assert saved["interrupted"] is True and saved["added"] == 2
    capsys.readouterr()
    monkeypatch.setattr(indexer.Writer, "commit", real_commit)
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["unchanged"], summary["added"], summary["catalog_size"]) == (2, 2, 4)
    with Catalog.open(tmp_path / "cat") as cat:
        assert cat.ids() == ids


def test_unreachable_cluster_is_one_line_exit_2(tmp_path, product_images, capsys):
    code = main(
        [
            "index",
            str(product_images[0].parent),
            "--catalog",
            str(tmp_path / "cat"),
            "--engine",
            "ray",
            "--address",
            "127.0.0.1:1",
            "--no-progress",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.splitlines() == [
        f"fashionclip index: error: cannot reach the Ray cluster at 127.0.0.1:1: {err.split(': ')[-1]}"
    ]
    assert "Traceback" not in err and not (tmp_path / "cat").exists()


def test_ray_options_need_the_ray_engine(tmp_path, product_images, capsys):
    args = ["index", str(product_images[0].parent), "--catalog", str(tmp_path / "c")]
    assert main([*args, "--workers", "2"]) == 2
    assert "--workers need --engine ray" in capsys.readouterr().err


@pytest.mark.parametrize("address", ["nonsense", "host:", ":80", "ray://h:x"])
def test_malformed_address(address):
    with pytest.raises(RayEngineError, match="HOST:PORT"):
        probe(address)


def test_bad_options():
    with pytest.raises(RayEngineError):
        RayOptions(workers=0)
    with pytest.raises(RayEngineError):
        RayOptions(num_cpus=0)


def test_one_line_unwraps_causes():
    try:
        try:
            raise RayEngineError("model folder not found: /x\nsecond line")
        except RayEngineError as inner:
            raise RuntimeError("wrapped\nby ray") from inner
    except RuntimeError as outer:
        assert one_line(outer) == "model folder not found: /x"
    assert one_line(ValueError("")) == "ValueError"
    try:  # Ray Data: the actor's error raised from an empty SystemException
        raise RuntimeError("actor died\nTraceback (most recent call last):\nOSError: disk") from (
            ValueError()
        )
    except RuntimeError as exc:
        assert one_line(exc) == "OSError: disk"
    # what ray.init raises for a port that answers but is no Ray head (seen here: a proxy)
    gcs = RuntimeError(
        "Failed to connect to GCS. Last connection error: Traceback (most recent call last):\n"
        '  File "x.py", line 1\nTimeoutError: boom'
    )
    assert one_line(gcs) == "TimeoutError: boom"
    assert one_line(RuntimeError("Failed to connect to GCS. Last connection error: ")) == (
        "RuntimeError: Failed to connect to GCS."
    )
    died = RuntimeError(
        "The actor died because of an error raised in its creation task, \x1b[36mray::M\n"
        "  File ...\n"
        "fashionclip.errors.ModelNotFoundError: model folder not found: /m"
    )
    assert one_line(died) == "ModelNotFoundError: model folder not found: /m"


def test_actor_rows_and_failures(fake_model, tmp_path):
    good, bad = tmp_path / "good.bin", tmp_path / "bad.bin"
    good.write_bytes(b"pixels")
    bad.write_bytes(b"bad pixels")
    model = fake_model(dim=4)
    actor = EmbedActor(lambda: model, fingerprint="f")
    out = actor({"pos": np.array([7, 8]), "image": np.array([str(bad), str(good)])})
    assert out["pos"].tolist() == [7, 8] and list(out["error"]) == ["not an image", ""]
    np.testing.assert_array_equal(out["vector"][0], np.zeros(4, np.float32))
    np.testing.assert_array_equal(out["vector"][1], model.encode_images(good))


def test_actor_refuses_other_weights(fake_model):
    with pytest.raises(ModelMismatchError, match="other model weights"):
        EmbedActor(lambda: fake_model(), fingerprint="the driver's")
