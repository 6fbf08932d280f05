"""Images in and out of the service, with bounded memory and verified content.

Uploads: a 110 KB PNG can declare 5000x5000 pixels and take 100 MB once decoded, so many
concurrent uploads could take the server's memory without bound. Here

* the declared size is read from the header and refused over the pixel limit before decoding;
* at most ``slots`` images are decoded at once in the process (:class:`DecodeGate`, sized to
  the CPU cores); further requests wait up to ``timeout_s`` and are then refused with
  :class:`ServiceBusyError` (HTTP 503 with ``Retry-After``);
* JPEGs are decoded at a reduced DCT scale (``draft``) and other formats are reduced by an
  integer factor right after loading, keeping the short side at least ``DECODE_SIDE`` pixels
  (the model looks at 224); the full-size decode is closed at once and, after a large decode,
  ``malloc_trim`` returns freed heap memory to the system (glibc).

Catalog images: only bytes whose sha256 equals the ``content_hash`` the catalog recorded when
indexing are served (a file replaced or a symlink swapped since then is refused with 409).
Files are read through one open descriptor and the verified (device, inode, size, mtime) is
cached, so the check costs a ``fstat`` per request once a file has been hashed.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import io
import math
import os
import platform
import threading
import warnings
import weakref
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from PIL import Image

from fashionclip.data.images import load_image
from fashionclip.errors import FashionCLIPError, ImageDecodeError, InvalidQueryError
from fashionclip.index import Catalog, ProductNotFoundError
from fashionclip.serve.search import ServiceLimits, UploadTooLargeError

#: Decoded images keep their short side at least this long (integer reductions only).
DECODE_SIDE = 448
#: After decoding this many pixels or more, give freed memory back to the system.
TRIM_AFTER_PIXELS = 4_000_000
#: Seconds an upload waits for a decode slot before the server answers 503.
DEFAULT_QUEUE_TIMEOUT_S = 30.0
#: Modes Image.reduce accepts; others (P, 1, I;16...) become RGB first.
_REDUCIBLE_MODES = frozenset({"L", "LA", "RGB", "RGBA", "CMYK", "I", "F"})
#: Image formats sent to browsers as they are; anything else is re-encoded as a JPEG.
WEB_FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png", "GIF": "image/gif", "WEBP": "image/webp"}


class ServiceBusyError(FashionCLIPError):
    """Every decode slot stayed busy for the queue timeout: retry after ``retry_after`` s."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ImageChangedError(FashionCLIPError):
    """A catalog image file no longer holds the bytes that were indexed (HTTP 409)."""


# -- the decode gate --------------------------------------------------------------------------


class DecodeGate:
    """At most ``slots`` decodes at once; a caller waits up to ``timeout_s`` for a slot."""

    def __init__(self, slots: int | None = None, timeout_s: float = DEFAULT_QUEUE_TIMEOUT_S):
        self.slots = max(1, slots if slots is not None else (os.cpu_count() or 1))
        if timeout_s < 0:
            raise FashionCLIPError(f"the decode queue timeout must be >= 0, got {timeout_s}")
        self.timeout_s = timeout_s
        self._semaphore = threading.BoundedSemaphore(self.slots)
        self._lock = threading.Lock()
        self.active = 0
        self.waiting = 0
        self.peak = 0
        self.refused = 0

    @property
    def retry_after(self) -> int:
        """Seconds a refused client should wait (whole seconds, at least 1)."""
        return max(1, math.ceil(self.timeout_s))

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one decode slot; ServiceBusyError when none frees up within the timeout."""
        with self._lock:
            self.waiting += 1
        try:
            acquired = self._semaphore.acquire(timeout=self.timeout_s)
        finally:
            with self._lock:
                self.waiting -= 1
        if not acquired:
            with self._lock:
                self.refused += 1
            raise ServiceBusyError(
                f"the server is busy decoding {self.slots} images; retry in a few seconds",
                self.retry_after,
            )
        with self._lock:
            self.active += 1
            self.peak = max(self.peak, self.active)
        try:
            yield
        finally:
            with self._lock:
                self.active -= 1
            self._semaphore.release()

    def snapshot(self) -> dict[str, Any]:
        """JSON-ready counters (what ``GET /api/metrics`` shows under ``uploads``)."""
        with self._lock:
            return {
                "decode_slots": self.slots,
                "decoding": self.active,
                "waiting": self.waiting,
                "peak_decoding": self.peak,
                "refused_busy": self.refused,
                "queue_timeout_s": self.timeout_s,
            }


_DEFAULT_GATE = DecodeGate()
_GATES: weakref.WeakKeyDictionary[object, DecodeGate] = weakref.WeakKeyDictionary()
_GATES_LOCK = threading.Lock()


def bind_gate(service: object, gate: DecodeGate) -> None:
    """Make ``service`` decode through ``gate`` instead of the process-wide one."""
    with _GATES_LOCK:
        _GATES[service] = gate


def gate_for(service: object) -> DecodeGate:
    """The gate ``service`` decodes through: its own if bound, else the process-wide gate
    (memory is per process, so by default every service in it shares the cores' slots)."""
    with _GATES_LOCK:
        return _GATES.get(service, _DEFAULT_GATE)


# -- decoding ---------------------------------------------------------------------------------


def declared_size(data: bytes) -> tuple[int, int]:
    """Width and height from the image header, without decoding the pixels.

    (0, 0) when the header is unreadable: the decode that follows reports why.
    """
    try:
        with Image.open(io.BytesIO(data)) as probe:
            return probe.size
    except Image.DecompressionBombError as exc:  # PIL's own limit, beyond ours
        raise UploadTooLargeError(f"the image is too large to decode: {exc}") from None
    except Exception:
        return 0, 0


def check_upload(data: object, limits: ServiceLimits) -> bytes:
    """The upload's bytes if they are within the byte and declared pixel limits."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise InvalidQueryError("the upload must be the bytes of an image file")
    if len(data) == 0:
        raise InvalidQueryError("the uploaded file is empty")
    if len(data) > limits.max_upload_bytes:
        raise UploadTooLargeError(
            f"the upload is {len(data):,} bytes; the limit is {limits.max_upload_bytes:,} bytes"
        )
    raw = bytes(data)
    width, height = declared_size(raw)
    if width * height > limits.max_image_pixels:
        raise UploadTooLargeError(
            f"the image is {width}x{height} pixels; the limit is "
            f"{limits.max_image_pixels:,} pixels (decompression bomb protection)"
        )
    return raw


def decode_upload(data: object, limits: ServiceLimits, gate: DecodeGate) -> Image.Image:
    """Decode uploaded bytes safely and with bounded memory: byte limit, declared pixel limit
    (bombs), at most ``gate.slots`` decodes at once, reduced size; clear errors."""
    raw = check_upload(data, limits)
    with gate.slot():
        try:
            return decode_reduced(raw, limits.max_image_pixels)
        except ImageDecodeError as exc:
            raise ImageDecodeError(f"the upload is not a readable image: {exc}") from None


def decode_reduced(data: bytes, max_pixels: int, side: int = DECODE_SIDE) -> Image.Image:
    """An RGB image of ``data`` whose short side is reduced (by an integer factor) towards
    ``side``: JPEGs at decode time (``draft``), others right after loading."""
    pixels = 0
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image: Image.Image = Image.open(io.BytesIO(data))
            width, height = image.size
            pixels = width * height
            if pixels > max_pixels:
                raise ImageDecodeError(
                    f"decompression bomb: {width}x{height} pixels exceeds {max_pixels:,}"
                )
            if image.format == "JPEG" and min(width, height) >= 2 * side:
                factor = min(width, height) // side
                image.draft("RGB", (math.ceil(width / factor), math.ceil(height / factor)))
            image.load()
            factor = min(image.size) // side
            if factor >= 2:
                full = image if image.mode in _REDUCIBLE_MODES else load_image(image)
                if full is not image:
                    image.close()
                image = full.reduce(factor)
                full.close()
                del full
        return load_image(image)  # RGB (transparent pixels onto white)
    except ImageDecodeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageDecodeError(f"decompression bomb: {exc}") from None
    except (OSError, SyntaxError, ValueError) as exc:  # includes UnidentifiedImageError
        reason = str(exc) or type(exc).__name__
        if "cannot identify" in reason:
            reason = "not an image or unknown format"
        raise ImageDecodeError(reason) from None
    finally:
        if pixels >= TRIM_AFTER_PIXELS:
            release_memory()


@functools.lru_cache(maxsize=1)
def _malloc_trim() -> Any:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


def release_memory() -> None:
    """Give freed heap memory back to the system (glibc ``malloc_trim``; else nothing).

    Large decodes free blocks that glibc would otherwise keep in its arenas, one per thread.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


# -- catalog images ---------------------------------------------------------------------------


class _LRU:
    """A small thread-safe LRU mapping."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[Any, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: object) -> Any:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: object, value: object) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)


#: (device, inode, size, mtime_ns) of a file -> the sha256 of its bytes when last hashed.
_HASHES = _LRU(16_384)
#: (content sha256, side) -> JPEG thumbnail bytes.
_THUMBNAILS = _LRU(1024)


def image_path(catalog: Catalog, product_id: str) -> Path:
    """The image file of a catalog product: only paths the catalog recorded, by id."""
    stored = catalog.get(product_id)
    if stored is None or stored.image is None:
        raise ProductNotFoundError(f"no product {product_id!r} with an image")
    if not stored.image.is_file():
        raise ProductNotFoundError(f"the image file of product {product_id!r} is missing")
    return stored.image


def read_verified(path: Path, expected_sha256: str, product_id: str) -> bytes:
    """The bytes of ``path`` if their sha256 is ``expected_sha256`` (else ImageChangedError).

    One open descriptor is stat-ed and read, so what was checked is what is returned.
    """
    try:
        with open(path, "rb") as handle:
            stat = os.fstat(handle.fileno())
            data = handle.read()
    except OSError:
        raise ProductNotFoundError(f"the image file of product {product_id!r} is missing") from None
    key = (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)
    digest = _HASHES.get(key)
    if digest is None or len(data) != stat.st_size:
        digest = hashlib.sha256(data).hexdigest()
        _HASHES.put(key, digest)
    if digest != expected_sha256:
        raise ImageChangedError(
            f"the image file of product {product_id!r} has changed since it was indexed; "
            "re-index the catalog to serve it"
        )
    return data


def product_image(
    catalog: Catalog, product_id: str, limits: ServiceLimits, gate: DecodeGate
) -> tuple[str, bytes]:
    """(media type, bytes) of a product's picture for a browser: the verified file itself
    when it is a web format no larger than ``thumbnail_side``, else a JPEG thumbnail."""
    stored = catalog.get(product_id)
    if stored is None or stored.image is None:
        raise ProductNotFoundError(f"no product {product_id!r} with an image")
    if not stored.content_hash:
        raise ImageChangedError(
            f"product {product_id!r} was indexed without a content hash, so its image file "
            "cannot be verified; re-index the catalog to serve it"
        )
    data = read_verified(stored.image, stored.content_hash, product_id)
    unreadable = ProductNotFoundError(f"the image of product {product_id!r} cannot be read")
    try:
        with Image.open(io.BytesIO(data)) as probe:
            fmt, size = probe.format, probe.size
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        raise unreadable from None
    side = limits.thumbnail_side
    if fmt in WEB_FORMATS and max(size) <= side:
        return WEB_FORMATS[fmt], data
    key = (stored.content_hash, side)
    cached = _THUMBNAILS.get(key)
    if cached is None:
        with gate.slot():
            try:
                image = decode_reduced(data, max(limits.max_image_pixels, size[0] * size[1]), side)
            except ImageDecodeError:
                raise unreadable from None
            image.thumbnail((side, side))
            buffer = io.BytesIO()
            image.save(buffer, format="JPEG", quality=85)
            image.close()
        cached = buffer.getvalue()
        _THUMBNAILS.put(key, cached)
    return "image/jpeg", cached
