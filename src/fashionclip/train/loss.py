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
    """Base of the losses: one constructor, one call signature, an optional own temperature.

    ``loss(image_features, text_features, logit_scale=None, logit_bias=None, labels=None)``
    takes unnormalised features (they are L2-normalised here), the *log* temperature, the bias
    (used by losses with ``uses_logit_bias``) and optional caption ids, and returns the scalar
    loss of the batch. Subclasses implement :meth:`contrast` on the normalised features.
    """

    #: Whether the loss uses a logit bias (the model must then have one).
    uses_logit_bias: bool = False

    def __init__(
        self,
        *,
        local_loss: bool = False,
        gather_with_grad: bool = True,
        rank: int = 0,
        world_size: int = 1,
        init_logit_scale: float | None = None,
        init_logit_bias: float | None = None,
        max_logit_scale: float = MAX_LOGIT_SCALE,
    ) -> None:
        super().__init__()
        if init_logit_bias is not None and not self.uses_logit_bias:
            raise ValueError(f"{type(self).__name__} has no logit bias to initialise")
        self.local_loss = local_loss
        self.gather_with_grad = gather_with_grad
        self.rank = rank
        self.world_size = world_size
        self.max_logit_scale = max_logit_scale
        self.logit_scale: nn.Parameter | None = _parameter(init_logit_scale)
        self.logit_bias: nn.Parameter | None = _parameter(init_logit_bias)

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
        scale = self._scale(logit_scale)
        image = F.normalize(image_features.float(), dim=-1)
        text = F.normalize(text_features.float(), dim=-1)
        if labels is None:
            n_local = image.shape[0]
            labels = torch.arange(n_local, device=image.device) + self.rank * n_local
            labels = labels + (1 << 40)  # unique ids that cannot collide with caption hashes
        bias = logit_bias if logit_bias is not None else self.logit_bias
        return self.contrast(image, text, scale, bias, labels)

    def contrast(
        self,
        image: torch.Tensor,
        text: torch.Tensor,
        scale: torch.Tensor,
        bias: torch.Tensor | None,
        labels: torch.Tensor,
    ) -> torch.Tensor:
        """The loss of normalised features, the temperature multiplier and caption ids."""
        raise NotImplementedError

    def _gather(
        self, image: torch.Tensor, text: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.world_size <= 1:
            return image, text, labels
        return gather_features(
            image,
            text,
            labels,
            rank=self.rank,
            world_size=self.world_size,
            gather_with_grad=self.gather_with_grad,
        )


def _parameter(value: float | None) -> nn.Parameter | None:
    return nn.Parameter(torch.tensor(float(value))) if value is not None else None


class ClipLoss(ContrastiveLoss):
    """Symmetric InfoNCE (CLIP): cross-entropy image->text and text->image, averaged.

    The bias of the common call signature is not used.
    """

    def contrast(
        self,
        image: torch.Tensor,
        text: torch.Tensor,
        scale: torch.Tensor,
        bias: torch.Tensor | None,
        labels: torch.Tensor,
    ) -> torch.Tensor:
        all_image, all_text, all_labels = self._gather(image, text, labels)
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
    which gives the same loss as open_clip's neighbour exchange (so it is always a "local" loss;
    ``local_loss`` changes nothing).
    """

    uses_logit_bias = True

    def contrast(
        self,
        image: torch.Tensor,
        text: torch.Tensor,
        scale: torch.Tensor,
        bias: torch.Tensor | None,
        labels: torch.Tensor,
    ) -> torch.Tensor:
        if bias is None:
            raise ValueError("SigLipLoss needs a logit_bias (the model's or init_logit_bias)")
        _, all_text, all_labels = self._gather(image, text, labels)
        logits = scale * image @ all_text.T + bias.float().reshape(())
        signs = (labels[:, None] == all_labels[None, :]).float() * 2 - 1
        return -F.logsigmoid(signs * logits).sum() / image.shape[0]


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
