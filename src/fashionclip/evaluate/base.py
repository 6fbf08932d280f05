"""The evaluator contract (cf. sentence-transformers ``SentenceEvaluator``/``SequentialEvaluator``).

An evaluator is called with a model and returns a flat dict of metrics; ``primary_metric`` names
the key a training loop or model selection should watch (higher is better). Every evaluator also
has a ``compute(...)`` for precomputed embeddings, so a caller that already holds them (the
benchmark runner, a training loop) never re-encodes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from fashionclip.evaluate.encoding import EncoderModel


@runtime_checkable
class Evaluator(Protocol):
    """``evaluator(model) -> {metric: value}``; the dict holds ``primary_metric``."""

    @property
    def name(self) -> str: ...

    @property
    def primary_metric(self) -> str: ...

    def __call__(self, model: EncoderModel) -> dict[str, Any]: ...


@dataclass
class SequentialEvaluator:
    """Runs several evaluators on one model; keys become ``<evaluator name>/<key>``.

    The primary metric is the first evaluator's, prefixed. Names must be distinct, so no key
    of one evaluator can overwrite another's.
    """

    evaluators: Sequence[Evaluator]
    name: str = "sequential"

    def __post_init__(self) -> None:
        self.evaluators = list(self.evaluators)
        if not self.evaluators:
            raise ValueError("SequentialEvaluator needs at least one evaluator")
        names = [e.name for e in self.evaluators]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"evaluator names must be distinct; repeated: {repeated}")

    @property
    def primary_metric(self) -> str:
        first = self.evaluators[0]
        return f"{first.name}/{first.primary_metric}"

    def __call__(self, model: EncoderModel) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for evaluator in self.evaluators:
            for key, value in evaluator(model).items():
                result[f"{evaluator.name}/{key}"] = value
        return result
