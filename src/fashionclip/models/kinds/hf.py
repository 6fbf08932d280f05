"""Adapters of the transformers dual encoders: CLIP, SigLIP and VisionTextDualEncoder.

They differ only in name, in the text inputs their text tower takes and in text padding:
SigLIP was trained without an attention mask on texts padded to the full length (it pools the
last position), so it gets ``input_ids`` only, padded to ``max_length``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import nn

from fashionclip.errors import FashionCLIPError, ModelNotFoundError, UnsafeCheckpointError
from fashionclip.models.registry import (
    BERT_TEXT_INPUTS,
    LoadedModel,
    ModelKind,
    TowerSplit,
    pooled_output,
    register_model_kind,
)

if TYPE_CHECKING:
    from transformers import PreTrainedModel

SAFE_WEIGHTS = ("model.safetensors", "model.safetensors.index.json")
PICKLE_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json")


def check_weights(path: Path, allow_pickle: bool) -> bool:
    """True to load safetensors; False if only pickle weights exist and the caller allowed them."""
    if any((path / name).is_file() for name in SAFE_WEIGHTS):
        return True
    pickles = [name for name in PICKLE_WEIGHTS if (path / name).is_file()]
    if pickles and not allow_pickle:
        raise UnsafeCheckpointError(
            f"{path} holds only pickle weights ({pickles[0]}); unpickling can run arbitrary code. "
            "Convert them to safetensors, or pass allow_pickle=True (CLI: --allow-pickle) "
            "if you trust the source."
        )
    if not pickles:
        raise ModelNotFoundError(f"{path} has no weights (expected model.safetensors)")
    return False


def is_channels_last(module: nn.Module) -> bool:
    """Whether the module's 4-D weights are in channels_last memory format."""
    for param in module.parameters():
        if param.dim() == 4:
            return (
                param.is_contiguous(memory_format=torch.channels_last) and not param.is_contiguous()
            )
    return False


def _read_folder(path: Path, use_safetensors: bool) -> tuple[nn.Module, Any, Any]:
    """Module, tokenizer and image processor of a transformers folder, without log chatter."""
    from transformers import AutoImageProcessor, AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # torchvision-fallback and load-report chatter
    hf_logging.disable_progress_bar()
    try:
        module = AutoModel.from_pretrained(path, use_safetensors=use_safetensors)
        tokenizer = AutoTokenizer.from_pretrained(path)
        processor = AutoImageProcessor.from_pretrained(path)
    finally:
        hf_logging.set_verbosity(verbosity)
        hf_logging.enable_progress_bar()
    return module, tokenizer, processor


def _submodule(module: nn.Module, name: str) -> nn.Module | None:
    child = getattr(module, name, None)
    return child if isinstance(child, nn.Module) else None


@dataclass(frozen=True)
class TransformersKind(ModelKind):
    """A transformers model with ``vision_model``/``text_model`` towers and optional projections."""

    def load(self, path: Path, *, allow_pickle: bool = False) -> LoadedModel:
        module, tokenizer, processor = _read_folder(path, check_weights(path, allow_pickle))
        text_config = getattr(module.config, "text_config", None)
        positions = int(getattr(text_config, "max_position_embeddings", 77))
        tokenizer_max = int(getattr(tokenizer, "model_max_length", positions))
        max_length = min(positions, tokenizer_max) if tokenizer_max < 1_000_000 else positions
        tokenizer.model_max_length = max_length  # a saved CLIP tokenizer may say 1e30
        return LoadedModel(module, processor, tokenizer, max_length)

    def save(self, module: nn.Module, tokenizer: Any, image_processor: Any, folder: Path) -> None:
        # safetensors needs contiguous tensors; Module.to works in place, so restore afterwards.
        # (torch's stubs lack Module.to(memory_format=...), hence the ignores.)
        channels_last = is_channels_last(module)
        module.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
        try:
            cast("PreTrainedModel", module).save_pretrained(folder)
        finally:
            if channels_last:
                module.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        tokenizer.save_pretrained(folder)
        image_processor.save_pretrained(folder)

    def towers(self, module: nn.Module) -> tuple[TowerSplit, TowerSplit]:
        vision, text = _submodule(module, "vision_model"), _submodule(module, "text_model")
        if vision is None or text is None:
            raise FashionCLIPError(
                f"cannot train a {type(module).__name__}: expected vision_model and text_model towers"
            )

        def image_forward(pixel_values: torch.Tensor) -> torch.Tensor:
            return pooled_output(vision(pixel_values=pixel_values))

        def text_forward(**tokens: torch.Tensor) -> torch.Tensor:
            return pooled_output(text(**self.text_inputs(tokens)))

        return (
            TowerSplit(vision, _submodule(module, "visual_projection"), image_forward),
            TowerSplit(text, _submodule(module, "text_projection"), text_forward),
        )


CLIP = register_model_kind(
    TransformersKind("clip", text_input_keys=frozenset({"input_ids", "attention_mask"}))
)
SIGLIP = register_model_kind(
    TransformersKind("siglip", text_input_keys=frozenset({"input_ids"}), text_padding="max_length")
)
VISION_TEXT_DUAL_ENCODER = register_model_kind(
    TransformersKind("vision-text-dual-encoder", text_input_keys=BERT_TEXT_INPUTS)
)
