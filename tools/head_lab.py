"""Projection-head lab (issue 14): try stage-3-style recipes in minutes instead of a training run.

The default model's later stages train only the projections over a frozen image backbone and a
frozen text tower. Their inputs can therefore be computed once and kept on disk:

- ``features CONFIG``: the backbone features of every training item and cached view, with the
  trainer's own data pipeline (records, augmentation of view ``v`` seeded by
  ``sample_rng(seed, v, index, "view")``), plus the backbone features of the dev sets of
  ``tools/dev_eval.py``. Written under ``--work``.
- ``train CONFIG``: the trainer's epoch loop over the cached features (captions drawn per epoch
  with ``sample_rng(seed, epoch, index)``, view ``epoch % K``, CLIP loss with caption ids, AdamW,
  warm-up + cosine), starting from the heads of ``model.init``; scores the dev sets (never a test
  split) after the last epoch and prints one JSON line.

A recipe chosen here is then run for real with ``fashionclip train --config CONFIG`` (same
seeds, same data), so that ``make default-model`` reproduces the shipped weights.

    PYTHONPATH=src python tools/head_lab.py features configs/x.toml --work /tmp/lab
    PYTHONPATH=src python tools/head_lab.py train configs/x.toml --work /tmp/lab --set epochs=8
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import dev_eval  # noqa: E402

import fashionclip  # noqa: E402
from fashionclip.data.captions import caption_id, sample_rng  # noqa: E402
from fashionclip.train.config import TrainConfig, load_train_config  # noqa: E402
from fashionclip.train.data import augment_image, load_pair_datasets  # noqa: E402
from fashionclip.train.loss import create_loss  # noqa: E402


def _views_key(config: TrainConfig, n: int) -> str:
    """A name for the cached views: data selection, augmentation, K and seed."""
    blob = json.dumps(
        [
            config.data.max_train_samples,
            config.data.ccp_split,
            config.data.ccp_repeat,
            vars(config.augment),
            config.model.cache_image_views,
            config.seed,
            n,
        ],
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _backbone(model: Any, images: list[Any]) -> torch.Tensor:
    """fp32 backbone features, as the trainer caches its views (dev_eval.backbone_features runs
    under the model's inference autocast instead, as scoring does)."""
    pixels = model.preprocess(images)
    with torch.inference_mode():
        return model.module.vision_model(
            pixels.contiguous(memory_format=torch.channels_last)
        ).float()


def cache_features(config: TrainConfig, work: Path, batch: int = 256) -> Path:
    """Backbone features of every (item, view) of the training set, as the trainer sees them."""
    train, _ = load_pair_datasets(config.data, config.captions, progress=True)
    views = max(1, config.model.cache_image_views)
    out = work / f"views-{_views_key(config, len(train))}.pt"
    if out.exists():
        print(f"{out} exists", file=sys.stderr)
        return out
    model = fashionclip.load(config.model.init, device="cpu")
    feats = torch.zeros(len(train), views, model.module.vision_model.feature_dim)
    start = time.time()
    for view in range(views):
        for lo in range(0, len(train), batch):
            idx = list(range(lo, min(lo + batch, len(train))))
            images = [
                augment_image(
                    train.load(i), sample_rng(config.seed, view, i, "view"), config.augment
                )
                for i in idx
            ]
            feats[idx, view] = _backbone(model, images)
            done = view * len(train) + idx[-1] + 1
            rate = done / (time.time() - start)
            print(f"\rview {view} {done}/{views * len(train)} {rate:.0f} img/s", end="")
    print()
    torch.save({"features": feats, "ids": [r.get("id") for r in train.records]}, out)
    return out


def cache_dev(model_name: str, work: Path) -> Path:
    """Backbone features of the dev sets (dev_eval's images, decoded once)."""
    out = work / "dev.pt"
    if out.exists():
        return out
    sets = dev_eval.dev_sets(None, 3000, 1000)
    model = fashionclip.load(model_name, device="cpu")
    feats = {
        k: dev_eval.backbone_features(model, model.preprocess(v[0])).features
        for k, v in sets.items()
    }
    labels = {k: v[1] for k, v in sets.items() if k != "kagl"}
    torch.save({"features": feats, "labels": labels}, out)
    return out


class TextCache:
    """The frozen text tower's sentence embeddings, one row per caption, kept on disk."""

    def __init__(self, model: Any, path: Path) -> None:
        self.model, self.path = model, path
        self.rows: dict[str, int] = {}
        self.features = torch.zeros(0, 384)
        if path.exists():
            saved = torch.load(path)
            self.rows, self.features = saved["rows"], saved["features"]

    def add(self, captions: Sequence[str]) -> None:
        new = sorted(set(captions) - set(self.rows))
        if not new:
            return
        chunks = []
        for lo in range(0, len(new), 512):
            tokens = self.model.tokenize(new[lo : lo + 512])
            with torch.inference_mode():
                chunks.append(self.model.module.get_text_sentence_embedding(**tokens).float())
            print(f"\rcaptions {lo + 512}/{len(new)}", end="", file=sys.stderr)
        base = len(self.rows)
        self.rows.update({c: base + i for i, c in enumerate(new)})
        self.features = torch.cat([self.features, *chunks])
        torch.save({"rows": self.rows, "features": self.features}, self.path)

    def __call__(self, captions: Sequence[str]) -> torch.Tensor:
        return self.features[[self.rows[c] for c in captions]]


def _lr(step: int, total: int, config: TrainConfig) -> float:
    warm = config.optim.warmup_steps
    if step < warm:
        return (step + 1) / warm
    return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))


def train_heads(
    config: TrainConfig, work: Path, label: str = "", image_mlp: int = 0
) -> dict[str, Any]:
    """The trainer's loop over cached features; returns the dev scores of the final heads."""
    train, _ = load_pair_datasets(config.data, config.captions, progress=False)
    saved = torch.load(work / f"views-{_views_key(config, len(train))}.pt")
    feats = saved["features"]
    model = fashionclip.load(config.model.init, device="cpu")
    text = TextCache(model, work / "text.pt")
    epochs, bs = config.epochs, config.batch_size
    captions = [
        [
            train.captions.sample(r, sample_rng(config.seed, e, i))
            for i, r in enumerate(train.records)
        ]
        for e in range(epochs)
    ]
    text.add([c for per in captions for c in per])
    module = model.module
    if image_mlp:  # a fresh 2-layer image head in place of the linear one
        from fashionclip.models.dual_encoder import new_projection

        module.visual_projection = new_projection("mlp", feats.shape[-1], 512, image_mlp)
    heads = [*module.visual_projection.parameters(), *module.text_projection.parameters()]
    groups = [
        {"params": heads, "weight_decay": config.optim.weight_decay},
        {"params": [module.logit_scale], "weight_decay": 0.0},
    ]
    opt = torch.optim.AdamW(groups, lr=config.optim.lr, betas=(0.9, 0.98), eps=1e-6)
    loss_fn = create_loss("clip")
    steps_per_epoch = len(train) // bs
    total = epochs * steps_per_epoch
    gen = torch.Generator().manual_seed(config.seed)
    step = 0
    for epoch in range(epochs):
        view = epoch % feats.shape[1]
        order = torch.randperm(len(train), generator=gen)
        running = 0.0
        for b in range(steps_per_epoch):
            idx = order[b * bs : (b + 1) * bs]
            caps = [captions[epoch][i] for i in idx.tolist()]
            for group in opt.param_groups:
                group["lr"] = config.optim.lr * _lr(step, total, config)
            image = module.visual_projection(feats[idx, view])
            txt = module.text_projection(text(caps))
            labels = torch.tensor([caption_id(c) for c in caps])
            loss = loss_fn(image, txt, module.logit_scale, None, labels)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(heads, config.optim.grad_clip or 1e9)
            opt.step()
            running += float(loss.detach())
            step += 1
        print(f"epoch {epoch}: loss {running / steps_per_epoch:.4f}", file=sys.stderr)
    if label:
        torch.save(module.state_dict(), work / f"state-{label}.pt")
    return score_dev(model, work)


def score_dev(model: Any, work: Path) -> dict[str, Any]:
    """dev_eval's scores from the cached dev-set backbone features."""
    from fashionclip.evaluate.loaders import load_kagl

    dev = torch.load(work / "dev.pt")
    kagl = load_kagl("val", None)
    pseudo = {k: (None, v) for k, v in dev["labels"].items()}
    pseudo["kagl"] = (None, kagl)
    pixels = {k: dev_eval._Projected(v) for k, v in dev["features"].items()}
    with torch.inference_mode():
        return dev_eval.score(model, pixels, pseudo)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["features", "train", "score"])
    parser.add_argument("config", help="a train config (or a model folder for 'score')")
    parser.add_argument("--work", type=Path, default=Path("/tmp/lab"))
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    parser.add_argument("--label", default="")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--image-mlp", type=int, default=0, help="hidden size of an MLP image head")
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    if args.command == "score":
        cache_dev(args.config, args.work)
        model = fashionclip.load(None if args.config == "default" else args.config, device="cpu")
        row: dict[str, Any] = score_dev(model, args.work)
    else:
        config = load_train_config(args.config, args.overrides)
        if config.model.image_feature_blocks:
            # Its caches hold the 1280-d head features only; a multi-level recipe would train
            # on the wrong inputs without a word. Run such a recipe with `fashionclip train`.
            parser.error("model.image_feature_blocks is not supported here: use fashionclip train")
        if config.loss.label_prompts:
            # Its loop has the contrastive loss only; the label-prompt term would be dropped.
            parser.error("loss.label_prompts is not supported here: use fashionclip train")
        if args.command == "features":
            cache_dev(config.model.init, args.work)
            print(cache_features(config, args.work))
            return 0
        start = time.time()
        row = train_heads(copy.deepcopy(config), args.work, args.label, args.image_mlp)
        row["seconds"] = round(time.time() - start)
    dev_eval.emit({"label": args.label, "overrides": args.overrides, **row}, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
