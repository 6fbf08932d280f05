"""Linear probe: logistic regression on frozen image embeddings (train split -> test split)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fashionclip.errors import FashionCLIPError
from fashionclip.evaluate.encoding import EmbeddingCache, EncoderModel, encode_images
from fashionclip.evaluate.metrics import classification_metrics
from fashionclip.evaluate.zero_shot import classification_result


@dataclass
class LinearProbe:
    """The probe itself: settings and :meth:`compute` on precomputed embeddings (no images).

    The classifier is scikit-learn's ``StandardScaler`` + multinomial ``LogisticRegression``
    (L-BFGS, inverse regularisation ``C``). Train items whose label is not in ``class_names`` are
    dropped (counted in ``n_train_dropped``). A class with no training items can never be
    predicted: its F1 is 0, not hidden.
    ``n_threads`` caps the BLAS/OpenMP threads of the fit (default 1): these problems are small,
    and on a shared machine extra threads mostly spin (measured 8-10x slower with 2 threads on a
    loaded 2-core box); None leaves the libraries' defaults.
    """

    class_names: Sequence[str]
    C: float = 1.0
    max_iter: int = 1000
    seed: int = 0
    n_threads: int | None = 1

    def __post_init__(self) -> None:
        self.class_names = [str(c) for c in self.class_names]

    def compute(
        self,
        train_emb: np.ndarray,
        train_labels: Sequence[str],
        test_emb: np.ndarray,
        test_labels: Sequence[str],
        n_failed_images: int = 0,
    ) -> dict[str, Any]:
        """Fit on the train embeddings, score on the test embeddings."""
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler
        from threadpoolctl import threadpool_limits

        train_labels = [str(y) for y in train_labels]
        test_labels = [str(y) for y in test_labels]
        if len(train_labels) != len(train_emb) or len(test_labels) != len(test_emb):
            raise ValueError("embeddings and labels differ in length")
        keep = np.array([y in set(self.class_names) for y in train_labels], dtype=bool)
        x_train = np.asarray(train_emb, np.float64)[keep] if len(keep) else np.zeros((0, 1))
        y_train = [y for y, k in zip(train_labels, keep, strict=True) if k]
        extra: dict[str, Any] = dict(
            n_train=len(y_train),
            n_train_dropped=int((~keep).sum()),
            n_failed_images=n_failed_images,
            classes_without_training_items=sorted(set(self.class_names) - set(y_train)),
        )
        if len(set(y_train)) < 2:
            # Nothing to fit: every metric is undefined (not zero).
            metrics = classification_metrics(test_labels, test_labels, labels=self.class_names)
            result = classification_result(metrics, **extra)
            reason = f"the training set has {len(set(y_train))} class(es); a probe needs 2"
            for name in ("weighted_f1", "macro_f1", "accuracy"):
                result[name] = None
                result["undefined"][name] = reason
            result["per_class_f1"] = {c: None for c in self.class_names}
            result["confusion_matrix"] = None
            return result
        probe = make_pipeline(
            StandardScaler(),
            LogisticRegression(C=self.C, max_iter=self.max_iter, random_state=self.seed),
        )
        with (
            threadpool_limits(limits=self.n_threads),
            warnings.catch_warnings(record=True) as caught,
        ):
            warnings.simplefilter("always", ConvergenceWarning)
            probe.fit(x_train, y_train)
            x_test = np.asarray(test_emb, np.float64)
            predictions = probe.predict(x_test).tolist() if test_labels else []
        extra["converged"] = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
        metrics = classification_metrics(test_labels, predictions, labels=self.class_names)
        return classification_result(metrics, **extra)


@dataclass
class LinearProbeEvaluator:
    """Fit a logistic regression on train embeddings, score it on test embeddings.

    See :class:`LinearProbe` for the classifier; test labels must all be in ``class_names``.
    With embeddings at hand, use ``LinearProbe(class_names, ...).compute(...)`` directly.
    """

    train_images: Sequence[Any]
    train_labels: Sequence[str]
    test_images: Sequence[Any]
    test_labels: Sequence[str]
    class_names: Sequence[str]
    C: float = 1.0
    max_iter: int = 1000
    seed: int = 0
    n_threads: int | None = 1
    train_keys: Sequence[str] | None = None
    test_keys: Sequence[str] | None = None
    train_namespace: str | None = None
    test_namespace: str | None = None
    cache: EmbeddingCache | None = None
    batch_size: int = 32
    show_progress: bool = False
    name: str = "linear-probe"
    primary_metric: str = "weighted_f1"

    def __post_init__(self) -> None:
        self.class_names = [str(c) for c in self.class_names]
        unknown = sorted(set(map(str, self.test_labels)) - set(self.class_names))
        if unknown:
            raise FashionCLIPError(f"test labels not among the class names: {unknown[:5]}")

    def __call__(self, model: EncoderModel) -> dict[str, Any]:
        train = encode_images(
            model, self.train_images, self.train_keys, self.train_namespace, self.cache,
            self.batch_size, self.show_progress,
        )  # fmt: skip
        test = encode_images(
            model, self.test_images, self.test_keys, self.test_namespace, self.cache,
            self.batch_size, self.show_progress,
        )  # fmt: skip
        return self.compute(
            train.embeddings,
            [y for y, ok in zip(self.train_labels, train.ok, strict=True) if ok],
            test.embeddings,
            [y for y, ok in zip(self.test_labels, test.ok, strict=True) if ok],
            n_failed_images=int((~train.ok).sum() + (~test.ok).sum()),
        )

    @property
    def probe(self) -> LinearProbe:
        return LinearProbe(self.class_names, self.C, self.max_iter, self.seed, self.n_threads)

    def compute(
        self,
        train_emb: np.ndarray,
        train_labels: Sequence[str],
        test_emb: np.ndarray,
        test_labels: Sequence[str],
        n_failed_images: int = 0,
    ) -> dict[str, Any]:
        """Metrics from precomputed embeddings."""
        return self.probe.compute(train_emb, train_labels, test_emb, test_labels, n_failed_images)
