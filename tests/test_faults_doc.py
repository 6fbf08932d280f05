"""docs/faults.md names a test for every fault case; every named test must exist."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "faults.md"
NODE = re.compile(r"`(tests/[\w/]+\.py)::(\w+)`")


def _rows() -> list[str]:
    lines = DOC.read_text(encoding="utf-8").splitlines()
    return [line for line in lines if line.startswith("| ") and not line.startswith("| Case")]


def _functions(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}


def test_every_case_names_a_test_and_every_named_test_exists() -> None:
    rows = _rows()
    assert len(rows) >= 40, "the fault table lost its rows"
    missing: list[str] = []
    for row in rows:
        nodes = NODE.findall(row)
        assert nodes, f"a case without a test: {row[:80]}"
        for file, name in nodes:
            path = REPO / file
            if not path.is_file() or name not in _functions(path):
                missing.append(f"{file}::{name}")
    assert not missing, f"docs/faults.md names tests that do not exist: {missing}"
