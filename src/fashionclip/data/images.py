"""Safe image decoding: paths, bytes or PIL images in, RGB PIL images out.

Every failure becomes an :class:`~fashionclip.errors.ImageDecodeError` whose message says why
(missing, empty, truncated, not an image, decompression bomb), so that callers that process
thousands of files can skip and report one bad file instead of aborting the run.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from fashionclip.errors import ImageDecodeError

ImageInput = str | os.PathLike | bytes | bytearray | memoryview | Image.Image

#: Largest image (in pixels) we agree to decode; larger files are treated as decompression bombs.
MAX_IMAGE_PIXELS = 64_000_000


def is_image_input(value: object) -> bool:
    """True for a single image (path, bytes, PIL image), False for a sequence of them."""
    return isinstance(value, (str, os.PathLike, bytes, bytearray, memoryview, Image.Image))


def load_image(source: ImageInput, max_pixels: int = MAX_IMAGE_PIXELS) -> Image.Image:
    """Decode one image fully and return it as RGB.

    Raises ImageDecodeError with a short reason for any unreadable input.
    """
    if isinstance(source, Image.Image):
        return _to_rgb(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if not data:
            raise ImageDecodeError("empty image data (0 bytes)")
        return _decode(io.BytesIO(data), "<bytes>", max_pixels)
    path = Path(os.fspath(source))
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise ImageDecodeError(f"file not found: {path}") from None
    except OSError as exc:
        raise ImageDecodeError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not path.is_file():
        raise ImageDecodeError(f"not a file: {path}")
    if size == 0:
        raise ImageDecodeError(f"empty file (0 bytes): {path}")
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise ImageDecodeError(f"cannot read {path}: {exc.strerror or exc}") from None
    return _decode(io.BytesIO(data), str(path), max_pixels)


def _decode(stream: io.BytesIO, label: str, max_pixels: int) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(stream)
            width, height = image.size
            if width * height > max_pixels:
                raise ImageDecodeError(
                    f"decompression bomb: {width}x{height} pixels exceeds the limit of "
                    f"{max_pixels:,} ({label})"
                )
            image.load()
    except ImageDecodeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageDecodeError(f"decompression bomb ({label}): {exc}") from None
    except UnidentifiedImageError:
        raise ImageDecodeError(f"not an image or unknown format ({label})") from None
    except (OSError, SyntaxError, ValueError) as exc:
        reason = str(exc) or type(exc).__name__
        if "truncated" in reason.lower():
            raise ImageDecodeError(f"truncated image ({label}): {reason}") from None
        raise ImageDecodeError(f"corrupt image ({label}): {reason}") from None
    return _to_rgb(image)


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        # Catalog photos sit on white: composite transparent pixels onto white, not black.
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")
