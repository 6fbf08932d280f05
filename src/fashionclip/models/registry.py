"""The model kinds fashionclip supports: one adapter (`ModelKind`) per config.json ``model_type``.

Everything that differs between kinds lives in its adapter: how a folder is loaded (module, image
processor, tokenizer, text padding, maximum text length), how it is saved, which text inputs the
text tower takes, how the module splits into the two training towers, and which towers come from
an installed package. The rest of the code asks the registry (cf. timm's ``register_model``)::

    kind = model_kind(config["model_type"])   # or kind_of(model)
    loaded = kind.load(folder, allow_pickle=False)

The shipped adapters are in :mod:`fashionclip.models.kinds` and register themselves when the
registry is first asked. A new kind is one :class:`ModelKind` subclass instance passed to
:func:`register_model_kind` (add it to :mod:`fashionclip.models.kinds`, and a tiny builder for it
to :data:`fashionclip.models.testing.TINY_BUILDERS`, which a test checks).
"""

from __future__ import annotations

import importlib
import json
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from fashionclip.errors import FashionCLIPError, ModelNotFoundError

#: One side of a dual encoder.
Side = Literal["image", "text"]
#: Padding rule of the tokenizer call ("max_length" for models that pool the last position).
TextPadding = Literal["longest", "max_length"]

#: Text inputs of a BERT-style text tower (the default of an adapter).
BERT_TEXT_INPUTS = frozenset({"input_ids", "attention_mask", "token_type_ids"})
#: Module whose import registers the shipped adapters.
_BUILTIN_KINDS = "fashionclip.models.kinds"


@dataclass(frozen=True)
class LoadedModel:
    """What an adapter reads from a checkpoint folder."""

    module: nn.Module
    image_processor: Any
    tokenizer: Any
    max_text_length: int


@dataclass(frozen=True)
class TowerSplit:
    """One tower for training: ``head(forward(inputs))``; ``forward`` runs the backbone."""

    backbone: nn.Module
    head: nn.Module | None
    forward: Callable[..., torch.Tensor]


def pooled_output(output: object) -> torch.Tensor:
    """The embedding tensor of a forward output (transformers 5 returns an output object)."""
    if isinstance(output, torch.Tensor):
        return output
    pooled = getattr(output, "pooler_output", None)
    if not isinstance(pooled, torch.Tensor):
        raise TypeError(f"cannot find pooled features in {type(output).__name__}")
    return pooled


@dataclass(frozen=True)
class ModelKind(ABC):
    """Adapter of one checkpoint kind; ``name`` is the ``model_type`` in its config.json."""

    name: str
    text_input_keys: frozenset[str] = BERT_TEXT_INPUTS
    text_padding: TextPadding = "longest"

    # ------------------------------------------------------------------ folders
    @abstractmethod
    def load(self, path: Path, *, allow_pickle: bool = False) -> LoadedModel:
        """Module (eval mode, CPU), image processor and tokenizer of a checkpoint folder."""

    @abstractmethod
    def save(self, module: nn.Module, tokenizer: Any, image_processor: Any, folder: Path) -> None:
        """Write a folder that :meth:`load` reads back (weights as safetensors)."""

    # ------------------------------------------------------------------ encoding
    def text_inputs(self, tokens: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The tokenizer outputs the text tower takes (SigLIP: input_ids only)."""
        return {key: value for key, value in tokens.items() if key in self.text_input_keys}

    def image_features(self, module: nn.Module, pixel_values: torch.Tensor) -> torch.Tensor:
        """Unnormalised image embeddings (B, D)."""
        encoder: Any = module  # a transformers or fashionclip dual encoder
        return pooled_output(encoder.get_image_features(pixel_values=pixel_values))

    def text_features(self, module: nn.Module, tokens: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Unnormalised text embeddings (B, D)."""
        encoder: Any = module
        return pooled_output(encoder.get_text_features(**self.text_inputs(tokens)))

    # ------------------------------------------------------------------ training
    @abstractmethod
    def towers(self, module: nn.Module) -> tuple[TowerSplit, TowerSplit]:
        """The (image, text) towers, each split into backbone and projection head."""

    def packaged_towers(self, module: nn.Module) -> tuple[Side, ...]:
        """Towers whose weights come from an installed package instead of the folder."""
        return ()

    def store_tower(self, module: nn.Module, side: Side) -> None:
        """From now on save ``side``'s weights in the folder (its packaged weights get trained)."""
        raise FashionCLIPError(f"a {self.name} model takes no tower from a package")


_KINDS: dict[str, ModelKind] = {}


def _load_builtin_kinds() -> None:
    importlib.import_module(_BUILTIN_KINDS)  # its adapters call register_model_kind


def register_model_kind(kind: ModelKind, *, replace: bool = False) -> ModelKind:
    """Add an adapter (returned, so a module can write ``CLIP = register_model_kind(...)``)."""
    _load_builtin_kinds()
    known = _KINDS.get(kind.name)
    if known is not None and known is not kind and not replace:
        raise FashionCLIPError(f"model kind {kind.name!r} is already registered")
    _KINDS[kind.name] = kind
    return kind


def model_kinds() -> list[str]:
    """Names of the supported kinds, sorted."""
    _load_builtin_kinds()
    return sorted(_KINDS)


def model_kind(name: str) -> ModelKind:
    """The adapter of a ``model_type``; ModelNotFoundError listing the supported ones if unknown."""
    _load_builtin_kinds()
    kind = _KINDS.get(name)
    if kind is None:
        raise ModelNotFoundError(
            f"unsupported model_type {name!r}; supported kinds: {', '.join(model_kinds())}"
        )
    return kind


def kind_of(model: object) -> ModelKind:
    """The adapter of a `FashionCLIP` (its ``kind``) or of a bare module (its config's model_type)."""
    name = getattr(model, "kind", None)
    if not isinstance(name, str):
        name = getattr(getattr(model, "config", None), "model_type", None)
    if not isinstance(name, str):
        raise FashionCLIPError(f"cannot tell the model kind of a {type(model).__name__}")
    return model_kind(name)


def read_config(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """A checkpoint folder's config.json as a dict (ModelNotFoundError if missing or invalid)."""
    config_file = Path(folder) / "config.json"
    if not config_file.is_file():
        raise ModelNotFoundError(f"{folder} is not a model folder: it has no config.json")
    try:
        config = json.loads(config_file.read_text())
    except json.JSONDecodeError as exc:
        raise ModelNotFoundError(f"{config_file} is not valid JSON: {exc}") from None
    if not isinstance(config, dict):
        raise ModelNotFoundError(f"{config_file} does not hold a JSON object")
    return config


def read_model_type(folder: str | os.PathLike[str]) -> str:
    """The ``model_type`` in a checkpoint folder's config.json (clear errors if it has none)."""
    kind = read_config(folder).get("model_type")
    if not isinstance(kind, str):
        raise ModelNotFoundError(
            f"{folder}/config.json names no model_type; supported kinds: {', '.join(model_kinds())}"
        )
    return kind
