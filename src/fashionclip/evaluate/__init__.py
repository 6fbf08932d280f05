"""Evaluation harness: zero-shot and linear-probe classification, retrieval, baselines, reports.

Evaluators are callables that take a model and return a dict of metrics (cf. sentence-transformers'
``evaluation`` package); each also has ``compute(...)`` for precomputed embeddings.
``run_evaluation`` runs the whole benchmark and writes results.json, report.md and plots.
scikit-learn, matplotlib and bm25s (the ``evaluate`` extra) are imported only where used.
"""

from __future__ import annotations

from fashionclip.evaluate.baselines import (
    BM25Scorer,
    RandomEmbeddingModel,
    majority_class,
    reciprocal_rank_fusion,
)
from fashionclip.evaluate.datasets import (
    FASHION_MNIST_CLASSES,
    KAGL_ATTRIBUTES,
    build_label_set,
    load_fashion_mnist,
    load_kagl,
)
from fashionclip.evaluate.encoding import EmbeddingCache
from fashionclip.evaluate.linear_probe import LinearProbeEvaluator
from fashionclip.evaluate.metrics import (
    ClassificationMetrics,
    RankingMetrics,
    classification_metrics,
    ranking_metrics,
)
from fashionclip.evaluate.retrieval import ImageRetrievalEvaluator, RetrievalEvaluator
from fashionclip.evaluate.runner import EvaluationConfig, EvaluationRun, run_evaluation
from fashionclip.evaluate.zero_shot import (
    DEFAULT_TEMPLATES,
    ENSEMBLE_TEMPLATES,
    ZeroShotEvaluator,
)

__all__ = [
    "DEFAULT_TEMPLATES",
    "ENSEMBLE_TEMPLATES",
    "FASHION_MNIST_CLASSES",
    "KAGL_ATTRIBUTES",
    "BM25Scorer",
    "ClassificationMetrics",
    "EmbeddingCache",
    "EvaluationConfig",
    "EvaluationRun",
    "ImageRetrievalEvaluator",
    "LinearProbeEvaluator",
    "RandomEmbeddingModel",
    "RankingMetrics",
    "RetrievalEvaluator",
    "ZeroShotEvaluator",
    "build_label_set",
    "classification_metrics",
    "load_fashion_mnist",
    "load_kagl",
    "majority_class",
    "ranking_metrics",
    "reciprocal_rank_fusion",
    "run_evaluation",
]
