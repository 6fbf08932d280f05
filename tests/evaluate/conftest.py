"""Fixtures of the evaluation tests: the real-data folder (same rule as tests/conftest.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REAL_DATA = Path(
    os.environ.get("FASHIONCLIP_DATA_DIR", Path(__file__).resolve().parents[3] / "shared" / "data")
)


@pytest.fixture(scope="session")
def ccp_data_dir() -> Path:
    """The data folder holding ccp_garments/ (skips when the real data is absent)."""
    if not (REAL_DATA / "ccp_garments" / "splits.csv").is_file():
        pytest.skip(f"CCP garments data not found at {REAL_DATA / 'ccp_garments'}")
    return REAL_DATA
