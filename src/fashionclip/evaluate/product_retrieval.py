"""The retrieval part of the benchmark on a product split (KAGL): four directions plus BM25/hybrid.

- text-to-image / image-to-text: query = product name, target = that product (byte-identical
  duplicate images count as the same product);
- category-to-product: query = ``category_template.format(articleType)``, relevant = every
  product of that type (types with at least ``min_class_size`` products);
- image-to-image: relevant = other products with the same articleType and baseColour;
- ``bm25`` over each product's text, and ``hybrid (<model>)``: reciprocal rank fusion of BM25
  and the model's ranking (text-to-image and category-to-product).

Every figure goes through precomputed embeddings (the runner's cached encodings).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from fashionclip.evaluate.baselines import BM25Scorer, reciprocal_rank_fusion
from fashionclip.evaluate.datasets import KaglSplit, build_label_set, duplicate_groups
from fashionclip.evaluate.encoding import EmbeddingCache, EncodedImages, EncoderModel, encode_texts
from fashionclip.evaluate.report import Results
from fashionclip.evaluate.retrieval import RetrievalEvaluator, image_to_image_rankings

CATEGORY_METRICS = ("precision@1", "precision@10", "mrr")


@dataclass
class ProductRetrieval:
    """Retrieval figures of models and baselines on one product split, into ``results``.

    ``prefix`` names the split in the ``dataset`` column (``kagl-test``); ``article_classes``
    are the kept article types (None: built from the split with ``min_class_size``).
    """

    results: Results
    prefix: str
    category_template: str
    min_class_size: int
    baselines: bool
    article_classes: list[str] | None = None
    log: Callable[[str], None] = print
    _bm25: dict[tuple[str, ...], np.ndarray] = field(default_factory=dict)
    _bm25_corpus: tuple[str, ...] | None = None
    _bm25_scorer: BM25Scorer | None = None

    def evaluate(
        self,
        system: str,
        kind: str,
        model: EncoderModel,
        test: KaglSplit,
        encoded: EncodedImages,
        cache: EmbeddingCache | None,
    ) -> None:
        """Every retrieval direction for one system; failed images are left out (noted)."""
        if not encoded.ok.all():
            keep = np.flatnonzero(encoded.ok)
            self.results.notes.append(
                f"{system}: {len(test) - len(keep)} KAGL test image(s) failed to decode and "
                "were left out of retrieval"
            )
            test = test.subset(keep.tolist())
        image_emb = encoded.embeddings
        hybrid = self.baselines and kind == "model"
        names = RetrievalEvaluator(
            test.names, relevant=duplicate_groups(test.image_sha256), precision_ks=(5, 10)
        )
        self.log(f"{system}: retrieval, {len(test)} product names")
        scores = encode_texts(model, test.names, cache=cache) @ image_emb.T
        ranks = names.rankings_from_scores(scores)
        self.results.add_ranking(
            system, kind, f"{self.prefix}/text-to-image", ranks["text_to_image"]
        )
        self.results.add_ranking(
            system, kind, f"{self.prefix}/image-to-text", ranks["image_to_text"]
        )
        if hybrid:
            fused = reciprocal_rank_fusion([self._bm25_scores(test, names.query_texts), scores])
            ranks = names.rankings_from_scores(fused, image_to_text=False)
            self.results.add_ranking(
                f"hybrid ({system})", "baseline", f"{self.prefix}/text-to-image",
                ranks["text_to_image"],
            )  # fmt: skip
        self._category(system, kind, model, test, image_emb, cache, hybrid)
        groups = [
            f"{a}|{c}"
            for a, c in zip(
                test.attributes["articleType"], test.attributes["baseColour"], strict=True
            )
        ]
        ranks = image_to_image_rankings(image_emb, groups)
        self.results.add_ranking(
            system, kind, f"{self.prefix}/image-to-image", ranks["image_to_image"]
        )

    def _category(
        self,
        system: str,
        kind: str,
        model: EncoderModel,
        test: KaglSplit,
        image_emb: np.ndarray,
        cache: EmbeddingCache | None,
        hybrid: bool,
    ) -> None:
        dataset = f"{self.prefix}/category-to-product"
        evaluator = self._category_evaluator(test)
        if evaluator is None:
            self._add_no_category(system, kind)
            if hybrid:
                self._add_no_category(f"hybrid ({system})", "baseline")
            return
        scores = encode_texts(model, evaluator.query_texts, cache=cache) @ image_emb.T
        ranks = evaluator.rankings_from_scores(scores)
        self.results.add_ranking(system, kind, dataset, ranks["text_to_image"])
        if hybrid:
            bm25_scores = self._bm25_scores(test, evaluator.query_texts)
            ranks = evaluator.rankings_from_scores(reciprocal_rank_fusion([bm25_scores, scores]))
            self.results.add_ranking(
                f"hybrid ({system})", "baseline", dataset, ranks["text_to_image"]
            )

    def _category_evaluator(self, test: KaglSplit) -> RetrievalEvaluator | None:
        return category_evaluator(
            test.attributes["articleType"],
            self.category_template,
            self.min_class_size,
            self.article_classes,
        )

    def _add_no_category(self, system: str, kind: str) -> None:
        reason = f"no articleType has {self.min_class_size} or more test products"
        dataset = f"{self.prefix}/category-to-product"
        self.results.add_undefined(system, kind, "retrieval", dataset, CATEGORY_METRICS, reason)

    def _bm25_scores(self, test: KaglSplit, queries: Sequence[str]) -> np.ndarray:
        """BM25 scores of ``queries`` against the products of ``test`` (memoised)."""
        corpus = tuple(test.ids)
        if self._bm25_scorer is None or self._bm25_corpus != corpus:
            self.log(f"bm25: indexing {len(test)} product texts")
            self._bm25_scorer = BM25Scorer([test.product_text(i) for i in range(len(test))])
            self._bm25_corpus = corpus
            self._bm25.clear()
        key = tuple(queries)
        if key not in self._bm25:
            self._bm25[key] = self._bm25_scorer.scores(queries)
        return self._bm25[key]

    def bm25_baseline(self, test: KaglSplit) -> None:
        """The ``bm25`` rows: product names and category queries against the product texts."""
        names = RetrievalEvaluator(test.names, relevant=duplicate_groups(test.image_sha256))
        ranks = names.rankings_from_scores(self._bm25_scores(test, test.names), image_to_text=False)
        self.results.add_ranking(
            "bm25", "baseline", f"{self.prefix}/text-to-image", ranks["text_to_image"]
        )
        evaluator = self._category_evaluator(test)
        if evaluator is None:
            self._add_no_category("bm25", "baseline")
            return
        ranks = evaluator.rankings_from_scores(self._bm25_scores(test, evaluator.query_texts))
        self.results.add_ranking(
            "bm25", "baseline", f"{self.prefix}/category-to-product", ranks["text_to_image"]
        )


def category_evaluator(
    article_types: Sequence[str],
    template: str,
    min_class_size: int,
    classes: Sequence[str] | None = None,
) -> RetrievalEvaluator | None:
    """Category -> product retrieval: one query per article type (``template.format(type)``),
    relevant = every product of that type; ``classes`` (None: the types with at least
    ``min_class_size`` products). None when no type qualifies."""
    if classes is None:
        classes = build_label_set(article_types, "articleType", min_class_size).classes
    if not classes:
        return None
    relevant = [[i for i, a in enumerate(article_types) if a == t] for t in classes]
    queries = [template.format(t) for t in classes]
    return RetrievalEvaluator(
        queries, relevant=relevant, recall_ks=(), precision_ks=(1, 10), image_to_text=False
    )
