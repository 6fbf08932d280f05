"""Helpers shared by the training tests (no tests here): tiny image-caption tables in tmp_path."""

from __future__ import annotations

import random
from pathlib import Path

import pandas as pd
from PIL import Image

COLOURS = ["red", "blue", "black", "white", "green"]
ITEMS = ["shirt", "dress", "shoes", "bag", "watch"]
RGB = {
    "red": (200, 30, 30),
    "blue": (30, 30, 200),
    "black": (10, 10, 10),
    "white": (240, 240, 240),
    "green": (30, 180, 30),
}


def make_pairs(root: Path, n: int = 40, n_val: int = 16, seed: int = 0) -> tuple[Path, Path]:
    """``n`` small product-like images (a coloured block on white) with captions; train/val CSVs."""
    rng = random.Random(seed)
    (root / "img").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        colour, item = COLOURS[i % 5], ITEMS[(i // 5) % 5]
        image = Image.new("RGB", (30, 40), (255, 255, 255))
        w = 8 + 4 * ITEMS.index(item)
        block = Image.new("RGB", (w, 24), tuple(max(0, c - rng.randrange(20)) for c in RGB[colour]))
        image.paste(block, ((30 - w) // 2, 8))
        path = root / "img" / f"{i}.png"
        image.save(path)
        rows.append(
            {"image": f"img/{i}.png", "caption": f"a photo of a {colour} {item}", "colour": colour}
        )
    train = root / "train.csv"
    val = root / "val.csv"
    pd.DataFrame(rows).to_csv(train, index=False)
    pd.DataFrame(rows[:n_val]).to_csv(val, index=False)
    return train, val


def base_overrides(root: Path, model_dir: Path, train: Path, val: Path | None = None) -> list[str]:
    items = [
        f"output_dir={root / 'run'}",
        f"model.init={model_dir}",
        f"data.train={train}",
        "batch_size=8",
        "epochs=2",
        "optim.warmup_steps=2",
        "optim.lr=1e-3",
        "progress=false",
        "log_every_steps=1",
        "num_threads=1",
        "device=cpu",
        "val_zero_shot=[]",
    ]
    if val is not None:
        items.append(f"data.val={val}")
    return items


def state_dict(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))
