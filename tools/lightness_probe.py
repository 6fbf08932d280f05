"""How much of a product's lightness a model keeps, and how well "light -> dark" finds it.

Prints, on KAGL val (never test):

- ``features``: linear read-outs of pixel luminance (``benchmarks/traverse_quality.luminance``)
  from the image tower's features of ``--images`` products: R^2 over all of them (3-fold ridge),
  and the within-kind Spearman rho of a ridge fitted on other article types (3 folds of article
  types), for the head's pooled 1280-d features, for those plus the pooled outputs of chosen
  blocks (``image_feature_blocks``), and for the model's own embeddings;
- ``directions``: on a catalog of KAGL val built with the model, the within-kind Spearman rho
  between luminance and the projection on each "light -> dark" direction the walk could use
  (GradREC within kinds, catalog-wide, text arithmetic), weighted by kind size (kinds of >= 20).

    PYTHONPATH=src python tools/lightness_probe.py features [--model M] [--images 3000]
    PYTHONPATH=src python tools/lightness_probe.py directions --catalog runs/kagl-val [--model M]

Numbers from it are in the fashion-clip-mini model card (tried after v3) and docs/recommend.md.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from traverse_quality import luminance  # noqa: E402

import fashionclip  # noqa: E402
from fashionclip.index.traverse import spearman  # noqa: E402

BLOCK_SETS = ((7, 14, 15), (4, 7, 10, 14, 15))


def within_kind_rho(values: np.ndarray, truth: np.ndarray, kinds: np.ndarray) -> float:
    """Spearman rho of values against truth inside each kind of >= 20 items, size-weighted."""
    rhos, sizes = [], []
    for kind in np.unique(kinds):
        mask = kinds == kind
        if mask.sum() >= 20:
            rhos.append(spearman(values[mask].tolist(), truth[mask].tolist()))
            sizes.append(int(mask.sum()))
    return float(np.average(rhos, weights=sizes))


def read_outs(name: str, x: np.ndarray, lum: np.ndarray, kinds: np.ndarray) -> None:
    from sklearn.linear_model import Ridge, RidgeCV
    from sklearn.model_selection import cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    r2 = cross_val_score(
        make_pipeline(StandardScaler(), RidgeCV(alphas=[1, 10, 100, 1000])), x, lum, cv=3
    ).mean()
    rng = np.random.default_rng(0)
    fold_of = {kind: int(rng.integers(3)) for kind in np.unique(kinds)}
    folds = np.array([fold_of[k] for k in kinds])
    scaled = StandardScaler().fit_transform(x)
    predicted = np.zeros(len(lum))
    for fold in range(3):
        held = folds == fold
        model = Ridge(alpha=100.0).fit(scaled[~held], lum[~held])
        predicted[held] = model.predict(scaled[held])
    rho = within_kind_rho(predicted, lum, kinds)
    print(f"{name:45s} dim {x.shape[1]:5d}  R^2 {r2:.3f}  within-kind read-out rho {rho:.3f}")


def features(args: argparse.Namespace) -> None:
    from fashionclip.data.images import load_image
    from fashionclip.evaluate.loaders import load_kagl

    model = fashionclip.load(args.model, device="cpu", precision="fp32")
    kagl = load_kagl("val", args.data_dir)
    n = min(args.images, len(kagl))
    paths = list(kagl.image_paths[:n])
    kinds = np.array(kagl.attributes["articleType"][:n])
    lum = np.array([luminance(p) for p in paths])
    tower = model.module.vision_model
    widest = sorted(set().union(*BLOCK_SETS))
    tower.set_feature_blocks(widest)
    chunks = []
    with torch.no_grad():
        for start in range(0, n, 128):
            pixels = model.preprocess([load_image(p) for p in paths[start : start + 128]])
            pixels = pixels.float().contiguous(memory_format=torch.channels_last)
            chunks.append(tower(pixels).numpy())
    tower.set_feature_blocks(model.module.config.image_feature_blocks)
    everything = np.concatenate(chunks)
    head = int(tower.net._bn1.num_features)
    offsets = {}
    at = head
    for block in widest:
        width = int(tower.net._blocks[block]._bn2.num_features)
        offsets[block] = (at, at + width)
        at += width
    read_outs("head features (pooled last map)", everything[:, :head], lum, kinds)
    for blocks in BLOCK_SETS:
        parts = [everything[:, :head]] + [everything[:, slice(*offsets[b])] for b in blocks]
        read_outs(f"head + blocks {list(blocks)}", np.concatenate(parts, 1), lum, kinds)
    read_outs("model embeddings", model.encode_images(paths), lum, kinds)


def directions(args: argparse.Namespace) -> None:
    from traverse_variants import Space

    from fashionclip.index import Catalog
    from fashionclip.models.prompts import ENSEMBLE_TEMPLATES, build_zero_shot_classifier

    catalog = Catalog.open(args.catalog, fashionclip.load(args.model))
    space = Space(catalog)  # the catalog's vectors and article types, as the walk variants use
    lum = np.array([luminance(catalog.image_path(p)) for p in space.ids])
    found = {
        "GradREC within article types (keep, default)": space.direction("light", "dark"),
        "GradREC catalog-wide": space.direction("light", "dark", within=None),
        "text arithmetic": space.direction("light", "dark", method="arithmetic"),
    }
    pair = build_zero_shot_classifier(
        catalog.model.encode_text, ["white", "black"], ENSEMBLE_TEMPLATES
    )
    found["text arithmetic, white -> black"] = pair[1] - pair[0]
    for name, direction in found.items():
        rho = within_kind_rho(space.x @ np.asarray(direction, np.float32), lum, space.types)
        print(f"{name:45s} within-kind rho {rho:+.3f}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    one = sub.add_parser("features")
    one.add_argument("--model", default=None)
    one.add_argument("--images", type=int, default=3000)
    one.add_argument("--data-dir", type=Path, default=None)
    two = sub.add_parser("directions")
    two.add_argument("--catalog", required=True)
    two.add_argument("--model", default=None)
    args = parser.parse_args(argv)
    features(args) if args.command == "features" else directions(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
