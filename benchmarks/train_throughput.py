"""Training throughput (samples/s) on CPU for the locked-text and full-tuning variants.

Run:  python benchmarks/train_throughput.py [--model dual-encoder|tiny-clip|PATH] [--steps 12]
      [--batch-size 32] [--image-size 128] [--threads 1] [--variants locked-text,full,...]

Each variant is a real ``fashionclip.train.train`` run on KAGL training images (or synthetic
images when KAGL is absent) with ``stop_after_steps``; samples/s is measured from the per-step
log between step 2 and the last step (so model loading, caching and the first, slower steps are
excluded and reported separately). ``--breakdown`` also times the parts of one training step
(data: decode + augment + processor; image forward; text; loss; backward; optimizer step).

Variants:
  full          every parameter trains (text tower uncached)
  locked-text   text backbone frozen: caption features computed once, only projections train
  locked-text-partial-image  + the image backbone's first groups frozen (last --unlocked groups train)
  lit           image backbone frozen (no_grad), text trains (LiT-style; the image head trains)
  lit-cached    lit + model.cache_image_views=1, measured after the first epoch (the cached
                regime: no image is decoded or encoded; epochs of 2 steps)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

VARIANTS = {
    "full": [],
    "locked-text": ["model.lock_text=true"],
    "locked-text-partial-image": ["model.lock_text=true", "model.lock_image=true"],
    "lit": ["model.lock_image=true", "model.image_unlocked_groups=0"],
    "lit-cached": [
        "model.lock_image=true",
        "model.image_unlocked_groups=0",
        "model.cache_image_views=1",
    ],
}
#: Variants measured on a 2-batch table (many short epochs) instead of one long epoch.
SHORT_EPOCHS = {"lit-cached"}


def kagl_table(folder: Path, n: int) -> Path | None:
    from fashionclip.train.data import default_data_dir, read_kagl_split

    kagl = default_data_dir() / "kagl"
    if not (kagl / "styles.csv").is_file():
        return None
    rows = read_kagl_split(kagl, "train")[:n]
    table = pd.DataFrame(
        {"image": [r["_image"] for r in rows], "caption": [r["productDisplayName"] for r in rows]}
    )
    path = folder / "kagl_pairs.csv"
    table.to_csv(path, index=False)
    return path


def synthetic_table(folder: Path, n: int) -> Path:
    from PIL import Image

    rng = random.Random(0)
    rows = []
    (folder / "img").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        image = Image.new("RGB", (60, 80), (255, 255, 255))
        image.paste(
            Image.new("RGB", (30, 50), tuple(rng.randrange(256) for _ in range(3))), (15, 15)
        )
        image.save(folder / "img" / f"{i}.jpg")
        rows.append({"image": f"img/{i}.jpg", "caption": f"product {i % 97} colour {i % 13}"})
    path = folder / "pairs.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def model_folder(args, folder: Path) -> str:
    if args.model == "tiny-clip":
        from fashionclip.models.testing import build_tiny_clip

        return str(build_tiny_clip(folder / "tiny-clip"))
    if args.model == "dual-encoder":
        from fashionclip.models.dual_encoder import FashionDualEncoder, FashionDualEncoderConfig

        module = FashionDualEncoder.from_pretrained_towers(
            FashionDualEncoderConfig(image_tower=args.image_tower, image_size=args.image_size)
        )
        path = folder / "dual-encoder"
        module.save_pretrained(path)
        return str(path)
    return args.model


def run_variant(name, extra, model_dir, table, args, folder) -> dict:
    from fashionclip.train import load_train_config, train

    overrides = [
        f"output_dir={folder / name}",
        f"model.init={model_dir}",
        f"data.train={table[name in SHORT_EPOCHS]}",
        f"batch_size={args.batch_size}",
        f"stop_after_steps={args.steps}",
        "epochs=100",
        "progress=false",
        "log_every_steps=1",
        f"num_threads={args.threads}",
        "device=cpu",
        f"model.image_unlocked_groups={args.unlocked}",
        *extra,
    ]
    t0 = time.perf_counter()
    result = train(load_train_config(None, overrides))
    wall = time.perf_counter() - t0
    rows = [json.loads(line) for line in result.log_path.read_text().splitlines()]
    start = rows[0]
    steps = [r for r in rows if r["type"] == "train"]
    a, b = steps[2 if name in SHORT_EPOCHS else 1], steps[-1]
    steady = (b["step"] - a["step"]) * args.batch_size / (b["train_seconds"] - a["train_seconds"])
    return {
        "variant": name,
        "samples_per_s": round(steady, 1),
        "first_step_s": round(steps[0]["train_seconds"], 2),
        "setup_s": start["setup_seconds"],
        "text_cache_s": start["text_cache_seconds"],
        "cached_captions": start["cached_captions"],
        "trainable_params": start["trainable_parameters"],
        "wall_s": round(wall, 1),
    }


def breakdown(model_dir: str, table: Path, args, locked_text: bool) -> dict:
    """Seconds per part of one training step (median of a few repetitions)."""
    import statistics

    import fashionclip
    from fashionclip.train.config import AugmentConfig, CaptionConfig, DataConfig, TrainConfig
    from fashionclip.train.data import PairCollate, PairSampleDataset, load_pair_datasets
    from fashionclip.train.features import StepModule, TextFeatureCache
    from fashionclip.train.loss import ClipLoss
    from fashionclip.train.parts import ModelParts
    from fashionclip.train.setup import build_optimizer

    torch.set_num_threads(args.threads)
    model = fashionclip.load(model_dir, device="cpu", precision="fp32")
    parts = ModelParts(model)
    parts.lock(
        lock_image=False, image_unlocked_groups=0, lock_text=locked_text, text_unlocked_groups=0
    )
    train_set, _ = load_pair_datasets(DataConfig(train=str(table)), CaptionConfig(), progress=False)
    cache = None
    if locked_text:
        parts.set_train_mode()
        cache = TextFeatureCache(model, parts, model.device)
        cache.add(train_set.caption_candidates())
    parts.set_train_mode()
    step = StepModule(model, parts, cache)
    config = TrainConfig()
    optimizer = build_optimizer(parts, config)
    dataset = PairSampleDataset(train_set, AugmentConfig(), seed=0)
    collate = PairCollate(model.image_processor)
    loss_fn = ClipLoss()
    times: dict[str, list[float]] = {
        k: [] for k in ("data", "image", "text", "loss", "backward", "optimizer")
    }
    for rep in range(4):
        t = time.perf_counter()
        batch = collate([dataset[(rep, i)] for i in range(args.batch_size)])  # decode+augment
        pixels = batch.pixel_values.contiguous(memory_format=torch.channels_last)
        times["data"].append(time.perf_counter() - t)
        t = time.perf_counter()
        image = parts.image_features(pixels)
        times["image"].append(time.perf_counter() - t)
        t = time.perf_counter()
        unique = list(dict.fromkeys(batch.captions))
        if cache is not None:
            text = parts.text.head_forward(cache.lookup(unique))
        else:
            tokens = model.tokenize(unique)
            text = parts.text_features(tokens)
        times["text"].append(time.perf_counter() - t)
        t = time.perf_counter()
        loss = loss_fn(image, text, parts.logit_scale)
        times["loss"].append(time.perf_counter() - t)
        t = time.perf_counter()
        loss.backward()
        times["backward"].append(time.perf_counter() - t)
        t = time.perf_counter()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times["optimizer"].append(time.perf_counter() - t)
    del step
    return {k: round(statistics.median(v[1:]), 4) for k, v in times.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model", default="dual-encoder", help="dual-encoder, tiny-clip or a model folder"
    )
    parser.add_argument("--image-tower", default="efficientnet-lite0")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--unlocked", type=int, default=4, help="image groups that train (partial)")
    parser.add_argument("--variants", default="locked-text,full")
    parser.add_argument("--breakdown", action="store_true")
    parser.add_argument("--out", default=None, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        n = args.batch_size * (args.steps + 1)
        full = kagl_table(folder, n) or synthetic_table(folder, n)
        short = folder / "short.csv"
        pd.read_csv(full).head(2 * args.batch_size).to_csv(short, index=False)
        table = {False: full, True: short}
        model_dir = model_folder(args, folder)
        print(
            f"model={args.model} image_size={args.image_size} batch={args.batch_size} "
            f"steps={args.steps} threads={args.threads} data={full.name} "
            f"cpu={os.cpu_count()} load={os.getloadavg()[0]:.1f}",
            flush=True,
        )
        for name in args.variants.split(","):
            row = run_variant(name, VARIANTS[name], model_dir, table, args, folder)
            results.append(row)
            print("  ".join(f"{k}={v}" for k, v in row.items()), flush=True)
        if args.breakdown:
            for locked in (True, False):
                parts = breakdown(model_dir, full, args, locked)
                label = "locked-text" if locked else "full"
                total = sum(parts.values())
                print(
                    f"breakdown {label} (s/step, batch {args.batch_size}): "
                    + "  ".join(f"{k}={v:.3f} ({100 * v / total:.0f}%)" for k, v in parts.items()),
                    flush=True,
                )
                results.append({"breakdown": label, **parts})
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
