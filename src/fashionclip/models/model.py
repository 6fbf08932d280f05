"""The model object users hold: encode images and texts into one space, classify zero-shot."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from fashionclip.data.images import ImageInput, is_image_input, load_image
from fashionclip.errors import FashionCLIPError, ImageDecodeError
from fashionclip.models.pixels import pixel_pipeline
from fashionclip.models.prompts import build_zero_shot_classifier, check_labels
from fashionclip.models.registry import model_kind
from fashionclip.utils import normalise_rows

Output = Literal["numpy", "torch"]
#: One prepared image batch: kept indices, failures, pixel tensor (None if all failed), size.
_Prepared = tuple[list[int], list["ImageFailure"], torch.Tensor | None, int]
#: One decoded input: (RGB image, or its resized uint8 array with a fast pipeline) or an error.
_Decoded = tuple[Image.Image | np.ndarray | None, str | None]
#: Precisions a model can run in ("auto" picks one of the others).
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
#: Why precision="int8" is refused (measured; see docs/encoding.md and models/quantize.py).
INT8_NOT_OFFERED = (
    "precision 'int8' is not offered: dynamic int8 quantisation of the Linear layers lost 2-5 "
    "points against fp32 on the evaluation harness (zero-shot and text-image retrieval, KAGL and "
    "Fashion-MNIST; the bar is 0.5), see docs/encoding.md; use bf16 or fp32 on CPU"
)


@dataclass(frozen=True)
class ModelIdentity:
    """What made a set of embeddings: catalogs refuse to mix vectors of different models."""

    name: str
    kind: str
    embedding_dim: int
    fingerprint: str


@dataclass(frozen=True)
class ImageFailure:
    """One input that could not be encoded, and why."""

    index: int
    source: str
    reason: str


@dataclass
class ImageEncoding:
    """Result of :meth:`FashionCLIP.try_encode_images`: vectors for the inputs that decoded."""

    embeddings: np.ndarray
    ok_indices: list[int]
    failures: list[ImageFailure] = field(default_factory=list)


@dataclass(frozen=True)
class ZeroShotPrediction:
    """Best label of one image and the probability of every label (sums to 1)."""

    label: str
    scores: dict[str, float]


def describe_source(source: ImageInput) -> str:
    """Short printable name of an image input, for reports."""
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    if isinstance(source, Image.Image):
        return f"<PIL image {source.size[0]}x{source.size[1]}>"
    return f"<{len(source)} bytes>"


def weights_fingerprint(module: torch.nn.Module) -> str:
    """Hash of parameter names, shapes and a sample of values: stable across paths and devices."""
    digest = hashlib.sha256()
    state = module.state_dict()
    for name in sorted(state):
        tensor = state[name]
        if not torch.is_tensor(tensor) or not tensor.is_floating_point():
            continue
        flat = tensor.detach().reshape(-1)
        step = max(1, flat.numel() // 64)
        sample = flat[::step][:64].to("cpu", torch.float32).numpy()
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(np.round(sample, 4).tobytes())
    return digest.hexdigest()[:16]


def _auto_device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def _resolve_precision(precision: str, device: torch.device) -> str:
    """auto: float16 on GPU; bfloat16 autocast on CPUs with native bf16 (AMX/AVX512-BF16), else fp32.

    int8 is refused with the measured reason (:data:`INT8_NOT_OFFERED`).
    """
    if precision == "int8":
        raise FashionCLIPError(INT8_NOT_OFFERED)
    if precision not in PRECISIONS:
        raise FashionCLIPError(
            f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}"
        )
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "fp16"
    if device.type == "cpu" and torch.backends.mkldnn.is_available():
        try:
            if torch.ops.mkldnn._is_mkldnn_bf16_supported():
                return "bf16"
        except (AttributeError, RuntimeError):
            pass
    return "fp32"


def _image_batch(images: ImageInput | Sequence[ImageInput]) -> tuple[list[ImageInput], bool]:
    """(images as a list, whether a single image was given)."""
    if is_image_input(images):
        return [cast(ImageInput, images)], True
    return list(cast(Sequence[ImageInput], images)), False


def _batches(items: Sequence[Any], size: int) -> Iterator[tuple[int, Sequence[Any]]]:
    for start in range(0, len(items), size):
        yield start, items[start : start + size]


class FashionCLIP:
    """A CLIP-style dual encoder: images and texts embedded in one normalised space.

    Build it with :func:`fashionclip.load`. Wraps a torch module that has
    ``get_image_features`` / ``get_text_features``, plus its image processor and tokenizer;
    ``kind`` (a registered model kind, see :mod:`fashionclip.models.registry`) says how to feed
    and save that module. ``precision`` is auto, fp32, bf16 or fp16.
    """

    def __init__(
        self,
        module: torch.nn.Module,
        image_processor: Any,
        tokenizer: Any,
        *,
        name: str,
        kind: str,
        device: str | torch.device | None = None,
        text_padding: str = "longest",
        max_text_length: int = 77,
        num_workers: int | None = None,
        precision: str = "auto",
    ) -> None:
        self.device = torch.device(device) if device is not None else _auto_device()
        self.precision = _resolve_precision(precision, self.device)
        self.name = name
        self.kind = kind
        self._adapter = model_kind(kind)  # everything kind-specific
        self.image_processor = image_processor
        self.tokenizer = tokenizer
        self.text_padding = text_padding
        self.max_text_length = max_text_length
        self.num_workers = num_workers or _default_workers(self.device)
        #: Per-image resize in the decode workers + one batched normalisation, where available.
        self._pixels = pixel_pipeline(image_processor)
        module.eval()
        # Fingerprint on CPU before any dtype change, so it matches across devices.
        self.identity_fingerprint = weights_fingerprint(module)
        # fp16 stores half weights (GPU); bf16 keeps fp32 weights and autocasts matmuls/convs.
        self.dtype = torch.float16 if self.precision == "fp16" else torch.float32
        self.module = module.to(self.device, dtype=self.dtype)
        if self.device.type == "cpu":
            # torch's stubs lack Module.to(memory_format=...)
            self.module = self.module.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self._embedding_dim: int | None = None

    # ------------------------------------------------------------------ identity
    @property
    def embedding_dim(self) -> int:
        if self._embedding_dim is None:
            self._embedding_dim = int(self.encode_text(["a"]).shape[1])
        return self._embedding_dim

    @property
    def identity(self) -> ModelIdentity:
        return ModelIdentity(self.name, self.kind, self.embedding_dim, self.identity_fingerprint)

    @property
    def logit_scale(self) -> float:
        scale = getattr(self.module, "logit_scale", None)
        return float(scale.detach().float().exp().item()) if scale is not None else 100.0

    @property
    def logit_bias(self) -> float | None:
        bias = getattr(self.module, "logit_bias", None)
        return float(bias.detach().float().item()) if bias is not None else None

    def __repr__(self) -> str:
        return f"FashionCLIP(name={self.name!r}, kind={self.kind!r}, device={self.device.type})"

    # ------------------------------------------------------------------ raw tensors (training)
    def preprocess(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """Decoded RGB images -> pixel tensor, as the model's own processor computes it.

        Uses the processor's fast pipeline (:mod:`fashionclip.models.pixels`) where it has one:
        the same pixels at about half the CPU cost.
        """
        images = list(images)
        if self._pixels is not None and images:
            return self._pixels.to_tensor([self._pixels.image_to_uint8(i) for i in images])
        return self.image_processor(images=images, return_tensors="pt")["pixel_values"]

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Texts -> token tensors, truncated to the model's maximum length."""
        return dict(
            self.tokenizer(
                list(texts),
                padding=self.text_padding,
                truncation=True,
                max_length=self.max_text_length,
                return_tensors="pt",
            )
        )

    def image_embeddings(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Unnormalised image embeddings, with gradients if enabled (used by training)."""
        return self._adapter.image_features(self.module, pixel_values)

    def text_embeddings(self, tokens: dict[str, torch.Tensor]) -> torch.Tensor:
        """Unnormalised text embeddings, with gradients if enabled (used by training)."""
        return self._adapter.text_features(self.module, tokens)

    # ------------------------------------------------------------------ encoding
    def encode_images(
        self,
        images: ImageInput | Sequence[ImageInput],
        batch_size: int = 32,
        show_progress: bool = False,
        output: Output = "numpy",
    ) -> np.ndarray | torch.Tensor:
        """Embed images (paths, bytes or PIL); L2-normalised float32, input order.

        A single image gives a vector of shape (D,). Raises ImageDecodeError on a bad image;
        use :meth:`try_encode_images` to skip and report bad images instead.
        """
        batch, single = _image_batch(images)
        result = self.try_encode_images(batch, batch_size=batch_size, show_progress=show_progress)
        if result.failures:
            first = result.failures[0]
            more = f" (and {len(result.failures) - 1} more)" if len(result.failures) > 1 else ""
            raise ImageDecodeError(f"image {first.index}: {first.reason}{more}")
        vectors = result.embeddings[0] if single else result.embeddings
        return torch.from_numpy(vectors) if output == "torch" else vectors

    def try_encode_images(
        self,
        images: Sequence[ImageInput],
        batch_size: int = 32,
        show_progress: bool = False,
    ) -> ImageEncoding:
        """Embed images, skipping the ones that fail to decode (listed with a reason).

        Decoding and the per-image preprocessing of the next batch run in ``num_workers``
        threads (PIL releases the GIL) while the model encodes the current one; on CUDA the
        batch is put in pinned memory so that its copy to the GPU is asynchronous.
        """
        if batch_size <= 0:
            raise FashionCLIPError(f"batch_size must be positive, got {batch_size}")
        images = list(images)
        chunks: list[np.ndarray] = []
        ok_indices: list[int] = []
        failures: list[ImageFailure] = []
        progress = tqdm(
            total=len(images), desc="Encoding images", unit="img", disable=not show_progress
        )
        with ThreadPoolExecutor(max_workers=self.num_workers) as pool:

            def prepare(start: int, chunk: Sequence[ImageInput]) -> _Prepared:
                decoded = list(pool.map(self._decode_one, chunk))
                good = [(start + i, img) for i, (img, _) in enumerate(decoded) if img is not None]
                bad = [
                    ImageFailure(start + i, describe_source(chunk[i]), err)
                    for i, (_, err) in enumerate(decoded)
                    if err is not None
                ]
                pixels = self._pixel_batch([img for _, img in good]) if good else None
                return [i for i, _ in good], bad, pixels, len(chunk)

            pending: Future[_Prepared] | None = None
            batches = iter(_batches(images, batch_size))
            with ThreadPoolExecutor(max_workers=1) as prefetch:
                first = next(batches, None)
                if first is not None:
                    pending = prefetch.submit(prepare, *first)
                while pending is not None:
                    indices, bad, pixels, count = pending.result()
                    following = next(batches, None)
                    pending = prefetch.submit(prepare, *following) if following else None
                    failures.extend(bad)
                    if pixels is not None:
                        chunks.append(self._embed_pixels(pixels))
                        ok_indices.extend(indices)
                    progress.update(count)
        progress.close()
        dim = chunks[0].shape[1] if chunks else 0
        embeddings = np.concatenate(chunks) if chunks else np.zeros((0, dim), np.float32)
        return ImageEncoding(embeddings, ok_indices, failures)

    def encode_text(
        self,
        texts: str | Sequence[str],
        batch_size: int = 256,
        show_progress: bool = False,
        output: Output = "numpy",
    ) -> np.ndarray | torch.Tensor:
        """Embed texts; L2-normalised float32, input order. A single string gives (D,)."""
        single = isinstance(texts, str)
        batch = [texts] if isinstance(texts, str) else list(texts)
        matrix = self._text_matrix(batch, batch_size, show_progress)
        result = matrix[0] if single else matrix
        return torch.from_numpy(result) if output == "torch" else result

    def _text_matrix(
        self, texts: Sequence[str], batch_size: int = 256, show_progress: bool = False
    ) -> np.ndarray:
        """(len(texts), D) normalised float32 rows; the work behind :meth:`encode_text`."""
        batch = list(texts)
        if batch_size <= 0:
            raise FashionCLIPError(f"batch_size must be positive, got {batch_size}")
        bad = [i for i, t in enumerate(batch) if not isinstance(t, str)]
        if bad:
            raise FashionCLIPError(f"texts must be strings; item {bad[0]} is {type(batch[bad[0]])}")
        chunks: list[np.ndarray] = []
        for _, chunk in tqdm(
            list(_batches(batch, batch_size)),
            desc="Encoding texts",
            unit="batch",
            disable=not show_progress,
        ):
            tokens = {k: v.to(self.device) for k, v in self.tokenize(chunk).items()}
            # bf16 pays off for batches, not for one short query (measured on CPU: a single
            # query took 19 ms in bf16 vs 11 ms in fp32), so small text batches stay in fp32.
            with torch.inference_mode(), self._autocast(enabled=len(chunk) >= 32):
                chunks.append(_to_unit_rows(self.text_embeddings(tokens)))
        dim = chunks[0].shape[1] if chunks else 0
        return np.concatenate(chunks) if chunks else np.zeros((0, dim), np.float32)

    def _decode_one(self, source: ImageInput) -> _Decoded:
        """Decode one input and, with a fast pipeline, resize it (runs in a decode worker)."""
        image, error = _try_load(source)
        if image is not None and self._pixels is not None:
            return self._pixels.image_to_uint8(image), None
        return image, error

    def _pixel_batch(self, decoded: list[Any]) -> torch.Tensor:
        """The pixel tensor of one batch of :meth:`_decode_one` results (pinned for CUDA)."""
        if self._pixels is not None:
            pixels = self._pixels.to_tensor(decoded)
        else:
            pixels = self.preprocess(decoded)
        return pixels.pin_memory() if self.device.type == "cuda" else pixels

    def _embed_pixels(self, pixels: torch.Tensor) -> np.ndarray:
        with torch.inference_mode(), self._autocast():
            pixels = pixels.to(self.device, dtype=self.dtype, non_blocking=pixels.is_pinned())
            if self.device.type == "cpu" and pixels.dim() == 4:
                pixels = pixels.contiguous(memory_format=torch.channels_last)
            vectors = self.image_embeddings(pixels)
        return _to_unit_rows(vectors)

    def _autocast(self, enabled: bool = True) -> AbstractContextManager[Any]:
        if enabled and self.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return nullcontext()

    # ------------------------------------------------------------------ zero-shot
    def label_embeddings(
        self, labels: Sequence[str], templates: Sequence[str] | None = None
    ) -> np.ndarray:
        """One normalised text vector per label, averaged over the prompt templates.

        Labels and templates are checked by :mod:`fashionclip.models.prompts` (InvalidQueryError);
        no templates means :data:`~fashionclip.models.prompts.DEFAULT_TEMPLATES`.
        """
        return build_zero_shot_classifier(self._text_matrix, check_labels(labels), templates)

    def zero_shot_classification(
        self,
        images: ImageInput | Sequence[ImageInput],
        labels: Sequence[str],
        templates: Sequence[str] | None = None,
        batch_size: int = 32,
        show_progress: bool = False,
    ) -> list[ZeroShotPrediction]:
        """Best label and per-label probabilities for each image (prompt-ensembled if templates)."""
        label_vectors = self.label_embeddings(labels, templates)  # validates before image work
        batch, _ = _image_batch(images)
        image_vectors = np.asarray(
            self.encode_images(batch, batch_size=batch_size, show_progress=show_progress)
        )
        return self.predictions(image_vectors, labels, label_vectors)

    def predictions(
        self, image_vectors: np.ndarray, labels: Sequence[str], label_vectors: np.ndarray
    ) -> list[ZeroShotPrediction]:
        """One ZeroShotPrediction per row of already computed image vectors."""
        labels = list(labels)
        return [
            ZeroShotPrediction(
                labels[int(row.argmax())],
                {label: float(p) for label, p in zip(labels, row, strict=True)},
            )
            for row in self.label_probabilities(image_vectors, label_vectors)
        ]

    def label_probabilities(
        self, image_vectors: np.ndarray, label_vectors: np.ndarray
    ) -> np.ndarray:
        """Softmax over labels of the cosine similarities times the model's logit scale."""
        logits = self.logit_scale * (image_vectors @ label_vectors.T)
        if self.logit_bias is not None:
            logits = logits + self.logit_bias
        logits = logits - logits.max(axis=1, keepdims=True)
        weights = np.exp(logits)
        return weights / weights.sum(axis=1, keepdims=True)

    # ------------------------------------------------------------------ saving
    def save_pretrained(self, folder: str | os.PathLike) -> None:
        """Write the whole model folder (weights as safetensors, tokenizer, processor)."""
        if self.dtype != torch.float32:
            raise FashionCLIPError(
                "save a float32 model (load it with precision='fp32' to save it)"
            )
        path = Path(folder)
        path.mkdir(parents=True, exist_ok=True)
        self._adapter.save(self.module, self.tokenizer, self.image_processor, path)


def _default_workers(device: torch.device) -> int:
    """Decode workers: enough to feed a GPU from every core; on CPU they share the model's cores."""
    cores = os.cpu_count() or 1
    return min(16, cores) if device.type == "cuda" else min(4, cores)


def _try_load(source: ImageInput) -> tuple[Image.Image | None, str | None]:
    try:
        return load_image(source), None
    except ImageDecodeError as exc:
        return None, str(exc)


def _to_unit_rows(vectors: torch.Tensor) -> np.ndarray:
    """Embeddings on any device and dtype -> L2-normalised float32 numpy rows."""
    return normalise_rows(vectors.detach().float().cpu().numpy())
