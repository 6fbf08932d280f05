"""The "weak match" threshold of a model: below it, a text query's best score means "nothing
in the catalog matches this well" and the page says so.

Scores are not comparable across models, nor across search modes (a cosine in ``vector``
mode, a fused score in ``hybrid``), so the threshold is a per-model, per-mode setting: a
``serving.json`` file in the model's folder (``{"fingerprint": ..., "weak_match_below":
{"vector": ..., "hybrid": ...}}``; a bare number is the ``vector`` threshold), used only when
its fingerprint is the loaded weights' own (retrained weights do not inherit a stale value). ``benchmarks/weak_match.py`` chooses it from data (docs/faults.md);
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


Thresholds = dict[str, float]


def parse_thresholds(value: object) -> Thresholds | None:
    """``{mode: threshold}`` from a settings value: a mapping, or a number (``vector`` mode);
    None when there is none."""
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return {"vector": float(value)}
    if isinstance(value, dict):
        return {str(mode): float(cut) for mode, cut in value.items() if cut is not None} or None
    raise ValueError(f"weak_match_below must be a number or a mapping, got {value!r}")


def weak_match_below(model: Any) -> Thresholds | None:
    """The model's recorded thresholds per search mode, or None when its folder records none
    for its weights."""
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
        return parse_thresholds(settings.get("weak_match_below"))
    except (OSError, ValueError, TypeError, AttributeError):
        return None  # an unreadable settings file only costs the hint
