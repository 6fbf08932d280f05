"""The trainer's parts on a tiny model: setup_run, train_one_epoch, the Validator."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fashionclip.train import load_train_config
from fashionclip.train.distributed import DistributedContext
from fashionclip.train.epoch import train_one_epoch
from fashionclip.train.setup import setup_run
from fashionclip.train.state import Progress, Throughput
from fashionclip.train.validation import metric_names
from test_train_support import base_overrides, make_pairs


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    return make_pairs(tmp_path_factory.mktemp("pairs"))


def _run(tmp_path, model_dir, pairs, *extra):
    train_csv, val_csv = pairs
    items = base_overrides(tmp_path, model_dir, train_csv, val_csv) + list(extra)
    return setup_run(load_train_config(None, items), DistributedContext())


def test_train_one_epoch_steps_logs_and_moves_the_weights(tmp_path, tiny_model_dirs, pairs):
    run = _run(tmp_path, tiny_model_dirs["clip"], pairs, "optim.accum_steps=2")
    assert run.loss_kind == "clip" and run.steps_per_epoch == 2 and run.micro_per_epoch == 4
    run.parts.set_train_mode()
    weight = run.model.module.visual_projection.weight
    before = weight.detach().clone()
    progress, meter = Progress(), Throughput()
    assert train_one_epoch(run, progress, meter) is False
    assert (progress.global_step, progress.micro_batch, progress.epoch) == (2, 4, 0)
    assert meter.train_samples == 2 * 8 * 2 and meter.samples_per_second > 0
    assert not torch.equal(before, weight.detach())
    rows = [json.loads(line) for line in run.log_path.read_text().splitlines()]
    assert [(r["type"], r["epoch"], r["step"]) for r in rows] == [("train", 1, 1), ("train", 1, 2)]
    assert not (run.output_dir / "last").exists()  # the end of an epoch is saved by the caller


def test_train_one_epoch_stops_inside_the_epoch_and_saves_the_position(
    tmp_path, tiny_model_dirs, pairs
):
    run = _run(tmp_path, tiny_model_dirs["clip"], pairs, "stop_after_steps=2")
    run.parts.set_train_mode()
    progress = Progress()
    assert train_one_epoch(run, progress, Throughput()) is True
    assert (progress.global_step, progress.micro_batch) == (2, 2)
    state = json.loads((run.output_dir / "last/training_state/state.json").read_text())
    assert (state["global_step"], state["epoch"], state["micro_batch"]) == (2, 0, 2)


def test_validator_metrics_have_the_logged_names(tmp_path, tiny_model_dirs, pairs):
    run = _run(tmp_path, tiny_model_dirs["clip"], pairs, 'val_zero_shot=["colour"]')
    validator = run.validator
    assert validator is not None
    metrics = validator(run.model, run.parts, run.text_cache, run.precision)
    assert list(metrics) == validator.metric_names() == metric_names(["colour"])
    assert metrics["val/n_images"] == 16.0
    means = np.mean([metrics[f"val/{d}_recall@{k}"] for d in ("t2i", "i2t") for k in (1, 5, 10)])
    assert metrics["val/mean_recall"] == pytest.approx(means)


def test_validator_compute_from_embeddings():
    """Perfect embeddings (each caption's text = its images' direction): every recall is 1."""
    from fashionclip.train.data import PairDataset
    from fashionclip.train.validation import Validator

    class _Captions:
        def eval_caption(self, record):
            return record["caption"]

    records = [{"caption": c, "colour": k} for c, k in [("a", "red"), ("b", "blue"), ("a", "red")]]
    val = PairDataset(records, ["x.png"] * 3, None, _Captions())  # type: ignore[arg-type]
    config = load_train_config(
        None, ["model.init=x", "data.train=x.csv", 'val_zero_shot=["colour"]']
    )
    validator = Validator.build(config, val)
    assert validator.texts() == ["a", "a photo of a blue", "a photo of a red", "b"]
    unit = np.eye(2, dtype=np.float32)
    text_emb = {
        "a": unit[0],
        "b": unit[1],
        "a photo of a red": unit[0],
        "a photo of a blue": unit[1],
    }
    metrics = validator.compute(unit[[0, 1, 0]], text_emb)
    assert metrics["val/t2i_recall@1"] == metrics["val/i2t_recall@1"] == 1.0
    assert metrics["val/zs_colour_accuracy"] == metrics["val/zs_colour_weighted_f1"] == 1.0
    swapped = validator.compute(unit[[1, 0, 1]], text_emb)
    assert swapped["val/zs_colour_accuracy"] == 0.0
