"""Errors and row types of the on-disk store (:mod:`.store`), kept apart so the store itself
stays about SQL and files."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

from fashionclip.errors import FashionCLIPError

#: The catalog's SQLite file inside its folder.
DB_NAME = "catalog.sqlite"


class CatalogNotFoundError(FashionCLIPError):
    """The folder is not a catalog (no catalog.sqlite), or it does not exist."""


class CatalogFormatError(FashionCLIPError):
    """The catalog was written by a newer, incompatible version of fashionclip, or is damaged."""


class CatalogDamagedError(CatalogFormatError):
    """A file of the catalog is missing, truncated or garbage; the message names it."""

    def __init__(self, root: Path, what: str, repairable: bool = True) -> None:
        hint = (
            f"run `fashionclip check --catalog {root} --repair` to salvage it"
            if repairable
            else "it cannot be repaired (the vector segments hold no product ids): restore "
            f"{DB_NAME} from a backup or rebuild the catalog with `fashionclip index`"
        )
        super().__init__(f"catalog {root} is damaged: {what}; {hint}")
        self.what = what
        self.repairable = repairable


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


class ProductRow(NamedTuple):
    """A product to store with a new vector: metadata as JSON text and as a mapping."""

    id: str
    image: str | None
    metadata_json: str
    content_hash: str | None
    metadata: Mapping[str, Any]


class MetadataUpdate(NamedTuple):
    """A product whose vector stays and whose image path or metadata changes."""

    id: str
    image: str | None
    metadata_json: str
    metadata: Mapping[str, Any]


class StoredProduct(NamedTuple):
    """A products row as stored (metadata still JSON text)."""

    id: str
    slot: int
    content_hash: str | None
    image: str | None
    metadata_json: str
    updated_at: str
