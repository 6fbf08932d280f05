"""Caption builders for training: which text goes with an image, per epoch.

Caption variety matters for zero-shot use. Trained only on full product names, the image tower
learns to match names and forgets the short labels people classify with ("a photo of a Shirts").
:class:`TemplateCaptionBuilder` therefore draws, per item and per epoch, one of several templates
filled from the item's attributes; :class:`ColumnCaptionBuilder` uses caption columns as they are.

Draws are a pure function of ``(seed, epoch, index)``: no RNG state to save, identical on every
data-parallel rank and after a resume.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import string
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Protocol

from fashionclip.data.colours import colour_tone
from fashionclip.data.everyday import everyday_article_names
from fashionclip.errors import FashionCLIPError

#: Caption templates for KAGL: each item gets one of these per epoch, sampled with the weights in
#: :data:`DEFAULT_KAGL_TEMPLATE_WEIGHTS`. Fields: name (productDisplayName), gender, masterCategory,
#: subCategory, articleType, article (articleType in the singular, lower case), article_synonym
#: (one general-English name of the article type, drawn per epoch from the builder's synonym
#: table), article_broader (one word for what the article type is a kind of, "Jackets" -> coat,
#: from the same table's ``broader`` words), article_everyday (one everyday name of the article
#: type from :func:`fashionclip.data.everyday.everyday_article_names`, "Jackets" -> coat, parka;
#: the words search understands), baseColour, colour (lower case), tone ("dark" / "light" from the colour's CIE L*, empty
#: for mid tones: :func:`fashionclip.data.colours.colour_tone`), season, usage, year. Templates
#: whose fields are empty for an item are not drawn.
DEFAULT_KAGL_TEMPLATES: tuple[str, ...] = (
    "{name}",
    "a photo of a {articleType}",
    "a photo of a {article}",
    "{articleType}",
    "{gender} {baseColour} {articleType}",
    "a {colour} {article}",
    "{usage} {articleType} for {gender}",
    "a photo of a {colour} {article} for {gender}",
    "{season} {usage} {articleType}",
    "{baseColour} {subCategory} for {gender}",
    "a photo of a {article_synonym}",
)
DEFAULT_KAGL_TEMPLATE_WEIGHTS: tuple[float, ...] = (
    3.0,
    1.0,
    1.0,
    0.5,
    1.0,
    1.0,
    0.5,
    1.0,
    0.5,
    0.5,
    1.0,
)

#: The packaged synonym table (built by ``tools/build_article_synonyms.py``): for 53 of KAGL's 143
#: article types, WordNet 3.0 synonyms and kinds ("Sweaters" -> jumper, cardigan, pullover, ...).
#: KAGL's words are one catalogue's; a frozen text tower only learns the words it is shown.
BUILTIN_SYNONYMS = "wordnet"


def load_article_synonyms(source: str | os.PathLike | None) -> dict[str, list[str]]:
    """An article-type synonym table: ``"wordnet"`` (packaged), a JSON file, or None / ``"none"``
    (empty).

    A file holds ``{"aliases": {"Sweaters": ["jumper", ...], ...}}`` or the mapping itself.
    """
    return load_article_tables(source)[0]


def load_article_broader(source: str | os.PathLike | None) -> dict[str, list[str]]:
    """The ``broader`` words of the same table (``{"broader": {"Jackets": ["coat"], ...}}``):
    what each article type is a kind of; empty when the table has none."""
    return load_article_tables(source)[1]


def load_article_tables(
    source: str | os.PathLike | None,
) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Both word tables of one synonym source, read once: (aliases, broader)."""
    if source is None or str(source).lower() == "none":
        return {}, {}
    if str(source) == BUILTIN_SYNONYMS:
        text = resources.files("fashionclip.data").joinpath("article_synonyms.json").read_text()
        where = "the packaged article_synonyms.json"
    else:
        path = Path(source)
        if not path.is_file():
            raise FashionCLIPError(f"synonym table {str(path)!r} not found")
        text, where = path.read_text(encoding="utf-8"), str(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise FashionCLIPError(f"{where}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        return _word_table(None, where), {}
    return _word_table(data.get("aliases", data), where), _word_table(
        data.get("broader", {}), where
    )


def _word_table(table: object, where: str) -> dict[str, list[str]]:
    if not isinstance(table, dict) or not all(
        isinstance(v, list) and all(isinstance(w, str) for w in v) for v in table.values()
    ):
        raise FashionCLIPError(f"{where}: expected a mapping of article type -> list of names")
    return {str(k): [w for w in v if w.strip()] for k, v in table.items()}


def template_fields(template: str, what: str) -> list[str]:
    """The field names of a ``str.format`` template, in order; a clear error when it does not
    parse (``what`` names the kind of template in the message)."""
    try:
        return [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as exc:
        raise FashionCLIPError(f"bad {what} template {template!r}: {exc}") from None


def template_field(template: str) -> str:
    """The one field of a label-prompt template; a clear error otherwise."""
    names = template_fields(template, "label prompt")
    if len(names) != 1 or not names[0].isidentifier():
        raise FashionCLIPError(
            f"label prompt template {template!r} must name exactly one field, "
            "like 'a photo of a {baseColour}'"
        )
    return names[0]


#: Template fields filled from a word list per article type (one caption per word).
WORD_LIST_FIELDS = ("article_synonym", "article_broader", "article_everyday")

#: Attribute values that mean "unknown" and make a template unusable for an item.
MISSING_VALUES = frozenset({"", "na", "nan", "none", "null"})


class CaptionBuilder(Protocol):
    """Turns a record (a mapping of column -> value) into captions."""

    def candidates(self, record: Mapping[str, object]) -> list[str]:
        """Every caption this builder can give the record (for caching text embeddings)."""
        ...

    def sample(self, record: Mapping[str, object], rng: random.Random) -> str:
        """One caption for a training epoch; raises ValueError when the record has none."""
        ...

    def eval_caption(self, record: Mapping[str, object]) -> str:
        """The fixed caption used for validation."""
        ...


def sample_rng(seed: int, epoch: int, index: int, salt: str = "") -> random.Random:
    """A random generator determined by ``(seed, epoch, index)`` (same on every process)."""
    digest = hashlib.blake2b(f"{seed}:{epoch}:{index}:{salt}".encode(), digest_size=8).digest()
    return random.Random(int.from_bytes(digest, "little"))


def caption_id(text: str) -> int:
    """A stable 63-bit id of a caption string (equal strings share an id on every process)."""
    return (
        int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little") >> 1
    )


def _clean(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value != value:  # NaN
        return ""
    text = " ".join(str(value).split())
    return "" if text.lower() in MISSING_VALUES else text


class ColumnCaptionBuilder:
    """Captions taken from one or more table columns; per epoch one non-empty column is drawn."""

    def __init__(self, columns: str | Sequence[str]) -> None:
        self.columns = [columns] if isinstance(columns, str) else list(columns)
        if not self.columns:
            raise FashionCLIPError("a column caption builder needs at least one caption column")

    def candidates(self, record: Mapping[str, object]) -> list[str]:
        return list(
            dict.fromkeys(c for c in (_clean(record.get(col)) for col in self.columns) if c)
        )

    def sample(self, record: Mapping[str, object], rng: random.Random) -> str:
        options = self.candidates(record)
        if not options:
            raise ValueError("no caption")
        return options[rng.randrange(len(options))] if len(options) > 1 else options[0]

    def eval_caption(self, record: Mapping[str, object]) -> str:
        caption = _clean(record.get(self.columns[0]))
        if not caption:
            caption = next(iter(self.candidates(record)), "")
        if not caption:
            raise ValueError("no caption")
        return caption


_SINGULAR_EXCEPTIONS = {
    "jeans": "jeans",
    "shorts": "shorts",
    "trousers": "trousers",
    "track pants": "track pants",
    "leggings": "leggings",
    "capris": "capris",
    "tights": "tights",
    "sunglasses": "sunglasses",
    "lounge pants": "lounge pants",
    "trunk": "trunk",
    "briefs": "briefs",
    "boxers": "boxers",
    "jeggings": "jeggings",
    "salwar": "salwar",
    "patiala": "patiala",
    "churidar": "churidar",
    "dupatta": "dupatta",
    "tshirts": "t-shirt",
    "innerwear vests": "innerwear vest",
    "cufflinks": "pair of cufflinks",
    "flip flops": "pair of flip flops",
    "sports shoes": "pair of sports shoes",
    "casual shoes": "pair of casual shoes",
    "formal shoes": "pair of formal shoes",
    "heels": "pair of heels",
    "flats": "pair of flats",
    "sandals": "pair of sandals",
    "sports sandals": "pair of sports sandals",
    "socks": "pair of socks",
    "earrings": "pair of earrings",
    "gloves": "pair of gloves",
    "stockings": "pair of stockings",
    "lip gloss": "lip gloss",
    "nail polish": "nail polish",
    "perfume and body mist": "perfume",
    "booties": "pair of booties",
    "lounge shorts": "lounge shorts",
    "lounge tshirts": "lounge t-shirt",
    "nail essentials": "nail essentials",
    "necklace and chains": "necklace",
    "rain trousers": "rain trousers",
    "scarves": "scarf",
    "ties": "tie",
    "ties and cufflinks": "tie and cufflinks",
    "suspenders": "pair of suspenders",
    "shoe laces": "pair of shoe laces",
}


def singular_label(label: str) -> str:
    """KAGL article types are plural ("Watches", "Tshirts"): a lower-case singular for captions."""
    text = _clean(label).lower()
    if not text:
        return ""
    if text in _SINGULAR_EXCEPTIONS:
        return _SINGULAR_EXCEPTIONS[text]
    head, _, last = text.rpartition(" ")
    return f"{head} {singular_word(last)}".strip()


def singular_word(word: str) -> str:
    """English plural -> singular by suffix ("watches" -> "watch", "caps" -> "cap")."""
    for suffix, repl in (("ches", "ch"), ("shes", "sh"), ("sses", "ss"), ("ies", "y")):
        if word.endswith(suffix):
            return word[: -len(suffix)] + repl
    return word[:-1] if word.endswith("s") and not word.endswith("ss") else word


class TemplateCaptionBuilder:
    """Captions filled from record fields by weighted templates (``str.format`` syntax).

    ``aliases`` maps template field names to record columns (KAGL: ``name`` ->
    ``productDisplayName``). Derived fields: ``article`` (``articleType`` in the singular, lower
    case), ``colour`` (``baseColour`` in lower case), ``tone`` (``"dark"``/``"light"``/empty,
    :func:`~fashionclip.data.colours.colour_tone` of ``baseColour``), ``article_synonym`` (one of
    ``article_synonyms[articleType]``: drawn uniformly when sampling, each one a candidate) and
    ``article_broader`` (the same, from ``article_broader[articleType]``) and
    ``article_everyday`` (the same, from ``article_everyday[articleType]``). A
    template is skipped for a record when one of its fields is missing; a record with no usable
    template is an error (``ValueError``).
    """

    def __init__(
        self,
        templates: Sequence[str],
        weights: Sequence[float] | None = None,
        *,
        eval_template: str = "{name}",
        aliases: Mapping[str, str] | None = None,
        article_synonyms: Mapping[str, Sequence[str]] | None = None,
        article_broader: Mapping[str, Sequence[str]] | None = None,
        article_everyday: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        if not templates:
            raise FashionCLIPError("a template caption builder needs at least one template")
        if weights is not None and len(weights) != len(templates):
            raise FashionCLIPError(
                f"{len(weights)} template weights for {len(templates)} templates"
            )
        if weights is not None and (any(w < 0 for w in weights) or sum(weights) <= 0):
            raise FashionCLIPError("template weights must be >= 0 with a positive sum")
        self.templates = list(templates)
        self.weights = (
            [float(w) for w in weights] if weights is not None else [1.0] * len(templates)
        )
        self.eval_template = eval_template
        self.aliases = dict(aliases or {})
        tables = (article_synonyms, article_broader, article_everyday)
        #: Word-list field -> article type -> its words (the order of WORD_LIST_FIELDS).
        self.word_lists = {
            field: {k: list(v) for k, v in (table or {}).items() if v}
            for field, table in zip(WORD_LIST_FIELDS, tables, strict=True)
        }
        self._fields = []
        for template in [*self.templates, eval_template]:
            names = template_fields(template, "caption")
            if any(n == "" or not re.fullmatch(r"\w+", n) for n in names):
                raise FashionCLIPError(
                    f"caption template {template!r}: use named fields like {{articleType}}"
                )
            if len(set(names) & set(WORD_LIST_FIELDS)) > 1:
                raise FashionCLIPError(
                    f"caption template {template!r}: use at most one of "
                    + ", ".join(f"{{{f}}}" for f in WORD_LIST_FIELDS)
                )
            self._fields.append(names)

    def _values(self, record: Mapping[str, object]) -> dict[str, str]:
        values = {str(k): _clean(v) for k, v in record.items()}
        for alias, column in self.aliases.items():
            values.setdefault(alias, values.get(column, ""))
        if "articleType" in values:
            values.setdefault("article", singular_label(values["articleType"]))
        if "baseColour" in values:
            values.setdefault("colour", values["baseColour"].lower())
            values.setdefault("tone", colour_tone(values["baseColour"]))
        return values

    def _fill(self, template_index: int, values: Mapping[str, str]) -> list[str]:
        """Every caption one template gives the record (several when it uses a word list:
        article_synonym, article_broader or article_everyday; at most one of them)."""
        names = self._fields[template_index]
        kind = values.get("articleType", "")
        lists = {field: words.get(kind, []) for field, words in self.word_lists.items()}
        if any(not (lists[n] if n in lists else values.get(n)) for n in names):
            return []
        template = (
            self.templates[template_index]
            if template_index < len(self.templates)
            else self.eval_template
        )
        fields = {n: values[n] for n in names if n not in lists}
        used = [n for n in dict.fromkeys(names) if n in lists]
        if not used:
            return [" ".join(template.format(**fields).split())]
        return [
            " ".join(template.format(**fields, **{used[0]: choice}).split())
            for choice in lists[used[0]]
        ]

    def candidates(self, record: Mapping[str, object]) -> list[str]:
        values = self._values(record)
        filled = (c for i in range(len(self.templates)) for c in self._fill(i, values))
        return list(dict.fromkeys(filled))

    def sample(self, record: Mapping[str, object], rng: random.Random) -> str:
        values = self._values(record)
        options: list[list[str]] = []
        weights: list[float] = []
        for i, weight in enumerate(self.weights):
            if weight <= 0:
                continue
            captions = self._fill(i, values)
            if captions:
                options.append(captions)
                weights.append(weight)
        if not options:
            raise ValueError("no caption template fits this item")
        captions = rng.choices(options, weights=weights, k=1)[0]
        return captions[rng.randrange(len(captions))] if len(captions) > 1 else captions[0]

    def eval_caption(self, record: Mapping[str, object]) -> str:
        captions = self._fill(len(self.templates), self._values(record))
        caption = captions[0] if captions else ""
        if not caption:
            raise ValueError(
                f"the validation template {self.eval_template!r} does not fit this item"
            )
        return caption


#: KAGL column aliases for templates.
KAGL_ALIASES = {"name": "productDisplayName"}


def kagl_caption_builder(
    templates: Sequence[str] | None = None,
    weights: Sequence[float] | None = None,
    eval_template: str = "{name}",
    article_synonyms: str | os.PathLike | None = BUILTIN_SYNONYMS,
) -> TemplateCaptionBuilder:
    """The KAGL builder: product name plus attribute templates (defaults from the train config).

    ``article_synonyms`` is the table behind ``{article_synonym}`` and ``{article_broader}``
    (its ``aliases`` and ``broader`` words): the packaged WordNet table, a JSON file of your
    own, or None (templates using the fields are then never drawn). ``{article_everyday}`` is
    always the search's everyday names (:mod:`fashionclip.data.everyday`).
    """
    if templates is None:
        templates = DEFAULT_KAGL_TEMPLATES
        weights = DEFAULT_KAGL_TEMPLATE_WEIGHTS if weights is None else weights
    aliases, broader = load_article_tables(article_synonyms)
    return TemplateCaptionBuilder(
        templates,
        weights,
        eval_template=eval_template,
        aliases=KAGL_ALIASES,
        article_synonyms=aliases,
        article_broader=broader,
        article_everyday=everyday_article_names(),
    )
