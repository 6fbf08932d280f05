"""`fashionclip train --config ... --set ...` and a small run on real KAGL images."""

from __future__ import annotations

import json

import pytest

import fashionclip
from fashionclip.cli import main
from test_train_support import make_pairs


def test_cli_train_with_overrides(tmp_path, tiny_model_dirs, capsys):
    train_csv, val_csv = make_pairs(tmp_path / "data", n=24, n_val=8)
    config = tmp_path / "c.toml"
    config.write_text(
        f"""
output_dir = "{tmp_path / "ignored"}"
epochs = 5
batch_size = 8
num_threads = 1
device = "cpu"
val_zero_shot = []

[model]
init = "{tiny_model_dirs["clip"]}"

[data]
train = "{train_csv}"
val = "{val_csv}"
"""
    )
    out = tmp_path / "run"
    code = main(
        ["train", "--config", str(config), "--set", "epochs=1", "--set", "lr=1e-4",
         "--output-dir", str(out), "--quiet"]
    )  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "training finished: step 3/3" in printed
    saved = json.loads((out / "train_config.json").read_text())
    assert saved["epochs"] == 1 and saved["optim"]["lr"] == 1e-4
    assert not (tmp_path / "ignored").exists()
    fashionclip.load(out / "best", device="cpu")


def test_cli_train_errors_exit_2(tmp_path, tiny_model_dirs, capsys):
    train_csv, _ = make_pairs(tmp_path / "data", n=8, n_val=0)
    config = tmp_path / "c.json"
    config.write_text(
        json.dumps(
            {"model": {"init": str(tiny_model_dirs["clip"])}, "data": {"train": str(train_csv)}}
        )
    )
    assert main(["train", "--config", str(config), "--set", "batch_size=9", "--quiet"]) == 2
    assert "larger than the training set (8 usable pairs)" in capsys.readouterr().err
    assert main(["train", "--config", str(config), "--set", "optim.lrr=1"]) == 2
    assert "unknown config key" in capsys.readouterr().err


@pytest.mark.slow
def test_train_on_64_kagl_images(tmp_path, kagl_dir, tiny_model_dirs):
    from fashionclip.train import load_train_config, train

    config = load_train_config(
        None,
        [
            f"output_dir={tmp_path / 'run'}",
            f"model.init={tiny_model_dirs['clip']}",
            "data.source=kagl",
            f"data.kagl_dir={kagl_dir}",
            "data.max_train_samples=64",
            "data.max_val_samples=32",
            "captions.builder=kagl",
            "model.lock_text=true",
            "batch_size=16",
            "epochs=2",
            "num_threads=1",
            "device=cpu",
            "progress=false",
            "best_metric=val/zs_articleType_accuracy",
        ],
    )
    result = train(config)
    assert result.finished and result.global_step == 8 and result.train_size == 64
    assert result.val_size == 32 and not result.skipped_train
    last = result.history[-1]
    assert 0.0 <= last["val/zs_articleType_accuracy"] <= 1.0
    assert last["val/n_images"] == 32
    start = json.loads(result.log_path.read_text().splitlines()[0])
    assert start["cached_captions"] > 64  # varied captions: several per product


def test_cli_train_json_summary(tmp_path, tiny_model_dirs, capsys):
    train_csv, val_csv = make_pairs(tmp_path / "data", n=16, n_val=8)
    config = tmp_path / "c.json"
    config.write_text(
        json.dumps(
            {
                "epochs": 1,
                "batch_size": 8,
                "num_threads": 1,
                "device": "cpu",
                "val_zero_shot": [],
                "model": {"init": str(tiny_model_dirs["clip"])},
                "data": {"train": str(train_csv), "val": str(val_csv)},
            }
        )
    )
    code = main(
        [
            "train",
            "--config",
            str(config),
            "--output-dir",
            str(tmp_path / "run"),
            "--quiet",
            "--json",
        ]
    )
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["finished"] is True and summary["global_step"] == 2
    assert summary["last_validation"]["val/n_images"] == 8
    assert summary["last_checkpoint"].endswith("last")
