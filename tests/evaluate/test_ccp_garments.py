"""CCP garment crops: the loader on a synthetic folder, on the real data, and through the runner."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from PIL import Image

from fashionclip.data.images import load_image
from fashionclip.errors import FashionCLIPError
from fashionclip.evaluate.baselines import RandomEmbeddingModel
from fashionclip.evaluate.datasets import load_ccp_garments
from fashionclip.evaluate.runner import EvaluationConfig, run_evaluation

CLASSES = {"bag", "blazer", "blouse", "boots", "coat", "dress", "jacket", "jeans", "pants",
           "scarf", "shirt", "shoes", "shorts", "skirt", "suit", "sweater", "t-shirt", "vest"}  # fmt: skip


def _write_csv(path: Path, rows: list[dict[str, str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def make_ccp(root: Path) -> Path:
    """A miniature ccp_garments/: 3 classes, 2 photos per split, one non-dominant crop."""
    folder = root / "ccp_garments"
    manifest, splits = [], []
    colours = {"bag": (200, 30, 30), "coat": (30, 200, 30), "dress": (30, 30, 200)}
    for photo, split in enumerate(["train", "train", "val", "test", "test"]):
        for cls, colour in colours.items():
            file = f"{cls}/ccp_{photo:04d}_{cls}.jpg"
            (folder / cls).mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (64, 96), colour).save(folder / file)
            dominant = "0" if (photo, cls) == (3, "coat") else "1"
            manifest.append({"file": file, "class": cls, "is_dominant": dominant})
            splits.append({"file": file, "split": split})
    _write_csv(folder / "manifest.csv", manifest)
    _write_csv(folder / "splits.csv", splits)
    return root


def test_loader_on_a_synthetic_folder(tmp_path: Path) -> None:
    root = make_ccp(tmp_path)
    test = load_ccp_garments("test", root)
    assert len(test) == 5  # 6 test crops, the non-dominant coat left out
    assert len(load_ccp_garments("test", root, dominant_only=False)) == 6
    assert test.label_values("class") == ["bag", "dress", "bag", "coat", "dress"]
    images, keys = test.encoding_inputs()
    assert keys[0] == "bag/ccp_0003_bag.jpg" and images[0] == root / "ccp_garments" / keys[0]
    assert test.sample(2, seed=1).files == load_ccp_garments("test", root).sample(2, 1).files
    assert len(load_ccp_garments("train", root)) == 6
    with pytest.raises(FashionCLIPError, match="no crops in split 'holdout'"):
        load_ccp_garments("holdout", root)
    with pytest.raises(FashionCLIPError, match="not found"):
        load_ccp_garments("test", tmp_path / "missing")


def test_runner_scores_ccp_garments(tmp_path: Path) -> None:
    root = make_ccp(tmp_path / "data")
    config = EvaluationConfig(
        out_dir=tmp_path / "out", datasets=["ccp-garments"], data_dir=root, min_class_size=1,
        plots=False, show_progress=False,
    )  # fmt: skip
    run = run_evaluation(config, models=[RandomEmbeddingModel(8, seed=3)])
    rows = {(r.model, r.task, r.dataset, r.metric): r for r in run.records}
    for task in ("zero-shot", "linear-probe"):
        assert rows[("random#2", task, "ccp-garments-test", "accuracy")].n == 5
    assert any(r.metric == "f1[coat]" for r in run.records)
    assert (tmp_path / "out" / "cache").is_dir()


def test_real_ccp_garments(ccp_data_dir: Path) -> None:
    splits = {
        s: load_ccp_garments(s, ccp_data_dir, dominant_only=False) for s in ("train", "val", "test")
    }
    assert [len(splits[s]) for s in ("train", "val", "test")] == [1756, 551, 620]
    test = load_ccp_garments("test", ccp_data_dir)
    assert 0 < len(test) < 620
    assert set(test.classes) == CLASSES
    # Crops of one photo never straddle splits: the photo id is in the file name.
    photos = {s: {Path(f).name.split("_")[1] for f in d.files} for s, d in splits.items()}
    assert not photos["train"] & photos["test"] and not photos["val"] & photos["test"]
    assert not photos["train"] & photos["val"]
    image = load_image(test.image_paths[0])
    assert image.mode == "RGB" and min(image.size) >= 64
