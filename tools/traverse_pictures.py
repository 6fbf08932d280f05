"""Pictures of real comparative walks for docs/recommend.md (default model, KAGL catalog).

    python tools/traverse_pictures.py --catalog runs/kagl-test --out docs/img

Writes ``traverse-walk.png`` (one light -> dark walk: the seed, then each step's products in a
column), ``traverse-sleeves.png`` (five short -> long sleeve walks from tops) and
``traverse-heels.png`` (five flat -> high heel walks from heels, sandals and flats): attributes
with no metadata column; a row per walk, the seed then each step's first product. Seeds are drawn
with a fixed random seed, not picked by hand. Thumbnails are small and the palette reduced so
the files stay small.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from fashionclip.index import Catalog

THUMB = (60, 80)
GAP = 6
LABEL = 14


def thumbnail(catalog: Catalog, product_id: str) -> Image.Image:
    with Image.open(catalog.image_path(product_id)) as image:
        image = image.convert("RGB")
        image.thumbnail(THUMB)
    tile = Image.new("RGB", THUMB, "white")
    tile.paste(image, ((THUMB[0] - image.width) // 2, (THUMB[1] - image.height) // 2))
    return tile


def grid(catalog: Catalog, rows: list[list[str | None]], labels: list[str]) -> Image.Image:
    """Columns labelled ``labels``; ``None`` cells stay blank."""
    width = len(labels) * (THUMB[0] + GAP) + GAP
    height = LABEL + len(rows) * (THUMB[1] + GAP) + GAP
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    for c, label in enumerate(labels):
        draw.text((GAP + c * (THUMB[0] + GAP), 2), label, fill=(90, 90, 90))
    for r, row in enumerate(rows):
        for c, product_id in enumerate(row):
            if product_id is not None:
                x, y = GAP + c * (THUMB[0] + GAP), LABEL + r * (THUMB[1] + GAP)
                canvas.paste(thumbnail(catalog, product_id), (x, y))
    return canvas


def save(image: Image.Image, path: Path) -> None:
    image.quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    print(f"{path}: {path.stat().st_size // 1024} KB")


def one_walk(catalog: Catalog, seed: str, out: Path) -> None:
    steps = catalog.traverse(seed, "light", "dark", keep="articleType")
    depth = max(len(step) for step in steps)
    columns: list[list[str | None]] = [[seed] + [None] * (depth - 1)]
    columns += [[r.id for r in step] + [None] * (depth - len(step)) for step in steps]
    rows = [list(row) for row in zip(*columns, strict=True)]
    labels = ["seed"] + [f"step {i + 1}" for i in range(len(steps))]
    save(grid(catalog, rows, labels), out / "traverse-walk.png")


def attribute_walks(
    catalog: Catalog,
    rng: np.random.Generator,
    phrases: tuple[str, str],
    types: set[str],
    out: Path,
) -> None:
    """Five walks from random seeds of ``types``: a row each, the seed then each step's best."""
    pool = sorted(p for p in catalog.ids() if _type(catalog, p) in types)
    seeds = [pool[i] for i in rng.choice(len(pool), 5, replace=False)]
    rows: list[list[str | None]] = []
    for seed in seeds:
        steps = catalog.traverse(seed, *phrases, keep="articleType")
        rows.append([seed] + [step[0].id for step in steps])
    width = max(len(row) for row in rows)
    rows = [row + [None] * (width - len(row)) for row in rows]
    labels = ["seed"] + [f"step {i + 1}" for i in range(width - 1)]
    save(grid(catalog, rows, labels), out)


TOPS = {"Tshirts", "Shirts", "Tops", "Kurtas"}
SHOES = {"Heels", "Sandals", "Flats"}


def _type(catalog: Catalog, product_id: str) -> object:
    product = catalog.get(product_id)
    return None if product is None else product.metadata.get("articleType")


def main() -> None:
    import fashionclip

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--catalog", default="runs/kagl-test")
    parser.add_argument("--out", default="docs/img")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    catalog = Catalog.open(args.catalog, fashionclip.load())
    rng = np.random.default_rng(args.seed)
    tops = sorted(p for p in catalog.ids() if _type(catalog, p) in TOPS)
    one_walk(catalog, tops[int(rng.integers(len(tops)))], out)
    attribute_walks(catalog, rng, ("short sleeves", "long sleeves"), TOPS,
                    out / "traverse-sleeves.png")  # fmt: skip
    attribute_walks(catalog, rng, ("flat", "high heel"), SHOES, out / "traverse-heels.png")


if __name__ == "__main__":
    main()
