"""Image encoding speed against the model-only limit, PyPI ``fashion-clip`` and a naive loop.

Run (CPU; the checkpoint is built on the fly if missing, never downloaded, never committed)::

    python benchmarks/encode_speed.py --fashion-clip-python /tmp/encode/fcvenv/bin/python

Everything runs in one process on the same images (the first ``--limit`` KAGL test-split
images in ``splits.csv`` order) and the same local checkpoint: by default a ViT-B/32-sized CLIP
with random weights (transformers' ``CLIPConfig`` defaults, ``build_random_clip_b32``), which has
the compute of the real ViT-B/32 and loads offline in both libraries.

Lines printed (images/s; medians over ``--repeats`` runs, interleaved so that load from other
processes hits all of them alike; min-max in brackets):

* ``model-only limit``: the forward pass alone on pre-decoded, pre-processed pixel tensors (on
  the device already), same batch size and precision: what the hardware allows.
* ``fashionclip``: ``model.encode_images(paths, batch_size)`` from file paths: decoding and
  preprocessing in worker threads, overlapped with the model. ``limit / fashionclip`` is the
  share of the time that decoding and preprocessing still cost (target: <= 1.2x).
* ``fashion-clip``: PyPI ``fashion-clip`` 0.2.2 ``FashionCLIP(folder).encode_images(paths,
  batch_size)`` in its own virtual environment (``--fashion-clip-python``; skipped with a note
  when absent). Its vectors come back through a temporary .npy and are checked against
  fashionclip's fp32 vectors of the same images: cosine >= 0.999 for every image.
* ``naive``: one image at a time, ``PIL.Image.open``, the model's processor, the model in fp32.
* text query p50/p99: one text encoded, ``model.encode_text(query)`` vs ``fashion-clip``'s
  ``encode_text([query], batch_size=1)``.

Set up ``fashion-clip`` (its own venv: it needs transformers 4, fashionclip needs 5)::

    python3 -m venv /tmp/encode/fcvenv
    /tmp/encode/fcvenv/bin/pip install torch==2.13.0          # first: the CPU build
    /tmp/encode/fcvenv/bin/pip install fashion-clip==0.2.2 transformers==4.57.6 \\
        "datasets<4.5" requests

``fashion-clip`` treats any name that is not an existing *file* as a hub id and asks
huggingface.co whether it exists (``_is_hugging_face_repo``); the worker below answers "yes"
for our local folder instead, so that ``CLIPModel.from_pretrained(folder)`` loads it offline.

GPU (not measured so far: no GPU was available where this benchmark was written)::

    python benchmarks/encode_speed.py --device cuda --batch-size 256 \\
        --fashion-clip-python /path/to/fcvenv/bin/python

fashionclip then runs in fp16 with pinned host batches and a decode worker per core (up to 16);
``fashion-clip`` moves its model to CUDA by itself. Install a CUDA torch in both venvs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from encode_and_query import QUERIES  # the same query list (a sibling script)
from PIL import Image

import fashionclip
from fashionclip.data.images import load_image
from fashionclip.data.tables import IdSubset, read_catalog_source
from fashionclip.models.model import FashionCLIP
from fashionclip.models.quantize import int8_model
from fashionclip.models.testing import build_random_clip_b32

#: Runs inside the fashion-clip venv: argv[1] is a JSON job; prints one JSON line of results.
FASHION_CLIP_WORKER = r"""
import json, sys, time
import numpy as np, torch
job = json.loads(sys.argv[1])
torch.set_num_threads(job["threads"])
import fashion_clip.fashion_clip as fc_module
fc_module._is_hugging_face_repo = lambda *args, **kwargs: True  # local folder: no network check
model = fc_module.FashionCLIP(job["model"])
paths, batch = job["paths"], job["batch_size"]
model.encode_images(paths[:batch], batch_size=batch)  # warm-up
start, cpu = time.perf_counter(), time.process_time()
vectors = model.encode_images(paths, batch_size=batch)
seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
np.save(job["out"], np.asarray(vectors, dtype=np.float32))
model.encode_text([job["queries"][0]], batch_size=1)  # warm-up
query_s = []
for query in job["queries"]:
    start = time.perf_counter()
    model.encode_text([query], batch_size=1)
    query_s.append(time.perf_counter() - start)
print(json.dumps({"seconds": seconds, "cpu": cpu, "query_s": query_s, "device": model.device}))
"""


def kagl_paths(kagl: Path, limit: int) -> list[Path]:
    """The first ``limit`` KAGL test-split images that exist, in splits.csv order."""
    source = read_catalog_source(
        kagl / "styles.csv", subset=IdSubset.parse(kagl / "splits.csv", "split=test"), limit=limit
    )
    return [record.image for record in source.records if record.image.is_file()]


def model_folder(args: argparse.Namespace) -> Path:
    """The checkpoint to benchmark; the random ViT-B/32 is built once if missing."""
    if args.model:
        return Path(args.model)
    folder = Path(args.checkpoint_dir)
    if not (folder / "model.safetensors").is_file():
        print(f"building a random ViT-B/32-sized CLIP in {folder} ...", flush=True)
        build_random_clip_b32(folder)
    return folder


def pixel_batches(model: FashionCLIP, paths: Sequence[Path], batch_size: int) -> list[torch.Tensor]:
    """Every image decoded and preprocessed ahead, on the model's device: the limit's input."""
    batches = []
    for start in range(0, len(paths), batch_size):
        images = [load_image(p) for p in paths[start : start + batch_size]]
        batches.append(model.preprocess(images).to(model.device))
    return batches


def timed(run: Callable[[], Any], cpu: list[float] | None = None) -> float:
    """Wall seconds of ``run()``; its process CPU seconds (all threads) appended to ``cpu``."""
    start, used = time.perf_counter(), time.process_time()
    run()
    if cpu is not None:
        cpu.append(time.process_time() - used)
    return time.perf_counter() - start


def throughput_runs(
    model: FashionCLIP, paths: Sequence[Path], batch_size: int, repeats: int, before: bool
) -> tuple[dict[str, list[float]], np.ndarray, np.ndarray | None]:
    """img/s of encode_images and of the model-only limit, interleaved, ``repeats`` times each.

    Also CPU ms per image (``*_cpu``: every thread of the process), which other processes on
    a shared machine disturb less than wall time. ``before``: also time encode_images with the
    image processor called as it is (no fast pixel pipeline), as before this benchmark.
    Returns the runs and the vectors of the first fashionclip (and processor path) run.
    """
    batches = pixel_batches(model, paths, batch_size)
    model.encode_images(paths[:batch_size], batch_size=batch_size)  # warm-up both paths
    for batch in {tuple(b.shape): b for b in batches}.values():  # every batch shape once
        model._embed_pixels(batch)  # the exact per-batch model call of encode_images
    names = ["limit", "fashionclip"] + (["processor path"] if before else [])
    runs: dict[str, list[float]] = {key: [] for name in names for key in (name, name + "_cpu")}
    pipeline = model._pixels
    vectors: list[Any] = []
    for _ in range(repeats):
        for name in names:
            cpu: list[float] = []
            if name == "limit":
                seconds = timed(lambda: [model._embed_pixels(b) for b in batches], cpu)
            else:
                model._pixels = None if name == "processor path" else pipeline
                seconds = timed(lambda: vectors.append(model.encode_images(paths, batch_size)), cpu)
            model._pixels = pipeline
            runs[name].append(len(paths) / seconds)
            runs[name + "_cpu"].append(cpu[0] * 1000.0 / len(paths))
    return runs, np.asarray(vectors[0]), np.asarray(vectors[1]) if before else None


def naive_rate(model: FashionCLIP, paths: Sequence[Path]) -> tuple[float, np.ndarray]:
    """img/s and vectors of a plain one-image-at-a-time loop in fp32."""
    vectors = []
    start = time.perf_counter()
    with torch.no_grad():
        for path in paths:
            image = Image.open(path).convert("RGB")
            pixels = model.image_processor(images=[image], return_tensors="pt")["pixel_values"]
            vector = model.image_embeddings(pixels.to(model.device))[0].float().cpu().numpy()
            vectors.append(vector / np.linalg.norm(vector))
    return len(paths) / (time.perf_counter() - start), np.stack(vectors)


def query_latencies(model: FashionCLIP, queries: Sequence[str]) -> list[float]:
    model.encode_text(queries[0])  # warm-up
    return [timed(lambda q=q: model.encode_text(q)) for q in queries]


def run_fashion_clip(
    python: str, folder: Path, paths: Sequence[Path], args: argparse.Namespace, queries: list[str]
) -> dict[str, Any] | None:
    """Run PyPI fashion-clip in its venv; its results with its vectors, or None (note printed)."""
    if not python or not Path(python).is_file():
        print(f"fashion-clip: skipped (no --fashion-clip-python at {python!r})")
        return None
    with tempfile.TemporaryDirectory(prefix="fashion-clip-vectors-") as tmp:
        out = Path(tmp) / "vectors.npy"
        job = {
            "model": str(folder),
            "paths": [str(p) for p in paths],
            "batch_size": args.batch_size,
            "threads": torch.get_num_threads(),
            "queries": queries,
            "out": str(out),
        }
        done = subprocess.run(
            [python, "-c", FASHION_CLIP_WORKER, json.dumps(job)],
            capture_output=True,
            text=True,
            env={**os.environ, "TOKENIZERS_PARALLELISM": "false"},
        )
        if done.returncode != 0:
            print(f"fashion-clip: failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
            return None
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        result["vectors"] = np.load(out)
    result["rate"] = len(paths) / result["seconds"]
    result["cpu_ms"] = result["cpu"] * 1000.0 / len(paths)
    return result


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return np.sum(a * b, axis=1)


def spread(values: Sequence[float]) -> str:
    return f"{statistics.median(values):8.1f}  [{min(values):.1f}-{max(values):.1f}]"


def ms(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values) * 1000.0, q))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="checkpoint folder (default: random B/32)")
    parser.add_argument(
        "--checkpoint-dir",
        default=str(Path(tempfile.gettempdir()) / "fashionclip-bench" / "clip-vit-b32-random"),
        help="where the random ViT-B/32 is built if --model is not given",
    )
    parser.add_argument(
        "--kagl", default=str(Path(__file__).resolve().parents[1].parent / "shared/data/kagl")
    )
    parser.add_argument("--limit", type=int, default=1000, help="KAGL test-split images")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3, help="runs of fashionclip and limit")
    parser.add_argument("--naive-limit", type=int, default=200, help="images for the naive loop")
    parser.add_argument("--queries", type=int, default=30, help="text queries timed")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument(
        "--precision", default="auto", help="auto, fp32, bf16, fp16 or int8 (measured only)"
    )
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads")
    parser.add_argument("--fashion-clip-python", default="", help="python of a fashion-clip venv")
    parser.add_argument(
        "--before", action="store_true", help="also time encode_images without the fast pipeline"
    )
    parser.add_argument("--json-out", default=None, help="also write the figures as JSON here")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    folder = model_folder(args)
    paths = kagl_paths(Path(args.kagl), args.limit)
    queries = (QUERIES * (args.queries // len(QUERIES) + 1))[: args.queries]
    fp32 = fashionclip.load(folder, device=args.device, precision="fp32")
    if args.precision == "int8":  # not offered by load (see docs/encoding.md); measured here
        model = int8_model(fashionclip.load(folder, device="cpu", precision="fp32"))
    else:
        model = fashionclip.load(folder, device=args.device, precision=args.precision)
    print(f"model: {folder} ({model.kind}, dim {model.embedding_dim}); device {model.device}")
    print(
        f"images: {len(paths)} KAGL test-split; batch {args.batch_size}; precision "
        f"{model.precision}; torch threads {torch.get_num_threads()}; decode workers "
        f"{model.num_workers}; fast pixel pipeline: {type(model._pixels).__name__}"
    )
    runs, ours, old_path = throughput_runs(model, paths, args.batch_size, args.repeats, args.before)
    reference = np.asarray(fp32.encode_images(paths, batch_size=args.batch_size))
    naive, naive_vectors = naive_rate(fp32, paths[: args.naive_limit])
    our_queries = query_latencies(model, queries)
    theirs = run_fashion_clip(args.fashion_clip_python, folder, paths, args, queries)

    ratios = [lim / got for lim, got in zip(runs["limit"], runs["fashionclip"], strict=True)]
    figures: dict[str, Any] = {
        "images": len(paths),
        "precision": model.precision,
        "device": str(model.device),
        "runs": runs,
        "limit_over_fashionclip": ratios,
        "naive_img_s": naive,
        "fashionclip_query_ms_p50": ms(our_queries, 50),
        "cos_precision_vs_fp32_min": float(cosines(ours, reference).min()),
        "cos_naive_vs_fp32_min": float(
            cosines(naive_vectors, reference[: len(naive_vectors)]).min()
        ),
    }
    for name in [n for n in runs if not n.endswith("_cpu")]:
        print(f"{name:<18} img/s {spread(runs[name])}   CPU ms/img {spread(runs[name + '_cpu'])}")
    print(
        f"limit/fashionclip        {statistics.median(ratios):8.2f}x [{min(ratios):.2f}-"
        f"{max(ratios):.2f}]  (target <= 1.2x); CPU ms/img fashionclip/limit "
        f"{statistics.median(runs['fashionclip_cpu']) / statistics.median(runs['limit_cpu']):.2f}x"
    )
    print(f"naive (fp32, 1 by 1) img/s {naive:6.1f}  ({len(naive_vectors)} images)")
    if theirs is not None:
        check = cosines(theirs["vectors"], reference)
        figures.update(
            fashion_clip_img_s=theirs["rate"],
            fashion_clip_query_ms_p50=ms(theirs["query_s"], 50),
            cos_fashion_clip_vs_fp32_min=float(check.min()),
        )
        print(
            f"fashion-clip 0.2.2  img/s {theirs['rate']:8.1f}   CPU ms/img {theirs['cpu_ms']:8.1f}"
            f"   (device {theirs['device']}, fp32)"
        )
        print(
            f"fashionclip / fashion-clip {statistics.median(runs['fashionclip']) / theirs['rate']:5.2f}x"
        )
    print(
        f"cosine {model.precision} vs fp32 (fashionclip): min {figures['cos_precision_vs_fp32_min']:.5f}"
        f"; naive vs fashionclip fp32: min {figures['cos_naive_vs_fp32_min']:.5f}"
    )
    if old_path is not None:
        print(f"cosine fast pipeline vs processor path: min {cosines(ours, old_path).min():.6f}")
    if theirs is not None:
        verdict = "OK" if figures["cos_fashion_clip_vs_fp32_min"] >= 0.999 else "FAILED"
        print(
            f"cosine fashion-clip vs fashionclip fp32, per image: min "
            f"{figures['cos_fashion_clip_vs_fp32_min']:.5f}, median {float(np.median(check)):.5f} "
            f"(>= 0.999 required: {verdict})"
        )
        print(
            f"text query ms p50/p99  fashionclip {ms(our_queries, 50):7.1f}/{ms(our_queries, 99):7.1f}"
            f"   fashion-clip {ms(theirs['query_s'], 50):7.1f}/{ms(theirs['query_s'], 99):7.1f}"
        )
    else:
        print(
            f"text query ms p50/p99  fashionclip {ms(our_queries, 50):7.1f}/{ms(our_queries, 99):7.1f}"
        )
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
