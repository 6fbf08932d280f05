"""fashionclip.load and the FashionCLIP model object, on tiny random models of each kind."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

import fashionclip
from fashionclip.errors import (
    FashionCLIPError,
    ImageDecodeError,
    ModelNotFoundError,
    UnsafeCheckpointError,
)
from fashionclip.models.prompts import DEFAULT_TEMPLATES
from fashionclip.models.registry import model_kinds


@pytest.fixture(params=model_kinds())
def any_model(request, tiny_model_dirs):
    if request.param not in tiny_model_dirs:
        pytest.fail(f"no tiny builder for {request.param}")
    return fashionclip.load(tiny_model_dirs[request.param], device="cpu", precision="fp32")


def test_encode_images_shapes_order_and_norm(any_model, product_images):
    vectors = any_model.encode_images(product_images, batch_size=3)
    assert vectors.dtype == np.float32
    assert vectors.shape == (4, any_model.embedding_dim)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # Input order is kept across batches: each row equals the single-image encoding.
    for i, path in enumerate(product_images):
        single = any_model.encode_images(path)
        assert single.shape == (any_model.embedding_dim,)
        np.testing.assert_allclose(single, vectors[i], atol=1e-5)


def test_encode_images_accepts_bytes_and_pil(any_model, product_images):
    path = product_images[0]
    from_path = any_model.encode_images(path)
    from_bytes = any_model.encode_images(path.read_bytes())
    from_pil = any_model.encode_images(Image.open(path))
    np.testing.assert_allclose(from_path, from_bytes, atol=1e-6)
    np.testing.assert_allclose(from_path, from_pil, atol=1e-6)


def test_encode_text_single_batch_and_truncation(any_model):
    vectors = any_model.encode_text(["red shirt", "blue dress", "nike sneakers"], batch_size=2)
    assert vectors.shape == (3, any_model.embedding_dim) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(any_model.encode_text("blue dress"), vectors[1], atol=1e-5)
    long = any_model.encode_text("red " * 2000)  # far beyond max length: truncated, not an error
    assert long.shape == (any_model.embedding_dim,)
    as_torch = any_model.encode_text(["red shirt"], output="torch")
    assert isinstance(as_torch, torch.Tensor)


def test_tokenizers_give_real_ids(tiny_model_dirs):
    """transformers 5 silently ignores some tokenizer file arguments; make sure words map to words."""
    for kind in model_kinds():
        model = fashionclip.load(tiny_model_dirs[kind], device="cpu", precision="fp32")
        ids = model.tokenize(["red nike sneakers"])["input_ids"][0].tolist()
        tokens = [t.replace("</w>", "") for t in model.tokenizer.convert_ids_to_tokens(ids)]
        for word in ("red", "nike", "sneakers"):
            assert word in tokens, (kind, tokens)


def test_zero_shot_matches_independent_computation(tiny_clip, product_images):
    labels = ["red shirt", "green dress", "blue shoes"]
    templates = ["a photo of a {}", "{}"]
    predictions = tiny_clip.zero_shot_classification(product_images, labels, templates=templates)
    assert len(predictions) == len(product_images)

    # Independent computation straight from the torch module.
    module = tiny_clip.module
    with torch.no_grad():
        pixels = tiny_clip.preprocess([Image.open(p).convert("RGB") for p in product_images])
        image = module.get_image_features(pixel_values=pixels).pooler_output
        image = image / image.norm(dim=-1, keepdim=True)
        label_vectors = []
        for label in labels:
            tokens = tiny_clip.tokenizer(
                [t.format(label) for t in templates], padding=True, return_tensors="pt"
            )
            text = module.get_text_features(**tokens).pooler_output
            text = text / text.norm(dim=-1, keepdim=True)
            mean = text.mean(0)
            label_vectors.append(mean / mean.norm())
        logits = module.logit_scale.exp() * image @ torch.stack(label_vectors).T
        expected = logits.softmax(dim=-1).numpy()
    for row, prediction in zip(expected, predictions, strict=True):
        got = np.array([prediction.scores[label] for label in labels])
        np.testing.assert_allclose(got, row, atol=1e-4)
        assert prediction.label == labels[int(row.argmax())]
        assert abs(sum(prediction.scores.values()) - 1) < 1e-5


def test_zero_shot_rejects_bad_labels(tiny_clip, product_images):
    for labels in (["only one"], "a string", ["a", ""], ["same", "same"]):
        with pytest.raises(FashionCLIPError):
            tiny_clip.zero_shot_classification(product_images[:1], labels)
    with pytest.raises(FashionCLIPError, match="'\\{\\}' exactly once"):
        tiny_clip.zero_shot_classification(product_images[:1], ["a", "b"], templates=["no slot"])
    assert DEFAULT_TEMPLATES == ("a photo of a {}",)


def test_bad_images_are_skipped_with_reasons(tiny_clip, product_images, tmp_path):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    truncated = tmp_path / "truncated.jpg"
    Image.new("RGB", (64, 64), (10, 20, 30)).save(tmp_path / "full.jpg", quality=90)
    truncated.write_bytes((tmp_path / "full.jpg").read_bytes()[:200])
    inputs = [
        product_images[0],
        tmp_path / "missing.jpg",
        empty,
        text,
        truncated,
        product_images[1],
    ]
    result = tiny_clip.try_encode_images(inputs, batch_size=2)
    assert result.ok_indices == [0, 5]
    assert result.embeddings.shape == (2, tiny_clip.embedding_dim)
    reasons = {f.index: f.reason for f in result.failures}
    assert set(reasons) == {1, 2, 3, 4}
    assert "not found" in reasons[1]
    assert "empty" in reasons[2]
    assert "not an image" in reasons[3]
    assert "truncated" in reasons[4] or "corrupt" in reasons[4]
    with pytest.raises(ImageDecodeError):
        tiny_clip.encode_images(inputs)


def test_identity_survives_copy_and_differs_between_models(tiny_model_dirs, tmp_path):
    source = tiny_model_dirs["clip"]
    copy = shutil.copytree(source, tmp_path / "copy")
    a = fashionclip.load(source, device="cpu", precision="fp32").identity
    b = fashionclip.load(copy, device="cpu", precision="fp32").identity
    other = fashionclip.load(tiny_model_dirs["siglip"], device="cpu", precision="fp32").identity
    assert a.fingerprint == b.fingerprint
    assert a.fingerprint != other.fingerprint


def test_pickle_checkpoints_need_explicit_opt_in(tiny_model_dirs, tmp_path):
    from transformers import CLIPModel

    folder = shutil.copytree(tiny_model_dirs["clip"], tmp_path / "pickled")
    CLIPModel.from_pretrained(folder).save_pretrained(folder, safe_serialization=False)
    (folder / "model.safetensors").unlink(missing_ok=True)
    if not (folder / "pytorch_model.bin").exists():
        # transformers 5 always writes safetensors: make the pickle file by hand.
        torch.save(
            CLIPModel.from_pretrained(tiny_model_dirs["clip"]).state_dict(),
            folder / "pytorch_model.bin",
        )
        (folder / "model.safetensors").unlink(missing_ok=True)
    with pytest.raises(UnsafeCheckpointError, match="allow_pickle"):
        fashionclip.load(folder, device="cpu", precision="fp32")
    model = fashionclip.load(folder, device="cpu", precision="fp32", allow_pickle=True)
    reference = fashionclip.load(tiny_model_dirs["clip"], device="cpu", precision="fp32")
    np.testing.assert_allclose(model.encode_text("red"), reference.encode_text("red"), atol=1e-5)


def test_missing_models_give_clear_errors(tmp_path):
    with pytest.raises(ModelNotFoundError, match="huggingface-cli download"):
        fashionclip.load("nobody-here/no-such-model-xyz")
    with pytest.raises(ModelNotFoundError, match="not found"):
        fashionclip.load(tmp_path / "nothing")
    (tmp_path / "folder").mkdir()
    with pytest.raises(ModelNotFoundError, match="config.json"):
        fashionclip.load(tmp_path / "folder")
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ModelNotFoundError, match="unsupported model_type"):
        fashionclip.load(tmp_path / "odd")


def test_save_pretrained_round_trip(tiny_clip, tmp_path):
    tiny_clip.save_pretrained(tmp_path / "saved")
    again = fashionclip.load(tmp_path / "saved", device="cpu", precision="fp32")
    np.testing.assert_allclose(again.encode_text("red"), tiny_clip.encode_text("red"), atol=1e-6)
    assert again.identity.fingerprint == tiny_clip.identity.fingerprint


def test_bf16_autocast_stays_close_to_fp32(tiny_clip_dir, product_images):
    exact = fashionclip.load(tiny_clip_dir, device="cpu", precision="fp32")
    fast = fashionclip.load(tiny_clip_dir, device="cpu", precision="bf16")
    a, b = exact.encode_images(product_images), fast.encode_images(product_images)
    assert (a * b).sum(axis=1).min() > 0.98
    assert exact.identity.fingerprint == fast.identity.fingerprint
    with pytest.raises(FashionCLIPError, match="precision"):
        fashionclip.load(tiny_clip_dir, precision="int3")


def test_save_pretrained_dual_encoder_round_trip(tiny_model_dirs, product_images, tmp_path):
    model = fashionclip.load(
        tiny_model_dirs["fashionclip-dual-encoder"], device="cpu", precision="fp32"
    )
    before = model.encode_images(product_images)
    model.save_pretrained(tmp_path / "saved")
    again = fashionclip.load(tmp_path / "saved", device="cpu", precision="fp32")
    np.testing.assert_allclose(again.encode_images(product_images), before, atol=1e-5)
    np.testing.assert_allclose(model.encode_images(product_images), before, atol=1e-6)
