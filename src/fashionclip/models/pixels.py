"""Fast pixel pipelines: images -> the model's pixel tensor, split so encoding can overlap it.

A :class:`PixelPipeline` does the per-image work (resize, crop) to a fixed-size uint8 array, which
the decode workers run in parallel right after decoding (PIL releases the GIL while it resizes),
and the per-batch work (to float, rescale, normalise) as one vectorised torch operation.

:func:`pixel_pipeline` finds one for a model's image processor: our dual encoder's processor is
one already; transformers' PIL-backend processors of the CLIP family (resize by shortest edge or to
a fixed size, optional centre crop, rescale, normalise) get :class:`ResizeCropNormalize`, which
gives the same pixels as the processor (same PIL resize, same crop offsets; the normalisation
differs by float rounding, ~1e-7) at about half its CPU cost. Any other processor gets None and
is called as it is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from PIL import Image


@runtime_checkable
class PixelPipeline(Protocol):
    """Per-image resize to uint8 (run in the decode workers), then one batched normalisation."""

    def image_to_uint8(self, image: Image.Image) -> np.ndarray:
        """One RGB image -> (H, W, 3) uint8, the same H and W for every image."""
        ...

    def to_tensor(self, batch: Sequence[np.ndarray]) -> torch.Tensor:
        """(H, W, 3) uint8 arrays -> (N, 3, H, W) float32 pixel values."""
        ...


def normalised_batch(
    batch: Sequence[np.ndarray], scale: torch.Tensor, shift: torch.Tensor
) -> torch.Tensor:
    """Stack uint8 (H, W, 3) arrays into (N, 3, H, W) float32 ``x * scale + shift``.

    ``scale`` and ``shift`` have shape (1, 3, 1, 1). The result keeps the channels_last strides
    of the stacked arrays (no transpose copy), which convolutions and patch embeddings prefer.
    """
    stacked = torch.from_numpy(np.stack(batch)).permute(0, 3, 1, 2)
    return stacked.float().mul_(scale).add_(shift)


def _field(container: Any, key: str) -> Any:
    """A key of a size dict (a dict in older transformers, a SizeDict in newer ones)."""
    if container is None:
        return None
    if isinstance(container, Mapping):
        return container.get(key)
    return getattr(container, key, None)


@dataclass(frozen=True)
class ResizeCropNormalize:
    """transformers' PIL-backend resize / centre-crop / rescale / normalise, split for workers.

    ``shortest_edge`` resizes keeping the aspect ratio (the short side becomes that many pixels,
    the long side ``int(shortest_edge * long / short)``, as transformers computes it); otherwise
    ``size`` (height, width) is used. ``crop`` (height, width) is then cut from the centre with
    transformers' offsets.
    """

    shortest_edge: int | None
    size: tuple[int, int] | None
    crop: tuple[int, int] | None
    resample: int
    scale: tuple[float, float, float]
    shift: tuple[float, float, float]

    def image_to_uint8(self, image: Image.Image) -> np.ndarray:
        if image.mode != "RGB":
            image = image.convert("RGB")
        width, height = image.size
        if self.shortest_edge is not None:
            edge = self.shortest_edge
            if width <= height:
                new_w, new_h = edge, int(edge * height / width)
            else:
                new_w, new_h = int(edge * width / height), edge
        else:
            assert self.size is not None
            new_h, new_w = self.size
        if (new_w, new_h) != (width, height):
            image = image.resize((new_w, new_h), self.resample)
        array = np.asarray(image)
        if self.crop is not None:
            crop_h, crop_w = self.crop
            top, left = (new_h - crop_h) // 2, (new_w - crop_w) // 2
            array = array[top : top + crop_h, left : left + crop_w]
        return array

    def to_tensor(self, batch: Sequence[np.ndarray]) -> torch.Tensor:
        scale = torch.tensor(self.scale).view(1, 3, 1, 1)
        shift = torch.tensor(self.shift).view(1, 3, 1, 1)
        return normalised_batch(batch, scale, shift)

    @classmethod
    def from_processor(cls, processor: Any) -> ResizeCropNormalize | None:
        """The pipeline equal to a transformers PIL-backend processor, or None if it does more."""
        try:
            return cls._from_processor(processor)
        except (AttributeError, TypeError, ValueError):  # an unusual config: use the processor
            return None

    @classmethod
    def _from_processor(cls, processor: Any) -> ResizeCropNormalize | None:
        if getattr(processor, "backend", None) != "pil" or getattr(processor, "do_pad", False):
            return None
        if not getattr(processor, "do_resize", False):
            return None
        size = getattr(processor, "size", None)
        edge = _field(size, "shortest_edge")
        fixed = (_field(size, "height"), _field(size, "width"))
        if edge is not None and _field(size, "longest_edge") is None:
            shortest, resize_to, smallest = int(edge), None, (int(edge), int(edge))
        elif edge is None and None not in fixed:
            shortest, resize_to = None, (int(fixed[0]), int(fixed[1]))
            smallest = resize_to
        else:
            return None
        crop = None
        if getattr(processor, "do_center_crop", False):
            crop_size = getattr(processor, "crop_size", None)
            crop = (_field(crop_size, "height"), _field(crop_size, "width"))
            if None in crop:
                return None
            crop = (int(crop[0]), int(crop[1]))
            if crop[0] > smallest[0] or crop[1] > smallest[1]:
                return None  # transformers pads such crops; leave that to the processor
        return cls(shortest, resize_to, crop, int(processor.resample), *_affine(processor))


def _affine(processor: Any) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """(scale, shift) per channel so that ``x * scale + shift`` = rescale then normalise."""
    rescale = float(processor.rescale_factor) if getattr(processor, "do_rescale", False) else 1.0
    mean, std = [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]
    if getattr(processor, "do_normalize", False):
        mean = _per_channel(processor.image_mean)
        std = _per_channel(processor.image_std)
    scale = tuple(rescale / s for s in std)
    shift = tuple(-m / s for m, s in zip(mean, std, strict=True))
    return (scale[0], scale[1], scale[2]), (shift[0], shift[1], shift[2])


def _per_channel(value: float | Sequence[float]) -> list[float]:
    values = [float(value)] * 3 if isinstance(value, (int, float)) else [float(v) for v in value]
    if len(values) != 3:
        raise ValueError(f"expected 3 channel values, got {values}")
    return values


def pixel_pipeline(processor: Any) -> PixelPipeline | None:
    """The fast pipeline of an image processor, or None to call the processor itself."""
    if isinstance(processor, PixelPipeline):
        return processor
    return ResizeCropNormalize.from_processor(processor)
