"""Bounded load test of `fashionclip serve` on loopback: text search and "more like this";
with --uploads, the server's peak memory under concurrent large image uploads.

Run:  python benchmarks/serve_load.py [--catalog runs/kagl-test] [--model M]
                                      [--clients 1 8 32] [--requests 20] [--k 10]
      python benchmarks/serve_load.py --uploads [--clients 1 8 32 64] [--baseline]

Starts the real server (`fashionclip serve`, one uvicorn process) on a free 127.0.0.1 port
with the catalog's model (or --model), waits until /api/ready answers, warms it up, then for
each endpoint and each concurrency level runs that many clients, each sending a fixed number
of requests back to back (keep-alive connections). Every scenario is bounded in time
(--max-seconds); requests still running then count as errors. Prints throughput, client-side
p50/p95/p99 latency, the server's own p50 (``took_ms``) and the error count per scenario, and
exits with status 1 if any request failed. Only loopback is ever used.

--uploads: starts a uvicorn server process (create_app, as `fashionclip serve` does) over
--catalog or, by default, a tiny generated catalog with a tiny random CLIP (the decode path is
what is measured, not the model), then for each concurrency level sends that many image
searches at once, each a 5000x5000 PNG of about 110 KB (within the limits), sampling the
server's RSS (/proc) every 10 ms: idle, peak and one second after. --baseline runs the same
against the old decode path (full-size decode, no bound on concurrent decodes) in a second
server process of the same run; a server passing --max-rss-gb is killed (that scenario is then
reported as such). Answers other than 200 (503 when the decode queue timed out) are counted.

Text queries are KAGL-like phrases; "more like this" uses ids sampled (seeded) from the
catalog. Default catalog: the KAGL test split that `make demo` builds in runs/kagl-test.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import random
import socket
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

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


def stop_server(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()


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


# -- --uploads: peak memory under concurrent large image uploads --------------------------------


def large_png(side: int = 5000) -> bytes:
    """A side x side product-like drawing on white: ~100 KB as PNG, 75 MB once decoded."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (side, side), (250, 250, 248))
    draw = ImageDraw.Draw(image)
    s = side / 100
    draw.polygon(
        [(40 * s, 10 * s), (60 * s, 10 * s), (85 * s, 92 * s), (15 * s, 92 * s)], fill=(200, 40, 50)
    )
    rng = random.Random(0)
    for _ in range(3000):
        x, y = rng.randrange(side), rng.randrange(side)
        draw.line(
            [(x, y), (x + rng.randrange(-80, 80), y + rng.randrange(-80, 80))],
            fill=(rng.randrange(256), 60, 90),
            width=3,
        )
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def tiny_catalog(folder: Path) -> Path:
    """A 20-product catalog of drawings indexed with a tiny random CLIP (built here)."""
    from PIL import Image, ImageDraw

    import fashionclip
    from fashionclip.data.tables import ProductRecord
    from fashionclip.index import Catalog
    from fashionclip.models.testing import build_tiny_clip

    model = fashionclip.load(build_tiny_clip(folder / "model"), device="cpu", precision="fp32")
    records = []
    for i in range(20):
        path = folder / "images" / f"{i:02d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        image = Image.new("RGB", (96, 128), (250, 250, 248))
        ImageDraw.Draw(image).rectangle([10 + i, 10, 80, 110 - i], fill=(12 * i, 80, 200 - 9 * i))
        image.save(path)
        records.append(ProductRecord(f"p{i:02d}", path, {"articleType": f"Kind {i % 4}"}))
    with Catalog.create(folder / "catalog", model) as catalog:
        catalog.index(records, show_progress=False)
    return folder / "catalog"


def install_old_decode() -> None:
    """The decode path before the bound (for --baseline): a full-size decode per upload, as
    many at once as there are request threads."""
    from fashionclip.data.images import load_image
    from fashionclip.serve.search import SearchService
    from fashionclip.serve.uploads import check_upload

    def old_decode_upload(self: SearchService, data: bytes) -> Any:
        return load_image(check_upload(data, self.limits), max_pixels=self.limits.max_image_pixels)

    SearchService.decode_upload = old_decode_upload  # type: ignore[method-assign]


def serve_child(catalog: Path, port: int, baseline: bool) -> int:
    """Run the server (one uvicorn process, as `fashionclip serve` does) until terminated."""
    import uvicorn

    from fashionclip.serve.app import create_app
    from fashionclip.serve.startup import load_serving_state

    if baseline:
        install_old_decode()
    state = load_serving_state(catalog, show_progress=False, log=lambda message: None)
    app = create_app(state.catalog, state.model)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")
    return 0


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


class RssPeak(threading.Thread):
    """Samples a process's RSS every 10 ms; kills the process past ``limit`` bytes."""

    def __init__(self, process: subprocess.Popen, start: int, limit: int) -> None:
        super().__init__(daemon=True)
        self.process, self.peak, self.limit = process, start, limit
        self.killed = False
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.peak = max(self.peak, rss_bytes(self.process.pid))
            except OSError:
                return
            if self.peak > self.limit:
                self.killed = True
                self.process.kill()
                return
            time.sleep(0.01)

    def finish(self) -> tuple[int, bool]:
        self.stop.set()
        self.join()
        return self.peak, self.killed


@dataclass
class UploadScenario:
    server: str
    clients: int
    statuses: dict[str, int]
    idle_mb: float
    peak_mb: float
    after_mb: float
    peak_over_idle_mb: float
    seconds: float
    killed: bool


async def upload_burst(
    base: str, data: bytes, clients: int, limit: float
) -> tuple[dict[str, int], float]:
    """`clients` image searches sent at once; the count of each status (or error kind)."""
    statuses: dict[str, int] = {}
    pool = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(base_url=base, limits=pool, timeout=limit) as http:

        async def one() -> None:
            try:
                files = {"image": ("large.png", data, "image/png")}
                key = str(
                    (await http.post("/api/search/image", files=files, data={"k": "5"})).status_code
                )
            except httpx.HTTPError as exc:
                key = type(exc).__name__
            statuses[key] = statuses.get(key, 0) + 1

        started = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(clients)))
    return statuses, time.perf_counter() - started


def measure_uploads(
    args: argparse.Namespace, catalog: Path, data: bytes, baseline: bool
) -> list[UploadScenario]:
    """One server process (bounded, or the old decode path), each concurrency level in turn."""
    name = "baseline" if baseline else "bounded"
    levels = args.baseline_clients if baseline else args.clients
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"serve_uploads_{port}.log"
    command = [sys.executable, __file__, "--serve-child", str(port), "--catalog", str(catalog)]
    if baseline:
        command.append("--baseline")
    log = open(log_path, "w")  # noqa: SIM115 (closed with the process)
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    results: list[UploadScenario] = []
    try:
        wait_ready(base, process, args.startup_seconds, log_path)
        asyncio.run(upload_burst(base, data, 1, args.max_seconds))  # warm-up
        for clients in levels:
            time.sleep(1.0)
            idle = rss_bytes(process.pid)
            sampler = RssPeak(process, idle, int(args.max_rss_gb * 2**30))
            sampler.start()
            statuses, seconds = asyncio.run(upload_burst(base, data, clients, args.max_seconds))
            time.sleep(1.0)
            peak, killed = sampler.finish()
            after = 0 if killed else rss_bytes(process.pid)
            mb = 2**20
            results.append(
                UploadScenario(
                    name,
                    clients,
                    statuses,
                    round(idle / mb, 1),
                    round(peak / mb, 1),
                    round(after / mb, 1),
                    round((peak - idle) / mb, 1),
                    round(seconds, 2),
                    killed,
                )
            )
            print(
                f"{name:<9}{clients:>8}{idle / mb:>9.0f}{peak / mb:>9.0f}{after / mb:>9.0f}{(peak - idle) / mb:>11.0f}{seconds:>8.1f}  {statuses}{'  KILLED (over --max-rss-gb)' if killed else ''}"
            )
            if killed:
                break
    finally:
        stop_server(process)
        log.close()
    return results


def run_uploads(args: argparse.Namespace) -> int:
    """--uploads: peak server RSS under 1/8/32/64 concurrent 5000x5000 PNG uploads."""
    import tempfile

    args.clients = args.clients or [1, 8, 32, 64]
    data = large_png()
    with tempfile.TemporaryDirectory(prefix="serve_uploads_") as scratch:
        catalog = args.catalog or tiny_catalog(Path(scratch))
        print(
            f"upload: 5000x5000 PNG, {len(data):,} bytes; {os.cpu_count()} CPUs; catalog {catalog}"
        )
        print(
            f"{'server':<9}{'clients':>8}{'idle MB':>9}{'peak MB':>9}{'after MB':>9}{'peak-idle':>11}{'sec':>8}  statuses"
        )
        results = measure_uploads(args, catalog, data, baseline=False)
        if args.baseline:
            results += measure_uploads(args, catalog, data, baseline=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2))
    bounded = [r for r in results if r.server == "bounded"]
    return 0 if all(r.peak_over_idle_mb < 1024 and not r.killed for r in bounded) else 1


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--catalog", type=Path, default=None, help="default: runs/kagl-test")
    parser.add_argument("--model", default=None, help="default: the model that built the catalog")
    parser.add_argument("--device", default=None)
    parser.add_argument("--clients", type=int, nargs="+", default=None, help="default 1 8 32")
    parser.add_argument("--requests", type=int, default=20, help="requests per client")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument(
        "--endpoints", nargs="+", default=["text", "like"], choices=["text", "like"]
    )
    parser.add_argument("--max-seconds", type=float, default=120.0, help="bound per scenario")
    parser.add_argument("--startup-seconds", type=float, default=300.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--uploads", action="store_true", help="peak RSS under image uploads")
    parser.add_argument("--baseline", action="store_true", help="--uploads: old decode path too")
    parser.add_argument("--baseline-clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--max-rss-gb", type=float, default=10.0, help="kill a server above this")
    parser.add_argument("--serve-child", type=int, default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def run_scenarios(base: str, args: argparse.Namespace, like_ids: list[str]) -> list[Scenario]:
    """Every endpoint x client count against a warmed-up server, a table row each."""
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
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve_child is not None:
        return serve_child(args.catalog, args.serve_child, args.baseline)
    if args.uploads:
        return run_uploads(args)
    args.clients = args.clients or [1, 8, 32]
    args.catalog = args.catalog or REPO / "runs" / "kagl-test"
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
        results = run_scenarios(base, args, like_ids)
        metrics = httpx.get(base + "/api/metrics", timeout=10).json()
        server_errors = sum(e["server_errors"] for e in metrics["endpoints"].values())
        print(f"server metrics: {metrics['requests']} requests, {server_errors} server errors")
    finally:
        stop_server(process)
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
