"""Embedding a catalog on a Ray cluster: the same reader and writer, another embedder.

``fashionclip index --engine ray`` runs :class:`~fashionclip.index.indexer.Indexer` with a
:class:`RayEngine`: the driver (this process) reads the table, hashes the images and decides
what to embed exactly as the local engine does; the images to embed go through Ray Data
``map_batches`` with :class:`EmbedActor`, a callable class that loads the model once per actor
and decodes the images inside the actor. The actor pool is sized to the CPUs/GPUs asked for
(``num_cpus``/``num_gpus`` per actor). The results stream back to the driver, where the
existing :class:`~fashionclip.index.indexer.Writer` commits every ``commit_every`` rows, so the
catalog format, crash safety (committed batches survive, a rerun skips them) and the
skip-unchanged logic are the local ones.

Failure handling: an unreachable ``address`` is a one-line :class:`RayEngineError` (checked
with a TCP probe first: Ray itself would wait for minutes); a worker that dies mid-run is
restarted and its batch retried by Ray (``max_restarts``/``max_task_retries``); when retries
run out, the run stops with a one-line error and keeps its committed batches.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fashionclip.errors import FashionCLIPError, ModelMismatchError
from fashionclip.index.indexer import Embedder, EmbedResult, _ToEmbed

#: Restarts of a dead actor and retries of its batch before the run gives up.
MAX_RETRIES = 3
#: Images sent through the actor pool per Ray Data run (one model load per actor per window).
DEFAULT_WINDOW = 65536
#: Seconds the TCP probe of a cluster address waits.
PROBE_TIMEOUT_S = 5.0


class RayEngineError(FashionCLIPError):
    """Ray is missing, the cluster cannot be reached, or the workers failed for good."""


@dataclass(frozen=True)
class ModelSpec:
    """How an actor loads the model: what the driver loaded, by name or folder.

    On a cluster the folder must exist on every worker (shared storage) or be a hub id in
    each worker's cache; the actor checks the fingerprint against the driver's model.
    """

    name: str | None
    device: str | None = None
    allow_pickle: bool = False

    def __call__(self) -> Any:
        from fashionclip.models import load

        return load(self.name, device=self.device, allow_pickle=self.allow_pickle)


def _identity_field(model: Any, name: str) -> str | None:
    identity = getattr(model, "identity", None)
    if isinstance(identity, dict):
        return identity.get(name)
    return getattr(identity, name, None)


def _fingerprint(model: Any) -> str | None:
    return _identity_field(model, "fingerprint")


class EmbedActor:
    """Ray Data callable class: one model per actor; a batch of image paths -> vectors.

    Output columns: ``pos`` (the input's), ``vector`` (zeros where the image failed) and
    ``error`` ("" when the image was embedded).
    """

    def __init__(
        self, factory: Callable[[], Any], fingerprint: str | None, num_threads: int = 1
    ) -> None:
        import torch

        torch.set_num_threads(max(1, num_threads))
        self.model = factory()
        found = _fingerprint(self.model)
        if fingerprint is not None and found != fingerprint:
            raise ModelMismatchError(
                f"a Ray worker loaded other model weights (fingerprint {found}, the driver's "
                f"is {fingerprint}): give every worker the same model folder"
            )

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        paths = [str(p) for p in batch["image"]]
        encoding = self.model.try_encode_images(paths, batch_size=max(1, len(paths)))
        embeddings = np.asarray(encoding.embeddings, dtype=np.float32)
        dim = embeddings.shape[1] if embeddings.ndim == 2 and len(embeddings) else 0
        if not dim:
            dim = int(getattr(self.model, "embedding_dim", 0) or 1)
        vectors = np.zeros((len(paths), dim), dtype=np.float32)
        vectors[list(encoding.ok_indices)] = embeddings
        errors = np.array([""] * len(paths), dtype=object)
        for failure in encoding.failures:
            errors[failure.index] = failure.reason or "could not be decoded"
        return {"pos": np.asarray(batch["pos"]), "vector": vectors, "error": errors}


@dataclass
class RayOptions:
    """Where and how wide: cluster address (None: a local Ray), actors and their resources.

    ``workers`` None sizes the pool to the cluster: its CPUs (or GPUs) divided by what one
    actor asks for. ``local_cpus`` is the CPU count of a local Ray (default: this machine's).
    """

    address: str | None = None
    workers: int | None = None
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    local_cpus: int | None = None
    window: int = DEFAULT_WINDOW

    def __post_init__(self) -> None:
        if self.workers is not None and self.workers <= 0:
            raise RayEngineError(f"--workers must be positive, got {self.workers}")
        if self.num_cpus <= 0 or self.num_gpus < 0:
            raise RayEngineError("--ray-num-cpus must be > 0 and --ray-num-gpus >= 0")
        if self.window <= 0:
            raise RayEngineError(f"window must be positive, got {self.window}")


def probe(address: str, timeout: float = PROBE_TIMEOUT_S) -> None:
    """Raise :class:`RayEngineError` unless ``host:port`` accepts a TCP connection."""
    if address == "auto":
        return
    target = address.split("://", 1)[-1].rstrip("/")
    host, sep, port = target.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise RayEngineError(
            f"Ray address must look like HOST:PORT (or ray://HOST:PORT): {address!r}"
        )
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise RayEngineError(f"cannot reach the Ray cluster at {address}: {reason}") from None


def _errors_to_stderr() -> Callable[[], None]:
    """Make Ray print its cluster error messages as first lines on stderr; returns an undo.

    Ray prints them (a retried task, with the remote traceback) on *stdout*, which would break
    ``--json`` output. Private Ray API, so only patched where it is found.
    """
    import ray._private.worker as ray_worker

    original = getattr(ray_worker, "print_to_stdstream", None)
    if original is None:  # pragma: no cover - another Ray version
        return lambda: None

    def to_stderr(data: dict[str, Any], ignore_prefix: bool) -> None:
        if data.get("pid") != "raylet" or data.get("is_err"):
            return original(data, ignore_prefix)
        for message in data.get("lines", []):
            first = str(message).split("Error: Traceback")[0].strip().splitlines()
            if first:
                print(f"ray: {first[0]}", file=sys.stderr)

    ray_worker.print_to_stdstream = to_stderr

    def undo() -> None:
        ray_worker.print_to_stdstream = original

    return undo


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """File descriptor 2 to /dev/null for the duration (native code writes there directly)."""
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _import_ray() -> Any:
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise RayEngineError(
            "--engine ray needs Ray Data: pip install 'fashionclip[ray]'"
        ) from None
    return ray


#: The exception line ending a traceback: ``pkg.mod.SomeError: message``.
_RAISED = re.compile(r"^(?:[\w.]+\.)?(\w+(?:Error|Exception|Interrupt)\b.*)$", re.MULTILINE)


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and its causes (Ray's ``cause`` attribute, then ``__cause__``), outermost first."""
    chain: list[BaseException] = []
    inner: BaseException | None = exc
    while isinstance(inner, BaseException) and all(inner is not e for e in chain):
        chain.append(inner)
        inner = getattr(inner, "cause", None) or inner.__cause__
    return chain


def one_line(exc: BaseException) -> str:
    """The most telling reason of a (Ray-wrapped) error, on one line.

    Our own errors win; then the last exception of a remote traceback carried as text (an
    actor's failed ``__init__``); then the first non-empty message in the chain.
    """
    chain = _chain(exc)
    ours = [e for e in chain if isinstance(e, FashionCLIPError)]
    for error in ours or chain:
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(error))  # Ray colours its messages
        raised = [m.group(1) for m in _RAISED.finditer(text.partition("\n")[2])]
        if raised:  # a remote traceback below the first line: its last exception
            return raised[-1].strip()
        head = text.partition("Traceback (most recent call last)")[0]
        lines = [line.strip() for line in head.strip().splitlines() if line.strip()]
        if lines:
            message = re.sub(r"[\s:]*(Last connection error)?[\s:]*$", "", lines[0])
            return message if ours else f"{type(error).__name__}: {message}"
    return type(exc).__name__


class RayEngine:
    """A Ray connection for :meth:`Catalog.index(engine=...) <fashionclip.index.Catalog.index>`.

    Use as a context manager: it connects (or starts a local Ray) on entry and shuts down
    on exit only what it started. ``factory`` loads the model in each actor (default:
    :class:`ModelSpec` of the indexing model's name).
    """

    def __init__(self, options: RayOptions, factory: Callable[[], Any] | None = None) -> None:
        self.options = options
        self.factory = factory
        self.started = False
        self._restore_printer: Callable[[], None] = lambda: None
        self._log_level = logging.NOTSET

    @property
    def window(self) -> int:
        return self.options.window

    def __enter__(self) -> RayEngine:
        ray = _import_ray()
        if self.options.address:
            probe(self.options.address)
        if not ray.is_initialized():
            self._connect(ray)
            self.started = True
        self._restore_printer = _errors_to_stderr()
        # Ray Data logs a failed run with its stack trace; the run's error says it in one line.
        data_logger = logging.getLogger("ray.data")
        self._log_level = data_logger.level
        data_logger.setLevel(logging.CRITICAL)
        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True  # same slot order as the local engine
        context.enable_progress_bars = False  # the indexer has its own
        return self

    def __exit__(self, *exc: object) -> None:
        self._restore_printer()
        logging.getLogger("ray.data").setLevel(self._log_level)
        if self.started:
            import ray

            ray.shutdown()
            self.started = False

    def _connect(self, ray: Any) -> None:
        options = self.options
        quiet = {"logging_level": logging.ERROR, "log_to_driver": False}
        try:
            with _quiet_stderr():  # Ray's C++ client logs a line a second while it retries
                if options.address:
                    ray.init(address=options.address, **quiet)
                else:
                    ray.init(
                        num_cpus=options.local_cpus or os.cpu_count() or 1,
                        include_dashboard=False,
                        **quiet,
                    )
        except Exception as exc:  # ray raises ConnectionError, RuntimeError, ...
            if options.address:
                raise RayEngineError(
                    f"cannot connect to the Ray cluster at {options.address}: {one_line(exc)}"
                ) from None
            raise RayEngineError(f"cannot start a local Ray: {one_line(exc)}") from None

    def pool_size(self) -> int:
        """Actors to start: ``workers``, or as many as the cluster's resources hold."""
        if self.options.workers is not None:
            return self.options.workers
        import ray

        resources = ray.cluster_resources()
        if self.options.num_gpus > 0:
            fit = resources.get("GPU", 0.0) / self.options.num_gpus
        else:
            fit = resources.get("CPU", 1.0) / self.options.num_cpus
        return max(1, int(fit))

    def embedder(self, model: Any, embedding_dim: int, batch_size: int) -> RayEmbedder:
        if self.factory is None:
            self.factory = ModelSpec(_identity_field(model, "name"))
        return RayEmbedder(self, _fingerprint(model), embedding_dim, batch_size)


class RayEmbedder(Embedder):
    """Streams a window of images through the actor pool; the driver assembles the rows."""

    def __init__(
        self, engine: RayEngine, fingerprint: str | None, embedding_dim: int, batch_size: int
    ) -> None:
        super().__init__(None, embedding_dim, batch_size)
        self.engine = engine
        self.fingerprint = fingerprint

    def embed_stream(self, batch: Sequence[_ToEmbed]) -> Iterator[EmbedResult]:
        try:
            yield from self._stream(batch)
        except FashionCLIPError:
            raise
        except Exception as exc:  # RayTaskError, ActorDiedError, UserCodeException...
            raise RayEngineError(
                f"the Ray workers failed: {one_line(exc)}; committed batches are kept, "
                "rerun to finish"
            ) from None

    def _stream(self, batch: Sequence[_ToEmbed]) -> Iterator[EmbedResult]:
        items = [{"pos": i, "image": str(item.record.image)} for i, item in enumerate(batch)]
        for out in self._dataset(items).iter_batches(batch_size=None, batch_format="numpy"):
            part = [batch[int(p)] for p in out["pos"]]
            errors = [str(e) for e in out["error"]]
            ok = [i for i, error in enumerate(errors) if not error]
            failed = [(i, error) for i, error in enumerate(errors) if error]
            vectors = np.asarray(out["vector"], dtype=np.float32)[ok]
            yield EmbedResult(*self.assemble(part, vectors, ok, failed), len(part))

    def _dataset(self, items: list[dict[str, Any]]) -> Any:
        """``items`` through the actor pool: lazy, runs as the driver iterates."""
        import ray

        options = self.engine.options
        remote_args: dict[str, Any] = {
            "num_cpus": options.num_cpus,
            # Ray Data's default is to restart dead actors forever; a poison batch would hang.
            "max_restarts": MAX_RETRIES,
            "max_task_retries": MAX_RETRIES,
        }
        if options.num_gpus:
            remote_args["num_gpus"] = options.num_gpus
        with warnings.catch_warnings():  # the bounds can only go in ray_remote_args (2.60)
            warnings.simplefilter("ignore", DeprecationWarning)
            return ray.data.from_items(items).map_batches(
                EmbedActor,
                fn_constructor_kwargs={
                    "factory": self.engine.factory,
                    "fingerprint": self.fingerprint,
                    "num_threads": max(1, int(options.num_cpus)),
                },
                batch_size=self.batch_size,
                batch_format="numpy",
                compute=ray.data.ActorPoolStrategy(size=self.engine.pool_size()),
                **remote_args,
            )
