"""Dev-set scores of dual-encoder models (issue 14): what to choose a recipe on, never the test splits.

Dev sets (all zero-shot, prompt "a photo of a {label}", classes with >= 10 items):
- ``ccp_val``: CCP garments *val* split, dominant crops (real street photos, 18 classes).
- ``fmnist_train``: 3,000 seeded Fashion-MNIST *train* images (stand-in for its test split; never
  trained on).
- ``kagl_val_<attr>``: KAGL *val* split, weighted F1 for articleType, baseColour, masterCategory.
- ``kagl_val_r10``: KAGL val product name -> image recall@10 (byte-identical images count as one).
- ``kagl_val_cat_p1`` / ``kagl_val_cat_p10``: KAGL val category -> product precision@1 / @10, the
  query ``fashionclip evaluate``'s ("a photo of {articleType}"), article types with >= 10 products;
  added in session 7, when a candidate lost it on test.
- ``kagl_photo``: 1,000 seeded KAGL val images through :func:`fashionclip.train.photo.photo_like`
  with seeds ``sample_rng(14, 0, index, "dev-photo")``; articleType weighted F1.

Images are decoded and preprocessed once; ``--alphas`` then scores WiSE-FT mixes of each model's
image backbone with ImageNet's (1 = the model as is) without re-reading anything::

    PYTHONPATH=src python tools/dev_eval.py --alphas 1,0.75,0.5 default runs/x/best
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

import fashionclip
from fashionclip.data.captions import sample_rng
from fashionclip.evaluate.datasets import build_label_set, duplicate_groups
from fashionclip.evaluate.loaders import load_ccp_garments, load_fashion_mnist, load_kagl
from fashionclip.evaluate.product_retrieval import category_evaluator
from fashionclip.evaluate.retrieval import RetrievalEvaluator
from fashionclip.evaluate.runner import DEFAULT_CATEGORY_TEMPLATE
from fashionclip.evaluate.zero_shot import class_embeddings, zero_shot_metrics
from fashionclip.models.model import FashionCLIP
from fashionclip.train.photo import photo_like
from fashionclip.train.wise import interpolate_state, wise_ft

KAGL_ATTRIBUTES = ("articleType", "baseColour", "masterCategory", "gender", "usage")


def dev_sets(data_dir: Path | None, fmnist_n: int, photo_n: int) -> dict[str, Any]:
    """Images (PIL or paths) and labels of every dev set."""
    from fashionclip.data.images import load_image

    ccp = load_ccp_garments("val", data_dir)
    fm = load_fashion_mnist("train", data_dir).sample(fmnist_n, seed=0)
    kagl = load_kagl("val", data_dir)
    photo_idx = np.random.default_rng(14).choice(len(kagl), size=photo_n, replace=False)
    photo_idx.sort()
    photos = [
        photo_like(load_image(kagl.image_paths[i]), sample_rng(14, 0, int(i), "dev-photo"))
        for i in photo_idx.tolist()
    ]
    return {
        "ccp": ([load_image(p) for p in ccp.image_paths], ccp.classes),
        "fmnist": (fm.images(), fm.label_names),
        "kagl": ([load_image(p) for p in kagl.image_paths], kagl),
        "photo": (photos, [kagl.attributes["articleType"][i] for i in photo_idx.tolist()]),
    }


def zero_shot(model: FashionCLIP, emb: np.ndarray, labels: Sequence[str]) -> float:
    classes = build_label_set(labels, "label", 10).classes
    keep = [i for i, label in enumerate(labels) if label in set(classes)]
    class_emb = class_embeddings(model, classes)
    result = zero_shot_metrics(emb[keep], class_emb, [labels[i] for i in keep], classes)
    return float(result["weighted_f1"])


def category_to_product(
    model: FashionCLIP, emb: np.ndarray, article_types: Sequence[str]
) -> dict[str, float]:
    """Category -> product precision@1 / @10 on the dev products (as fashionclip evaluate)."""
    evaluator = category_evaluator(article_types, DEFAULT_CATEGORY_TEMPLATE, 10)
    assert evaluator is not None  # KAGL val has many article types with >= 10 products
    result = evaluator.compute(model.encode_text(evaluator.query_texts), emb)
    return {
        "kagl_val_cat_p1": float(result["text_to_image/precision@1"]),
        "kagl_val_cat_p10": float(result["text_to_image/precision@10"]),
    }


class _Projected:
    """Backbone features standing in for pixels: only the image projection runs per mix."""

    def __init__(self, features: torch.Tensor) -> None:
        self.features = features

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, index: slice) -> _Projected:
        return _Projected(self.features[index])


def backbone_features(model: FashionCLIP, pixels: torch.Tensor, batch: int = 256) -> _Projected:
    with torch.inference_mode(), model._autocast():
        parts = [
            model.module.vision_model(
                pixels[i : i + batch].contiguous(memory_format=torch.channels_last)
            ).float()
            for i in range(0, len(pixels), batch)
        ]
    return _Projected(torch.cat(parts))


def image_embeddings(model: FashionCLIP, pixels: Any, batch: int = 256) -> np.ndarray:
    if isinstance(pixels, _Projected):
        with torch.inference_mode():
            out = model.module.visual_projection(pixels.features)
        return torch.nn.functional.normalize(out, dim=-1).numpy()
    return np.concatenate(
        [model._embed_pixels(pixels[i : i + batch]) for i in range(0, len(pixels), batch)]
    )


def score(
    model: FashionCLIP, pixels: dict[str, torch.Tensor], sets: dict[str, Any]
) -> dict[str, float]:
    emb = {name: image_embeddings(model, px) for name, px in pixels.items()}
    kagl = sets["kagl"][1]
    out = {
        "ccp_val": zero_shot(model, emb["ccp"], sets["ccp"][1]),
        "fmnist_train": zero_shot(model, emb["fmnist"], sets["fmnist"][1]),
    }
    for attr in KAGL_ATTRIBUTES:
        out[f"kagl_val_{attr}"] = zero_shot(model, emb["kagl"], kagl.attributes[attr])
    names = RetrievalEvaluator(kagl.names, relevant=duplicate_groups(kagl.image_sha256))
    result = names.compute(model.encode_text(kagl.names), emb["kagl"])
    out["kagl_val_r10"] = float(result["text_to_image/recall@10"])
    out.update(category_to_product(model, emb["kagl"], kagl.attributes["articleType"]))
    out["kagl_photo"] = zero_shot(model, emb["photo"], sets["photo"][1])
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("models", nargs="+", help="model folders, or 'default'")
    parser.add_argument("--alphas", default="1", help="WiSE-FT shares of the fine-tuned weights")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--fmnist", type=int, default=3000)
    parser.add_argument("--photo", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=None, help="append JSON lines here")
    parser.add_argument("--label", default="", help="run name stored with each line")
    parser.add_argument(
        "--start",
        default=None,
        help="checkpoint the models were fine-tuned from, with the SAME image backbone: "
        "--alphas then mix all weights with it (WiSE-FT of the heads; backbone features once)",
    )
    args = parser.parse_args(argv)
    alphas = [float(a) for a in args.alphas.split(",")]
    start = time.time()
    sets = dev_sets(args.data_dir, args.fmnist, args.photo)
    print(f"dev sets loaded in {time.time() - start:.0f}s", file=sys.stderr)
    for name in args.models:
        model = fashionclip.load(None if name == "default" else name, device="cpu")
        pixels = {key: model.preprocess(images) for key, (images, _) in sets.items()}
        original = copy.deepcopy(model.module.state_dict())
        start_state = (
            None
            if args.start is None
            else fashionclip.load(args.start, device="cpu").module.state_dict()
        )
        if start_state is not None:
            pixels = {key: backbone_features(model, px) for key, px in pixels.items()}
        for alpha in alphas:
            model.module.load_state_dict(original)
            if start_state is not None:
                model.module.load_state_dict(interpolate_state(original, start_state, alpha))
            elif alpha != 1.0:
                wise_ft(model.module, alpha)
            t0 = time.time()
            row = {"label": args.label, "model": name, "alpha": alpha, **score(model, pixels, sets)}
            row["seconds"] = round(time.time() - t0, 1)
            emit(row, args.out)
    return 0


def emit(row: dict[str, Any], out: Path | None) -> None:
    """Print one run's scores as a JSON line (floats to 4 places), appended to ``out`` too."""
    line = json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()})
    print(line, flush=True)
    if out:
        with out.open("a") as handle:
            handle.write(line + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
