"""Zero-shot classification: each image gets the class whose prompt embedding is closest."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fashionclip.errors import FashionCLIPError
from fashionclip.evaluate.encoding import EmbeddingCache, EncoderModel, encode_images, encode_texts
from fashionclip.evaluate.metrics import ClassificationMetrics, classification_metrics
from fashionclip.models.prompts import (
    DEFAULT_TEMPLATES,
    ENSEMBLE_TEMPLATES,
    build_zero_shot_classifier,
    check_templates,
)

__all__ = [
    "DEFAULT_TEMPLATES",
    "ENSEMBLE_TEMPLATES",
    "ZeroShotEvaluator",
    "check_templates",
    "class_embeddings",
    "classification_result",
    "predict_classes",
    "zero_shot_metrics",
]


def require_templates(templates: Sequence[str]) -> list[str]:
    """Checked templates; unlike ``check_templates`` an empty list is an error, not the default."""
    if isinstance(templates, str) or not list(templates):
        raise FashionCLIPError("at least one prompt template is needed (a list of strings)")
    return check_templates(templates)


def class_embeddings(
    model: EncoderModel,
    class_names: Sequence[str],
    templates: Sequence[str] = DEFAULT_TEMPLATES,
    cache: EmbeddingCache | None = None,
) -> np.ndarray:
    """One normalised text embedding per class, averaged over the templates (CLIP's ensembling).

    The prompts go through the embedding cache when ``cache`` is given.
    """

    def encode(prompts: list[str]) -> np.ndarray:
        return encode_texts(model, prompts, cache=cache)

    return build_zero_shot_classifier(encode, class_names, require_templates(templates))


def classification_result(metrics: ClassificationMetrics, **extra: Any) -> dict[str, Any]:
    """The dict every classification evaluator returns: scalars first, then the details."""
    result: dict[str, Any] = dict(metrics.scalars())
    result.update(
        n=metrics.n,
        n_classes=len(metrics.labels),
        per_class_f1=metrics.per_class_f1,
        support=metrics.support,
        labels=list(metrics.labels),
        confusion_matrix=metrics.confusion.tolist(),
        undefined=dict(metrics.undefined),
    )
    result.update(extra)
    return result


def predict_classes(
    image_emb: np.ndarray, class_emb: np.ndarray, class_names: Sequence[str]
) -> list[str]:
    """The class of highest cosine similarity per image (ties go to the first class)."""
    scores = np.asarray(image_emb, np.float32) @ np.asarray(class_emb, np.float32).T
    return [class_names[i] for i in scores.argmax(axis=1).tolist()]


def zero_shot_metrics(
    image_emb: np.ndarray,
    class_emb: np.ndarray,
    labels: Sequence[str],
    class_names: Sequence[str],
    templates: Sequence[str] = DEFAULT_TEMPLATES,
    n_failed_images: int = 0,
) -> dict[str, Any]:
    """Zero-shot metrics from precomputed image embeddings and one class embedding per class.

    Each image gets the class of highest cosine similarity (ties go to the first class).
    """
    labels = [str(label) for label in labels]
    class_names = [str(c) for c in class_names]
    if len(labels) != len(image_emb):
        raise ValueError(f"{len(image_emb)} image embeddings for {len(labels)} labels")
    if len(class_emb) != len(class_names):
        raise ValueError(f"{len(class_emb)} class embeddings for {len(class_names)} classes")
    predictions = predict_classes(image_emb, class_emb, class_names) if labels else []
    metrics = classification_metrics(labels, predictions, labels=class_names)
    return classification_result(
        metrics, n_failed_images=n_failed_images, templates=list(templates)
    )


@dataclass
class ZeroShotEvaluator:
    """Zero-shot classification of ``images`` into ``class_names``; returns a dict of metrics.

    ``labels`` holds the true class of each image and must be one of ``class_names``.
    ``prompt_names`` optionally maps a class to the words put into the templates.
    Predictions are the argmax of cosine similarity (ties go to the first class in order).
    Images that fail to decode are left out and counted in ``n_failed_images``.
    With embeddings at hand, call :func:`zero_shot_metrics` (no evaluator, no images needed).
    """

    images: Sequence[Any]
    labels: Sequence[str]
    class_names: Sequence[str]
    templates: Sequence[str] = DEFAULT_TEMPLATES
    prompt_names: dict[str, str] | None = None
    image_keys: Sequence[str] | None = None
    namespace: str | None = None
    cache: EmbeddingCache | None = None
    batch_size: int = 32
    show_progress: bool = False
    name: str = "zero-shot"
    primary_metric: str = "weighted_f1"

    def __post_init__(self) -> None:
        if len(self.images) != len(self.labels):
            raise ValueError(f"{len(self.images)} images but {len(self.labels)} labels")
        self.class_names = [str(c) for c in self.class_names]
        if not self.class_names:
            raise FashionCLIPError("no classes to classify into")
        unknown = sorted(set(map(str, self.labels)) - set(self.class_names))
        if unknown:
            raise FashionCLIPError(f"labels not among the class names: {unknown[:5]}")
        self.templates = require_templates(self.templates)

    def __call__(self, model: EncoderModel) -> dict[str, Any]:
        encoded = encode_images(
            model,
            self.images,
            keys=self.image_keys,
            namespace=self.namespace,
            cache=self.cache,
            batch_size=self.batch_size,
            show_progress=self.show_progress,
        )
        labels = [label for label, ok in zip(self.labels, encoded.ok, strict=True) if ok]
        return self.compute(
            encoded.embeddings,
            self.class_text_embeddings(model),
            labels=labels,
            n_failed_images=int((~encoded.ok).sum()),
        )

    def class_text_embeddings(self, model: EncoderModel) -> np.ndarray:
        names = [(self.prompt_names or {}).get(c, c) for c in self.class_names]
        return class_embeddings(model, names, self.templates, cache=self.cache)

    def predict(self, image_emb: np.ndarray, class_emb: np.ndarray) -> list[str]:
        return predict_classes(image_emb, class_emb, self.class_names)

    def compute(
        self,
        image_emb: np.ndarray,
        class_emb: np.ndarray,
        labels: Sequence[str] | None = None,
        n_failed_images: int = 0,
    ) -> dict[str, Any]:
        """Metrics from precomputed image embeddings and class embeddings (one per class)."""
        return zero_shot_metrics(
            image_emb,
            class_emb,
            list(self.labels if labels is None else labels),
            self.class_names,
            self.templates,
            n_failed_images,
        )
