"""The search service: ``SearchService`` (no HTTP) and ``create_app`` (FastAPI + web page).

Run it with ``fashionclip serve --catalog DIR``; see :mod:`fashionclip.serve.app` for routes.
FastAPI is imported only by :func:`create_app`, so the service works without the extra.
"""

from __future__ import annotations

from typing import Any

from fashionclip.serve.search import SearchService, ServiceLimits, UploadTooLargeError

__all__ = ["SearchService", "ServiceLimits", "UploadTooLargeError", "create_app"]


def create_app(*args: Any, **kwargs: Any) -> Any:
    """See :func:`fashionclip.serve.app.create_app` (imported lazily: needs ``[serve]``)."""
    from fashionclip.serve.app import create_app as _create_app

    return _create_app(*args, **kwargs)
