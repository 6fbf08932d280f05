"""TrainConfig: TOML/JSON files, key=value overrides, type checks, clear errors."""

from __future__ import annotations

import json

import pytest

from fashionclip.errors import FashionCLIPError
from fashionclip.train.config import TrainConfig, load_train_config, parse_override

TOML = """
output_dir = "runs/x"
epochs = 4
batch_size = 32

[model]
init = "some/model"
lock_text = true

[optim]
lr = 1e-4
warmup_steps = 10

[captions]
builder = "kagl"
templates = ["{name}", "a photo of a {articleType}"]
template_weights = [2, 1]

[data]
source = "kagl"
"""


def test_toml_and_overrides(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text(TOML)
    config = load_train_config(
        path, ["epochs=3", "lr=3e-5", "optim.accum_steps=2", "augment.enabled=false", "seed=7"]
    )
    assert config.epochs == 3
    assert config.optim.lr == pytest.approx(3e-5)
    assert config.optim.accum_steps == 2
    assert config.optim.warmup_steps == 10
    assert config.augment.enabled is False
    assert config.model.lock_text is True
    assert config.captions.template_weights == [2.0, 1.0]
    assert config.seed == 7
    assert config.data.source == "kagl"


def test_json_round_trip(tmp_path):
    config = TrainConfig()
    config.model.init = "m"
    config.data.train = "t.csv"
    config.optim.grad_clip = None
    path = tmp_path / "c.json"
    path.write_text(json.dumps(config.to_dict()))
    again = load_train_config(path)
    assert again == config


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("epochz=3", "unknown config key 'epochz'"),
        ("optim.lrr=1", "did you mean optim.lr"),
        ("epochs=three", "expects an integer"),
        ("augment.enabled=maybe", "expects true/false"),
        ("epochs", "key=value"),
        ("batch_size=0", "batch_size must be >= 1"),
        ("loss.kind=triplet", "loss.kind"),
        ("captions.template_weights=[1]", "template_weights has 1 entries"),
    ],
)
def test_bad_overrides_are_clear_errors(tmp_path, override, message):
    path = tmp_path / "c.toml"
    path.write_text(TOML)
    with pytest.raises(FashionCLIPError, match=message.replace("(", r"\(")):
        load_train_config(path, [override])


def test_unknown_key_in_file_and_missing_file(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text(TOML + "\n[loss]\nknd = 'clip'\n")
    with pytest.raises(FashionCLIPError, match="loss.knd"):
        load_train_config(path)
    with pytest.raises(FashionCLIPError, match="not found"):
        load_train_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("epochs = = 3")
    with pytest.raises(FashionCLIPError, match="cannot parse"):
        load_train_config(bad)


def test_model_init_and_train_table_required():
    with pytest.raises(FashionCLIPError, match="model.init"):
        load_train_config(None, ["data.train=x.csv"])
    with pytest.raises(FashionCLIPError, match="data.train"):
        load_train_config(None, ["model.init=m"])


def test_parse_override_values():
    assert parse_override("a=1e-4") == ("a", 1e-4)
    assert parse_override("a=none") == ("a", None)
    assert parse_override("a=[1, 2]") == ("a", [1, 2])
    assert parse_override("a=runs/x=y") == ("a", "runs/x=y")
    assert parse_override("model.dual_encoder.projection_dim=256") == (
        "model.dual_encoder.projection_dim",
        256,
    )


def test_dual_encoder_options_pass_through():
    config = load_train_config(
        None,
        ["model.init=dual-encoder", "data.train=x.csv", "model.dual_encoder.projection_dim=256"],
    )
    assert config.model.dual_encoder == {"projection_dim": 256}


def test_shipped_configs_parse():
    from pathlib import Path

    folder = Path(__file__).resolve().parents[2] / "configs"
    paths = sorted(folder.glob("*.toml")) + sorted(folder.glob("*.json"))
    assert any(p.name == "fashion-clip-mini.toml" for p in paths)
    for path in paths:
        config = load_train_config(path)
        assert config.model.init


def test_default_model_stages_agree():
    """Stage 2 starts from stage 1's best checkpoint with the same caption templates and weights;
    it adds the WordNet synonyms and trains on one clean cached view per image."""
    import dataclasses
    from pathlib import Path

    folder = Path(__file__).resolve().parents[2] / "configs"
    stage1 = load_train_config(folder / "fashion-clip-mini.toml")
    stage2 = load_train_config(folder / "fashion-clip-mini-stage2.toml")
    assert stage2.model.init == f"{stage1.output_dir}/best"
    assert stage1.captions.article_synonyms == "none"
    assert stage2.captions.article_synonyms == "wordnet"
    assert stage2.captions == dataclasses.replace(stage1.captions, article_synonyms="wordnet")
    assert stage1.augment.enabled and not stage2.augment.enabled
    assert stage2.model.lock_image and stage2.model.image_unlocked_groups == 0
    assert stage2.model.cache_image_views == 1


def test_stage3_adds_ccp_crops_on_top_of_stage2():
    """Stage 3 (issue 14) starts from stage 2's best checkpoint, keeps its captions and frozen
    backbones, and adds the CCP garment crops of the train split, never of the test split."""
    from pathlib import Path

    folder = Path(__file__).resolve().parents[2] / "configs"
    stage2 = load_train_config(folder / "fashion-clip-mini-stage2.toml")
    stage3 = load_train_config(folder / "fashion-clip-mini-stage3.toml")
    assert stage3.model.init == f"{stage2.output_dir}/best"
    assert stage3.captions == stage2.captions
    assert stage3.data.ccp_split == "train" and stage3.data.ccp_repeat >= 1
    assert stage3.model.lock_image and stage3.model.image_unlocked_groups == 0
    with pytest.raises(FashionCLIPError, match="test split"):
        load_train_config(folder / "fashion-clip-mini-stage3.toml", ["data.ccp_split=test"])


def test_stage4_trains_a_new_image_head_from_v2_with_photo_and_thumbnail_views():
    """Stage 4 (v3) starts from the WiSE-FT output that `make default-model` writes, keeps both
    backbones frozen, and adds colour and category captions to stage 3's."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    stage3 = load_train_config(root / "configs" / "fashion-clip-mini-stage3.toml")
    stage4 = load_train_config(root / "configs" / "fashion-clip-mini-stage4.toml")
    assert stage4.model.init in (root / "Makefile").read_text()
    assert stage4.model.lock_image and stage4.model.image_unlocked_groups == 0
    assert stage4.model.lock_text and stage4.model.cache_image_views == 2
    assert stage4.model.image_projection == "mlp"
    assert stage4.captions.templates[: len(stage3.captions.templates)] == stage3.captions.templates
    assert "a photo of a {baseColour}" in stage4.captions.templates
    assert stage4.augment.photo_like > 0 and stage4.augment.negative_thumbnail > 0
    assert stage4.data.ccp_split == "train" and stage4.data.max_train_samples is None
    with pytest.raises(FashionCLIPError, match="test split"):
        load_train_config(
            root / "configs" / "fashion-clip-mini-stage4.toml", ["data.ccp_split=test"]
        )


def test_stage5_trains_the_last_text_layers_from_stage4_and_make_soups_three_seeds():
    """Stage 5 (v6) continues stage 4's output with stage 4's data, captions and label prompts, the
    image backbone frozen and MiniLM's last two layers trained; `make default-model` runs it on
    three seeds and averages them (tools/soup.py)."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    stage4 = load_train_config(root / "configs" / "fashion-clip-mini-stage4.toml")
    stage5 = load_train_config(root / "configs" / "fashion-clip-mini-stage5.toml")
    makefile = (root / "Makefile").read_text()
    assert stage5.model.init == f"{stage4.output_dir}/best"
    assert stage5.model.lock_image and stage5.model.image_unlocked_groups == 0
    assert stage5.model.lock_text and stage5.model.text_unlocked_groups == 2
    assert stage5.captions == stage4.captions and stage5.loss == stage4.loss
    assert stage5.augment == stage4.augment and stage5.data == stage4.data
    assert "configs/fashion-clip-mini-stage5.toml --set seed=$$seed" in makefile
    assert "tools/soup.py runs/fashion-clip-mini-v6" in makefile
    assert all(f"runs/fashion-clip-mini-stage5-seed{s}/best" in makefile for s in (3, 4, 5))


def test_loss_kinds_come_from_the_loss_registry(monkeypatch):
    from fashionclip.train import loss

    items = ["model.init=x", "data.train=x.csv"]
    with pytest.raises(FashionCLIPError, match="loss.kind: one of auto, clip, siglip"):
        load_train_config(None, [*items, "loss.kind=triplet"])
    monkeypatch.setitem(loss.LOSSES, "triplet", loss.ClipLoss)
    assert load_train_config(None, [*items, "loss.kind=triplet"]).loss.kind == "triplet"


def test_zero_shot_template_needs_one_placeholder():
    """Without '{}' every class got the same prompt (a meaningless zero-shot accuracy)."""
    items = ["model.init=x", "data.train=x.csv"]
    for template in ("a photo", "{} and {}"):
        with pytest.raises(FashionCLIPError, match="val_zero_shot_template must contain"):
            load_train_config(None, [*items, f"val_zero_shot_template={template}"])
    assert load_train_config(None, [*items, "val_zero_shot_template=an image of a {}"])
