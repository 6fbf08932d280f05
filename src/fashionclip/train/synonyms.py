"""Synonym alignment: the words the search reads as a catalog value move toward that value's
name in the model's text space too.

Query understanding (:mod:`fashionclip.index.understand`) knows that "coat" is what the catalog
files as Jackets, "sneaker" as Casual or Sports Shoes, "pullover" as Sweaters; the model only
knows the words its training captions used. So a zero-shot class named "Coat" (Fashion-MNIST)
or a vector search for "winter coat" lands on pullovers and kurtas (issue 14: Fashion-MNIST's
coats are read as pullovers 208 times in 307; the class vector of "Jackets" reads them right).

:func:`align_synonyms` trains the text side alone (the text tower's unlocked layers and the
text projection; image vectors stay exactly as they were) by distillation from the starting
model ``f0``:

* each synonym phrase ``p`` (:func:`synonym_table`) in each template ``t`` is pulled toward
  ``normalise(beta * f0(t(p)) + (1 - beta) * normalise(mean over its values v of f0(t(v))))``:
  halfway (``beta`` 0.5) between what the word meant and what the catalog's name means, so a
  word that is not quite the catalog's value ("sneaker" for Casual *and* Sports Shoes) keeps
  part of its own sense;
* anchors (the catalog's own value names in every template, and product names) are held at
  ``f0``, so everything the catalog already says keeps its vector.

Loss: ``1 - cos`` for both, their means added (anchors weighted ``anchor_weight``).

Measured on v6 (session 15, ``tools/align_synonyms.py``, 11 min on the 2-core CPU): Fashion-MNIST
dev 0.533 -> 0.577 and test 0.525 -> 0.573, every KAGL row level, but CCP garments test 0.627 ->
0.610, whose classes name coats *and* jackets: not shipped (rule 33).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from fashionclip.errors import FashionCLIPError
from fashionclip.index.understand import Vocabulary
from fashionclip.models.dual_encoder import FashionDualEncoder

if TYPE_CHECKING:
    from fashionclip.models.model import FashionCLIP

#: Templates the alignment trains on; :data:`HELD_OUT_TEMPLATES` measure that it generalises.
ALIGN_TEMPLATES: tuple[str, ...] = (
    "a photo of a {}",
    "a product photo of a {}",
    "a photo of a {}, a type of fashion product",
    "{}",
    "a {} for men",
    "{} for women",
    "a black {}",
    "a white {}",
    "a blue {}",
    "a red {}",
    "casual {}",
    "buy a {} online",
)
HELD_OUT_TEMPLATES: tuple[str, ...] = ("an image of a {}", "a grey {} for women", "green {}")


@dataclass(frozen=True)
class AlignConfig:
    """How far and how long to align: candidate 34's recipe (issue 14, rules 32-33 in
    docs/issue14-model-runlog.md; ``beta`` chosen on the Fashion-MNIST and CCP dev sets). Not
    shipped: on v6 it raised Fashion-MNIST test 0.525 -> 0.573 but cost CCP test 0.017."""

    #: share of the phrase's own starting vector in its target (1 = no change, 0 = the value's)
    beta: float = 0.5
    steps: int = 600
    batch_size: int = 64
    anchor_batch_size: int = 128
    anchor_weight: float = 4.0
    lr: float = 1e-4
    unlocked_layers: int = 2
    seed: int = 0

    def check(self) -> None:
        if not 0.0 <= self.beta < 1.0:
            raise FashionCLIPError(f"beta must be in [0, 1), got {self.beta!r}")
        for name in ("steps", "batch_size", "anchor_batch_size"):
            if int(getattr(self, name)) < 1:
                raise FashionCLIPError(f"{name} must be at least 1")


def synonym_table(
    values: Mapping[str, Sequence[object]], column: str = "articleType"
) -> dict[str, list[str]]:
    """Phrase -> the values of ``column`` the search vocabulary reads it as.

    ``values``: ``{column: distinct values}`` of a catalog (as :meth:`Vocabulary.build` takes
    them). Every phrase the vocabulary maps to ``column`` (singulars, synonyms, everyday names,
    WordNet aliases), except a value's own name written as the catalog writes it.
    """
    if column not in values:
        raise FashionCLIPError(f"no column {column!r} among {sorted(values)}")
    vocab = Vocabulary.build(values)
    own = {str(v).strip().lower() for v in values[column]}
    table: dict[str, list[str]] = {}
    for phrase, pairs in sorted(vocab.phrases.items()):
        text = " ".join(phrase)
        targets = sorted({v for c, v in pairs if c == column})
        if targets and text not in own:
            table[text] = targets
    return table


def align_synonyms(
    model: FashionCLIP,
    table: Mapping[str, Sequence[str]],
    anchors: Sequence[str],
    config: AlignConfig = AlignConfig(),
    progress: Callable[[int, float], None] | None = None,
) -> dict[str, float]:
    """Train ``model``'s text side in place (see the module docstring); returns figures.

    ``model``: a :class:`fashionclip.FashionCLIP` with a dual-encoder module. ``anchors``:
    texts whose vectors must not move (product names); the values' names in every template
    are added. Returned: the mean cosine of synonym texts to their targets before and after,
    in the training and the held-out templates, and of anchors to their start.
    """
    config.check()
    if not table:
        raise FashionCLIPError("no synonyms to align")
    module = model.module
    if not isinstance(module, FashionDualEncoder):
        raise FashionCLIPError(
            f"synonym alignment trains a fashionclip dual encoder's text side; {model.name} is "
            f"a {model.kind} model"
        )
    values = sorted({v for vs in table.values() for v in vs})
    named = [t.format(v) for t in ALIGN_TEMPLATES for v in values]
    anchor_texts = list(dict.fromkeys([*named, *(a for a in anchors if a)]))
    started = time.perf_counter()
    syn_train, target_train = _targets(model, table, values, ALIGN_TEMPLATES, config.beta)
    syn_held, target_held = _targets(model, table, values, HELD_OUT_TEMPLATES, config.beta)
    anchor_start = _encode(model, anchor_texts)
    figures = {
        "synonyms": float(len(table)),
        "train_texts": float(len(syn_train)),
        "anchor_texts": float(len(anchor_texts)),
        "before/train_cos": _mean_cos(model, syn_train, target_train),
        "before/held_out_cos": _mean_cos(model, syn_held, target_held),
    }
    module.requires_grad_(False)  # the image side and the temperature stay as they are
    module.lock_text_tower(config.unlocked_layers)
    module.text_projection.requires_grad_(True)
    params = [p for p in module.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(params, lr=config.lr, weight_decay=0.0)
    rng = np.random.default_rng(config.seed)
    module.eval()  # distillation toward fixed targets: no dropout
    for step in range(config.steps):
        s = rng.choice(len(syn_train), min(config.batch_size, len(syn_train)), replace=False)
        a = rng.choice(len(anchor_texts), min(config.anchor_batch_size, len(anchor_texts)), False)
        texts = [syn_train[i] for i in s] + [anchor_texts[i] for i in a]
        vectors = torch.nn.functional.normalize(
            model.text_embeddings(model.tokenize(texts)).float(), dim=-1
        )
        goal = torch.from_numpy(np.concatenate([target_train[s], anchor_start[a]]))
        cos = (vectors * goal).sum(-1)
        loss = (1 - cos[: len(s)]).mean() + config.anchor_weight * (1 - cos[len(s) :]).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if progress is not None:
            progress(step, float(loss.detach()))
    module.requires_grad_(False)
    figures.update(
        {
            "after/train_cos": _mean_cos(model, syn_train, target_train),
            "after/held_out_cos": _mean_cos(model, syn_held, target_held),
            "after/anchor_cos": _mean_cos(model, anchor_texts, anchor_start),
            "seconds": time.perf_counter() - started,
        }
    )
    return figures


def _targets(
    model: FashionCLIP,
    table: Mapping[str, Sequence[str]],
    values: Sequence[str],
    templates: Sequence[str],
    beta: float,
) -> tuple[list[str], np.ndarray]:
    """Synonym texts in ``templates`` and their unit target vectors (from the model as it is);
    ``values``: every value the table names, sorted."""
    phrases = sorted(table)
    texts = [t.format(p) for t in templates for p in phrases]
    own = _encode(model, texts)
    named = _encode(model, [t.format(v) for t in templates for v in values])
    where = {v: i for i, v in enumerate(values)}
    targets = np.empty_like(own)
    for t in range(len(templates)):
        for j, phrase in enumerate(phrases):
            value_mean = named[[t * len(values) + where[v] for v in table[phrase]]].mean(0)
            mixed = beta * own[t * len(phrases) + j] + (1 - beta) * _unit(value_mean)
            targets[t * len(phrases) + j] = _unit(mixed)
    return texts, targets.astype(np.float32)


def _unit(vector: np.ndarray) -> np.ndarray:
    return vector / np.linalg.norm(vector)


def _encode(model: FashionCLIP, texts: Sequence[str]) -> np.ndarray:
    return np.asarray(model.encode_text(list(texts), batch_size=256), np.float32)


def _mean_cos(model: FashionCLIP, texts: Sequence[str], targets: np.ndarray) -> float:
    return float((_encode(model, texts) * targets).sum(-1).mean())
