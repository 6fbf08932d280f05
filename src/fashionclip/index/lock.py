"""One writer per catalog: an advisory ``flock`` on ``<catalog>/writer.lock``.

SQLite serialises single transactions, but an indexing run is many of them: it decides what
to embed from the state it read first, so two concurrent runs both embed (and both commit)
the same products, leaving the first run's rows as tombstones. Every writing operation
(``index``, ``add_embeddings``, ``remove``, ``compact``, ``build_ann``, ``drop_ann``,
``check --repair``) therefore holds this lock from start to end. A second process fails at
once with "another process is writing to catalog ... (pid N)", or waits (``wait=True``,
``fashionclip index --wait``). Readers never take it.

Within one process the lock is re-entrant per thread (``index --ann`` holds it around
``index`` and ``build_ann``); other threads of the same process wait, as writes were always
serialised inside a process. The kernel drops a ``flock`` when its holder dies, so a killed
writer never leaves a stale lock; the file itself stays (deleting lock files races).
"""

from __future__ import annotations

import fcntl
import functools
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar, cast

from fashionclip.errors import FashionCLIPError

LOCK_NAME = "writer.lock"


class CatalogLockedError(FashionCLIPError):
    """Another process is writing to the catalog."""


class _ProcessHold:
    """This process's hold on one catalog's lock file: the fd, the owning thread, a depth."""

    def __init__(self) -> None:
        self.mutex = threading.RLock()
        self.fd: int | None = None
        self.depth = 0


_holds: dict[str, _ProcessHold] = {}
_holds_lock = threading.Lock()


def _hold_for(root: Path) -> _ProcessHold:
    key = os.path.realpath(root)
    with _holds_lock:
        return _holds.setdefault(key, _ProcessHold())


def holder_pid(root: Path) -> str:
    """What the lock file says about its holder ("pid N: indexing"), or "unknown"."""
    try:
        text = (Path(root) / LOCK_NAME).read_text(encoding="utf-8").strip()
    except OSError:
        return "unknown"
    return text or "unknown"


def _acquire_file(root: Path, wait: bool, action: str) -> int:
    path = Path(root) / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise FashionCLIPError(f"cannot create the writer lock {path}: {exc}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        os.close(fd)
        raise CatalogLockedError(
            f"another process is writing to catalog {root} ({holder_pid(root)}); wait for it "
            "to finish (or use --wait), then run this again"
        ) from None
    except BaseException:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()}: {action}\n".encode(), 0)
    return fd


@contextmanager
def writer_lock(root: Path, *, wait: bool = False, action: str = "writing") -> Iterator[None]:
    """Hold the catalog's writer lock for the ``with`` block (re-entrant in one thread).

    Raises :class:`CatalogLockedError` when another process holds it and ``wait`` is false.
    """
    hold = _hold_for(root)
    if not hold.mutex.acquire(blocking=True):  # pragma: no cover - blocking acquire
        raise AssertionError("unreachable")
    try:
        if hold.depth == 0:
            hold.fd = _acquire_file(root, wait, action)
        hold.depth += 1
        try:
            yield
        finally:
            hold.depth -= 1
            if hold.depth == 0 and hold.fd is not None:
                os.ftruncate(hold.fd, 0)
                fcntl.flock(hold.fd, fcntl.LOCK_UN)
                os.close(hold.fd)
                hold.fd = None
    finally:
        hold.mutex.release()


_Method = TypeVar("_Method", bound=Callable[..., Any])


def writes(action: str) -> Callable[[_Method], _Method]:
    """Decorate a :class:`~fashionclip.index.catalog.Catalog` method that writes: it runs
    holding the writer lock of ``self.path`` (failing fast when another process holds it)."""

    def decorate(method: _Method) -> _Method:
        @functools.wraps(method)
        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            with writer_lock(self.path, action=action):
                return method(self, *args, **kwargs)

        return cast(_Method, wrapper)

    return decorate
