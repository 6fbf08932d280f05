"""The evaluation harness end to end on a tiny random model: synthetic data, CLI, cache, n/a."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import f1_score

from fashionclip.cli import main
from fashionclip.data.kagl import read_kagl_styles
from fashionclip.errors import FashionCLIPError
from fashionclip.evaluate.datasets import (
    load_fashion_mnist,
    load_kagl,
    write_idx_gz,
)
from fashionclip.evaluate.runner import EvaluationConfig, run_evaluation

REAL_DATA = Path(
    os.environ.get(
        "FASHIONCLIP_DATA_DIR", Path(__file__).resolve().parents[2].parent / "shared" / "data"
    )
)

TYPES = [("Tshirts", "Topwear", "Apparel"), ("Jeans", "Bottomwear", "Apparel"),
         ("Watches", "Watches", "Accessories")]  # fmt: skip
COLOURS = {"Red": (200, 30, 30), "Blue": (30, 30, 200), "Black": (10, 10, 10)}


def make_fake_data(root: Path, seed: int = 0) -> Path:
    """A miniature KAGL (with a malformed line and a duplicate image) and Fashion-MNIST."""
    rng = np.random.default_rng(seed)
    kagl = root / "kagl"
    (kagl / "images").mkdir(parents=True)
    styles = ["id,gender,masterCategory,subCategory,articleType,baseColour,season,year,usage,"
              "productDisplayName"]  # fmt: skip
    splits = ["id,split,image_sha256"]
    for n in range(60):
        pid = str(1000 + n)
        article, sub, master = TYPES[n % 3]
        colour = list(COLOURS)[(n // 3) % 3]
        gender = "Men" if n % 2 else "Women"
        split = "test" if n < 30 else ("train" if n < 54 else "val")
        pixels = np.clip(
            np.array(COLOURS[colour]) + rng.integers(-20, 20, size=(80, 60, 3)), 0, 255
        ).astype(np.uint8)
        path = kagl / "images" / f"{pid}.jpg"
        if (
            n == 7
        ):  # byte-identical duplicate of product 1004 (its colour label differs, as in KAGL)
            path.write_bytes((kagl / "images" / "1004.jpg").read_bytes())
        else:
            Image.fromarray(pixels).save(path)
        name = f"Brand {gender} {colour} {article}"
        if n == 2:
            name = f"Brand {gender}, {colour} {article}, limited"  # unquoted commas
        styles.append(f"{pid},{gender},{master},{sub},{article},{colour},Summer,2012,Casual,{name}")
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        splits.append(f"{pid},{split},{sha}")
    (kagl / "styles.csv").write_text("\n".join(styles) + "\n", encoding="utf-8")
    (kagl / "splits.csv").write_text("\n".join(splits) + "\n", encoding="utf-8")

    fm = root / "fashion_mnist"
    fm.mkdir()
    for prefix, count in (("t10k", 30), ("train", 40)):
        labels = np.arange(count) % 10
        images = (rng.random((count, 28, 28)) * 50 + labels[:, None, None] * 20).astype(np.uint8)
        write_idx_gz(fm / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx_gz(fm / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return root


@pytest.fixture(scope="module")
def fake_data(tmp_path_factory) -> Path:
    return make_fake_data(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def tiny_model_path(tmp_path_factory) -> Path:
    from fashionclip.models.testing import build_tiny_clip

    return build_tiny_clip(tmp_path_factory.mktemp("models") / "tiny-clip")


def test_loaders(fake_data: Path) -> None:
    rows = read_kagl_styles(fake_data / "kagl").rows
    assert rows["1002"]["productDisplayName"] == "Brand Women, Red Watches, limited"
    test = load_kagl("test", fake_data)
    assert len(test) == 30 and test.image_paths[0].name == "1000.jpg"
    assert test.image_sha256[4] == test.image_sha256[7]
    fm = load_fashion_mnist("test", fake_data)
    assert fm.pixels.shape == (30, 28, 28) and fm.label_names[:2] == ["T-shirt/top", "Trouser"]
    assert fm.images()[0].mode == "RGB"
    assert fm.sample(5, seed=1).keys == load_fashion_mnist("test", fake_data).sample(5, 1).keys
    with pytest.raises(FashionCLIPError, match="not found"):
        load_kagl("test", fake_data / "missing")


def test_cli_full_run(fake_data: Path, tiny_model_path: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "eval"
    rc = main(
        ["evaluate", "--model", str(tiny_model_path), "--out", str(out),
         "--data-dir", str(fake_data), "--min-class-size", "3", "--probe-train-size", "20",
         "--template", "a photo of a {}", "--template", "{}", "--quiet"]
    )  # fmt: skip
    assert rc == 0
    printed = capsys.readouterr().out
    assert "Total run time:" in printed

    results = json.loads((out / "results.json").read_text())
    records = results["records"]
    keys = [(r["model"], r["task"], r["dataset"], r["metric"]) for r in records]
    assert len(keys) == len(set(keys)), "one record per model x task x dataset x metric"
    for r in records:
        assert (r["value"] is None) == bool(r["reason"]), r
    systems = {r["model"] for r in records}
    name = str(tiny_model_path)
    assert {name, "majority", "random", "bm25", f"hybrid ({name})"} <= systems
    datasets = {(r["task"], r["dataset"]) for r in records}
    for task in ("zero-shot", "linear-probe"):
        assert (task, "kagl-test/articleType") in datasets
        assert (task, "fashion-mnist-test") in datasets
    for d in ("text-to-image", "image-to-text", "category-to-product", "image-to-image"):
        assert ("retrieval", f"kagl-test/{d}") in datasets
    assert results["meta"]["settings"]["templates"] == ["a photo of a {}", "{}"]

    report = (out / "report.md").read_text()
    assert "**" in report and "Total run time:" in report
    assert "## Zero-shot classification" in report and "## Retrieval" in report
    plots = sorted((out / "plots").glob("*.png"))
    assert any("confusion" in p.name for p in plots)
    assert any("per_class_f1" in p.name for p in plots)
    assert any("recall_at_k" in p.name for p in plots)
    assert plots and all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in plots)
    assert any((out / "cache").rglob("kagl-test.npy"))

    # Independent check of one headline figure: re-encode and score with scikit-learn.
    from fashionclip import load

    model = load(tiny_model_path)
    test = load_kagl("test", fake_data)
    classes = sorted(set(test.attributes["masterCategory"]))
    image_emb = model.encode_images(test.image_paths)
    prompts = [t.format(c) for c in classes for t in ("a photo of a {}", "{}")]
    text = model.encode_text(prompts).reshape(len(classes), 2, -1).mean(axis=1)
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    predicted = [classes[i] for i in (image_emb @ text.T).argmax(axis=1)]
    expected = f1_score(test.attributes["masterCategory"], predicted, average="weighted")
    got = next(
        r["value"] for r in records
        if r["model"] == name and r["task"] == "zero-shot"
        and r["dataset"] == "kagl-test/masterCategory" and r["metric"] == "weighted_f1"
    )  # fmt: skip
    assert got == pytest.approx(expected, abs=1e-6)

    # BM25 finds the product by its exact name, except where names are shared.
    bm25 = {r["metric"]: r["value"] for r in records
            if r["model"] == "bm25" and r["dataset"] == "kagl-test/text-to-image"}  # fmt: skip
    assert 0 < bm25["recall@10"] <= 1


def test_report_table_bold_and_na() -> None:
    from fashionclip.evaluate.report import Record, comparison_table

    records = [
        Record("A", "model", "zero-shot", "d", "accuracy", 0.7),
        Record("B", "model", "zero-shot", "d", "accuracy", 0.5),
        Record("C", "baseline", "zero-shot", "d", "accuracy", None, "no items"),
        Record("A", "model", "zero-shot", "d", "macro_f1", 0.2),
        Record("B", "model", "zero-shot", "d", "macro_f1", 0.20001),  # equal as shown
    ]
    lines, notes = comparison_table(records, "zero-shot", ["A", "B", "C"], ["accuracy", "macro_f1"])
    assert lines[2] == "| d | accuracy | **0.700** | 0.500 | n/a |"
    assert lines[3] == "| d | macro_f1 | 0.200 | 0.200 |  |"
    assert notes == ["C · d · accuracy: n/a (no items)"]
    with pytest.raises(ValueError, match="needs a reason"):
        Record("A", "model", "t", "d", "m", None)


class CountingModel:
    """Wraps a model and counts the images it is asked to encode."""

    def __init__(self, model) -> None:
        self.model = model
        self.identity = model.identity
        self.embedding_dim = model.embedding_dim
        self.images_encoded = 0

    def try_encode_images(self, images, batch_size=32, show_progress=False):
        self.images_encoded += len(images)
        return self.model.try_encode_images(images, batch_size=batch_size)

    def encode_images(self, images, batch_size=32, show_progress=False):
        self.images_encoded += len(images)
        return self.model.encode_images(images, batch_size=batch_size)

    def encode_text(self, texts, batch_size=256, show_progress=False):
        return self.model.encode_text(texts, batch_size=batch_size)


def test_cache_avoids_re_encoding(fake_data: Path, tiny_model_path: Path, tmp_path: Path) -> None:
    from fashionclip import load

    def config(tasks, limit=None):
        return EvaluationConfig(
            out_dir=tmp_path / "out", tasks=tasks, data_dir=fake_data, min_class_size=3,
            probe_train_size=20, limit=limit, plots=False, baselines=False, show_progress=False,
        )  # fmt: skip

    first = CountingModel(load(tiny_model_path))
    run_evaluation(config(["zero-shot"], limit=10), models=[first])
    assert first.images_encoded == 10 + 10  # KAGL test sample + Fashion-MNIST test sample
    second = CountingModel(load(tiny_model_path))
    run = run_evaluation(config(["zero-shot", "retrieval"]), models=[second])
    assert second.images_encoded == (30 - 10) + (30 - 10)  # only the items not cached yet
    third = CountingModel(load(tiny_model_path))
    run_evaluation(config(["retrieval", "zero-shot"]), models=[third])
    assert third.images_encoded == 0
    assert run.results_path.is_file()


def test_uncomputable_metrics_are_reported(
    fake_data: Path, tiny_model_path: Path, tmp_path: Path
) -> None:
    run = run_evaluation(
        EvaluationConfig(
            models=[str(tiny_model_path)],
            out_dir=tmp_path / "out",
            data_dir=fake_data,
            min_class_size=1000,
            probe_train_size=20,
            plots=False,
            show_progress=False,
        )  # fmt: skip
    )
    classification = [r for r in run.records if r.task in ("zero-shot", "linear-probe")]
    assert classification and all(r.value is None for r in classification)
    assert all("0 class(es) with 1000 or more test items" in r.reason for r in classification)
    category = [r for r in run.records if r.dataset == "kagl-test/category-to-product"]
    assert category and all(r.value is None and r.reason for r in category)
    text = [r for r in run.records if r.dataset == "kagl-test/text-to-image"]
    assert text and all(r.value is not None for r in text)
    report = run.report_path.read_text()
    assert "n/a" in report and "Figures that could not be computed" in report


def test_cli_user_errors(tmp_path: Path, tiny_model_path: Path, capsys) -> None:
    rc = main(["evaluate", "--model", str(tiny_model_path), "--out", str(tmp_path),
               "--tasks", "zero-shot,dance", "--quiet"])  # fmt: skip
    assert rc == 2 and "unknown task" in capsys.readouterr().err
    rc = main(["evaluate", "--model", str(tiny_model_path), "--out", str(tmp_path),
               "--template", "no placeholder", "--quiet"])  # fmt: skip
    assert rc == 2 and "exactly once" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.skipif(not (REAL_DATA / "kagl" / "splits.csv").is_file(), reason="no real data")
def test_real_data_quick_run(tiny_model_path: Path, tmp_path: Path) -> None:
    run = run_evaluation(
        EvaluationConfig(
            models=[str(tiny_model_path)],
            out_dir=tmp_path / "real",
            data_dir=REAL_DATA,
            limit=150,
            probe_train_size=150,
            min_class_size=5,
            plots=False,
            show_progress=False,
        )  # fmt: skip
    )
    values = {(r.model, r.task, r.dataset, r.metric): r.value for r in run.records}
    assert values[("random", "zero-shot", "fashion-mnist-test", "accuracy")] is not None
    # BM25 with the product's own name as the query is near perfect; random is near chance.
    assert values[("bm25", "retrieval", "kagl-test/text-to-image", "recall@10")] > 0.9
    assert values[("random", "retrieval", "kagl-test/text-to-image", "recall@10")] < 0.3


def test_cli_json_output(fake_data: Path, tiny_model_path: Path, tmp_path: Path, capsys) -> None:
    rc = main(
        ["evaluate", "--model", str(tiny_model_path), "--out", str(tmp_path / "eval"),
         "--data-dir", str(fake_data), "--min-class-size", "3", "--tasks", "retrieval",
         "--no-plots", "--quiet", "--json"]
    )  # fmt: skip
    assert rc == 0
    printed = json.loads(capsys.readouterr().out)
    on_disk = json.loads((tmp_path / "eval" / "results.json").read_text())["records"]
    assert printed["records"] == on_disk
    assert printed["seconds"] > 0
