"""Per-epoch validation: retrieval recall@1/5/10 both ways, and zero-shot accuracy on labels.

The metrics come from the evaluators that ``fashionclip evaluate`` uses
(:class:`~fashionclip.evaluate.retrieval.RetrievalEvaluator`,
:class:`~fashionclip.evaluate.zero_shot.ZeroShotEvaluator`), fed through their ``compute`` with
embeddings from the training forward: the current weights under the run's precision, and the
frozen-text cache when there is one (so validation does not re-encode the captions). Their keys
are renamed to the flat ``val/...`` names of ``log.jsonl`` and ``best_metric``.

Validation captions can repeat (KAGL has 5,089 product names shared by several items): queries
are the distinct captions, and every image with that caption counts as relevant.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from fashionclip.evaluate.retrieval import RetrievalEvaluator
from fashionclip.evaluate.zero_shot import ZeroShotEvaluator
from fashionclip.train.features import TextFeatureCache, autocast

if TYPE_CHECKING:
    from fashionclip.models.model import FashionCLIP
    from fashionclip.train.config import TrainConfig
    from fashionclip.train.data import PairDataset
    from fashionclip.train.parts import ModelParts

RECALL_KS = (1, 5, 10)
#: Evaluator direction -> the short name in the metric names.
_DIRECTIONS = (("text_to_image", "t2i"), ("image_to_text", "i2t"))
#: Zero-shot evaluator keys kept, in the order they are logged.
_ZERO_SHOT_KEYS = ("accuracy", "weighted_f1")


def metric_names(zero_shot_columns: Sequence[str] = (), prefix: str = "val/") -> list[str]:
    """Names of the metrics :class:`Validator` returns (to check ``best_metric`` early)."""
    names = [f"{prefix}{short}_recall@{k}" for _, short in _DIRECTIONS for k in RECALL_KS]
    names.append(f"{prefix}mean_recall")
    for column in zero_shot_columns:
        names += [f"{prefix}zs_{column}_{key}" for key in _ZERO_SHOT_KEYS]
    return [*names, f"{prefix}n_images"]


def zero_shot_columns(columns: Sequence[str], val: PairDataset) -> list[str]:
    """The ``columns`` that every validation record has a value for."""
    from fashionclip.data.captions import MISSING_VALUES

    return [
        column
        for column in columns
        if all(str(r.get(column, "")).strip().lower() not in MISSING_VALUES for r in val.records)
    ]


@dataclass
class Validator:
    """The validation set's evaluators, and the training-side encoding that feeds them."""

    val: PairDataset
    captions: list[str]
    retrieval: RetrievalEvaluator
    zero_shot: dict[str, ZeroShotEvaluator]
    batch_size: int = 128
    progress: bool = False
    prefix: str = "val/"

    @classmethod
    def build(cls, config: TrainConfig, val: PairDataset) -> Validator:
        """Evaluators for ``val``: retrieval by its eval captions, zero-shot per usable column."""
        captions = val.eval_captions()
        queries = sorted(set(captions))
        position = {c: i for i, c in enumerate(queries)}
        relevant: list[list[int]] = [[] for _ in queries]
        for image_index, caption in enumerate(captions):
            relevant[position[caption]].append(image_index)
        retrieval = RetrievalEvaluator(
            query_texts=queries,
            images=val.images,
            relevant=relevant,
            recall_ks=RECALL_KS,
            precision_ks=(),
        )
        zero_shot: dict[str, ZeroShotEvaluator] = {}
        for column in zero_shot_columns(config.val_zero_shot, val):
            truth = [str(r[column]) for r in val.records]
            zero_shot[column] = ZeroShotEvaluator(
                images=val.images,
                labels=truth,
                class_names=sorted(set(truth)),
                templates=[config.val_zero_shot_template],
            )
        return cls(val, captions, retrieval, zero_shot, config.eval_batch_size, config.progress)

    def metric_names(self) -> list[str]:
        return metric_names(list(self.zero_shot), self.prefix)

    def prompts(self, column: str) -> list[str]:
        """The prompt of each class of ``column``'s zero-shot evaluator, in class order."""
        evaluator = self.zero_shot[column]
        return [t.format(name) for name in evaluator.class_names for t in evaluator.templates]

    def texts(self) -> list[str]:
        """Every text to embed: the retrieval queries and the zero-shot prompts."""
        prompts = {p for column in self.zero_shot for p in self.prompts(column)}
        return sorted(set(self.captions) | prompts)

    def compute(
        self, image_emb: np.ndarray, text_emb: Mapping[str, np.ndarray]
    ) -> dict[str, float]:
        """Metrics from normalised image embeddings and a text -> normalised embedding map."""
        image_emb = np.asarray(image_emb, np.float32)
        queries = np.stack([text_emb[c] for c in self.retrieval.query_texts]).astype(np.float32)
        result = self.retrieval.compute(queries, image_emb)
        metrics: dict[str, float] = {}
        recalls = []
        for direction, short in _DIRECTIONS:
            for k in RECALL_KS:
                value = result.get(f"{direction}/recall@{k}")
                if value is not None:
                    metrics[f"{self.prefix}{short}_recall@{k}"] = float(value)
                    recalls.append(float(value))
        if recalls:
            metrics[f"{self.prefix}mean_recall"] = float(np.mean(recalls))
        for column, evaluator in self.zero_shot.items():
            class_emb = np.stack([text_emb[p] for p in self.prompts(column)])
            scores = evaluator.compute(image_emb, class_emb)
            for key in _ZERO_SHOT_KEYS:
                if scores.get(key) is not None:
                    metrics[f"{self.prefix}zs_{column}_{key}"] = float(scores[key])
        metrics[f"{self.prefix}n_images"] = float(len(self.captions))
        return metrics

    @torch.no_grad()
    def __call__(
        self,
        model: FashionCLIP,
        parts: ModelParts,
        text_cache: TextFeatureCache | None,
        precision: str,
    ) -> dict[str, float]:
        """Metrics of the current weights (eval mode; train mode is restored after)."""
        was_training = model.module.training
        model.module.eval()
        try:
            image_emb = self._image_embeddings(model, parts, precision)
            texts = self.texts()
            text_emb = _text_embeddings(
                model, parts, texts, text_cache, precision, max(self.batch_size, 64)
            )
            return self.compute(image_emb, dict(zip(texts, text_emb, strict=True)))
        finally:
            if was_training:
                parts.set_train_mode()

    def _image_embeddings(
        self, model: FashionCLIP, parts: ModelParts, precision: str
    ) -> np.ndarray:
        device = model.device
        chunks = []
        for start in tqdm(
            range(0, len(self.val), self.batch_size),
            desc="validating",
            disable=not self.progress,
            leave=False,
        ):
            stop = min(len(self.val), start + self.batch_size)
            pixels = model.preprocess([self.val.load(i) for i in range(start, stop)]).to(device)
            if device.type == "cpu":
                pixels = pixels.contiguous(memory_format=torch.channels_last)
            with autocast(precision, device):
                emb = parts.image_features(pixels)
            chunks.append(F.normalize(emb.float(), dim=-1).cpu().numpy())
        return np.concatenate(chunks)


def _text_embeddings(
    model: FashionCLIP,
    parts: ModelParts,
    texts: list[str],
    text_cache: TextFeatureCache | None,
    precision: str,
    batch_size: int,
) -> np.ndarray:
    """Normalised embeddings of ``texts`` through the training text path (cache or tower)."""
    chunks = []
    for start in range(0, len(texts), batch_size):
        chunk = texts[start : start + batch_size]
        with autocast(precision, model.device):
            if text_cache is not None:
                emb = parts.text.head_forward(text_cache.lookup(chunk))
            else:
                tokens = {k: v.to(model.device) for k, v in model.tokenize(chunk).items()}
                emb = parts.text_features(tokens)
        chunks.append(F.normalize(emb.float(), dim=-1).cpu().numpy())
    return np.concatenate(chunks)
