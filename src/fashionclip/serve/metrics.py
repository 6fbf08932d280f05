"""Request counts and latency per endpoint, kept in memory (what ``GET /api/metrics`` shows).

Endpoints are keyed by method and route template (``POST /api/search/text``), never by the raw
path, so that ids in paths cannot grow the table without bound. Latency percentiles are over
the most recent ``window`` requests of each endpoint; counts and the mean cover all requests.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class _EndpointStats:
    count: int = 0
    client_errors: int = 0
    server_errors: int = 0
    total_seconds: float = 0.0
    max_seconds: float = 0.0
    recent: deque[float] = field(default_factory=lambda: deque(maxlen=2048))


class RequestMetrics:
    """Thread-safe per-endpoint counters; ``record`` is called once per finished request."""

    def __init__(self, window: int = 2048) -> None:
        self._window = window
        self._lock = threading.Lock()
        self._stats: dict[str, _EndpointStats] = {}
        self._started = time.time()
        self._in_flight = 0

    def started(self) -> None:
        with self._lock:
            self._in_flight += 1

    def record(self, endpoint: str, seconds: float, status: int) -> None:
        with self._lock:
            self._in_flight -= 1
            stats = self._stats.get(endpoint)
            if stats is None:
                stats = self._stats[endpoint] = _EndpointStats(recent=deque(maxlen=self._window))
            stats.count += 1
            stats.total_seconds += seconds
            stats.max_seconds = max(stats.max_seconds, seconds)
            stats.recent.append(seconds)
            if 400 <= status < 500:
                stats.client_errors += 1
            elif status >= 500:
                stats.server_errors += 1

    def snapshot(self) -> dict[str, Any]:
        """JSON-ready totals and, per endpoint, counts and latency in milliseconds."""
        with self._lock:
            items = [(name, s, list(s.recent)) for name, s in self._stats.items()]
            in_flight = self._in_flight
        endpoints: dict[str, Any] = {}
        for name, stats, recent in sorted(items):
            p50, p95, p99 = np.percentile(recent, [50, 95, 99]) if recent else (0.0, 0.0, 0.0)
            endpoints[name] = {
                "count": stats.count,
                "client_errors": stats.client_errors,
                "server_errors": stats.server_errors,
                "mean_ms": round(1000 * stats.total_seconds / max(1, stats.count), 3),
                "p50_ms": round(1000 * float(p50), 3),
                "p95_ms": round(1000 * float(p95), 3),
                "p99_ms": round(1000 * float(p99), 3),
                "max_ms": round(1000 * stats.max_seconds, 3),
            }
        return {
            "uptime_s": round(time.time() - self._started, 3),
            "requests": sum(s.count for _, s, _ in items),
            "in_flight": in_flight,
            "latency_window": self._window,
            "endpoints": endpoints,
        }
