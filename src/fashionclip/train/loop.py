"""The training loop: ``train(config) -> TrainResult``.

One optimizer step = ``optim.accum_steps`` micro-batches of ``batch_size`` pairs (split over the
data-parallel ranks). Each micro-batch: images through the image tower, the batch's distinct
captions through the text tower (or looked up in the frozen-text cache), contrastive loss
(:mod:`fashionclip.train.loss`). Then gradient clipping, AdamW, the warm-up + cosine schedule and
a clamp of the temperature. After every ``val_every_epochs`` epochs: retrieval recall and
zero-shot accuracy on the validation set, appended to ``log.jsonl``; the best model by
``best_metric`` is kept in ``best/``. ``last/`` holds the latest model plus the state to resume.

Resuming is exact: data order and augmentation are functions of (seed, epoch, index), the
schedule is a function of the step, and optimizer and RNG states are restored, so N steps in one
run and N/2 + N/2 across a resume give the same weights.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from fashionclip.errors import FashionCLIPError
from fashionclip.train import checkpoint as ckpt
from fashionclip.train.config import TrainConfig
from fashionclip.train.data import (
    EpochBatchSampler,
    PairCollate,
    PairDataset,
    PairSampleDataset,
    load_pair_datasets,
)
from fashionclip.train.distributed import (
    DistributedContext,
    barrier,
    broadcast_object,
    init_distributed,
    shutdown_distributed,
)
from fashionclip.train.loss import ClipLoss, SigLipLoss, clamp_logit_scale_
from fashionclip.train.parts import ModelParts, release_package_towers
from fashionclip.train.validation import metric_names, validation_metrics

LOG_FILE = "log.jsonl"


@dataclass
class TrainResult:
    """What a training run produced."""

    output_dir: Path
    last_checkpoint: Path
    best_checkpoint: Path | None
    best_metric: float | None
    best_epoch: int | None
    global_step: int
    total_steps: int
    epochs_completed: int
    finished: bool
    samples_per_second: float
    train_size: int
    val_size: int
    skipped_train: dict[str, int] = field(default_factory=dict)
    skipped_val: dict[str, int] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    #: The trained model as it is at the end of the run (the weights of ``last_checkpoint``).
    model: Any = field(default=None, repr=False, compare=False)

    @property
    def log_path(self) -> Path:
        return self.output_dir / LOG_FILE


# ---------------------------------------------------------------------------- text features


class TextFeatureCache:
    """Outputs of a frozen text backbone, one row per distinct caption.

    Built in one pass over the sorted captions with a fixed batch size, so the stored features do
    not depend on which batch a caption first appeared in (exact resume).
    """

    def __init__(self, model, parts: ModelParts, device: torch.device, batch_size: int = 256):
        self.model = model
        self.parts = parts
        self.device = device
        self.batch_size = batch_size
        self.rows: dict[str, int] = {}
        self.features: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.rows)

    @torch.no_grad()
    def _encode(self, captions: list[str]) -> torch.Tensor:
        chunks = []
        for start in range(0, len(captions), self.batch_size):
            tokens = self.model.tokenize(captions[start : start + self.batch_size])
            tokens = {k: v.to(self.device) for k, v in tokens.items()}
            chunks.append(self.parts.text.backbone_forward(**tokens).float())
        return torch.cat(chunks)

    def add(self, captions: list[str], progress: bool = False) -> None:
        new = sorted(set(captions) - set(self.rows))
        if not new:
            return
        # Similar lengths in a batch waste less compute on padding (~2x faster for KAGL).
        lengths = self.model.tokenizer(new, truncation=True)["input_ids"]
        new = [c for _, c in sorted(zip(map(len, lengths), new, strict=True))]
        chunks = []
        for start in tqdm(
            range(0, len(new), self.batch_size * 8),
            desc="caching caption features",
            disable=not progress,
            leave=False,
        ):
            chunks.append(self._encode(new[start : start + self.batch_size * 8]))
        features = torch.cat(chunks)
        base = len(self.rows)
        self.rows.update({c: base + i for i, c in enumerate(new)})
        self.features = features if self.features is None else torch.cat([self.features, features])

    def lookup(self, captions: list[str]) -> torch.Tensor:
        missing = [c for c in captions if c not in self.rows]
        if missing:
            self.add(missing)
        index = torch.tensor([self.rows[c] for c in captions], device=self.device)
        return self.features.index_select(0, index)


class ImageViewCache:
    """Frozen image-backbone features per (item, view), filled as views are first seen."""

    def __init__(self, num_items: int, views: int, device: torch.device) -> None:
        self.views = views
        self.device = device
        self.filled = torch.zeros(num_items, views, dtype=torch.bool)
        self.features: torch.Tensor | None = None

    def store(self, indices: list[int], views: list[int], features: torch.Tensor) -> None:
        if self.features is None:
            shape = (*self.filled.shape, features.shape[-1])
            self.features = torch.zeros(shape, dtype=torch.float32, device=self.device)
        self.features[indices, views] = features.detach().float()
        self.filled[indices, views] = True

    def gather(self, indices: list[int], views: list[int]) -> torch.Tensor:
        return self.features[indices, views]


# ---------------------------------------------------------------------------- forward module


class _StepModule(nn.Module):
    """The per-micro-batch forward, as one module so that DDP sees every trainable parameter."""

    def __init__(
        self,
        model,
        parts: ModelParts,
        text_cache: TextFeatureCache | None,
        image_cache: ImageViewCache | None = None,
    ) -> None:
        super().__init__()
        self.inner = model.module
        self.model = [model]  # not a submodule
        self.parts = [parts]
        self.text_cache = text_cache
        self.image_cache = image_cache

    def forward(
        self,
        pixel_values: torch.Tensor | None,
        captions: list[str],
        indices: list[int] | None = None,
        views: list[int] | None = None,
        has_pixels: list[bool] | None = None,
    ):
        parts = self.parts[0]
        model = self.model[0]
        if self.image_cache is not None:
            if pixel_values is not None:
                new = [i for i, present in enumerate(has_pixels) if present]
                with torch.no_grad():
                    features = parts.image.backbone_forward(pixel_values)
                self.image_cache.store([indices[i] for i in new], [views[i] for i in new], features)
            image = parts.image.head_forward(self.image_cache.gather(indices, views))
        elif parts.image.backbone_frozen:
            with torch.no_grad():
                image_features = parts.image.backbone_forward(pixel_values)
            image = parts.image.head_forward(image_features)
        else:
            image = parts.image_features(pixel_values)
        position: dict[str, int] = {}
        for caption in captions:
            position.setdefault(caption, len(position))
        unique = list(position)
        inverse = torch.tensor([position[c] for c in captions], device=image.device)
        if self.text_cache is not None:
            text = parts.text.head_forward(self.text_cache.lookup(unique))
        else:
            tokens = {k: v.to(image.device) for k, v in model.tokenize(unique).items()}
            text = parts.text_features(tokens)
        text = text.index_select(0, inverse)
        scale = parts.logit_scale
        bias = parts.logit_bias
        return image, text, scale, bias


# ---------------------------------------------------------------------------- helpers


def _lr_factor(step: int, total: int, warmup: int, schedule: str, min_ratio: float) -> float:
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def _no_decay(name: str, param: nn.Parameter) -> bool:
    lowered = name.lower()
    return (
        param.ndim < 2
        or "bias" in lowered
        or "norm" in lowered
        or ".ln" in lowered
        or "_bn" in lowered
        or ".bn" in lowered
        or "logit_" in lowered
    )


def build_optimizer(parts: ModelParts, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW; no weight decay on biases, norms and the temperature/bias (open_clip's rule).

    Backbones use ``optim.backbone_lr`` (default ``lr``), projections ``lr``, the temperature
    and bias ``logit_lr`` (default ``lr``).
    """
    opt = config.optim
    backbone_ids = {
        id(p) for tower in (parts.image, parts.text) for p in tower.backbone.parameters()
    }
    backbone_lr = opt.backbone_lr or opt.lr
    buckets: dict[tuple[str, bool], list[nn.Parameter]] = {}
    for name, param in parts.trainable_parameters():
        if name in ("logit_scale", "logit_bias"):
            key = ("logit", False)
        else:
            key = ("backbone" if id(param) in backbone_ids else "head", not _no_decay(name, param))
        buckets.setdefault(key, []).append(param)
    lrs = {"backbone": backbone_lr, "head": opt.lr, "logit": opt.logit_lr or opt.lr}
    groups = [
        {
            "params": buckets[key],
            "weight_decay": opt.weight_decay if key[1] else 0.0,
            "base_lr": lrs[key[0]],
            "name": f"{key[0]}{'' if key[1] else '-no-decay'}",
        }
        for key in sorted(buckets)
    ]
    if not groups:
        raise FashionCLIPError("nothing to train: every parameter is locked")
    return torch.optim.AdamW(groups, lr=opt.lr, betas=(opt.beta1, opt.beta2), eps=opt.eps)


def _precision(config: TrainConfig, device: torch.device) -> str:
    if config.precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    return config.precision


def _autocast(precision: str, device: torch.device):
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def _append_log(path: Path, row: dict[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(row) + "\n")


def _load_model(config: TrainConfig, ctx: DistributedContext, resume_from: Path | None):
    import fashionclip

    output_dir = Path(config.output_dir)
    if resume_from is not None:
        source = resume_from
    elif config.model.init == "dual-encoder":
        source = output_dir / "init"
        if ctx.is_main and not (source / "config.json").is_file():
            from fashionclip.models.dual_encoder import (
                FashionDualEncoder,
                FashionDualEncoderConfig,
            )

            try:
                de_config = FashionDualEncoderConfig(**config.model.dual_encoder)
            except TypeError as exc:
                raise FashionCLIPError(f"model.dual_encoder: {exc}") from None
            module = FashionDualEncoder.from_pretrained_towers(de_config, seed=config.seed)
            module.save_pretrained(source)
        barrier(ctx)
    else:
        source = config.model.init
    return fashionclip.load(
        source, device=ctx.device, allow_pickle=config.model.allow_pickle, precision="fp32"
    )


def _check_sizes(config: TrainConfig, train_set: PairDataset, ctx: DistributedContext) -> int:
    if config.batch_size % ctx.world_size:
        raise FashionCLIPError(
            f"batch_size {config.batch_size} must be divisible by the number of processes "
            f"({ctx.world_size})"
        )
    if config.batch_size > len(train_set):
        raise FashionCLIPError(
            f"batch_size {config.batch_size} is larger than the training set "
            f"({len(train_set)} usable pairs)"
        )
    micro = len(train_set) // config.batch_size
    steps = micro // config.optim.accum_steps
    if steps == 0:
        raise FashionCLIPError(
            f"one optimizer step needs batch_size x accum_steps = "
            f"{config.batch_size * config.optim.accum_steps} pairs; the training set has "
            f"{len(train_set)}"
        )
    return steps


# ---------------------------------------------------------------------------- validation


def zero_shot_columns(config: TrainConfig, val: PairDataset) -> list[str]:
    """The ``val_zero_shot`` columns that every validation record has a value for."""
    from fashionclip.data.captions import MISSING_VALUES

    return [
        column
        for column in config.val_zero_shot
        if all(str(r.get(column, "")).strip().lower() not in MISSING_VALUES for r in val.records)
    ]


@torch.no_grad()
def evaluate_model(
    model,
    parts: ModelParts,
    val: PairDataset,
    config: TrainConfig,
    text_cache: TextFeatureCache | None,
    precision: str,
) -> dict[str, float]:
    """Validation metrics of the current weights (eval mode; train mode is restored after)."""
    was_training = model.module.training
    model.module.eval()
    device = model.device
    try:
        chunks = []
        for start in tqdm(
            range(0, len(val), config.eval_batch_size),
            desc="validating",
            disable=not config.progress,
            leave=False,
        ):
            images = [
                val.load(i) for i in range(start, min(len(val), start + config.eval_batch_size))
            ]
            pixels = model.preprocess(images).to(device)
            if device.type == "cpu":
                pixels = pixels.contiguous(memory_format=torch.channels_last)
            with _autocast(precision, device):
                emb = parts.image_features(pixels)
            chunks.append(F.normalize(emb.float(), dim=-1).cpu().numpy())
        image_emb = np.concatenate(chunks)
        captions = val.eval_captions()
        label_sets = {}
        for column in zero_shot_columns(config, val):
            truth = [str(r[column]) for r in val.records]
            names = sorted(set(truth))
            prompts = [config.val_zero_shot_template.format(n) for n in names]
            label_sets[column] = (truth, prompts, names)
        all_texts = sorted(set(captions) | {p for _, ps, _ in label_sets.values() for p in ps})
        text_emb = _text_embeddings(model, parts, all_texts, text_cache, precision, config)
        lookup = dict(zip(all_texts, text_emb, strict=True))
        labels = {
            column: (truth, np.stack([lookup[p] for p in prompts]), names)
            for column, (truth, prompts, names) in label_sets.items()
        }
        return validation_metrics(image_emb, captions, lookup, labels=labels)
    finally:
        if was_training:
            parts.set_train_mode()


def _text_embeddings(model, parts, texts, text_cache, precision, config) -> np.ndarray:
    chunks = []
    size = max(config.eval_batch_size, 64)
    for start in range(0, len(texts), size):
        chunk = texts[start : start + size]
        with _autocast(precision, model.device):
            if text_cache is not None:
                emb = parts.text.head_forward(text_cache.lookup(chunk))
            else:
                tokens = {k: v.to(model.device) for k, v in model.tokenize(chunk).items()}
                emb = parts.text_features(tokens)
        chunks.append(F.normalize(emb.float(), dim=-1).cpu().numpy())
    return np.concatenate(chunks)


#: Settings that may change between a run and its resumption without a warning.
_RESUME_FREE = {
    "resume",
    "stop_after_steps",
    "progress",
    "num_threads",
    "log_every_steps",
    "save_every_steps",
    "eval_batch_size",
    "device",
    "data.num_workers",
}


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and key != "dual_encoder":
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _changed_settings(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Config keys whose value differs from the checkpoint's (ignoring run-control keys)."""
    old, new = _flatten(saved), _flatten(current)
    return sorted(k for k in new if k not in _RESUME_FREE and k in old and old[k] != new[k])


def _truncate_log(path: Path, step: int) -> None:
    """Drop log rows written after the checkpoint we resume from (by the interrupted run)."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by the interruption
        if row.get("type") in ("start", "resume") or row.get("step", 0) <= step:
            kept.append(line)
    path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")


def _summary(metrics: dict[str, float]) -> str:
    return ", ".join(
        f"{k.removeprefix('val/')}={v:.4f}"
        for k, v in metrics.items()
        if "recall@1" in k or "mean_recall" in k or "accuracy" in k
    )


# ---------------------------------------------------------------------------- train


def train(config: TrainConfig) -> TrainResult:
    """Fine-tune a CLIP-style model on image-caption pairs; see the module docstring."""
    config.validate()
    threads = torch.get_num_threads()
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    ctx = init_distributed(config.device)
    try:
        return _train(config, ctx)
    finally:
        shutdown_distributed(ctx)
        torch.set_num_threads(threads)


def _train(config: TrainConfig, ctx: DistributedContext) -> TrainResult:
    output_dir = Path(config.output_dir)
    show = config.progress and ctx.is_main
    _seed_everything(config.seed + ctx.rank)

    # ---- data first: every input error is raised before a model is loaded
    t_start = time.perf_counter()
    train_set, val_set = load_pair_datasets(config.data, config.captions, progress=show)
    data_seconds = time.perf_counter() - t_start
    steps_per_epoch = _check_sizes(config, train_set, ctx)
    if val_set is not None:
        names = metric_names(zero_shot_columns(config, val_set))
        if config.best_metric not in names:
            raise FashionCLIPError(
                f"best_metric {config.best_metric!r} is not a validation metric; "
                f"choose one of: {', '.join(names)}"
            )
    total_steps = steps_per_epoch * config.epochs
    micro_per_epoch = steps_per_epoch * config.optim.accum_steps

    # ---- resume?
    resume_from: Path | None = None
    if config.resume == "auto":
        resume_from = ckpt.find_resume_checkpoint(output_dir)
    elif config.resume != "never":
        resume_from = Path(config.resume)
        if not (resume_from / ckpt.STATE_DIR).is_dir():
            raise FashionCLIPError(f"cannot resume: {resume_from} has no {ckpt.STATE_DIR}/")
    state = ckpt.read_state(resume_from) if resume_from is not None else None
    if state is not None and state.get("world_size", 1) != ctx.world_size:
        raise FashionCLIPError(
            f"the checkpoint was written by {state.get('world_size')} processes; resume with the same number"
        )
    if ctx.is_main:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "train_config.json").write_text(json.dumps(config.to_dict(), indent=2) + "\n")
    barrier(ctx)

    # ---- model
    model = _load_model(config, ctx, resume_from)
    device = model.device
    precision = _precision(config, device)
    parts = ModelParts(model)
    mc = config.model
    parts.lock(
        lock_image=mc.lock_image,
        image_unlocked_groups=mc.image_unlocked_groups,
        lock_text=mc.lock_text,
        text_unlocked_groups=mc.text_unlocked_groups,
        lock_image_projection=mc.lock_image_projection,
        lock_text_projection=mc.lock_text_projection,
        learn_logit_scale=config.loss.learn_logit_scale,
    )
    release_package_towers(model, parts)
    if state is None and config.loss.init_logit_scale is not None and parts.logit_scale is not None:
        with torch.no_grad():
            parts.logit_scale.fill_(config.loss.init_logit_scale)
    kind = config.loss.kind
    if kind == "auto":
        kind = "siglip" if parts.logit_bias is not None else "clip"
    if kind == "clip" and parts.logit_bias is not None:
        parts.logit_bias.requires_grad_(False)  # unused by the InfoNCE loss
    if kind == "siglip" and parts.logit_bias is None:
        raise FashionCLIPError(
            "loss.kind = 'siglip' needs a model with a logit_bias (a SigLIP model)"
        )
    loss_fn: nn.Module
    if kind == "siglip":
        loss_fn = SigLipLoss(
            rank=ctx.rank, world_size=ctx.world_size, gather_with_grad=config.loss.gather_with_grad
        )
    else:
        loss_fn = ClipLoss(
            local_loss=config.loss.local_loss,
            gather_with_grad=config.loss.gather_with_grad,
            rank=ctx.rank,
            world_size=ctx.world_size,
        )

    # ---- frozen text backbone: embed every caption once
    text_cache = None
    cache_seconds = 0.0
    if mc.cache_locked_text and parts.text.backbone_frozen:
        parts.set_train_mode()
        text_cache = TextFeatureCache(model, parts, device)
        captions = train_set.caption_candidates()
        if val_set is not None:
            captions += val_set.eval_captions()
        t0 = time.perf_counter()
        with _autocast(precision, device):
            text_cache.add(captions, progress=show)
        cache_seconds = time.perf_counter() - t0
        if show:
            tqdm.write(
                f"cached frozen text features of {len(text_cache):,} captions "
                f"in {time.perf_counter() - t0:.1f}s"
            )

    image_cache = None
    if mc.cache_image_views:
        if not parts.image.backbone_frozen:
            raise FashionCLIPError(
                "model.cache_image_views needs a fully frozen image backbone "
                "(model.lock_image = true, model.image_unlocked_groups = 0)"
            )
        image_cache = ImageViewCache(len(train_set), mc.cache_image_views, device)

    optimizer = build_optimizer(parts, config)
    step_module = _StepModule(model, parts, text_cache, image_cache)
    forward: nn.Module = step_module
    if ctx.enabled:
        forward = nn.parallel.DistributedDataParallel(
            step_module,
            device_ids=[device.index] if device.type == "cuda" else None,
        )

    # ---- where to start
    history: list[dict[str, Any]] = []
    best_value: float | None = None
    best_epoch: int | None = None
    global_step, epoch, micro_start = 0, 0, 0
    if state is not None:
        global_step = int(state["global_step"])
        epoch = int(state["epoch"])
        micro_start = int(state["micro_batch"])
        history = list(state.get("history", []))
        best_value = state.get("best_value")
        best_epoch = state.get("best_epoch")
        ckpt.restore_training_state(resume_from, state, optimizer, ctx.rank)
        if state.get("total_steps") != total_steps:
            raise FashionCLIPError(
                f"cannot resume {resume_from}: it planned {state.get('total_steps')} steps, this "
                f"config plans {total_steps} (epochs, batch size, accumulation or data changed)"
            )
    else:
        torch.manual_seed(config.seed + ctx.rank)
    log_path = output_dir / LOG_FILE
    if ctx.is_main:
        if state is None:
            _append_log(
                log_path,
                {
                    "type": "start",
                    "train_size": len(train_set),
                    "val_size": len(val_set) if val_set else 0,
                    "skipped_train": train_set.skipped,
                    "skipped_val": val_set.skipped if val_set else {},
                    "steps_per_epoch": steps_per_epoch,
                    "total_steps": total_steps,
                    "world_size": ctx.world_size,
                    "loss": kind,
                    "trainable_parameters": sum(p.numel() for _, p in parts.trainable_parameters()),
                    "cached_captions": len(text_cache) if text_cache else 0,
                    "data_seconds": round(data_seconds, 2),
                    "text_cache_seconds": round(cache_seconds, 2),
                    "setup_seconds": round(time.perf_counter() - t_start, 2),
                },
            )
        else:
            _truncate_log(log_path, global_step)
            changed = _changed_settings(state.get("config") or {}, config.to_dict())
            _append_log(
                log_path,
                {
                    "type": "resume",
                    "step": global_step,
                    "from": str(resume_from),
                    "changed": changed,
                },
            )
            if changed and show:
                tqdm.write(
                    "resuming with changed settings: " + ", ".join(changed) + " (the optimizer "
                    "keeps the checkpoint's learning rates and hyper-parameters)"
                )
        if train_set.skipped:
            tqdm.write(f"skipped training rows: {train_set.skipped}")

    def save_last(next_epoch: int, next_micro: int) -> Path:
        final = output_dir / "last"
        tmp = output_dir / "last.tmp"
        if ctx.is_main:
            if tmp.exists():
                shutil.rmtree(tmp)
            ckpt.save_model(model, tmp)
        barrier(ctx)
        ckpt.write_state(
            tmp,
            {
                "global_step": global_step,
                "epoch": next_epoch,
                "micro_batch": next_micro,
                "total_steps": total_steps,
                "best_value": best_value,
                "best_epoch": best_epoch,
                "history": history,
                "world_size": ctx.world_size,
                "config": config.to_dict(),
            },
            optimizer,
            ctx.rank,
            ctx.is_main,
        )
        barrier(ctx)
        if ctx.is_main:
            ckpt.replace_folder(tmp, final)
        barrier(ctx)
        return final

    if state is None and config.val_before_training and val_set is not None:
        if ctx.is_main:
            t0 = time.perf_counter()
            metrics = evaluate_model(model, parts, val_set, config, text_cache, precision)
            row = {"type": "val", "epoch": 0, "step": 0, **metrics}
            row["seconds"] = round(time.perf_counter() - t0, 2)
            _append_log(log_path, row)
            if show:
                tqdm.write(f"before training: {_summary(metrics)}")
        barrier(ctx)

    collate = PairCollate(model.image_processor, keep_size=ctx.enabled)
    dataset = PairSampleDataset(
        train_set,
        config.augment,
        config.seed,
        views=mc.cache_image_views,
        cached=image_cache.filled if image_cache is not None else None,
    )
    local_batch = config.batch_size // ctx.world_size
    accum = config.optim.accum_steps
    opt = config.optim
    parts.set_train_mode()
    trainable = [p for _, p in parts.trainable_parameters()]
    train_time, train_samples = 0.0, 0
    failed_total = 0
    finished = True
    stop = False
    last_path = output_dir / "last"

    while epoch < config.epochs and not stop:
        sampler = EpochBatchSampler(
            len(train_set),
            config.batch_size,
            epoch,
            config.seed,
            rank=ctx.rank,
            world_size=ctx.world_size,
            start=micro_start,
            num_batches=micro_per_epoch,
        )
        loader = torch.utils.data.DataLoader(
            dataset,
            batch_sampler=sampler,
            collate_fn=collate,
            num_workers=config.data.num_workers,
            generator=torch.Generator(),
            persistent_workers=False,
            pin_memory=device.type == "cuda",
        )
        bar = tqdm(
            total=micro_per_epoch,
            initial=micro_start,
            desc=f"epoch {epoch + 1}/{config.epochs}",
            unit="batch",
            disable=not show,
        )
        running_loss, running_n = 0.0, 0
        micro = micro_start
        tick = time.perf_counter()
        for batch in loader:
            failed_total += batch.failed
            pixels = batch.pixel_values
            if pixels is not None:
                pixels = pixels.to(device, non_blocking=True)
                if device.type == "cpu":
                    pixels = pixels.contiguous(memory_format=torch.channels_last)
            labels = batch.caption_ids.to(device) if config.loss.caption_positives else None
            last_micro = (micro + 1) % accum == 0
            sync = nullcontext() if (last_micro or not ctx.enabled) else forward.no_sync()
            with sync:
                with _autocast(precision, device):
                    image, text, scale, bias = forward(
                        pixels, batch.captions, batch.indices, batch.views, batch.has_pixels
                    )
                if kind == "siglip":
                    loss = loss_fn(image, text, scale, bias, labels=labels)
                else:
                    loss = loss_fn(image, text, scale, labels=labels)
                (loss / accum).backward()
            running_loss += float(loss.detach())
            running_n += 1
            micro += 1
            bar.update(1)
            if last_micro:
                if opt.grad_clip:
                    torch.nn.utils.clip_grad_norm_(trainable, opt.grad_clip)
                factor = _lr_factor(
                    global_step, total_steps, opt.warmup_steps, opt.schedule, opt.min_lr_ratio
                )
                for group in optimizer.param_groups:
                    group["lr"] = group["base_lr"] * factor
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                if parts.logit_scale is not None and parts.logit_scale.requires_grad:
                    clamp_logit_scale_(parts.logit_scale)
                global_step += 1
                now = time.perf_counter()
                samples = local_batch * accum * ctx.world_size
                train_time += now - tick
                train_samples += samples
                tick = now
                sps = train_samples / train_time if train_time > 0 else 0.0
                if show:
                    bar.set_postfix(
                        loss=f"{running_loss / running_n:.4f}",
                        lr=f"{opt.lr * factor:.2e}",
                        sps=f"{sps:.1f}",
                    )
                if (
                    ctx.is_main
                    and config.log_every_steps
                    and global_step % config.log_every_steps == 0
                ):
                    _append_log(
                        log_path,
                        {
                            "type": "train",
                            "epoch": epoch + 1,
                            "step": global_step,
                            "loss": running_loss / running_n,
                            "lr": opt.lr * factor,
                            "logit_scale": float(parts.logit_scale.detach().exp())
                            if parts.logit_scale is not None
                            else None,
                            "samples_per_s": sps,
                            "train_seconds": round(train_time, 3),
                        },
                    )
                    running_loss, running_n = 0.0, 0
                at_end = micro == micro_per_epoch
                if (
                    config.stop_after_steps is not None
                    and global_step >= config.stop_after_steps
                    and not at_end
                ):
                    last_path = save_last(epoch, micro)
                    finished, stop = False, True
                    break
                if (
                    config.save_every_steps
                    and global_step % config.save_every_steps == 0
                    and not at_end
                ):
                    last_path = save_last(epoch, micro)
                    tick = time.perf_counter()
        bar.close()
        if stop:
            break

        # ---- end of epoch: validate, keep the best, save the state
        epoch += 1
        micro_start = 0
        validate = val_set is not None and (
            epoch % config.val_every_epochs == 0 or epoch == config.epochs
        )
        is_best = False
        if validate:
            error = None
            if ctx.is_main:
                t0 = time.perf_counter()
                metrics = evaluate_model(model, parts, val_set, config, text_cache, precision)
                row = {"type": "val", "epoch": epoch, "step": global_step, **metrics}
                row["seconds"] = round(time.perf_counter() - t0, 2)
                history.append(row)
                _append_log(log_path, row)
                value = metrics.get(config.best_metric)
                if value is None:
                    error = (
                        f"best_metric {config.best_metric!r} is not a validation metric; "
                        f"available: {sorted(metrics)}"
                    )
                elif (
                    best_value is None
                    or (config.best_mode == "max" and value > best_value)
                    or (config.best_mode == "min" and value < best_value)
                ):
                    best_value, best_epoch, is_best = float(value), epoch, True
                if show:
                    best_mark = " (best)" if is_best else ""
                    tqdm.write(f"epoch {epoch}: {_summary(metrics)}{best_mark}")
            history, best_value, best_epoch, is_best, error = broadcast_object(
                ctx, (history, best_value, best_epoch, is_best, error)
            )
            if error:
                raise FashionCLIPError(error)
        if is_best and ctx.is_main:
            best_tmp = output_dir / "best.tmp"
            if best_tmp.exists():
                shutil.rmtree(best_tmp)
            ckpt.save_model(model, best_tmp)
            (best_tmp / "metrics.json").write_text(json.dumps(history[-1], indent=2) + "\n")
            ckpt.replace_folder(best_tmp, output_dir / "best")
        last_path = save_last(epoch, 0)
        tick = time.perf_counter()
        if config.stop_after_steps is not None and global_step >= config.stop_after_steps:
            finished = epoch >= config.epochs
            break

    barrier(ctx)
    sps = train_samples / train_time if train_time > 0 else 0.0
    if ctx.is_main:
        _append_log(
            log_path,
            {
                "type": "end" if finished else "stopped",
                "step": global_step,
                "epoch": epoch,
                "samples_per_s": sps,
                "failed_images": failed_total,
                "best_value": best_value,
                "best_epoch": best_epoch,
            },
        )
    best_path = output_dir / "best"
    return TrainResult(
        output_dir=output_dir,
        last_checkpoint=last_path,
        best_checkpoint=best_path if best_epoch is not None and best_path.is_dir() else None,
        best_metric=best_value,
        best_epoch=best_epoch,
        global_step=global_step,
        total_steps=total_steps,
        epochs_completed=epoch,
        finished=finished,
        samples_per_second=sps,
        train_size=len(train_set),
        val_size=len(val_set) if val_set else 0,
        skipped_train=dict(train_set.skipped),
        skipped_val=dict(val_set.skipped) if val_set else {},
        history=history,
        model=model,
    )
