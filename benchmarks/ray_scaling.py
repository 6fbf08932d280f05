"""Indexing throughput: the local engine against Ray with 1 and 2 local workers.

Run:  python benchmarks/ray_scaling.py [--limit 1000] [--repeats 3] [--json out.json]

Each configuration indexes the same KAGL test-split images into a fresh catalog with
``Catalog.index`` (reader -> embedder -> writer, commits every 1,024 rows):

* ``local``: the model in this process, ``torch.set_num_threads(1)`` (one core);
* ``ray-N``: ``RayEngine`` on a local Ray of ``--cpus`` CPUs, N actors of ``--num-cpus``
  CPUs each (one torch thread per actor).

Two figures per run: ``end_to_end`` (images / the run's seconds: for Ray this includes starting
the actors and loading the model in each) and ``steady`` (images / the time from the first
model call's start to the last one's end, over all workers: the rate a long run converges to,
without the fixed start-up). Medians over
``--repeats`` runs are printed; the machine may be shared, so read them next to each other.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

import fashionclip
from fashionclip.data.tables import IdSubset, read_catalog_source
from fashionclip.index import Catalog


class StampedModel:
    """The model, logging ``start end images`` per call to a file (one per run)."""

    def __init__(self, model: Any, log: Path) -> None:
        self.model = model
        self.log = log

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)

    def try_encode_images(self, images: list[str], batch_size: int = 32, **kw: Any) -> Any:
        started = time.time()
        result = self.model.try_encode_images(images, batch_size=batch_size)
        with self.log.open("a") as out:
            out.write(f"{started} {time.time()} {len(images)}\n")
        return result


class StampedSpec:
    """A Ray actor's model factory (pickled by value: this is ``__main__``)."""

    def __init__(self, log: Path) -> None:
        self.log = log

    def __call__(self) -> StampedModel:
        from fashionclip.index.distributed import ModelSpec

        return StampedModel(ModelSpec(None)(), self.log)


def run_once(model: Any, records: list[Any], engine: Any, log: Path) -> dict[str, float]:
    log.unlink(missing_ok=True)
    if engine is not None:
        engine.factory = StampedSpec(log)
    else:
        model = StampedModel(model, log)
    with tempfile.TemporaryDirectory() as tmp, Catalog.create(Path(tmp) / "c", model) as cat:
        report = cat.index(records, engine=engine)
    calls = [tuple(map(float, line.split())) for line in log.read_text().splitlines()]
    busy = max(c[1] for c in calls) - min(c[0] for c in calls)
    return {
        "end_to_end": report.embedded / report.seconds,
        "steady": sum(c[2] for c in calls) / busy,
        "seconds": report.seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--kagl", default=str(Path(__file__).resolve().parents[1].parent / "shared/data/kagl")
    )
    parser.add_argument("--limit", type=int, default=1000, help="test-split images")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", default="1,2", help="Ray pool sizes to measure")
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray")
    parser.add_argument(
        "--num-cpus", type=float, default=1.0, help="CPUs per actor (fractional: 0.5)"
    )
    parser.add_argument("--json", default=None, help="also write the figures here")
    args = parser.parse_args()
    torch.set_num_threads(1)

    import ray

    from fashionclip.index.distributed import ModelSpec, RayEngine, RayOptions

    kagl = Path(args.kagl)
    records = read_catalog_source(
        kagl / "styles.csv",
        subset=IdSubset.parse(kagl / "splits.csv", "split=test"),
        limit=args.limit,
    ).records
    model = fashionclip.load()
    ray.init(
        num_cpus=args.cpus, include_dashboard=False, log_to_driver=False, logging_level="ERROR"
    )
    tmp_log = tempfile.mkdtemp(prefix="ray-scaling-")
    configs: dict[str, Any] = {"local": None}
    for n in (int(w) for w in args.workers.split(",")):
        configs[f"ray-{n}"] = RayEngine(
            RayOptions(workers=n, num_cpus=args.num_cpus), ModelSpec(None)
        )
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in configs}
    for repeat in range(args.repeats):
        for name, engine in configs.items():  # interleaved, so load changes hit all alike
            if engine is not None:
                engine.__enter__()
            runs[name].append(run_once(model, records, engine, Path(tmp_log) / name))
            print(f"repeat {repeat + 1} {name}: {runs[name][-1]}", flush=True)
    ray.shutdown()
    medians = {
        name: {key: statistics.median(r[key] for r in rs) for key in rs[0]}
        for name, rs in runs.items()
    }
    print(f"\n{len(records)} images, median of {args.repeats} runs (img/s):")
    print(f"{'config':<8} {'end_to_end':>11} {'steady':>8} {'seconds':>8}")
    for name, m in medians.items():
        print(f"{name:<8} {m['end_to_end']:>11.1f} {m['steady']:>8.1f} {m['seconds']:>8.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"images": len(records), "runs": runs}, indent=2))


if __name__ == "__main__":
    main()
