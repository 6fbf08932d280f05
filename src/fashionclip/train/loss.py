"""Contrastive losses for image-caption training: CLIP's symmetric InfoNCE and SigLIP's sigmoid loss.

Both are small ``nn.Module``s in the style of open_clip's ``loss.py``. The temperature
(``logit_scale``, stored in log space like Hugging Face CLIP/SigLIP) normally lives in the model so
that it is saved with the checkpoint; a loss built with ``init_logit_scale`` owns its own learnable
temperature for models without one.

Two additions over the textbook losses:

* ``labels``: an integer id per caption. Items whose captions are the same string are positives of
  each other (soft, multi-positive targets). Short templated captions ("a photo of a Shirts") repeat
  inside a batch. For SigLIP this matters: without ids every repeat is a negative pair that the
  loss pushes apart. For InfoNCE, identical captions have identical embeddings, so soft and one-hot
  targets give the same loss and gradient (the loss is floored at log k for k repeats either way).
* Under data parallelism (``world_size > 1``) features are gathered from all ranks, with gradient
  (``gather_with_grad``), so every rank contrasts against the global batch; ``local_loss`` computes
  only the local rows against all columns (cheaper, same gradient in expectation).

Every loss is called the same way, ``loss(image_features, text_features, logit_scale, logit_bias,
labels=...)``, and built by :func:`create_loss` from its name in :data:`LOSSES` (cf. open_clip's
``create_loss``), so the trainer never branches on the kind.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from fashionclip.errors import FashionCLIPError
from fashionclip.train.distributed import gather_features

#: Upper bound on the temperature multiplier exp(logit_scale), as in CLIP.
MAX_LOGIT_SCALE = 100.0


class ContrastiveLoss(nn.Module):
    """Base of the losses: one call signature, an optional own temperature / bias, the cap.

    ``loss(image_features, text_features, logit_scale=None, logit_bias=None, labels=None)``
    returns the scalar loss of a batch of (unnormalised) features.
    """

    #: Whether the loss uses a logit bias (the model must then have one).
    uses_logit_bias: bool = False
    max_logit_scale: float = MAX_LOGIT_SCALE
    logit_scale: nn.Parameter | None
    logit_bias: nn.Parameter | None

    def _init_temperature(
        self, init_logit_scale: float | None, init_logit_bias: float | None
    ) -> None:
        self.logit_scale = (
            nn.Parameter(torch.tensor(float(init_logit_scale)))
            if init_logit_scale is not None
            else None
        )
        self.logit_bias = (
            nn.Parameter(torch.tensor(float(init_logit_bias)))
            if init_logit_bias is not None
            else None
        )

    def _scale(self, logit_scale: torch.Tensor | None) -> torch.Tensor:
        scale = logit_scale if logit_scale is not None else self.logit_scale
        if scale is None:
            raise ValueError(
                "no logit_scale: pass the model's or build the loss with init_logit_scale"
            )
        return scale.float().exp().clamp(max=float(self.max_logit_scale)).reshape(())

    def forward(
        self,
        image_features: torch.Tensor,
        text_features: torch.Tensor,
        logit_scale: torch.Tensor | None = None,
        logit_bias: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        raise NotImplementedError


class ClipLoss(ContrastiveLoss):
    """Symmetric InfoNCE (CLIP): cross-entropy image->text and text->image, averaged.

    ``forward(image_features, text_features, logit_scale=None, logit_bias=None, labels=None)``
    takes unnormalised features (they are L2-normalised here), the *log* temperature, and optional
    caption ids; ``logit_bias`` is accepted for the common call signature and not used.
    """

    def __init__(
        self,
        *,
        local_loss: bool = False,
        gather_with_grad: bool = True,
        rank: int = 0,
        world_size: int = 1,
        init_logit_scale: float | None = None,
        max_logit_scale: float = MAX_LOGIT_SCALE,
    ) -> None:
        super().__init__()
        self.local_loss = local_loss
        self.gather_with_grad = gather_with_grad
        self.rank = rank
        self.world_size = world_size
        self.max_logit_scale = max_logit_scale
        self._init_temperature(init_logit_scale, None)

    def forward(
        self,
        image_features: torch.Tensor,
        text_features: torch.Tensor,
        logit_scale: torch.Tensor | None = None,
        logit_bias: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        del logit_bias  # InfoNCE has no bias
        scale = self._scale(logit_scale)
        image = F.normalize(image_features.float(), dim=-1)
        text = F.normalize(text_features.float(), dim=-1)
        n_local = image.shape[0]
        if labels is None:
            labels = torch.arange(n_local, device=image.device) + self.rank * n_local
            labels = labels + (1 << 40)  # unique ids that cannot collide with caption hashes
        all_image, all_text, all_labels = image, text, labels
        if self.world_size > 1:
            all_image, all_text, all_labels = gather_features(
                image,
                text,
                labels,
                rank=self.rank,
                world_size=self.world_size,
                gather_with_grad=self.gather_with_grad,
            )
        if self.local_loss:
            logits_per_image = scale * image @ all_text.T
            logits_per_text = scale * text @ all_image.T
            targets = _soft_targets(labels, all_labels)
        else:
            logits_per_image = scale * all_image @ all_text.T
            logits_per_text = logits_per_image.T
            targets = _soft_targets(all_labels, all_labels)
        loss_i = _soft_cross_entropy(logits_per_image, targets)
        loss_t = _soft_cross_entropy(logits_per_text, targets)
        return (loss_i + loss_t) / 2


class SigLipLoss(ContrastiveLoss):
    """Pairwise sigmoid loss (SigLIP): every image-text pair is a binary match / no-match.

    Needs a learnable bias besides the temperature (SigLIP models carry ``logit_bias``). Under data
    parallelism the local images are scored against the texts of all ranks (gathered with gradient),
    which gives the same loss as open_clip's neighbour exchange (so ``local_loss`` is implied; the
    argument is accepted for the common constructor signature).
    """

    uses_logit_bias = True

    def __init__(
        self,
        *,
        local_loss: bool = False,
        rank: int = 0,
        world_size: int = 1,
        gather_with_grad: bool = True,
        init_logit_scale: float | None = None,
        init_logit_bias: float | None = None,
        max_logit_scale: float = MAX_LOGIT_SCALE,
    ) -> None:
        super().__init__()
        del local_loss  # always local images against all texts
        self.rank = rank
        self.world_size = world_size
        self.gather_with_grad = gather_with_grad
        self.max_logit_scale = max_logit_scale
        self._init_temperature(init_logit_scale, init_logit_bias)

    def forward(
        self,
        image_features: torch.Tensor,
        text_features: torch.Tensor,
        logit_scale: torch.Tensor | None = None,
        logit_bias: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        scale = self._scale(logit_scale)
        bias = logit_bias if logit_bias is not None else self.logit_bias
        if bias is None:
            raise ValueError("SigLipLoss needs a logit_bias (the model's or init_logit_bias)")
        image = F.normalize(image_features.float(), dim=-1)
        text = F.normalize(text_features.float(), dim=-1)
        n_local = image.shape[0]
        if labels is None:
            labels = torch.arange(n_local, device=image.device) + self.rank * n_local + (1 << 40)
        all_text, all_labels = text, labels
        if self.world_size > 1:
            _, all_text, all_labels = gather_features(
                image,
                text,
                labels,
                rank=self.rank,
                world_size=self.world_size,
                gather_with_grad=self.gather_with_grad,
            )
        logits = scale * image @ all_text.T + bias.float().reshape(())
        signs = (labels[:, None] == all_labels[None, :]).float() * 2 - 1
        return -F.logsigmoid(signs * logits).sum() / n_local


#: The losses :func:`create_loss` builds, by ``loss.kind``.
LOSSES: dict[str, type[ContrastiveLoss]] = {"clip": ClipLoss, "siglip": SigLipLoss}


def loss_kinds() -> tuple[str, ...]:
    """Every accepted ``loss.kind``: ``auto`` and the registered losses."""
    return ("auto", *LOSSES)


def resolve_loss_kind(kind: str, has_logit_bias: bool) -> str:
    """``auto`` -> ``siglip`` for a model with a logit bias (SigLIP), ``clip`` otherwise."""
    if kind == "auto":
        return "siglip" if has_logit_bias else "clip"
    return kind


def create_loss(kind: str, **params: Any) -> ContrastiveLoss:
    """The loss registered as ``kind`` in :data:`LOSSES`, built with ``params``.

    Every loss takes ``local_loss``, ``gather_with_grad``, ``rank``, ``world_size``,
    ``init_logit_scale`` and ``max_logit_scale``; ``siglip`` also ``init_logit_bias``.
    """
    if kind not in LOSSES:
        raise FashionCLIPError(f"unknown loss kind {kind!r}; choose one of: {', '.join(LOSSES)}")
    return LOSSES[kind](**params)


def _soft_targets(row_labels: torch.Tensor, col_labels: torch.Tensor) -> torch.Tensor:
    """Row-normalised match matrix: 1/k for each of the k columns that share the row's caption."""
    match = (row_labels[:, None] == col_labels[None, :]).float()
    return match / match.sum(dim=1, keepdim=True).clamp(min=1.0)


def _soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return -(targets * F.log_softmax(logits, dim=-1)).sum(dim=-1).mean()


def clamp_logit_scale_(logit_scale: torch.Tensor, max_logit_scale: float = MAX_LOGIT_SCALE) -> None:
    """Keep the stored log temperature within [0, ln(max)] after an optimizer step (as CLIP does)."""
    with torch.no_grad():
        logit_scale.clamp_(0.0, math.log(max_logit_scale))
