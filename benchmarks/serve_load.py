"""Bounded load test of `fashionclip serve` on loopback: text search and "more like this".

Run:  python benchmarks/serve_load.py [--catalog runs/kagl-test] [--model M]
                                      [--clients 1 8 32] [--requests 20] [--k 10]

Starts the real server (`fashionclip serve`, one uvicorn process) on a free 127.0.0.1 port
with the catalog's model (or --model), waits until /api/ready answers, warms it up, then for
each endpoint and each concurrency level runs that many clients, each sending a fixed number
of requests back to back (keep-alive connections). Every scenario is bounded in time
(--max-seconds); requests still running then count as errors. Prints throughput, client-side
p50/p95/p99 latency, the server's own p50 (``took_ms``) and the error count per scenario, and
exits with status 1 if any request failed. Only loopback is ever used.

Text queries are KAGL-like phrases; "more like this" uses ids sampled (seeded) from the
catalog. Default catalog: the KAGL test split that `make demo` builds in runs/kagl-test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
QUERIES = [
    "red dress",
    "men running shoes",
    "black leather handbag",
    "blue denim jeans",
    "white cotton t-shirt",
    "women summer sandals",
    "formal shirt for men",
    "kurta with embroidery",
    "sports watch",
    "aviator sunglasses",
    "pink top for girls",
    "navy blue casual shirt",
    "brown leather belt",
    "high heels for party",
    "grey hooded sweatshirt",
    "gold earrings",
    "green track pants",
    "yellow printed saree",
    "black backpack",
    "striped polo t-shirt",
    "flip flops",
    "silver analog watch for women",
    "boys sports shoes",
    "floral skirt",
    "men casual shorts",
    "purple nail polish",
    "maroon sweater",
    "white sneakers",
    "checked shirt",
    "jacket for winter",
]


@dataclass
class Scenario:
    endpoint: str
    clients: int
    requests: int
    ok: int
    errors: int
    seconds: float
    throughput_rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    server_p50_ms: float
    first_errors: list[str]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(args: argparse.Namespace, port: int, log_path: Path) -> subprocess.Popen:
    command = [
        sys.executable,
        "-m",
        "fashionclip.cli",
        "serve",
        "--catalog",
        str(args.catalog),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--no-progress",
    ]
    if args.model:
        command += ["--model", args.model]
    if args.device:
        command += ["--device", args.device]
    log = open(log_path, "w")  # noqa: SIM115 (closed with the process)
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)


def wait_ready(base: str, process: subprocess.Popen, timeout: float, log_path: Path) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server exited ({process.returncode}):\n{log_path.read_text()}")
        try:
            response = httpx.get(base + "/api/ready", timeout=2)
            if response.status_code == 200:
                return httpx.get(base + "/api/info", timeout=5).json()
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    raise SystemExit(f"the server was not ready after {timeout:.0f}s:\n{log_path.read_text()}")


def body_for(endpoint: str, index: int, k: int, like_ids: list[str]) -> dict:
    if endpoint == "text":
        return {"query": QUERIES[index % len(QUERIES)], "k": k}
    return {"id": like_ids[index % len(like_ids)], "k": k}


async def run_scenario(
    base: str, endpoint: str, clients: int, requests: int, k: int, like_ids: list[str], limit: float
) -> Scenario:
    path = "/api/search/text" if endpoint == "text" else "/api/search/like"
    latencies: list[float] = []
    server_ms: list[float] = []
    errors: list[str] = []
    done = 0
    pool = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async with httpx.AsyncClient(base_url=base, limits=pool, timeout=limit) as http:

        async def client(c: int) -> None:
            nonlocal done
            for j in range(requests):
                body = body_for(endpoint, c * requests + j, k, like_ids)
                started = time.perf_counter()
                try:
                    response = await http.post(path, json=body)
                except httpx.HTTPError as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")
                    continue
                elapsed = time.perf_counter() - started
                if response.status_code != 200:
                    errors.append(f"HTTP {response.status_code}: {response.text[:200]}")
                    continue
                data = response.json()
                if len(data["results"]["results"]) != k:
                    errors.append(f"{len(data['results']['results'])} results instead of {k}")
                    continue
                latencies.append(elapsed)
                server_ms.append(data["took_ms"])
                done += 1

        started = time.perf_counter()
        tasks = [asyncio.create_task(client(c)) for c in range(clients)]
        _, pending = await asyncio.wait(tasks, timeout=limit)
        for task in pending:
            task.cancel()
        seconds = time.perf_counter() - started
    missing = clients * requests - done - len(errors)
    if missing > 0:
        errors.extend([f"not finished within {limit:.0f}s"] * missing)
    lat = np.array(latencies) * 1000 if latencies else np.zeros(1)
    p50, p95, p99 = np.percentile(lat, [50, 95, 99])
    return Scenario(
        endpoint=endpoint,
        clients=clients,
        requests=clients * requests,
        ok=done,
        errors=len(errors),
        seconds=round(seconds, 3),
        throughput_rps=round(done / seconds, 2) if seconds > 0 else 0.0,
        p50_ms=round(float(p50), 2),
        p95_ms=round(float(p95), 2),
        p99_ms=round(float(p99), 2),
        max_ms=round(float(lat.max()), 2),
        server_p50_ms=round(float(np.median(server_ms)), 2) if server_ms else 0.0,
        first_errors=errors[:3],
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--catalog", type=Path, default=REPO / "runs" / "kagl-test")
    parser.add_argument("--model", default=None, help="default: the model that built the catalog")
    parser.add_argument("--device", default=None)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--requests", type=int, default=20, help="requests per client")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument(
        "--endpoints", nargs="+", default=["text", "like"], choices=["text", "like"]
    )
    parser.add_argument("--max-seconds", type=float, default=120.0, help="bound per scenario")
    parser.add_argument("--startup-seconds", type=float, default=300.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    if not (args.catalog / "catalog.sqlite").is_file():
        raise SystemExit(
            f"no catalog at {args.catalog}: build one with `make demo` (or `fashionclip index`)"
        )

    from fashionclip.index import Catalog

    with Catalog.open(args.catalog) as catalog:
        ids = catalog.ids()
    like_ids = random.Random(args.seed).sample(ids, min(200, len(ids)))

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"serve_load_{port}.log"
    process = start_server(args, port, log_path)
    try:
        info = wait_ready(base, process, args.startup_seconds, log_path)
        print(
            f"server: {info['products']} products, model {info['model']} "
            f"({info['model_kind']}, dim {info['embedding_dim']}); "
            f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, "
            f"python {platform.python_version()}"
        )
        with httpx.Client(base_url=base, timeout=60) as http:  # warm-up
            for i in range(5):
                http.post("/api/search/text", json=body_for("text", i, args.k, like_ids))
                http.post("/api/search/like", json=body_for("like", i, args.k, like_ids))
        results: list[Scenario] = []
        header = (
            f"{'endpoint':<9}{'clients':>8}{'requests':>9}{'errors':>7}{'req/s':>9}"
            f"{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'max ms':>9}{'server p50':>11}"
        )
        print(header)
        print("-" * len(header))
        for endpoint in args.endpoints:
            for clients in args.clients:
                scenario = asyncio.run(
                    run_scenario(
                        base, endpoint, clients, args.requests, args.k, like_ids, args.max_seconds
                    )
                )
                results.append(scenario)
                print(
                    f"{endpoint:<9}{clients:>8}{scenario.requests:>9}{scenario.errors:>7}"
                    f"{scenario.throughput_rps:>9.1f}{scenario.p50_ms:>9.1f}{scenario.p95_ms:>9.1f}"
                    f"{scenario.p99_ms:>9.1f}{scenario.max_ms:>9.1f}{scenario.server_p50_ms:>11.1f}"
                )
                for error in scenario.first_errors:
                    print(f"    error: {error}")
        metrics = httpx.get(base + "/api/metrics", timeout=10).json()
        server_errors = sum(e["server_errors"] for e in metrics["endpoints"].values())
        print(f"server metrics: {metrics['requests']} requests, {server_errors} server errors")
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {"server": info, "scenarios": [asdict(s) for s in results], "metrics": metrics},
                indent=2,
            )
        )
    failed = sum(s.errors for s in results) + server_errors
    if failed:
        print(f"FAILED: {failed} errors", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
