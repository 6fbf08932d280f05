"""Per-epoch validation: retrieval recall@1/5/10 both ways, and zero-shot accuracy on a label.

Kept behind :func:`validation_metrics` (embeddings in, flat dict out) so the training loop does not
depend on how the metrics are computed; the ranking itself is
:class:`fashionclip.evaluate.retrieval.RetrievalEvaluator`'s.

Validation captions can repeat (KAGL has 5,089 product names shared by several items): queries
are the distinct captions, and every image with that caption counts as relevant.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

RECALL_KS = (1, 5, 10)


def metric_names(zero_shot_columns: Sequence[str] = (), prefix: str = "val/") -> list[str]:
    """Names of the metrics :func:`validation_metrics` returns (to check ``best_metric`` early)."""
    names = [f"{prefix}{d}_recall@{k}" for d in ("t2i", "i2t") for k in RECALL_KS]
    names.append(f"{prefix}mean_recall")
    for column in zero_shot_columns:
        names += [f"{prefix}zs_{column}_accuracy", f"{prefix}zs_{column}_weighted_f1"]
    return [*names, f"{prefix}n_images"]


def validation_metrics(
    image_emb: np.ndarray,
    captions: Sequence[str],
    caption_emb: Mapping[str, np.ndarray],
    *,
    labels: Mapping[str, tuple[Sequence[str], np.ndarray, Sequence[str]]] | None = None,
    prefix: str = "val/",
) -> dict[str, float]:
    """Metrics from normalised image embeddings and the embeddings of their captions.

    ``caption_emb`` maps each distinct caption to its normalised embedding. ``labels`` maps a label
    name (e.g. ``articleType``) to ``(true label per image, normalised class embeddings, class
    names)`` for zero-shot accuracy and weighted F1.
    """
    from fashionclip.evaluate.metrics import classification_metrics
    from fashionclip.evaluate.retrieval import RetrievalEvaluator

    queries = sorted(set(captions))
    position = {c: i for i, c in enumerate(queries)}
    relevant: list[list[int]] = [[] for _ in queries]
    for image_index, caption in enumerate(captions):
        relevant[position[caption]].append(image_index)
    text_emb = np.stack([caption_emb[c] for c in queries]).astype(np.float32)
    evaluator = RetrievalEvaluator(
        query_texts=queries, relevant=relevant, recall_ks=RECALL_KS, precision_ks=()
    )
    result = evaluator.compute(text_emb, np.asarray(image_emb, np.float32))
    metrics: dict[str, float] = {}
    recalls = []
    for direction, short in (("text_to_image", "t2i"), ("image_to_text", "i2t")):
        for k in RECALL_KS:
            value = result.get(f"{direction}/recall@{k}")
            if value is not None:
                metrics[f"{prefix}{short}_recall@{k}"] = float(value)
                recalls.append(float(value))
    if recalls:
        metrics[f"{prefix}mean_recall"] = float(np.mean(recalls))
    for name, (truth, class_emb, class_names) in (labels or {}).items():
        scores = np.asarray(image_emb, np.float32) @ np.asarray(class_emb, np.float32).T
        predicted = [class_names[i] for i in scores.argmax(axis=1).tolist()]
        cm = classification_metrics(list(truth), predicted, labels=list(class_names))
        if cm.accuracy is not None:
            metrics[f"{prefix}zs_{name}_accuracy"] = float(cm.accuracy)
        if cm.weighted_f1 is not None:
            metrics[f"{prefix}zs_{name}_weighted_f1"] = float(cm.weighted_f1)
    metrics[f"{prefix}n_images"] = float(len(captions))
    return metrics
