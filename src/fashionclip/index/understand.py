"""Query understanding: catalog vocabulary recognised in a text query.

The vocabulary is the set of values of the catalog's attribute columns (columns with few
distinct text values: colours, genders, article types, usage, season, a brand column when a
catalog has one). A query's words are lower-cased, possessives dropped ("women's" -> "women")
and put in the singular (:func:`fashionclip.data.captions.singular_word`), then matched
longest phrase first against the values ("formal shoes" before "formal"), joined forms
("t shirt" -> "Tshirts"), the everyday synonyms of :data:`SYNONYMS`, the everyday names of
:data:`EVERYDAY_NAMES`, the WordNet names of ``data/article_synonyms.json``, and last close
misspellings.

A misspelling is a word of 4+ letters within :func:`max_edits` edits (insertions, deletions,
substitutions and swaps of two neighbouring letters: Damerau's four kinds of typing error) of
a known form, the closest one winning ("shrit" is one swap from "shirt", two edits from
"short"; among equally close ones, the most similar by difflib's ratio). It is corrected
only towards a catalog value or an everyday synonym, never towards an everyday name ("parina",
a brand, is two edits from "parka") or a rare WordNet name ("slipper" is two edits from
"slipover"), and only when the word is neither an English word (``data/english_words.json``,
from WordNet, with function words): "skirt" is not a misspelling of "shirt" even in a catalog
that sells no skirts; nor a word of the catalog's own text (a brand: "Shree" is not a misspelt
"saree"), when the caller can tell (``catalog_word``; hybrid search asks its text index).

The result, ``{column: [values]}``, is used by :mod:`.hybrid` as a soft boost (never a hard
filter) and returned with the results so that a page can show it as removable chips.
"""

from __future__ import annotations

import difflib
import functools
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources

from fashionclip.data.captions import singular_word
from fashionclip.data.everyday import EVERYDAY_NAMES, MATERIAL_SYNONYMS, SYNONYMS
from fashionclip.index.text import MAX_ATTRIBUTE_VALUES, WORD

#: WordNet names that are also everyday words or brand names in catalogs ("turtle", "band").
_NOISY_ALIASES = frozenset(
    [
        "turtle",
        "band",
        "lid",
        "sack",
        "shift",
        "hunter",
        "brace",
        "sailor",
        "jersey",
        "bag",
        "sheath",
        "uplift",
        "ticker",
        "chap",
        "spat",
        "pusher",
        "thong",
        "locker",
        "vest",
        "shorts",
        "kurta",
        "pant",
        "gown",
        "jumper",
    ]
)
MIN_FUZZY_LETTERS = 4
#: Words of this many letters or more may be two edits from the form they misspell (Lucene's
#: "AUTO" fuzziness: one edit for short words, two for long ones).
TWO_EDIT_LETTERS = 6
#: A value naming two kinds ("Necklace and Chains") is also understood from either one.
_AND = re.compile(r"\s+(?:and|&)\s+", re.IGNORECASE)
_POSSESSIVE = re.compile(r"(?<=\w)['’`]s?\b", re.UNICODE)

Phrase = tuple[str, ...]
Understood = dict[str, list[str]]


#: Garments named only in the plural whose singular is an everyday adjective: kept plural, so
#: that "short kurta", "short sleeve shirt" and "tight jeans" read no Shorts or Tights.
PLURAL_ONLY = frozenset(["shorts", "tights", "briefs"])
#: Plurals the suffix rules of :func:`singular_word` get wrong: with them "Ties" read as "ty"
#: and "Scarves" as "scarve", so "tie", "silk tie" and "scarf" were not understood. (Captions
#: have their own table, ``captions._SINGULAR_EXCEPTIONS``; the suffix rules stay as they are
#: for ``tools/build_article_synonyms.py``, whose committed output the shipped model learnt.)
IRREGULAR_PLURALS = {
    "ties": "tie",
    "booties": "bootie",
    "hoodies": "hoodie",
    "beanies": "beanie",
    "onesies": "onesie",
    "scarves": "scarf",
}


def normalise_words(text: str) -> list[str]:
    """Lower-case singular words of ``text`` (but :data:`PLURAL_ONLY`), possessives dropped."""
    plain = _POSSESSIVE.sub("", text.lower())
    return [_singular(w) for w in WORD.findall(plain)]


def _singular(word: str) -> str:
    """One lower-case word in the singular, as query words and catalog values are matched."""
    if word in PLURAL_ONLY:
        return word
    return IRREGULAR_PLURALS.get(word) or singular_word(word)


def _phrase(text: str) -> Phrase:
    return tuple(normalise_words(text))


def _wordnet_aliases() -> dict[str, list[str]]:
    source = resources.files("fashionclip.data").joinpath("article_synonyms.json")
    try:
        data = json.loads(source.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    aliases = data.get("aliases", {})
    return aliases if isinstance(aliases, dict) else {}


@functools.cache
def english_words() -> frozenset[str]:
    """Correctly spelled English words of 4+ letters (WordNet lemmas; see
    tools/build_english_words.py): never "corrected" into a catalog word."""
    source = resources.files("fashionclip.data").joinpath("english_words.json")
    try:
        words = json.loads(source.read_text(encoding="utf-8")).get("words", "")
    except (OSError, ValueError):
        return frozenset()
    return frozenset(words.split()) if isinstance(words, str) else frozenset()


@dataclass
class Vocabulary:
    """Phrases of the catalog's attribute values -> (column, value) pairs."""

    phrases: dict[Phrase, list[tuple[str, str]]] = field(default_factory=dict)
    joined: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    #: Joined forms a misspelling may be corrected to: catalog values and SYNONYMS only.
    correctable: set[str] = field(default_factory=set)
    #: Forms only a misspelling is corrected to: the singular of a :data:`PLURAL_ONLY` value
    #: ("shrot" -> "short" -> Shorts), which written correctly is an adjective.
    misspelt: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    #: Deletion neighbourhoods of the correctable forms (built on first use; see _fuzzy).
    _near: dict[str, set[str]] | None = field(default=None, repr=False)
    longest: int = 1

    @classmethod
    def build(cls, values: Mapping[str, Sequence[object]]) -> Vocabulary:
        """From ``{column: distinct values}``: catalog values, then synonyms and aliases.

        A column with more than ``MAX_ATTRIBUTE_VALUES`` distinct values is free text (product
        names), not an attribute: it is left out."""
        values = {c: v for c, v in values.items() if len(v) <= MAX_ATTRIBUTE_VALUES}
        vocab = cls()
        # A value in several columns (subCategory "Watches", articleType "Watches") is
        # understood in the column with most distinct values: the finest one.
        finest: dict[str, str] = {}
        for column in sorted(values, key=lambda c: -len(values[c])):
            for value in values[column]:
                if isinstance(value, str) and value.strip() and not _is_number(value):
                    finest.setdefault(value, column)
        present = {(c, v) for v, c in finest.items()}
        for value, column in finest.items():
            vocab._add(_phrase(value), [(column, value)], primary=True)
        size = {column: len(values[column]) for column in values}
        for value, column in finest.items():  # "Necklace and Chains": "necklace", "chains"
            for part in _AND.split(value) if _AND.search(value) else ():
                phrase, pair = _phrase(part), (column, value)
                held = vocab.phrases.get(phrase, [])
                if held and all(size[c] < size[column] for c, _ in held):
                    # "perfume" is also the subCategory "Perfumes" (6 KAGL products): the
                    # finer "Perfume and Body Mist" (607) is understood beside it
                    vocab._put(phrase, [pair])
                else:
                    vocab._add(phrase, [pair])
        for word, (column, wanted) in SYNONYMS.items():
            vocab._add(_phrase(word), [(column, v) for v in wanted if (column, v) in present])
        for key, pairs in list(vocab.joined.items()):
            for plural in PLURAL_ONLY:
                if key.endswith(plural):
                    vocab.misspelt.setdefault(key[: -len(plural)] + plural[:-1], pairs)
        vocab.correctable = set(vocab.joined) | set(vocab.misspelt)
        for word, (column, wanted) in EVERYDAY_NAMES.items():
            vocab._add(_phrase(word), [(column, v) for v in wanted if (column, v) in present])
        by_value = {v: c for c, v in present}
        for value, names in _wordnet_aliases().items():
            if value not in by_value:
                continue
            for name in names:
                if name.lower() not in _NOISY_ALIASES:
                    vocab._add(_phrase(name), [(by_value[value], value)])
        return vocab

    def _add(self, phrase: Phrase, pairs: list[tuple[str, str]], primary: bool = False) -> None:
        if not phrase or not pairs or (phrase in self.phrases and not primary):
            return  # a catalog value wins over a synonym of another value
        if primary and any(c != pairs[0][0] for c, _ in self.phrases.get(phrase, [])):
            return  # "Dress" (subCategory) after "Dresses" (articleType): the finer one only
        self._put(phrase, pairs)

    def _put(self, phrase: Phrase, pairs: list[tuple[str, str]]) -> None:
        for target in (
            self.phrases.setdefault(phrase, []),
            self.joined.setdefault("".join(phrase), []),
        ):
            target.extend(p for p in pairs if p not in target)
        self.longest = max(self.longest, len(phrase))

    def understand(
        self, text: str, catalog_word: Callable[[str], bool] | None = None
    ) -> Understood:
        """``{column: [values]}`` recognised in ``text`` (empty when nothing is).

        ``catalog_word(word)`` tells whether the catalog's own text holds a word: such a word
        (a brand, "Jackie" or "Shree") is what the catalog calls something, never corrected.
        """
        words = normalise_words(text)[:64]
        found: Understood = {}
        material: set[tuple[str, str]] = set()  # values only a material word named
        i = 0
        while i < len(words):
            for n in range(min(self.longest, len(words) - i), 0, -1):
                gram = tuple(words[i : i + n])
                pairs = self.phrases.get(gram) or self.joined.get("".join(gram))
                if pairs is None and n == 1 and not (catalog_word and catalog_word(gram[0])):
                    pairs = self._fuzzy(gram[0])
                if pairs:
                    is_material = " ".join(gram) in MATERIAL_SYNONYMS
                    for column, value in pairs:
                        listed = found.setdefault(column, [])
                        if value not in listed:
                            listed.append(value)
                            if is_material:
                                material.add((column, value))
                        elif not is_material:
                            material.discard((column, value))
                    i += n
                    break
            else:
                i += 1
        return _without_materials(found, material)

    def _fuzzy(self, word: str) -> list[tuple[str, str]] | None:
        if len(word) < MIN_FUZZY_LETTERS or word.isdigit() or word in english_words():
            return None
        limit = max_edits(word)
        best: tuple[int, float, str] | None = None
        for key in self.near(word, limit):
            if abs(len(key) - len(word)) <= limit:
                d = edit_distance(word, key, limit)
                if d > limit:
                    continue
                # equally few edits ("sandle": sandal, bangle): the more similar form wins
                rank = (d, -difflib.SequenceMatcher(None, word, key).ratio(), key)
                best = rank if best is None or rank < best else best
        return (self.joined.get(best[2]) or self.misspelt[best[2]]) if best else None

    def near(self, word: str, limit: int) -> set[str]:
        """Correctable forms that may be within ``limit`` edits of ``word``: those sharing a
        string with it after at most ``limit`` deletions on each side (SymSpell's candidate
        rule: it finds every form within ``limit`` insertions, deletions, substitutions or
        swaps, so only these few are measured exactly; the query costs microseconds)."""
        if self._near is None:
            index: dict[str, set[str]] = {}
            for key in self.correctable:
                for variant in deletions(key, 2):
                    index.setdefault(variant, set()).add(key)
            self._near = index
        if len(word) > max(map(len, self.correctable), default=0) + limit:
            return set()  # out of reach (and a 10 KB "word" has ~10^8 deletion variants)
        found: set[str] = set()
        for variant in deletions(word, limit):
            found |= self._near.get(variant, set())
        return found


def _without_materials(found: Understood, material: set[tuple[str, str]]) -> Understood:
    """``found`` without the values only a material word named ("denim": Jeans) in a column
    where another word named a value too ("denim jacket": Jackets, not Jeans or Jackets)."""
    out: Understood = {}
    for column, values in found.items():
        kept = [v for v in values if (column, v) not in material]
        out[column] = kept or values
    return out


def deletions(word: str, n: int) -> set[str]:
    """``word`` and every string made from it by deleting up to ``n`` letters."""
    out = {word}
    frontier = {word}
    for _ in range(n):
        frontier = {w[:i] + w[i + 1 :] for w in frontier for i in range(len(w))}
        out |= frontier
    return out


def max_edits(word: str) -> int:
    """Edits a misspelling of ``word``'s length may have: 1, or 2 from TWO_EDIT_LETTERS."""
    return 2 if len(word) >= TWO_EDIT_LETTERS else 1


def edit_distance(a: str, b: str, limit: int) -> int:
    """Optimal-string-alignment distance of ``a`` and ``b`` (insert, delete, substitute,
    swap neighbours); any value above ``limit`` is returned as ``limit + 1`` (early stop)."""
    previous: list[int] = []
    row = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        before, previous, row = previous, row, [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = a[i - 1] != b[j - 1]
            row[j] = min(previous[j] + 1, row[j - 1] + 1, previous[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                row[j] = min(row[j], before[j - 2] + 1)
        if min(row) > limit:
            return limit + 1
    return min(row[-1], limit + 1)


def chips(understood: Mapping[str, Sequence[str]]) -> dict[str, str | list[str]]:
    """The understood query as shown to people: a single value as a string, else a list."""
    return {c: (list(v)[0] if len(v) == 1 else list(v)) for c, v in understood.items()}


def _is_number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True
