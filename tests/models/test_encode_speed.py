"""Encoding speed-ups: the fast pixel pipelines, the decode workers, dynamic int8 (CPU)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import fashionclip
from fashionclip.errors import FashionCLIPError
from fashionclip.models.dual_encoder import FashionImageProcessor
from fashionclip.models.model import _default_workers
from fashionclip.models.pixels import ResizeCropNormalize, pixel_pipeline
from fashionclip.models.quantize import int8_model
from fashionclip.models.registry import model_kinds

HF_KINDS = ("clip", "siglip", "vision-text-dual-encoder")


@pytest.fixture(params=model_kinds())
def any_kind_model(request, tiny_model_dirs):
    return fashionclip.load(tiny_model_dirs[request.param], device="cpu", precision="fp32")


def _images() -> list[Image.Image]:
    """Portrait, landscape, square, tiny and odd-sized RGB images with real content."""
    rng = np.random.default_rng(0)
    sizes = [(60, 80), (300, 200), (224, 224), (7, 5), (333, 517)]
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for w, h in sizes]


@pytest.mark.parametrize("kind", HF_KINDS)
def test_fast_pipeline_gives_the_processors_pixels(tiny_model_dirs, kind):
    model = fashionclip.load(tiny_model_dirs[kind], device="cpu", precision="fp32")
    assert isinstance(model._pixels, ResizeCropNormalize)
    images = _images()
    expected = model.image_processor(images=images, return_tensors="pt")["pixel_values"]
    got = model.preprocess(images)
    assert got.shape == expected.shape
    assert (got - expected).abs().max().item() < 1e-5


def test_fast_pipeline_matches_clip_b32_preprocessing():
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    processor = CLIPImageProcessorPil()  # shortest edge 224, centre crop 224, CLIP mean/std
    pipeline = pixel_pipeline(processor)
    assert isinstance(pipeline, ResizeCropNormalize)
    images = _images()
    expected = processor(images=images, return_tensors="pt")["pixel_values"]
    got = pipeline.to_tensor([pipeline.image_to_uint8(i) for i in images])
    assert got.shape == (len(images), 3, 224, 224)
    assert (got - expected).abs().max().item() < 1e-5


def test_processors_the_pipeline_cannot_copy_are_called_as_they_are():
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    assert pixel_pipeline(object()) is None
    assert (
        pixel_pipeline(CLIPImageProcessorPil(do_pad=True, pad_size={"height": 256, "width": 256}))
        is None
    )
    # a crop larger than the resized image is padded by transformers: not copied
    assert pixel_pipeline(CLIPImageProcessorPil(crop_size={"height": 300, "width": 300})) is None
    assert pixel_pipeline(CLIPImageProcessorPil(do_resize=False)) is None
    processor = CLIPImageProcessorPil()
    processor.image_mean = [0.5, 0.5]  # malformed config: fall back instead of failing
    assert pixel_pipeline(processor) is None


def test_dual_encoder_processor_is_its_own_pipeline():
    processor = FashionImageProcessor(size=32)
    assert pixel_pipeline(processor) is processor
    images = _images()
    direct = processor(images)["pixel_values"]
    split = processor.to_tensor([processor.image_to_uint8(i) for i in images])
    assert torch.equal(direct, split)
    assert processor.to_uint8([]).shape == (0, 32, 32, 3)


def test_encode_images_with_and_without_the_fast_pipeline_agree(any_kind_model, product_images):
    fast = any_kind_model.encode_images(product_images, batch_size=2)
    pipeline, any_kind_model._pixels = any_kind_model._pixels, None
    try:
        plain = any_kind_model.encode_images(product_images, batch_size=2)
    finally:
        any_kind_model._pixels = pipeline
    assert pipeline is not None
    assert fast.shape == plain.shape
    assert (fast * plain).sum(axis=1).min() > 0.99999


def test_decode_workers_follow_the_device(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 32)
    assert _default_workers(torch.device("cpu")) == 4
    assert _default_workers(torch.device("cuda")) == 16
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    assert _default_workers(torch.device("cuda")) == 2


def test_cpu_batches_are_not_pinned(tiny_clip, product_images):
    decoded = [tiny_clip._decode_one(p)[0] for p in product_images]
    assert not tiny_clip._pixel_batch(decoded).is_pinned()


# ------------------------------------------------------------------------------------ int8
def test_int8_vectors_stay_close_to_fp32(tiny_model_dirs, product_images):
    exact = fashionclip.load(tiny_model_dirs["clip"], device="cpu", precision="fp32")
    int8 = int8_model(exact)
    assert int8.precision == "int8"
    assert any("quantized" in type(m).__module__ for m in int8.module.modules())
    a, b = exact.encode_images(product_images), int8.encode_images(product_images)
    assert (a * b).sum(axis=1).min() > 0.99
    texts = ["red dress", "a photo of black shoes"]
    assert (exact.encode_text(texts) * int8.encode_text(texts)).sum(axis=1).min() > 0.99


def test_int8_is_not_offered_and_refused_where_unsupported(tiny_clip_dir, monkeypatch):
    with pytest.raises(FashionCLIPError, match="not offered.*evaluation harness"):
        fashionclip.load(tiny_clip_dir, device="cpu", precision="int8")
    bf16 = fashionclip.load(tiny_clip_dir, device="cpu", precision="bf16")
    with pytest.raises(FashionCLIPError, match="float32 model on CPU"):
        int8_model(bf16)
    exact = fashionclip.load(tiny_clip_dir, device="cpu", precision="fp32")
    engines = type(torch.backends.quantized)
    monkeypatch.setattr(engines, "supported_engines", property(lambda self: ["none"]))
    with pytest.raises(FashionCLIPError, match="quantised CPU engine"):
        int8_model(exact)
