"""The "weak match" threshold of a model: below it, a text query's best score means "nothing
in the catalog matches this well" and the page says so.

Cosine scores are not comparable across models, so the threshold is a per-model setting: a
``serving.json`` file in the model's folder (``{"fingerprint": ..., "weak_match_below":
...}``), used only when its fingerprint is the loaded weights' own (retrained weights do not
inherit a stale value). ``benchmarks/weak_match.py`` chooses it from data (docs/faults.md);
``fashionclip serve --weak-match-below`` overrides it. ``GET /api/info`` reports it
(``null``: no hint).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SETTINGS_FILE = "serving.json"


def _model_folder(name: str) -> Path | None:
    from fashionclip.models.loading import DEFAULT_MODEL, default_model_path

    if name == DEFAULT_MODEL:
        return default_model_path()
    path = Path(name).expanduser()
    return path if path.is_dir() else None


def weak_match_below(model: Any) -> float | None:
    """The model's recorded threshold, or None when its folder records none for its weights."""
    name = str(getattr(model, "name", ""))
    folder = _model_folder(name) if name else None
    if folder is None or not (folder / SETTINGS_FILE).is_file():
        return None
    try:
        settings = json.loads((folder / SETTINGS_FILE).read_text(encoding="utf-8"))
        identity = getattr(model, "identity", None)
        fingerprint = getattr(identity, "fingerprint", None)
        if settings.get("fingerprint") != fingerprint:
            return None
        value = settings.get("weak_match_below")
        return None if value is None else float(value)
    except (OSError, ValueError, TypeError, AttributeError):
        return None  # an unreadable settings file only costs the hint
