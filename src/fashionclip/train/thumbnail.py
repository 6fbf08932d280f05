"""Fashion-MNIST-like views of catalog photos, made the way Fashion-MNIST itself was made.

Fashion-MNIST (Xiao et al., 2017) turned Zalando product photos into 28x28 images in these steps:
trim the edges that match the corner colour, resize the longest side to 28, sharpen, extend the
short side to 28 with the image centred, negate, convert to grey. :func:`fashion_mnist_thumbnail`
follows them, so that a training view looks like the images a model is later asked about: the
product fills the square, on black, with no frame. The model's preprocessing then grows the
28-px square to its input size exactly as it grows a Fashion-MNIST image.

:func:`square` pads an image to a square in a given colour; augmentations that invert an image
square it in white first, so the inverted padding is black: padding added later by the model's
preprocessing (white) would frame a light-on-black view in white bars.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter, ImageOps

#: A pixel belongs to the background when no channel differs from the corner colour by more
#: than this (Fashion-MNIST's 5% of the range).
TRIM_TOLERANCE = 13


def trim(image: Image.Image, tolerance: int = TRIM_TOLERANCE) -> Image.Image:
    """The smallest crop holding every pixel that differs from the top-left corner's colour."""
    pixels = np.asarray(image.convert("RGB")).astype(np.int16)
    corner = pixels[0, 0]
    content = (np.abs(pixels - corner) > tolerance).any(axis=2)
    rows, cols = np.flatnonzero(content.any(axis=1)), np.flatnonzero(content.any(axis=0))
    if rows.size == 0:  # a blank image: nothing to trim to
        return image
    return image.crop((int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1))


def square(image: Image.Image, fill: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """``image`` centred on a square canvas of its longest side, filled with ``fill``."""
    width, height = image.size
    side = max(width, height)
    if width == height:
        return image
    canvas = Image.new("RGB", (side, side), fill)
    canvas.paste(image.convert("RGB"), ((side - width) // 2, (side - height) // 2))
    return canvas


def fashion_mnist_thumbnail(image: Image.Image, size: int = 28) -> Image.Image:
    """A ``size`` x ``size`` grey, light-on-black RGB copy of a product photo on a plain ground."""
    product = trim(image.convert("RGB"))
    width, height = product.size
    scale = size / max(width, height)
    small = product.resize(
        (max(1, round(width * scale)), max(1, round(height * scale))), Image.Resampling.BOX
    )
    small = small.filter(ImageFilter.UnsharpMask(radius=1, percent=100, threshold=0))
    return ImageOps.invert(square(small)).convert("L").convert("RGB")
