"""fashionclip's own dual encoder: a pretrained image CNN and a pretrained sentence encoder,
joined by learned projections into one CLIP-style embedding space.

Saved in Hugging Face folder layout (``config.json`` with ``model_type`` = :data:`MODEL_TYPE`,
``model.safetensors``, tokenizer files, ``preprocessor_config.json``).
A frozen tower can be *taken from its installed package* instead of stored again: the folder then
keeps only the trained parts, and ``config.json`` records the sha256 of the package's weights,
verified at load time (so a different package version cannot silently change the embeddings).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, cast

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file
from torch import nn

from fashionclip.errors import FashionCLIPError, ModelNotFoundError, UnsafeCheckpointError
from fashionclip.models.kinds.dual_encoder import NAME as MODEL_TYPE
from fashionclip.models.registry import read_config
from fashionclip.models.towers import (
    LITE_MEAN,
    LITE_STD,
    EfficientNetTower,
    _atomic_save_file,
    build_text_model,
    load_packaged_text_weights,
    mean_pool,
    native_image_size,
    text_package_config,
    text_package_folder,
)

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

logger = logging.getLogger(__name__)

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
#: Where the (BERT-family) text tower's transformer layers live in the module and its weights.
TEXT_LAYERS = "text_model.encoder.layer"
PROCESSOR_NAME = "preprocessor_config.json"
PICKLE_NAMES = ("pytorch_model.bin", "model.pt", "model.pth")

TowerSource = Literal["package", "folder"]


# --------------------------------------------------------------------------- config


@dataclass
class FashionDualEncoderConfig:
    """Architecture and provenance of a :class:`FashionDualEncoder` (stored as config.json).

    ``*_source`` says where a tower's weights live: ``"package"`` (taken from the installed
    package and verified against ``*_sha256``; the tower must stay frozen) or ``"folder"``
    (stored in the checkpoint's model.safetensors).
    """

    model_type: ClassVar[str] = MODEL_TYPE

    image_tower: str = "efficientnet-lite0"
    image_size: int | None = None  # None: the tower's native resolution
    image_tower_overrides: dict[str, Any] = field(default_factory=dict)  # EfficientNet params
    image_tower_source: TowerSource = "folder"
    image_tower_sha256: str | None = None
    #: MBConv blocks whose pooled outputs join the image features (multi-level features; the
    #: model card says why). Empty: the last feature map only.
    image_feature_blocks: list[int] = field(default_factory=list)
    text_tower: str = "all-MiniLM-L6-v2"
    text_config: dict[str, Any] | None = None  # None: the packaged tower's config
    text_tower_source: TowerSource = "package"
    text_tower_sha256: str | None = None
    #: With a packaged text tower: transformer layers (0-based) that were trained, so they are
    #: stored in model.safetensors and replace the package's after loading. Two of MiniLM's six
    #: layers take 14 MB (float32) where the whole tower would take 90 MB.
    text_tower_stored_layers: list[int] = field(default_factory=list)
    text_max_length: int = 128
    projection_dim: int = 512
    projection: Literal["linear", "mlp"] = "linear"
    projection_hidden_dim: int | None = None  # mlp only; None: projection_dim
    #: The text side's own projection (None: ``projection`` / ``projection_hidden_dim``). A frozen
    #: text tower gives fixed sentence vectors, so its projection is the only trained text part:
    #: an MLP there lifts name->image retrieval (see the fashion-clip-mini model card).
    text_projection: Literal["linear", "mlp"] | None = None
    text_projection_hidden_dim: int | None = None
    logit_scale_init: float = math.log(1 / 0.07)
    format_version: int = 1

    def __post_init__(self) -> None:
        if self.image_size is None:
            self.image_size = native_image_size(self.image_tower)
        self.image_feature_blocks = sorted(int(b) for b in self.image_feature_blocks)
        self.text_tower_stored_layers = sorted({int(i) for i in self.text_tower_stored_layers})
        for name in ("image_tower_source", "text_tower_source"):
            if getattr(self, name) not in ("package", "folder"):
                raise FashionCLIPError(f"{name} must be 'package' or 'folder'")
        if self.projection not in ("linear", "mlp"):
            raise FashionCLIPError("projection must be 'linear' or 'mlp'")
        if self.text_projection not in (None, "linear", "mlp"):
            raise FashionCLIPError("text_projection must be 'linear', 'mlp' or null")
        if self.text_config is None:
            self.text_config = text_package_config(self.text_tower)
        n_layers = int(self.text_config.get("num_hidden_layers", 0))
        if any(not 0 <= i < n_layers for i in self.text_tower_stored_layers):
            raise FashionCLIPError(
                f"text_tower_stored_layers {self.text_tower_stored_layers} are not layers of a "
                f"{n_layers}-layer text tower"
            )

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        return {"model_type": MODEL_TYPE, "architectures": ["FashionDualEncoder"], **data}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FashionDualEncoderConfig:
        if data.get("model_type") != MODEL_TYPE:
            raise ModelNotFoundError(
                f"config.json has model_type {data.get('model_type')!r}, expected {MODEL_TYPE!r}"
            )
        known = {f.name for f in dataclasses.fields(cls)}
        extra = set(data) - known - {"model_type", "architectures"}
        if extra:
            logger.warning("ignoring unknown config keys: %s", sorted(extra))
        return cls(**{k: v for k, v in data.items() if k in known})

    def save(self, folder: str | os.PathLike) -> None:
        path = Path(folder) / CONFIG_NAME
        path.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n")

    @classmethod
    def load(cls, folder: str | os.PathLike) -> FashionDualEncoderConfig:
        return cls.from_dict(read_config(folder))


# --------------------------------------------------------------------------- image processor


class FashionImageProcessor:
    """Resize to a square (aspect kept, padded with white, as catalog photos are on white), then
    normalise; batched in numpy/torch so the per-image Python work is one PIL resize.

    ``pixel_values`` has shape (N, 3, S, S) and channels_last strides, which the CNN prefers.
    """

    def __init__(
        self,
        size: int = 224,
        image_mean: Sequence[float] = LITE_MEAN,
        image_std: Sequence[float] = LITE_STD,
        resize_mode: Literal["pad", "stretch"] = "pad",
        fill: Sequence[int] = (255, 255, 255),
        resample: str = "bicubic",
    ) -> None:
        if resize_mode not in ("pad", "stretch"):
            raise FashionCLIPError("resize_mode must be 'pad' or 'stretch'")
        self.size = int(size)
        self.image_mean = [float(v) for v in image_mean]
        self.image_std = [float(v) for v in image_std]
        self.resize_mode = resize_mode
        self.fill = [int(v) for v in fill]
        self.resample = resample
        self._resample = getattr(Image.Resampling, resample.upper())
        self._scale = torch.tensor([255.0 * s for s in self.image_std]).view(1, 3, 1, 1)
        self._shift = torch.tensor([255.0 * m for m in self.image_mean]).view(1, 3, 1, 1)

    @classmethod
    def for_config(cls, config: FashionDualEncoderConfig) -> FashionImageProcessor:
        return cls(size=int(config.image_size or native_image_size(config.image_tower)))

    def _rgb(self, image: Image.Image) -> Image.Image:
        if image.mode == "RGB":
            return image
        if image.mode in ("RGBA", "LA") or "transparency" in image.info:
            rgba = image.convert("RGBA")
            canvas = Image.new("RGBA", rgba.size, (*self.fill, 255))
            return Image.alpha_composite(canvas, rgba).convert("RGB")
        return image.convert("RGB")

    def image_to_uint8(self, image: Image.Image) -> np.ndarray:
        """One image -> (S, S, 3) uint8, resized and padded (or stretched), before normalisation."""
        if not isinstance(image, Image.Image):
            raise FashionCLIPError(f"expected PIL images, got {type(image).__name__}")
        size = self.size
        image = self._rgb(image)
        if self.resize_mode == "stretch":
            return np.asarray(image.resize((size, size), self._resample))
        canvas = np.empty((size, size, 3), dtype=np.uint8)
        canvas[...] = np.asarray(self.fill, dtype=np.uint8)
        width, height = image.size
        scale = size / max(width, height)
        new_w = min(size, max(1, round(width * scale)))
        new_h = min(size, max(1, round(height * scale)))
        if (new_w, new_h) != (width, height):
            image = image.resize((new_w, new_h), self._resample)
        top, left = (size - new_h) // 2, (size - new_w) // 2
        canvas[top : top + new_h, left : left + new_w] = np.asarray(image)
        return canvas

    def to_uint8(self, images: Sequence[Image.Image]) -> np.ndarray:
        """(N, S, S, 3) uint8 batch after resizing/padding, before normalisation."""
        if not images:
            return np.empty((0, self.size, self.size, 3), dtype=np.uint8)
        return np.stack([self.image_to_uint8(image) for image in images])

    def to_tensor(self, batch: Sequence[np.ndarray]) -> torch.Tensor:
        """(S, S, 3) uint8 arrays -> normalised (N, 3, S, S) float32 in channels_last memory."""
        return self._normalise(np.stack(batch))

    def _normalise(self, batch: np.ndarray) -> torch.Tensor:
        # (N, 3, S, S) in channels_last memory: no transpose copy
        pixels = torch.from_numpy(batch).permute(0, 3, 1, 2).float()
        return pixels.sub_(self._shift).div_(self._scale)

    def __call__(
        self,
        images: Image.Image | Sequence[Image.Image],
        return_tensors: str | None = "pt",
        **_: Any,
    ) -> dict[str, torch.Tensor]:
        if return_tensors not in ("pt", None):
            raise FashionCLIPError("FashionImageProcessor only returns torch tensors ('pt')")
        if isinstance(images, Image.Image):
            images = [images]
        return {"pixel_values": self._normalise(self.to_uint8(list(images)))}

    def to_dict(self) -> dict[str, Any]:
        return {
            "image_processor_type": "FashionImageProcessor",
            "size": self.size,
            "image_mean": self.image_mean,
            "image_std": self.image_std,
            "resize_mode": self.resize_mode,
            "fill": self.fill,
            "resample": self.resample,
        }

    def save_pretrained(self, folder: str | os.PathLike) -> None:
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / PROCESSOR_NAME).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike) -> FashionImageProcessor:
        path = Path(folder) / PROCESSOR_NAME
        if not path.is_file():
            raise ModelNotFoundError(f"{folder} has no {PROCESSOR_NAME}")
        data = json.loads(path.read_text())
        if data.pop("image_processor_type", None) != "FashionImageProcessor":
            raise ModelNotFoundError(f"{path} is not a FashionImageProcessor config")
        return cls(**data)

    def __repr__(self) -> str:
        return f"FashionImageProcessor({self.to_dict()})"


# --------------------------------------------------------------------------- model


@dataclass
class DualEncoderOutput:
    """What :meth:`FashionDualEncoder.forward` returns (open_clip convention).

    ``image_embeds``/``text_embeds`` are L2-normalised (None if that input was not given);
    ``logit_scale`` is the temperature multiplier ``exp(model.logit_scale)``, capped at 100.
    """

    image_embeds: torch.Tensor | None
    text_embeds: torch.Tensor | None
    logit_scale: torch.Tensor


def new_projection(kind: str, in_dim: int, out_dim: int, hidden_dim: int | None) -> nn.Module:
    """A freshly initialised projection head: ``linear`` (no bias) or a 2-layer GELU ``mlp``."""
    if kind == "linear":
        layer = nn.Linear(in_dim, out_dim, bias=False)
        nn.init.normal_(layer.weight, std=in_dim**-0.5)
        return layer
    hidden = hidden_dim or out_dim
    first, second = nn.Linear(in_dim, hidden), nn.Linear(hidden, out_dim)
    nn.init.normal_(first.weight, std=in_dim**-0.5)
    nn.init.normal_(second.weight, std=hidden**-0.5)
    nn.init.zeros_(first.bias)
    nn.init.zeros_(second.bias)
    return nn.Sequential(first, nn.GELU(), second)


class FashionDualEncoder(nn.Module):
    """Image tower + text tower + projections + learnable temperature (CLIP-style).

    ``FashionDualEncoder(config)`` has random towers; use :meth:`from_pretrained_towers` to start
    training from the pretrained towers, :meth:`from_pretrained` to load a saved checkpoint.
    """

    def __init__(self, config: FashionDualEncoderConfig) -> None:
        super().__init__()
        self.config = config
        self.vision_model = EfficientNetTower(
            config.image_tower,
            config.image_size,
            config.image_tower_overrides,
            config.image_feature_blocks,
        )
        self.text_model = build_text_model(config.text_config or {})
        text_dim = int(self.text_model.config.hidden_size)
        dim = config.projection_dim
        self.visual_projection = new_projection(
            config.projection, self.vision_model.feature_dim, dim, config.projection_hidden_dim
        )
        if config.text_projection is None:
            text_kind, text_hidden = config.projection, config.projection_hidden_dim
        else:
            text_kind, text_hidden = config.text_projection, config.text_projection_hidden_dim
        self.text_projection = new_projection(text_kind, text_dim, dim, text_hidden)
        self.logit_scale = nn.Parameter(torch.tensor(float(config.logit_scale_init)))
        self._locked: list[str] = []  # module names kept in eval mode (frozen BN / dropout)

    # ---- encoding

    @property
    def embedding_dim(self) -> int:
        return int(self.config.projection_dim)

    def get_image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Projected image embeddings (B, D), not normalised."""
        dtype = self.logit_scale.dtype
        pixels = pixel_values.to(dtype).contiguous(memory_format=torch.channels_last)
        features = self.vision_model(pixels)
        return self.visual_projection(features)

    def get_text_features(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Projected text embeddings (B, D), not normalised (mean-pooled tokens, then projection)."""
        return self.text_projection(
            self.get_text_sentence_embedding(input_ids, attention_mask, token_type_ids)
        )

    def get_text_sentence_embedding(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The text tower's mean-pooled sentence embedding before projection (B, hidden)."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        out = self.text_model(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        )
        return mean_pool(out.last_hidden_state, attention_mask)

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> DualEncoderOutput:
        image = text = None
        if pixel_values is not None:
            image = nn.functional.normalize(self.get_image_features(pixel_values), dim=-1)
        if input_ids is not None:
            text = self.get_text_features(input_ids, attention_mask, token_type_ids)
            text = nn.functional.normalize(text, dim=-1)
        return DualEncoderOutput(image, text, self.logit_scale.exp().clamp(max=100.0))

    # ---- freezing

    def lock_text_tower(self, unlocked_layers: int = 0) -> None:
        """Freeze the text tower except its last ``unlocked_layers`` transformer layers.

        Frozen parts stay in eval mode (no dropout) even under ``model.train()``.
        """
        layers = self.text_layers()
        if not 0 <= unlocked_layers <= len(layers):
            raise FashionCLIPError(f"unlocked_layers must be in [0, {len(layers)}]")
        self.text_model.requires_grad_(False)
        if unlocked_layers == 0:
            self._lock_names(["text_model"])
            return
        for layer in layers[len(layers) - unlocked_layers :]:
            layer.requires_grad_(True)
        frozen = ["text_model.embeddings"]
        frozen += [f"{TEXT_LAYERS}.{i}" for i in range(len(layers) - unlocked_layers)]
        self._lock_names(frozen)

    def text_layers(self) -> nn.ModuleList:
        """The text tower's transformer layers, input to output (named ``TEXT_LAYERS``)."""
        return cast(nn.ModuleList, self.get_submodule(TEXT_LAYERS))

    def lock_image_tower(self, unlocked_groups: int = 0, freeze_bn_stats: bool = True) -> None:
        """Freeze the image tower except its last ``unlocked_groups`` layer groups.

        Groups (input to output): stem, each MBConv stage, head (9 for EfficientNet-Lite). With
        ``freeze_bn_stats`` the locked part stays in eval mode, so its BatchNorm running
        statistics (and stochastic depth) do not change during training (cf. open_clip).
        """
        groups = self.vision_model.groups()
        if not 0 <= unlocked_groups <= len(groups):
            raise FashionCLIPError(f"unlocked_groups must be in [0, {len(groups)}]")
        self.vision_model.requires_grad_(False)
        for group in groups[len(groups) - unlocked_groups :]:
            for module in group:
                module.requires_grad_(True)
        if not freeze_bn_stats:
            return
        names = {id(m): n for n, m in self.named_modules()}
        locked = [names[id(m)] for group in groups[: len(groups) - unlocked_groups] for m in group]
        self._lock_names(locked)

    def _lock_names(self, names: list[str]) -> None:
        self._locked.extend(n for n in names if n not in self._locked)
        self.train(self.training)

    def train(self, mode: bool = True) -> FashionDualEncoder:
        super().train(mode)
        for name in self._locked:
            self.get_submodule(name).eval()
        return self

    # ---- saving and loading

    def _package_prefixes(self) -> tuple[str, ...]:
        prefixes = []
        if self.config.image_tower_source == "package":
            prefixes.append("vision_model.")
        if self.config.text_tower_source == "package":
            prefixes.append("text_model.")
        return tuple(prefixes)

    def stored_state_dict(self) -> dict[str, torch.Tensor]:
        """The weights a checkpoint folder stores: everything not taken from a package, and the
        packaged text tower's trained layers (``text_tower_stored_layers``)."""
        skip = self._package_prefixes()
        keep = tuple(f"{TEXT_LAYERS}.{i}." for i in self.config.text_tower_stored_layers)
        return {
            k: v.detach()
            .to("cpu", torch.float32 if v.is_floating_point() else v.dtype)
            .contiguous()
            for k, v in self.state_dict().items()
            if not k.startswith(skip) or k.startswith(keep)
        }

    def default_tokenizer(self) -> PreTrainedTokenizerBase:
        """The packaged text tower's tokenizer, with ``model_max_length`` = text_max_length."""
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(
            text_package_folder(self.config.text_tower),
            model_max_length=self.config.text_max_length,
        )

    def save_pretrained(
        self,
        folder: str | os.PathLike,
        *,
        tokenizer: Any = None,
        image_processor: FashionImageProcessor | None = None,
    ) -> Path:
        """Write config.json, model.safetensors, tokenizer files and preprocessor_config.json.

        Without ``tokenizer``, the packaged text tower's tokenizer is saved (package text
        towers only); without ``image_processor``, the default one for this config.
        """
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for source, digest in (
            (self.config.image_tower_source, self.config.image_tower_sha256),
            (self.config.text_tower_source, self.config.text_tower_sha256),
        ):
            if source == "package" and digest is None:
                raise FashionCLIPError(
                    "a tower taken from its package needs its sha256 in the config; build the "
                    "model with FashionDualEncoder.from_pretrained_towers()"
                )
        if tokenizer is None:
            if self.config.text_tower_source != "package":
                raise FashionCLIPError("pass tokenizer= to save a model with its own text tower")
            tokenizer = self.default_tokenizer()
        tokenizer.model_max_length = self.config.text_max_length
        _atomic_save_file(self.stored_state_dict(), folder / WEIGHTS_NAME)
        tokenizer.save_pretrained(folder)
        (image_processor or FashionImageProcessor.for_config(self.config)).save_pretrained(folder)
        self.config.save(folder)  # last: a folder with config.json is complete
        return folder

    def load_packaged_towers(self) -> None:
        """Fill package-sourced towers from their packages, verifying (or recording) sha256."""
        config = self.config
        if config.image_tower_source == "package":
            config.image_tower_sha256 = self.vision_model.load_packaged(
                config.image_tower, config.image_tower_sha256
            )
        if config.text_tower_source == "package":
            config.text_tower_sha256 = load_packaged_text_weights(
                self.text_model, config.text_tower, config.text_tower_sha256
            )

    @classmethod
    def from_pretrained_towers(
        cls, config: FashionDualEncoderConfig | None = None, seed: int | None = None
    ) -> FashionDualEncoder:
        """Both towers with their pretrained weights (from the packages), fresh projections.

        The sha256 of each tower's weights file is recorded in the config; a ``"folder"``
        tower starts from the package weights too but will be stored when saved.
        """
        config = dataclasses.replace(config or FashionDualEncoderConfig())
        if seed is not None:
            torch.manual_seed(seed)
        model = cls(config)
        config.image_tower_sha256 = model.vision_model.load_packaged(
            config.image_tower, config.image_tower_sha256
        )
        config.text_tower_sha256 = load_packaged_text_weights(
            model.text_model, config.text_tower, config.text_tower_sha256
        )
        return model.eval()

    @classmethod
    def from_pretrained(
        cls, folder: str | os.PathLike, device: str | torch.device | None = None
    ) -> FashionDualEncoder:
        """Load a saved checkpoint (safetensors only; package towers verified by sha256)."""
        folder = Path(folder)
        if not folder.is_dir():
            raise ModelNotFoundError(f"model folder not found: {folder}")
        config = FashionDualEncoderConfig.load(folder)
        weights = folder / WEIGHTS_NAME
        if not weights.is_file():
            pickles = [n for n in PICKLE_NAMES if (folder / n).is_file()]
            if pickles:
                raise UnsafeCheckpointError(
                    f"{folder} holds only pickle weights ({pickles[0]}); fashionclip dual "
                    "encoders are read from model.safetensors only"
                )
            raise ModelNotFoundError(f"{folder} has no {WEIGHTS_NAME}")
        model = cls(config)
        model.load_packaged_towers()
        state = load_file(weights)
        expected = set(model.stored_state_dict())
        missing, unexpected = expected - set(state), set(state) - expected
        if missing or unexpected:
            raise ModelNotFoundError(
                f"{weights} does not match its config.json: missing {sorted(missing)[:3]}, "
                f"unexpected {sorted(unexpected)[:3]}"
            )
        model.load_state_dict(state, strict=False)
        model.eval()
        if device is not None:
            model.to(device)
        return model


def load_dual_encoder(
    path: str | os.PathLike, device: str | torch.device | None = None
) -> tuple[FashionDualEncoder, FashionImageProcessor, Any]:
    """(module, image processor, tokenizer) of a saved fashionclip dual encoder folder."""
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    module = FashionDualEncoder.from_pretrained(path, device=device)
    processor = FashionImageProcessor.from_pretrained(path)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # it warns that config.json's model_type is not its own
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    finally:
        hf_logging.set_verbosity(verbosity)
    tokenizer.model_max_length = min(
        int(getattr(tokenizer, "model_max_length", module.config.text_max_length)),
        module.config.text_max_length,
    )
    return module, processor, tokenizer
