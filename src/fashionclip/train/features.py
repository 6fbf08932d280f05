"""The per-micro-batch forward of training and the caches of frozen-backbone features.

:class:`StepModule` turns a micro-batch (pixels, captions) into image and text features plus the
model's temperature and bias. A frozen text backbone's outputs come from a
:class:`TextFeatureCache` (one row per distinct caption, computed once); a frozen image
backbone's from an :class:`ImageViewCache` (one row per item and augmented view).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from tqdm.auto import tqdm

from fashionclip.train.parts import ModelParts

if TYPE_CHECKING:
    from fashionclip.models.model import FashionCLIP


def autocast(precision: str, device: torch.device) -> AbstractContextManager[Any]:
    """bf16 autocast for ``precision == "bf16"``, else a no-op context."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()


class TextFeatureCache:
    """Outputs of a frozen text backbone, one row per distinct caption.

    Built in one pass over the sorted captions with a fixed batch size, so the stored features do
    not depend on which batch a caption first appeared in (exact resume).
    """

    def __init__(
        self,
        model: FashionCLIP,
        parts: ModelParts,
        device: torch.device,
        batch_size: int = 256,
    ) -> None:
        self.model = model
        self.parts = parts
        self.device = device
        self.batch_size = batch_size
        self.rows: dict[str, int] = {}
        self.features: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.rows)

    @torch.no_grad()
    def _encode(self, captions: list[str]) -> torch.Tensor:
        chunks = []
        for start in range(0, len(captions), self.batch_size):
            tokens = self.model.tokenize(captions[start : start + self.batch_size])
            tokens = {k: v.to(self.device) for k, v in tokens.items()}
            chunks.append(self.parts.text.backbone_forward(**tokens).float())
        return torch.cat(chunks)

    def add(self, captions: list[str], progress: bool = False) -> None:
        """Encode the captions not cached yet (sorted by token length, for less padding)."""
        new = sorted(set(captions) - set(self.rows))
        if not new:
            return
        # Similar lengths in a batch waste less compute on padding (~2x faster for KAGL).
        lengths = self.model.tokenizer(new, truncation=True)["input_ids"]
        new = [c for _, c in sorted(zip(map(len, lengths), new, strict=True))]
        chunks = []
        for start in tqdm(
            range(0, len(new), self.batch_size * 8),
            desc="caching caption features",
            disable=not progress,
            leave=False,
        ):
            chunks.append(self._encode(new[start : start + self.batch_size * 8]))
        features = torch.cat(chunks)
        base = len(self.rows)
        self.rows.update({c: base + i for i, c in enumerate(new)})
        self.features = features if self.features is None else torch.cat([self.features, features])

    def lookup(self, captions: list[str]) -> torch.Tensor:
        """The cached backbone outputs of ``captions`` (encoding any that are missing)."""
        missing = [c for c in captions if c not in self.rows]
        if missing:
            self.add(missing)
        assert self.features is not None  # add() filled it
        index = torch.tensor([self.rows[c] for c in captions], device=self.device)
        return self.features.index_select(0, index)


class ImageViewCache:
    """Frozen image-backbone features per (item, view), filled as views are first seen."""

    def __init__(self, num_items: int, views: int, device: torch.device) -> None:
        self.views = views
        self.device = device
        self.filled = torch.zeros(num_items, views, dtype=torch.bool)
        #: whether the view shows the item's colours (False: a grey view, e.g. a negative thumbnail)
        self.colour = torch.ones(num_items, views, dtype=torch.bool)
        self.features: torch.Tensor | None = None

    def store(self, indices: list[int], views: list[int], features: torch.Tensor) -> None:
        if self.features is None:
            shape = (*self.filled.shape, features.shape[-1])
            self.features = torch.zeros(shape, dtype=torch.float32, device=self.device)
        self.features[indices, views] = features.detach().float()
        self.filled[indices, views] = True

    def gather(self, indices: list[int], views: list[int]) -> torch.Tensor:
        if self.features is None:
            raise RuntimeError("no image view has been cached yet")
        return self.features[indices, views]

    def store_colour(self, indices: list[int], views: list[int], colour: list[bool]) -> None:
        """Record whether the views just decoded show colour (see :func:`shows_colour`)."""
        if indices:
            self.colour[indices, views] = torch.tensor(colour, dtype=torch.bool)


class StepModule(nn.Module):
    """The per-micro-batch forward, as one module so that DDP sees every trainable parameter.

    Returns ``(image_features, text_features, logit_scale, logit_bias, prompt_features)``: the
    arguments of a :class:`~fashionclip.train.loss.ContrastiveLoss`, and the text features of
    the ``prompts`` (``loss.label_prompts``; None without), computed in the same forward so that
    data parallelism sees every use of the text head.
    """

    def __init__(
        self,
        model: FashionCLIP,
        parts: ModelParts,
        text_cache: TextFeatureCache | None,
        image_cache: ImageViewCache | None = None,
        prompts: Sequence[str] = (),
    ) -> None:
        super().__init__()
        self.inner = model.module
        self.model = [model]  # not a submodule
        self.parts = [parts]
        self.text_cache = text_cache
        self.image_cache = image_cache
        self.prompts = list(prompts)

    def forward(
        self,
        pixel_values: torch.Tensor | None,
        captions: list[str],
        indices: list[int] | None = None,
        views: list[int] | None = None,
        has_pixels: list[bool] | None = None,
    ) -> tuple[
        torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None
    ]:
        parts = self.parts[0]
        image = self._image_features(pixel_values, indices, views, has_pixels)
        position: dict[str, int] = {}
        for caption in [*captions, *self.prompts]:
            position.setdefault(caption, len(position))
        unique = list(position)
        if self.text_cache is not None:
            text = parts.text.head_forward(self.text_cache.lookup(unique))
        else:
            tokens = {k: v.to(image.device) for k, v in self.model[0].tokenize(unique).items()}
            text = parts.text_features(tokens)
        inverse = torch.tensor([position[c] for c in captions], device=image.device)
        prompts = None
        if self.prompts:
            rows = torch.tensor([position[p] for p in self.prompts], device=image.device)
            prompts = text.index_select(0, rows)
        return image, text.index_select(0, inverse), parts.logit_scale, parts.logit_bias, prompts

    def _image_features(
        self,
        pixel_values: torch.Tensor | None,
        indices: list[int] | None,
        views: list[int] | None,
        has_pixels: list[bool] | None,
    ) -> torch.Tensor:
        parts = self.parts[0]
        if self.image_cache is not None:
            if indices is None or views is None:
                raise ValueError("cached image views need the batch's indices and views")
            if pixel_values is not None:
                new = [i for i, present in enumerate(has_pixels or []) if present]
                with torch.no_grad():
                    features = parts.image.backbone_forward(pixel_values)
                self.image_cache.store([indices[i] for i in new], [views[i] for i in new], features)
            return parts.image.head_forward(self.image_cache.gather(indices, views))
        if pixel_values is None:
            raise ValueError("a batch without pixels needs cached image views")
        if parts.image.backbone_frozen:
            with torch.no_grad():
                image_features = parts.image.backbone_forward(pixel_values)
            return parts.image.head_forward(image_features)
        return parts.image_features(pixel_values)
