"""Prompt ensembling for zero-shot classification: the one place labels and templates become
class vectors (cf. open_clip ``build_zero_shot_classifier``).

The model (`FashionCLIP.zero_shot_classification`), the evaluator (`ZeroShotEvaluator`) and the
search service all call `build_zero_shot_classifier`; they differ only in the text encoder they
pass (plain, cached, or behind the service's model lock).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from fashionclip.errors import InvalidQueryError
from fashionclip.utils import normalise_rows

#: The FashionCLIP paper's prompt; the default everywhere a template is optional.
DEFAULT_TEMPLATES: tuple[str, ...] = ("a photo of a {}",)
#: A small prompt ensemble (class vector = mean of the normalised prompt vectors).
ENSEMBLE_TEMPLATES: tuple[str, ...] = (
    "a photo of a {}",
    "a product photo of a {}",
    "a photo of a {}, a type of fashion product",
    "an image of a {}",
    "{}",
)

TextEncoder = Callable[[list[str]], np.ndarray]


def check_labels(
    labels: Sequence[str], max_labels: int | None = None, max_chars: int | None = None
) -> list[str]:
    """Labels with white space folded; at least two, distinct and non-empty (else a clear error)."""
    if isinstance(labels, str) or not isinstance(labels, Sequence):
        raise InvalidQueryError("labels must be a list of strings, not a single string")
    cleaned = [" ".join(str(label).split()) for label in labels]
    if len(cleaned) < 2:
        raise InvalidQueryError("zero-shot classification needs at least two labels")
    if max_labels is not None and len(cleaned) > max_labels:
        raise InvalidQueryError(f"{len(cleaned)} labels given; the limit is {max_labels}")
    if any(not label for label in cleaned):
        raise InvalidQueryError("labels must not be empty")
    if max_chars is not None and any(len(label) > max_chars for label in cleaned):
        raise InvalidQueryError(f"labels must be at most {max_chars} characters")
    if len(set(cleaned)) != len(cleaned):
        raise InvalidQueryError("labels must be distinct")
    return cleaned


def check_templates(
    templates: Sequence[str] | str | None,
    max_templates: int | None = None,
    max_chars: int | None = None,
) -> list[str]:
    """Templates with ``{}`` exactly once and no other braces; None or empty gives the default."""
    if not templates:
        return list(DEFAULT_TEMPLATES)
    items = [templates] if isinstance(templates, str) else list(templates)
    if max_templates is not None and len(items) > max_templates:
        raise InvalidQueryError(f"{len(items)} templates given; the limit is {max_templates}")
    for template in items:
        if not isinstance(template, str) or template.count("{}") != 1:
            raise InvalidQueryError(
                f"a template must contain '{{}}' exactly once for the label, got {template!r}"
            )
        rest = template.replace("{}", "")
        if "{" in rest or "}" in rest:
            raise InvalidQueryError(f"a template may contain no other braces: {template!r}")
        if max_chars is not None and len(template) > max_chars:
            raise InvalidQueryError(f"a template is longer than {max_chars} characters")
    return items


def build_zero_shot_classifier(
    encode_text: TextEncoder,
    class_names: Sequence[str],
    templates: Sequence[str] | None = None,
) -> np.ndarray:
    """(n_classes, D) float32: per class, the normalised mean of its normalised prompt vectors.

    ``encode_text(list_of_prompts) -> (n, D)`` L2-normalised rows; every prompt of every class
    goes through it in one call, so a caching or locking encoder sees one batch.
    """
    names = [str(name) for name in class_names]
    chosen = check_templates(templates)
    prompts = [template.format(name) for name in names for template in chosen]
    vectors = np.asarray(encode_text(prompts), dtype=np.float32)
    return normalise_rows(vectors.reshape(len(names), len(chosen), -1).mean(axis=1))
