"""Photo-like transform of studio product images (white background, centred product).

Real photos differ from catalog thumbnails in background, framing, lighting and quality. This
transform imitates that, and is used both as a training augmentation (``augment.photo_like``) and,
with its own fixed seeds, to build an out-of-domain *dev* set from KAGL val images
(``tools/dev_eval.py``). It is colour-preserving: lighting changes brightness and contrast only,
never hue or saturation, so a caption that names the colour stays true.

Steps (each drawn from the given ``random.Random``): rotate a little (white fill), replace the
near-white background by a random textured one (solid tone or gradient plus blurred noise), crop
so the product fills more of the frame, change brightness/contrast, blur, JPEG-compress.
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter


@dataclass(frozen=True)
class PhotoLikeParams:
    """Ranges of :func:`photo_like`'s random steps."""

    background: float = 0.9  # probability of replacing the white background
    white_threshold: int = 235  # a pixel is background when all channels are above this
    rotate: float = 12.0  # degrees, uniform in [-rotate, rotate]
    zoom_min: float = 0.65  # the crop keeps a share in [zoom_min, 1] of each side
    lighting: float = 0.3  # brightness and contrast factors in [1 - l, 1 + l]
    blur: float = 1.2  # Gaussian blur radius in [0, blur] px (at 128 px scale)
    jpeg_quality: tuple[int, int] = (30, 90)
    work_size: int = 128  # the shorter side is scaled to this first


def random_background(size: tuple[int, int], rng: random.Random) -> Image.Image:
    """A random solid-ish or gradient background with blurred noise texture."""
    width, height = size
    nprng = np.random.default_rng(rng.getrandbits(32))
    first = np.array([rng.randint(20, 235) for _ in range(3)], np.float32)
    if rng.random() < 0.5:
        second = np.array([rng.randint(20, 235) for _ in range(3)], np.float32)
        ramp = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
        base = first * (1 - ramp) + second * ramp
        base = np.broadcast_to(base, (height, width, 3))
    else:
        base = np.broadcast_to(first, (height, width, 3))
    noise = nprng.normal(0.0, rng.uniform(5.0, 40.0), (max(1, height // 4), max(1, width // 4), 3))
    noise_img = Image.fromarray(np.clip(noise + 128, 0, 255).astype(np.uint8)).resize(
        (width, height), Image.Resampling.BICUBIC
    )
    texture = np.asarray(noise_img, np.float32) - 128.0
    return Image.fromarray(np.clip(base + texture, 0, 255).astype(np.uint8))


def _foreground_mask(image: Image.Image, threshold: int) -> Image.Image:
    """'L' mask, 255 on the product (any channel at or below ``threshold``), softened."""
    array = np.asarray(image, np.uint8)
    product = (array.min(axis=2) <= threshold).astype(np.uint8) * 255
    mask = Image.fromarray(product, "L").filter(ImageFilter.MaxFilter(3))
    return mask.filter(ImageFilter.GaussianBlur(1.0))


def photo_like(
    image: Image.Image, rng: random.Random, params: PhotoLikeParams | None = None
) -> Image.Image:
    """A photo-like RGB version of a studio product image (see the module docstring)."""
    p = params or PhotoLikeParams()
    image = image.convert("RGB")
    scale = p.work_size / max(1, min(image.size))
    if scale > 1:
        size = (round(image.width * scale), round(image.height * scale))
        image = image.resize(size, Image.Resampling.BICUBIC)
    if p.rotate > 0:
        angle = rng.uniform(-p.rotate, p.rotate)
        image = image.rotate(angle, Image.Resampling.BILINEAR, fillcolor=(255, 255, 255))
    if rng.random() < p.background:
        mask = _foreground_mask(image, p.white_threshold)
        image = Image.composite(image, random_background(image.size, rng), mask)
    if p.zoom_min < 1:
        share_w, share_h = rng.uniform(p.zoom_min, 1.0), rng.uniform(p.zoom_min, 1.0)
        crop_w, crop_h = max(1, round(image.width * share_w)), max(1, round(image.height * share_h))
        left = rng.randint(0, image.width - crop_w)
        top = rng.randint(0, image.height - crop_h)
        image = image.crop((left, top, left + crop_w, top + crop_h))
    if p.lighting > 0:
        for enhancer in (ImageEnhance.Brightness, ImageEnhance.Contrast):
            image = enhancer(image).enhance(rng.uniform(1 - p.lighting, 1 + p.lighting))
    if p.blur > 0:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.0, p.blur)))
    low, high = p.jpeg_quality
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=rng.randint(low, high))
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")
