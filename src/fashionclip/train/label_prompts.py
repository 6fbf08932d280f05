"""An auxiliary loss that classifies each training image among *every* value of a column.

The contrastive loss only contrasts an image with the captions of its own batch. A short
caption such as "a photo of a Charcoal" is rare, so it is seldom in the batch of a black
product, and nothing teaches the model that a black product is *not* charcoal: zero-shot, the
rare shades then win many of the common colours' products (v3 on KAGL val: 123 Black products
called Charcoal, 87 White called Off White, 74 Brown called Tan).

``loss.label_prompts`` names templates of one field each (``"a photo of a {baseColour}"``).
Each is filled with every value of the field in the training records (the *prompts*); for each
training image with a value, a softmax over that template's prompts (the model's own text
features, scaled by its temperature) is trained towards its value, weighted by
``loss.label_prompt_weight`` and added to the contrastive loss. The cross-entropies are
averaged over image-template pairs; ``loss.label_prompt_template_weights`` (one per template)
makes that a weighted mean, so one template can count less than the others. This is the zero-shot
classifier of the evaluation, trained on the training split with all of its classes at once.
Templates of a colour field (:data:`COLOUR_FIELDS`) skip grey views (the grayscale and
negative-thumbnail augmentations), whose colour cannot be seen. Rows that name their labels in
another vocabulary (:data:`VOCABULARY_KEY`: the CCP crops say "dress" where KAGL says
"Dresses") are not asked, and their values are not prompts: among the union, synonyms would be
each other's negatives.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from fashionclip.data.captions import TemplateCaptionBuilder, template_field
from fashionclip.errors import FashionCLIPError
from fashionclip.train.loss import MAX_LOGIT_SCALE

if TYPE_CHECKING:
    from fashionclip.train.data import PairDataset

#: A training row with a true value under this key uses labels of its own vocabulary: the
#: label-prompt loss leaves it out (see the module docstring).
VOCABULARY_KEY = "_vocabulary"

#: Fields whose value is the item's colour: not asked of an image that shows no colour.
COLOUR_FIELDS = frozenset({"baseColour", "colour", "tone"})


@dataclass(frozen=True)
class LabelPrompts:
    """The prompts of every template and each training item's own prompt per template.

    ``fields[t]``: the field template ``t`` fills; ``prompts``: all prompts, template by
    template; ``spans[t]``: the ``[start, end)`` of template ``t`` in ``prompts``;
    ``targets[i, t]``: the index in ``prompts`` of item ``i``'s prompt for template ``t``, -1
    when the item has no value for its field.
    """

    fields: tuple[str, ...]
    prompts: tuple[str, ...]
    spans: tuple[tuple[int, int], ...]
    targets: torch.Tensor


def build_label_prompts(
    templates: Sequence[str],
    records: Sequence[Mapping[str, Any]],
    aliases: Mapping[str, str] | None = None,
) -> LabelPrompts:
    """Fill each template with every value its field takes in ``records`` (sorted).

    Fields are read as caption templates read them (``aliases``, derived fields such as
    ``colour``), so a prompt is the same string as the caption of the same template. A template
    that no record can fill is an error (a typo in a field name would otherwise train nothing).
    """
    prompts: list[str] = []
    spans: list[tuple[int, int]] = []
    targets = torch.full((len(records), len(templates)), -1, dtype=torch.int64)
    fields = tuple(template_field(template) for template in templates)
    asked = [not record.get(VOCABULARY_KEY) for record in records]  # once, not per template
    for t, template in enumerate(templates):
        filler = TemplateCaptionBuilder([template], eval_template=template, aliases=aliases)
        filled = [
            filler.candidates(record) if ask else []
            for record, ask in zip(records, asked, strict=True)
        ]
        values = sorted({c[0] for c in filled if c})
        if len(values) < 2:
            raise FashionCLIPError(
                f"label prompt template {template!r} gives {len(values)} distinct prompt(s) "
                "over the training records; it needs at least 2"
            )
        start = len(prompts)
        position = {value: start + k for k, value in enumerate(values)}
        prompts.extend(values)
        spans.append((start, len(prompts)))
        for i, captions in enumerate(filled):
            if captions:
                targets[i, t] = position[captions[0]]
    return LabelPrompts(fields, tuple(prompts), tuple(spans), targets)


class LabelPromptLoss(nn.Module):
    """Cross-entropy of each image over its templates' prompts (mean over image-template pairs
    with a value, each pair weighted by its template's ``template_weights`` entry; all 1 by
    default), times ``weight``. Called with unnormalised features, like the contrastive
    losses, the batch's item indices and, per row, whether its image shows colour."""

    def __init__(
        self,
        label_prompts: LabelPrompts,
        weight: float,
        template_weights: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        self.label_prompts = label_prompts
        self.weight = float(weight)
        count = len(label_prompts.spans)
        if template_weights is None:
            template_weights = [1.0] * count
        if len(template_weights) != count or any(w <= 0 for w in template_weights):
            raise FashionCLIPError(
                f"label-prompt template weights must be {count} positive number(s), "
                f"got {list(template_weights)}"
            )
        self.template_weights = tuple(float(w) for w in template_weights)

    def forward(
        self,
        image_features: torch.Tensor,
        prompt_features: torch.Tensor | None,
        scale: torch.Tensor | None,
        indices: Sequence[int],
        colour: Sequence[bool] | None = None,
    ) -> torch.Tensor:
        if prompt_features is None or scale is None:
            raise ValueError("the label-prompt loss needs the prompts' features and a temperature")
        image = F.normalize(image_features.float(), dim=-1)
        text = F.normalize(prompt_features.float(), dim=-1)
        multiplier = scale.float().exp().clamp(max=MAX_LOGIT_SCALE).reshape(())
        rows = torch.as_tensor(list(indices), dtype=torch.int64)
        targets = self.label_prompts.targets[rows].to(image.device)
        shows = torch.ones(len(rows), dtype=torch.bool, device=image.device)
        if colour is not None:
            shows = torch.as_tensor(list(colour), dtype=torch.bool, device=image.device)
        total = image.new_zeros(())
        count = 0.0
        for t, (start, end) in enumerate(self.label_prompts.spans):
            has = targets[:, t] >= 0
            if self.label_prompts.fields[t] in COLOUR_FIELDS:
                has = has & shows
            if not bool(has.any()):
                continue
            logits = multiplier * image[has] @ text[start:end].T
            cross = F.cross_entropy(logits, targets[has, t] - start, reduction="sum")
            total = total + self.template_weights[t] * cross
            count += self.template_weights[t] * int(has.sum())
        return self.weight * total / count if count else total


def label_prompt_loss(
    templates: Sequence[str],
    weight: float,
    train_set: PairDataset,
    template_weights: Sequence[float] | None = None,
) -> LabelPromptLoss | None:
    """The run's label-prompt loss (None without templates), over ``train_set.records`` with
    the aliases of its caption builder."""
    if not templates:
        return None
    aliases = getattr(train_set.captions, "aliases", None)
    found = build_label_prompts(templates, train_set.records, aliases)
    return LabelPromptLoss(found, weight, template_weights)
