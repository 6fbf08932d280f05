"""tools/build_article_synonyms.py on a tiny WordNet in WordNet's own file format."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

TOOL = Path(__file__).resolve().parents[1] / "tools" / "build_article_synonyms.py"


def _tool():
    spec = importlib.util.spec_from_file_location("build_article_synonyms", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _synset(offset: str, lexfile: str, lemmas: list[str], pointers: list[tuple[str, str]]) -> str:
    words = " ".join(f"{w} 0" for w in lemmas)
    ptrs = " ".join(f"{symbol} {target} n 0000" for symbol, target in pointers)
    return f"{offset} {lexfile} n {len(lemmas):02x} {words} {len(pointers):03d} {ptrs} | gloss"


def _write_wordnet(folder: Path) -> None:
    # clothing <- garment <- sweater (two lemmas) <- pullover; "belt" sense 1 is a machine part
    synsets = [
        _synset("00000001", "06", ["clothing"], [("~", "00000002")]),
        _synset("00000002", "06", ["garment"], [("@", "00000001"), ("~", "00000003")]),
        _synset("00000003", "06", ["sweater", "jumper"], [("@", "00000002"), ("~", "00000004")]),
        _synset("00000004", "06", ["pullover", "slipover"], [("@", "00000003")]),
        _synset("00000005", "06", ["device"], [("~", "00000006")]),
        _synset("00000006", "06", ["belt", "conveyor_belt"], [("@", "00000005")]),
        _synset("00000007", "06", ["belt", "girdle"], [("@", "00000002")]),
        _synset("00000008", "04", ["boot"], []),  # not an artifact (noun.act)
    ]
    (folder / "data.noun").write_text("  licence header line\n" + "\n".join(synsets) + "\n")
    index = [
        "belt n 2 1 @ 2 0 00000006 00000007",
        "boot n 1 0 1 0 00000008",
        "sweater n 1 1 @ 1 0 00000003",
    ]
    (folder / "index.noun").write_text("  licence header line\n" + "\n".join(index) + "\n")


def test_aliases_come_from_the_first_fashion_sense(tmp_path):
    tool = _tool()
    _write_wordnet(tmp_path)
    index, synsets = tool.read_index(tmp_path), tool.read_synsets(tmp_path)
    assert tool.article_aliases("Sweaters", index, synsets) == ["jumper", "pullover", "slipover"]
    # the conveyor-belt sense comes first but is not below clothing: the garment sense is used
    assert tool.article_aliases("Belts", index, synsets) == ["girdle"]
    assert tool.article_aliases("Boots", index, synsets) == []  # not an artifact
    assert tool.article_aliases("Casual Shoes", index, synsets) == []  # not in WordNet


def test_broader_words_are_hypernyms_that_name_no_article_type(tmp_path):
    tool = _tool()
    _write_wordnet(tmp_path)
    index, synsets = tool.read_index(tmp_path), tool.read_synsets(tmp_path)
    names = tool.type_names(["Sweaters", "Belts"])
    assert names >= {"sweaters", "sweater", "belts", "belt"}
    # a sweater is a kind of garment; the girdle sense of "belt" too
    assert tool.article_broader("Sweaters", index, synsets, names) == ["garment"]
    assert tool.article_broader("Belts", index, synsets, names) == ["garment"]
    # a hypernym that is itself an article type is left out (the catalog teaches that word)
    assert tool.article_broader("Sweaters", index, synsets, names | {"garment"}) == []
    assert tool.article_broader("Boots", index, synsets, names) == []  # no fashion sense


def test_packaged_table_matches_the_tool_output_format():
    table = json.loads(
        (
            Path(__file__).resolve().parents[1]
            / "src"
            / "fashionclip"
            / "data"
            / "article_synonyms.json"
        ).read_text()
    )
    assert "WordNet 3.0" in table["source"]
    assert len(table["aliases"]) >= 50
    assert table["aliases"] and all(
        len(v) <= _tool().MAX_ALIASES for v in table["aliases"].values()
    )
    types = {t for t in table["aliases"]} | {t for t in table["broader"]}
    names = _tool().type_names(sorted(types))
    assert table["broader"]["Jackets"] == ["coat"]
    assert not any(set(words) & names for words in table["broader"].values())
