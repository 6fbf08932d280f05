"""The dataset registry: names, clear errors, and a registered dataset driving the runner."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image

from fashionclip.cli import main
from fashionclip.errors import FashionCLIPError
from fashionclip.evaluate import datasets
from fashionclip.evaluate.baselines import RandomEmbeddingModel
from fashionclip.evaluate.datasets import (
    DATASETS,
    DEFAULT_DATASETS,
    dataset_names,
    get_dataset,
    register_dataset,
)
from fashionclip.evaluate.runner import EvaluationConfig, run_evaluation


def test_built_in_datasets_and_their_tasks() -> None:
    assert DATASETS == ("kagl", "fashion-mnist", "ccp-garments")
    assert DEFAULT_DATASETS == ("kagl", "fashion-mnist")
    assert EvaluationConfig().datasets == DEFAULT_DATASETS
    assert get_dataset("kagl").tasks == ("zero-shot", "linear-probe", "retrieval")
    assert get_dataset("fashion-mnist").tasks == ("zero-shot", "linear-probe")
    ccp = get_dataset("ccp-garments")
    assert ccp.tasks == ("zero-shot", "linear-probe")
    assert (ccp.test_split, ccp.train_split) == ("test", "train")
    assert ccp.label_set_name("class") == "ccp-garments-test"
    assert get_dataset("kagl").label_set_name("usage") == "kagl-test/usage"


def test_unknown_dataset_error_lists_the_names(tmp_path: Path, capsys) -> None:
    with pytest.raises(FashionCLIPError, match="kagl, fashion-mnist, ccp-garments"):
        get_dataset("deepfashion")
    with pytest.raises(FashionCLIPError, match=r"unknown dataset\(s\) \['deepfashion'\]"):
        EvaluationConfig(datasets=["kagl", "deepfashion"]).validate()
    rc = main(["evaluate", "--out", str(tmp_path), "--datasets", "ccp_garments", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "ccp-garments" in err and "unknown dataset" in err


def test_register_refuses_bad_specs(monkeypatch) -> None:
    monkeypatch.setattr(datasets, "_REGISTRY", dict(datasets._REGISTRY))
    with pytest.raises(ValueError, match="already registered"):
        register_dataset("kagl", load=datasets.load_kagl, tasks=["zero-shot"])
    with pytest.raises(ValueError, match="unknown task"):
        register_dataset("x", load=datasets.load_kagl, tasks=["dance"])
    with pytest.raises(ValueError, match="split"):
        register_dataset("x", load=datasets.load_kagl, tasks=["linear-probe"], splits=["test"])
    assert "x" not in dataset_names()


@dataclass
class Swatches:
    """A registered toy dataset: solid-colour squares, the class is the colour."""

    split: str
    colours: list[str]

    def __len__(self) -> int:
        return len(self.colours)

    def sample(self, limit: int | None, seed: int = 0) -> Swatches:
        return self if limit is None else Swatches(self.split, self.colours[:limit])

    def encoding_inputs(self) -> tuple[list[Image.Image], list[str]]:
        images = [Image.new("RGB", (8, 8), c) for c in self.colours]
        return images, [f"{self.split}-{i}" for i in range(len(self))]

    def label_values(self, target: str) -> list[str]:
        assert target == "colour"
        return self.colours


def _load_swatches(split: str, data_dir: Path) -> Swatches:
    return Swatches(split, ["red", "green", "blue"] * (4 if split == "train" else 2))


def test_a_registered_dataset_runs_without_runner_changes(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setattr(datasets, "_REGISTRY", dict(datasets._REGISTRY))
    register_dataset(
        "swatches", load=_load_swatches, tasks=["zero-shot", "linear-probe"], targets=["colour"]
    )
    config = EvaluationConfig(
        out_dir=tmp_path, datasets=["swatches"], data_dir=tmp_path, min_class_size=2,
        plots=False, show_progress=False,
    )  # fmt: skip
    run = run_evaluation(config, models=[RandomEmbeddingModel(8)])
    rows = {(r.model, r.task, r.dataset, r.metric): r for r in run.records}
    # The evaluated model is named "random" too: the runner renames it "random#2".
    for task in ("zero-shot", "linear-probe"):
        assert rows[("random#2", task, "swatches-test", "accuracy")].n == 6
        assert ("majority", task, "swatches-test", "weighted_f1") in rows
    assert not any(r.task == "retrieval" for r in run.records)
    notes = run.results_path.read_text()
    assert "swatches test split: 6 items" in notes and "swatches-test: 3 classes kept" in notes
