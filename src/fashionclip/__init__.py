"""fashionclip: zero-shot classification, catalog search, training and evaluation of CLIP-style
fashion models (after Chia et al., Sci Rep 2022)."""

from __future__ import annotations

from fashionclip.errors import FashionCLIPError
from fashionclip.models import FashionCLIP, ZeroShotPrediction, load

__version__ = "0.1.0"

__all__ = [
    "Catalog",
    "FashionCLIP",
    "FashionCLIPError",
    "ZeroShotPrediction",
    "__version__",
    "load",
]


def __getattr__(name: str):
    # Catalog pulls in the store; import it lazily so `import fashionclip` stays light.
    if name == "Catalog":
        from fashionclip.index import Catalog

        return Catalog
    raise AttributeError(f"module 'fashionclip' has no attribute {name!r}")
