"""End-to-end training on tiny models: checkpoints, logs, locking, exact resume, input errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import fashionclip
from fashionclip.errors import FashionCLIPError
from fashionclip.train import load_train_config, train
from fashionclip.train.checkpoint import STATE_DIR
from test_train_support import base_overrides, make_pairs, state_dict


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    root = tmp_path_factory.mktemp("pairs")
    return make_pairs(root)


def _config(tmp_path, model_dir, pairs, *extra, val=True):
    train_csv, val_csv = pairs
    items = base_overrides(tmp_path, model_dir, train_csv, val_csv if val else None)
    return load_train_config(None, items + list(extra))


def test_clip_training_writes_loadable_checkpoints_and_log(tmp_path, tiny_model_dirs, pairs):
    config = _config(tmp_path, tiny_model_dirs["clip"], pairs)
    result = train(config)
    assert result.finished and result.global_step == result.total_steps == 10
    assert result.epochs_completed == 2 and result.train_size == 40 and result.val_size == 16
    assert result.samples_per_second > 0
    rows = [json.loads(line) for line in result.log_path.read_text().splitlines()]
    assert [r["type"] for r in rows].count("train") == 10
    val_rows = [r for r in rows if r["type"] == "val"]
    assert len(val_rows) == 2
    for key in ("t2i_recall@1", "t2i_recall@5", "t2i_recall@10", "i2t_recall@1", "mean_recall"):
        assert 0.0 <= val_rows[-1][f"val/{key}"] <= 1.0
    assert result.best_checkpoint is not None
    best = json.loads((result.best_checkpoint / "metrics.json").read_text())
    assert best["val/mean_recall"] == max(r["val/mean_recall"] for r in val_rows)
    # both checkpoints are ordinary model folders
    for folder in (result.last_checkpoint, result.best_checkpoint):
        model = fashionclip.load(folder, device="cpu", precision="fp32")
        assert model.encode_text(["a photo of a red shirt"]).shape == (1, 32)
    assert (result.last_checkpoint / STATE_DIR / "optimizer.safetensors").is_file()
    # the weights moved away from the initial model
    before = state_dict(tiny_model_dirs["clip"])
    after = state_dict(result.last_checkpoint)
    key = "vision_model.encoder.layers.0.mlp.fc1.weight"
    assert not torch.equal(before[key], after[key])


def test_locked_text_tower_is_frozen_and_cached(tmp_path, tiny_model_dirs, pairs):
    config = _config(
        tmp_path,
        tiny_model_dirs["clip"],
        pairs,
        "model.lock_text=true",
        "model.lock_text_projection=true",
        "model.lock_image=true",
        "model.image_unlocked_groups=1",
    )
    result = train(config)
    start = json.loads(result.log_path.read_text().splitlines()[0])
    assert start["cached_captions"] == 25
    before, after = state_dict(tiny_model_dirs["clip"]), state_dict(result.last_checkpoint)
    text_keys = [k for k in before if k.startswith(("text_model.", "text_projection."))]
    assert text_keys and all(torch.equal(before[k], after[k]) for k in text_keys)
    frozen_image = [k for k in before if k.startswith("vision_model.encoder.layers.0.")]
    assert frozen_image and all(torch.equal(before[k], after[k]) for k in frozen_image)
    trained = [
        k for k in before if k.startswith(("vision_model.post_layernorm", "visual_projection"))
    ]
    assert trained and all(not torch.equal(before[k], after[k]) for k in trained)


@pytest.mark.parametrize(
    ("kind", "extra"),
    [
        ("clip", ("model.lock_text=true",)),
        ("fashionclip-dual-encoder", ()),
        ("siglip", ("optim.accum_steps=2",)),
    ],
)
def test_resume_gives_identical_weights(tmp_path, tiny_model_dirs, pairs, kind, extra):
    if kind not in tiny_model_dirs:
        pytest.skip(f"no tiny {kind}")
    model_dir = tiny_model_dirs[kind]
    straight = _config(tmp_path / "a", model_dir, pairs, *extra, "epochs=3")
    full = train(straight)
    assert full.finished
    total = full.global_step
    split = _config(
        tmp_path / "b", model_dir, pairs, *extra, "epochs=3", f"stop_after_steps={total // 2 + 1}"
    )
    first = train(split)
    assert not first.finished and first.global_step == total // 2 + 1
    resume = _config(tmp_path / "b", model_dir, pairs, *extra, "epochs=3")
    second = train(resume)
    assert second.finished and second.global_step == total
    a, b = state_dict(full.last_checkpoint), state_dict(second.last_checkpoint)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert [r["val/mean_recall"] for r in full.history] == [
        r["val/mean_recall"] for r in second.history
    ]
    log = [json.loads(line)["type"] for line in second.log_path.read_text().splitlines()]
    assert log.count("resume") == 1


def test_errors_before_training(tmp_path, tiny_model_dirs, pairs):
    with pytest.raises(FashionCLIPError, match="larger than the training set"):
        train(_config(tmp_path, tiny_model_dirs["clip"], pairs, "batch_size=64"))
    with pytest.raises(FashionCLIPError, match="caption column 'title' not found"):
        train(_config(tmp_path, tiny_model_dirs["clip"], pairs, "data.caption_column=title"))
    with pytest.raises(FashionCLIPError, match="best_metric 'val/nope'.*val/t2i_recall@1"):
        train(_config(tmp_path, tiny_model_dirs["clip"], pairs, "best_metric=val/nope"))
    assert not (tmp_path / "run").exists()  # nothing was trained or written


def test_dual_encoder_from_towers_config_path(tmp_path, tiny_model_dirs, pairs):
    """Starting point (b) goes through the same folder format: the run's init/ folder."""
    config = _config(
        tmp_path,
        tiny_model_dirs["fashionclip-dual-encoder"],
        pairs,
        "model.lock_text=true",
        "epochs=1",
    )
    result = train(config)
    model = fashionclip.load(result.last_checkpoint, device="cpu", precision="fp32")
    emb = model.encode_text(["a photo of a red shirt", "a photo of a blue bag"])
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)


def test_optimizer_groups_exclude_biases_norms_and_temperature(tiny_model_dirs):
    from fashionclip.train.config import TrainConfig
    from fashionclip.train.parts import ModelParts
    from fashionclip.train.setup import build_optimizer

    model = fashionclip.load(tiny_model_dirs["clip"], device="cpu", precision="fp32")
    parts = ModelParts(model)
    config = TrainConfig()
    config.optim.lr, config.optim.backbone_lr, config.optim.weight_decay = 1e-3, 1e-4, 0.2
    optimizer = build_optimizer(parts, config)
    names = {id(p): n for n, p in model.module.named_parameters()}
    by_group = {g["name"]: g for g in optimizer.param_groups}
    decayed = {
        names[id(p)] for g in optimizer.param_groups if g["weight_decay"] > 0 for p in g["params"]
    }
    assert "logit_scale" not in decayed
    assert not any(n.endswith(".bias") or "layer_norm" in n or "layernorm" in n for n in decayed)
    assert "visual_projection.weight" in decayed
    assert "vision_model.encoder.layers.0.mlp.fc1.weight" in decayed
    assert by_group["backbone"]["base_lr"] == 1e-4 and by_group["head"]["base_lr"] == 1e-3
    assert [names[id(p)] for p in by_group["logit-no-decay"]["params"]] == ["logit_scale"]
    n_params = sum(len(g["params"]) for g in optimizer.param_groups)
    assert n_params == sum(1 for p in model.module.parameters() if p.requires_grad)


def test_bf16_autocast_path_runs(tmp_path, tiny_model_dirs, pairs):
    result = train(_config(tmp_path, tiny_model_dirs["clip"], pairs, "precision=bf16", "epochs=1"))
    assert result.finished and result.history
    fashionclip.load(result.last_checkpoint, device="cpu", precision="fp32")


def test_cached_image_views_skip_decoding_and_match_uncached(
    tmp_path, tiny_model_dirs, pairs, monkeypatch
):
    """LiT-style (frozen image backbone): with one cached view and no augmentation, epochs 2+
    decode no training image and training matches the uncached run."""
    from fashionclip.train.data import PairDataset

    loads: list[str] = []
    original = PairDataset.load

    def counting_load(self, index):
        loads.append(self.name)
        return original(self, index)

    monkeypatch.setattr(PairDataset, "load", counting_load)
    common = ("model.lock_image=true", "augment.enabled=false", "epochs=3")
    cached = train(
        _config(
            tmp_path / "a", tiny_model_dirs["clip"], pairs, *common, "model.cache_image_views=1"
        )
    )
    train_loads = sum(1 for name in loads if name.endswith("train.csv"))
    assert train_loads == 40  # epoch 1 only; 40 pairs, 5 batches of 8
    loads.clear()
    plain = train(_config(tmp_path / "b", tiny_model_dirs["clip"], pairs, *common))
    assert sum(1 for name in loads if name.endswith("train.csv")) == 120
    a, b = state_dict(cached.last_checkpoint), state_dict(plain.last_checkpoint)
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-5), key
    with pytest.raises(FashionCLIPError, match="fully frozen image backbone"):
        train(_config(tmp_path / "c", tiny_model_dirs["clip"], pairs, "model.cache_image_views=2"))


def test_interrupted_run_resumes_from_last_checkpoint(
    tmp_path, tiny_model_dirs, pairs, monkeypatch
):
    """Ctrl-C after step 5 with a checkpoint every 3 steps: the next run restarts at step 3, drops
    the interrupted run's later log rows, and ends with the same weights as an uninterrupted run."""
    from fashionclip.train import epoch

    extra = ("model.lock_text=true", "save_every_steps=3")
    straight = train(_config(tmp_path / "a", tiny_model_dirs["clip"], pairs, *extra))

    calls = {"n": 0}
    original = epoch.clamp_logit_scale_

    def interrupt_at_step_5(param):
        original(param)
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt

    monkeypatch.setattr(epoch, "clamp_logit_scale_", interrupt_at_step_5)
    with pytest.raises(KeyboardInterrupt):
        train(_config(tmp_path / "b", tiny_model_dirs["clip"], pairs, *extra))
    monkeypatch.setattr(epoch, "clamp_logit_scale_", original)
    log_path = tmp_path / "b" / "run" / "log.jsonl"
    assert max(json.loads(x).get("step", 0) for x in log_path.read_text().splitlines()) == 4

    resumed = train(
        _config(tmp_path / "b", tiny_model_dirs["clip"], pairs, *extra, "optim.lr=2e-3")
    )
    rows = [json.loads(x) for x in log_path.read_text().splitlines()]
    resume_row = next(r for r in rows if r["type"] == "resume")
    assert resume_row["step"] == 3 and resume_row["changed"] == ["optim.lr"]
    steps = [r["step"] for r in rows if r["type"] == "train"]
    assert steps == list(range(1, 11))  # rows 4 of the interrupted run were dropped, no duplicates
    a, b = state_dict(straight.last_checkpoint), state_dict(resumed.last_checkpoint)
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_image_feature_blocks_train_a_head_over_multi_level_features(
    tmp_path, tiny_model_dirs, pairs
):
    """``model.image_feature_blocks`` widens the frozen backbone's features for the fresh head
    (cached views included); the checkpoint records the blocks and loads with them."""
    model_dir = tiny_model_dirs["fashionclip-dual-encoder"]
    config = _config(
        tmp_path,
        model_dir,
        pairs,
        "model.lock_image=true",
        "model.cache_image_views=2",
        "model.image_projection=mlp",
        "model.image_feature_blocks=[0, 1]",
    )
    after = fashionclip.load(train(config).last_checkpoint, device="cpu", precision="fp32").module
    assert after.config.image_feature_blocks == [0, 1]
    assert after.vision_model.feature_blocks == (0, 1)
    assert after.visual_projection[0].in_features == after.vision_model.feature_dim
    assert after.vision_model.feature_dim > int(after.vision_model.net._bn1.num_features)


def test_image_projection_option_trains_a_fresh_mlp_head_and_saves_its_kind(
    tmp_path, tiny_model_dirs, pairs
):
    """``model.image_projection=mlp`` (fashion-clip-mini stage 3) replaces a dual encoder's linear
    image head with a fresh MLP over the frozen backbone; the checkpoint loads with it."""
    model_dir = tiny_model_dirs["fashionclip-dual-encoder"]
    before = fashionclip.load(model_dir, device="cpu", precision="fp32").module
    assert isinstance(before.visual_projection, torch.nn.Linear)
    config = _config(
        tmp_path,
        model_dir,
        pairs,
        "model.lock_image=true",
        "augment.enabled=false",
        "model.image_projection=mlp",
        "model.image_projection_hidden_dim=24",
    )
    result = train(config)
    after = fashionclip.load(result.last_checkpoint, device="cpu", precision="fp32").module
    assert isinstance(after.visual_projection, torch.nn.Sequential)
    assert after.visual_projection[0].out_features == 24
    assert after.config.projection == "mlp" and after.config.projection_hidden_dim == 24
    # The text head is untouched in kind and the backbone is the init's.
    assert type(after.text_projection) is type(before.text_projection)
    for key, value in before.vision_model.state_dict().items():
        assert torch.equal(value, after.vision_model.state_dict()[key]), key
    with pytest.raises(FashionCLIPError, match="image_projection must be"):
        _config(tmp_path, model_dir, pairs, "model.image_projection=conv")
    with pytest.raises(FashionCLIPError, match="image_feature_blocks needs"):
        _config(tmp_path, model_dir, pairs, "model.image_feature_blocks=[0]")
    with pytest.raises(FashionCLIPError, match="dual-encoder"):
        train(_config(tmp_path / "c", tiny_model_dirs["clip"], pairs, "model.image_projection=mlp"))
