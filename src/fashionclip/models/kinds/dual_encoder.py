"""Adapter of fashionclip's own dual encoder (:mod:`fashionclip.models.dual_encoder`).

Its towers may be taken from installed packages (then not stored in the folder); its text tower
is mean-pooled before the projection, so training splits it at the sentence embedding.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from fashionclip.errors import FashionCLIPError
from fashionclip.models.registry import (
    LoadedModel,
    ModelKind,
    Side,
    TowerSplit,
    register_model_kind,
)

if TYPE_CHECKING:
    from fashionclip.models.dual_encoder import FashionDualEncoder

#: The ``model_type`` of our dual encoder's config.json.
NAME = "fashionclip-dual-encoder"
#: Longest text the dual encoder reads, in tokens.
MAX_TEXT_LENGTH = 128


def _dual_encoder(module: nn.Module) -> FashionDualEncoder:
    from fashionclip.models.dual_encoder import FashionDualEncoder

    if not isinstance(module, FashionDualEncoder):
        raise FashionCLIPError(f"expected a FashionDualEncoder, got {type(module).__name__}")
    return module


@dataclass(frozen=True)
class DualEncoderKind(ModelKind):
    """EfficientNet + BERT-family towers with projections (``FashionDualEncoder``)."""

    def load(self, path: Path, *, allow_pickle: bool = False) -> LoadedModel:
        """Safetensors only (``allow_pickle`` is ignored: pickles are always refused)."""
        from fashionclip.models.dual_encoder import load_dual_encoder

        module, processor, tokenizer = load_dual_encoder(path)
        tokenizer_max = int(getattr(tokenizer, "model_max_length", MAX_TEXT_LENGTH))
        return LoadedModel(module, processor, tokenizer, min(tokenizer_max, MAX_TEXT_LENGTH))

    def save(self, module: nn.Module, tokenizer: Any, image_processor: Any, folder: Path) -> None:
        _dual_encoder(module).save_pretrained(
            folder, tokenizer=tokenizer, image_processor=image_processor
        )

    def towers(self, module: nn.Module) -> tuple[TowerSplit, TowerSplit]:
        model = _dual_encoder(module)

        def image_forward(pixel_values: torch.Tensor) -> torch.Tensor:
            return model.vision_model(pixel_values.to(model.logit_scale.dtype))

        def text_forward(**tokens: torch.Tensor) -> torch.Tensor:
            return model.get_text_sentence_embedding(
                tokens["input_ids"], tokens.get("attention_mask"), tokens.get("token_type_ids")
            )

        return (
            TowerSplit(model.vision_model, model.visual_projection, image_forward),
            TowerSplit(model.text_model, model.text_projection, text_forward),
        )

    def packaged_towers(self, module: nn.Module) -> tuple[Side, ...]:
        config = _dual_encoder(module).config
        sources: tuple[tuple[Side, str], ...] = (
            ("image", config.image_tower_source),
            ("text", config.text_tower_source),
        )
        return tuple(side for side, source in sources if source == "package")

    def store_tower(self, module: nn.Module, side: Side) -> None:
        """Store a trained packaged tower; of a text tower trained only in its last transformer
        layers, those layers alone (``text_tower_stored_layers``), the rest read from the package."""
        model = _dual_encoder(module)
        config = model.config
        if side == "image":
            config.image_tower_source = "folder"
            return
        layers = model.text_layers()
        trained = [i for i, layer in enumerate(layers) if _trains(layer)]
        in_layers = {id(p) for p in layers.parameters()}
        elsewhere = any(
            p.requires_grad for p in model.text_model.parameters() if id(p) not in in_layers
        )
        if elsewhere or config.text_tower_source != "package":
            config.text_tower_source = "folder"
            config.text_tower_stored_layers = []
        else:
            config.text_tower_stored_layers = sorted({*config.text_tower_stored_layers, *trained})


def _trains(module: nn.Module) -> bool:
    return any(p.requires_grad for p in module.parameters())


FASHIONCLIP_DUAL_ENCODER = register_model_kind(DualEncoderKind(NAME))
