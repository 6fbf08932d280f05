"""Evaluation harness: zero-shot and linear-probe classification, retrieval, baselines, reports.

Evaluators are callables that take a model and return a dict of metrics holding their
``primary_metric`` (:class:`Evaluator`, :class:`SequentialEvaluator`; cf. sentence-transformers'
``evaluation`` package); each also has ``compute(...)`` for precomputed embeddings, and the
embedding-level functions (:func:`zero_shot_metrics`, :class:`LinearProbe`,
:func:`image_to_image_rankings`) need no evaluator at all.
Datasets are registered (:func:`register_dataset`); ``run_evaluation`` runs the whole benchmark
on the selected ones and writes results.json, report.md and plots.
scikit-learn, matplotlib and bm25s (the ``evaluate`` extra) are imported only where used.
"""

from __future__ import annotations

from fashionclip.evaluate.base import Evaluator, SequentialEvaluator
from fashionclip.evaluate.baselines import (
    BM25Scorer,
    RandomEmbeddingModel,
    majority_class,
    reciprocal_rank_fusion,
)
from fashionclip.evaluate.datasets import (
    FASHION_MNIST_CLASSES,
    KAGL_ATTRIBUTES,
    DatasetSpec,
    build_label_set,
    dataset_names,
    get_dataset,
    load_ccp_garments,
    load_fashion_mnist,
    load_kagl,
    register_dataset,
)
from fashionclip.evaluate.encoding import EmbeddingCache
from fashionclip.evaluate.linear_probe import LinearProbe, LinearProbeEvaluator
from fashionclip.evaluate.metrics import (
    ClassificationMetrics,
    RankingMetrics,
    classification_metrics,
    ranking_metrics,
)
from fashionclip.evaluate.retrieval import (
    ImageRetrievalEvaluator,
    RetrievalEvaluator,
    image_to_image_rankings,
)
from fashionclip.evaluate.runner import EvaluationConfig, EvaluationRun, run_evaluation
from fashionclip.evaluate.zero_shot import (
    DEFAULT_TEMPLATES,
    ENSEMBLE_TEMPLATES,
    ZeroShotEvaluator,
    zero_shot_metrics,
)

__all__ = [
    "DEFAULT_TEMPLATES",
    "ENSEMBLE_TEMPLATES",
    "FASHION_MNIST_CLASSES",
    "KAGL_ATTRIBUTES",
    "BM25Scorer",
    "ClassificationMetrics",
    "DatasetSpec",
    "EmbeddingCache",
    "EvaluationConfig",
    "EvaluationRun",
    "Evaluator",
    "ImageRetrievalEvaluator",
    "LinearProbe",
    "LinearProbeEvaluator",
    "RandomEmbeddingModel",
    "RankingMetrics",
    "RetrievalEvaluator",
    "SequentialEvaluator",
    "ZeroShotEvaluator",
    "build_label_set",
    "classification_metrics",
    "dataset_names",
    "get_dataset",
    "image_to_image_rankings",
    "load_ccp_garments",
    "load_fashion_mnist",
    "load_kagl",
    "majority_class",
    "ranking_metrics",
    "reciprocal_rank_fusion",
    "register_dataset",
    "run_evaluation",
    "zero_shot_metrics",
]
