"""fashionclip: zero-shot classification, catalog search, training and evaluation of CLIP-style
fashion models (after Chia et al., Sci Rep 2022)."""

from __future__ import annotations

import os
from typing import Any

# OpenMP threads that spin while waiting slow torch down several-fold on a busy machine (measured
# up to 5x on 2 shared cores); passive waiting costs nothing when the CPU is free. It only takes
# effect before torch is first imported, and an explicit setting by the user wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

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


def __getattr__(name: str) -> Any:
    # Catalog pulls in the store; import it lazily so `import fashionclip` stays light.
    if name == "Catalog":
        from fashionclip.index import Catalog

        return Catalog
    raise AttributeError(f"module 'fashionclip' has no attribute {name!r}")
