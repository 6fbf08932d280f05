"""A uniform training view of every supported model: towers split into backbone and head.

Each tower is ``head(backbone(x))``: the backbone is the pretrained encoder (its pooled output),
the head the projection into the joint space (none for SigLIP, whose heads live inside the
towers). The split lets a frozen backbone run once under ``no_grad`` (and its outputs be cached)
while the projection above it still trains. Locking follows open_clip: a tower's backbone is
frozen except its last ``unlocked_groups`` layer groups (input to output: embeddings/stem, each
transformer layer or CNN stage, final norm/head conv); frozen parts stay in eval mode.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from fashionclip.errors import FashionCLIPError
from fashionclip.models.registry import Side, TowerSplit, kind_of

if TYPE_CHECKING:
    from fashionclip.models.model import FashionCLIP


@dataclass
class Tower:
    """One side (image or text) of a dual encoder."""

    name: Side
    backbone: nn.Module
    head: nn.Module | None
    backbone_forward: Callable[..., torch.Tensor]

    @classmethod
    def from_split(cls, name: Side, split: TowerSplit) -> Tower:
        return cls(name, split.backbone, split.head, split.forward)

    def head_forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features) if self.head is not None else features

    def parameters(self) -> list[nn.Parameter]:
        params = list(self.backbone.parameters())
        if self.head is not None:
            params += list(self.head.parameters())
        return params

    @property
    def backbone_frozen(self) -> bool:
        return not any(p.requires_grad for p in self.backbone.parameters())

    @property
    def frozen(self) -> bool:
        return not any(p.requires_grad for p in self.parameters())


def _layer_groups(backbone: nn.Module) -> list[list[nn.Parameter]]:
    """Parameter groups of a transformer backbone: before the layers, each layer, after them."""
    layers: nn.ModuleList | None = None
    for name, module in backbone.named_modules():
        if isinstance(module, nn.ModuleList) and name.split(".")[-1] in ("layers", "layer"):
            layers = module
            break
    params = list(backbone.parameters())
    if layers is None or len(layers) == 0:
        return [params]
    in_layers = {id(p) for p in layers.parameters()}
    first = next(i for i, p in enumerate(params) if id(p) in in_layers)
    before = [p for p in params[:first] if id(p) not in in_layers]
    after_start = max(i for i, p in enumerate(params) if id(p) in in_layers) + 1
    groups = [before] if before else []
    groups += [list(layer.parameters()) for layer in layers]
    if params[after_start:]:
        groups.append(params[after_start:])
    return groups


class ModelParts:
    """Image and text towers of a ``FashionCLIP`` module, with locking and the temperature."""

    def __init__(self, model: FashionCLIP) -> None:
        self.model = model
        self.module: nn.Module = model.module
        self.model_kind = kind_of(model)
        image, text = self.model_kind.towers(self.module)
        self.image = Tower.from_split("image", image)
        self.text = Tower.from_split("text", text)

    # ------------------------------------------------------------------ structure
    @property
    def logit_scale(self) -> nn.Parameter | None:
        return getattr(self.module, "logit_scale", None)

    @property
    def logit_bias(self) -> nn.Parameter | None:
        return getattr(self.module, "logit_bias", None)

    # ------------------------------------------------------------------ forward
    def image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.image.head_forward(self.image.backbone_forward(pixel_values))

    def text_features(self, tokens: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.text.head_forward(self.text.backbone_forward(**tokens))

    # ------------------------------------------------------------------ locking
    def lock(
        self,
        *,
        lock_image: bool,
        image_unlocked_groups: int,
        lock_text: bool,
        text_unlocked_groups: int,
        lock_image_projection: bool = False,
        lock_text_projection: bool = False,
        learn_logit_scale: bool = True,
    ) -> None:
        """Freeze backbones (and projections) as configured; see :class:`ModelConfig`."""
        if lock_image:
            self._lock_tower(self.image, image_unlocked_groups)
        if lock_text:
            self._lock_tower(self.text, text_unlocked_groups)
        for tower, lock_head in (
            (self.image, lock_image_projection),
            (self.text, lock_text_projection),
        ):
            if lock_head and tower.head is not None:
                tower.head.requires_grad_(False)
        for param in (self.logit_scale, self.logit_bias):
            if param is not None:
                param.requires_grad_(learn_logit_scale)

    def _lock_tower(self, tower: Tower, unlocked_groups: int) -> None:
        groups = self.backbone_groups(tower)
        if not 0 <= unlocked_groups <= len(groups):
            raise FashionCLIPError(
                f"{tower.name}_unlocked_groups must be between 0 and {len(groups)} for this model"
            )
        tower.backbone.requires_grad_(False)
        for group in groups[len(groups) - unlocked_groups :]:
            for param in group:
                param.requires_grad_(True)

    def backbone_groups(self, tower: Tower) -> list[list[nn.Parameter]]:
        groups_fn = getattr(tower.backbone, "groups", None)
        if callable(groups_fn):  # EfficientNet tower: stem, stages, head conv
            return [[p for module in group for p in module.parameters()] for group in groups_fn()]
        return _layer_groups(tower.backbone)

    def set_train_mode(self) -> None:
        """``train()`` for the trainable parts, ``eval()`` for every fully frozen submodule."""
        self.module.train()
        _eval_frozen(self.module)

    def trainable_parameters(self) -> list[tuple[str, nn.Parameter]]:
        return [(n, p) for n, p in self.module.named_parameters() if p.requires_grad]


def _eval_frozen(module: nn.Module) -> None:
    params = list(module.parameters(recurse=True))
    if params and not any(p.requires_grad for p in params):
        module.eval()
        return
    for child in module.children():
        _eval_frozen(child)


def release_package_towers(model: FashionCLIP, parts: ModelParts) -> None:
    """A tower taken from its package is not stored; once trained it must be."""
    for side in parts.model_kind.packaged_towers(model.module):
        tower = parts.image if side == "image" else parts.text
        if not tower.backbone_frozen:
            parts.model_kind.store_tower(model.module, side)
