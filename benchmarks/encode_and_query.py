"""Image encoding throughput and end-to-end text query latency, against a naive baseline.

Run:  python benchmarks/encode_and_query.py [--model M] [--kagl ../shared/data/kagl] [--limit N]

Measured in the same run, on the same KAGL test-split images (``splits.csv``):

* ``fashionclip``: ``model.encode_images(paths, batch_size=64)`` (threaded decode + preprocess
  of the next batch while the model encodes the current one, bf16 autocast where the CPU has it);
  queries go through ``Catalog.search(text, k=10)`` (text encoding + exact search + metadata).
* ``naive``: a plain loop, one image at a time: ``PIL.Image.open``, the model's processor, the
  model in float32; queries: tokenizer + model in float32, then a numpy dot product against
  an in-RAM matrix of as many vectors as the catalog holds and a full argsort.

Prints images/s and query p50/p99 latency for both, and the ratios.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import fashionclip
from fashionclip.data.tables import IdSubset, read_catalog_source
from fashionclip.index import Catalog

QUERIES = [
    "red dress",
    "black leather handbag",
    "men running shoes",
    "white sneakers",
    "blue jeans",
    "striped t-shirt",
    "gold watch",
    "women sandals",
    "navy blue shirt",
    "sunglasses",
    "printed kurta",
    "pink top",
    "formal black shoes",
    "sports watch for men",
    "green bag",
    "grey trousers",
    "yellow flats",
    "brown belt",
    "casual shirt",
    "party heels",
]


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values) * 1000.0, q))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model (default: the shipped model)")
    parser.add_argument(
        "--kagl", default=str(Path(__file__).resolve().parents[1].parent / "shared/data/kagl")
    )
    parser.add_argument("--limit", type=int, default=1000, help="test-split images to encode")
    parser.add_argument("--naive-limit", type=int, default=300, help="images for the naive loop")
    parser.add_argument("--queries", type=int, default=60)
    args = parser.parse_args()
    torch.set_num_threads(2)

    kagl = Path(args.kagl)
    source = read_catalog_source(
        kagl / "styles.csv",
        subset=IdSubset.parse(kagl / "splits.csv", "split=test"),
        limit=args.limit,
    )
    paths = [record.image for record in source.records if record.image.is_file()]
    model = fashionclip.load(args.model)
    print(
        f"model: {model.identity.name} ({model.kind}, dim {model.embedding_dim}, precision {model.precision})"
    )
    print(
        f"images: {len(paths)} KAGL test-split thumbnails; torch threads: {torch.get_num_threads()}"
    )

    # --- image encoding throughput
    model.encode_images(paths[:64], batch_size=64)  # warm-up
    start = time.perf_counter()
    image_vectors = model.encode_images(paths, batch_size=64)
    ours = len(paths) / (time.perf_counter() - start)

    naive_model = fashionclip.load(args.model, precision="fp32")
    processor = naive_model.image_processor
    naive_paths = paths[: args.naive_limit]
    start = time.perf_counter()
    naive_vectors = []
    with torch.no_grad():
        for path in naive_paths:
            pixels = processor(images=[Image.open(path).convert("RGB")], return_tensors="pt")[
                "pixel_values"
            ]
            vector = naive_model.image_embeddings(pixels)[0].numpy()
            naive_vectors.append(vector / np.linalg.norm(vector))
    naive = len(naive_paths) / (time.perf_counter() - start)
    print(
        f"encode images/s   fashionclip {ours:8.1f}   naive {naive:8.1f}   ratio {ours / naive:5.2f}x"
    )

    # --- query latency against a catalog of the same images
    folder = Path(tempfile.mkdtemp(prefix="fashionclip-bench-"))
    try:
        catalog = Catalog.create(folder / "catalog", model)
        catalog.index(source.records, batch_size=64)
        queries = (QUERIES * (args.queries // len(QUERIES) + 1))[: args.queries]
        catalog.search(queries[0], k=10)  # warm-up
        ours_ms = []
        for query in queries:
            start = time.perf_counter()
            catalog.search(query, k=10)
            ours_ms.append(time.perf_counter() - start)
        # The naive query loop scans a matrix of the same size as the catalog.
        matrix = np.asarray(image_vectors, dtype=np.float32)
        naive_ms = []
        with torch.no_grad():
            for query in queries:
                start = time.perf_counter()
                tokens = naive_model.tokenizer([query], padding=True, return_tensors="pt")
                vector = naive_model.text_embeddings(dict(tokens))[0].numpy()
                scores = matrix @ (vector / np.linalg.norm(vector))
                np.argsort(-scores)[:10]
                naive_ms.append(time.perf_counter() - start)
        print(
            f"query ms p50/p99  fashionclip {percentile(ours_ms, 50):6.1f}/{percentile(ours_ms, 99):6.1f}"
            f"   naive {percentile(naive_ms, 50):6.1f}/{percentile(naive_ms, 99):6.1f}"
            f"   p50 ratio {percentile(naive_ms, 50) / percentile(ours_ms, 50):5.2f}x"
            f"   (catalog {len(catalog)} products, naive matrix {len(matrix)})"
        )
        catalog.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
