"""Everything before the first step: data, resume point, model, loss, caches, optimizer, schedule.

:func:`setup_run` reads the data first, so that every input error is raised before a model is
loaded, and returns the :class:`~fashionclip.train.state.TrainRun` that the epochs, validation and
checkpoints work with. The order of the steps is fixed (it decides the random streams, and so the
results for a seed).
"""

from __future__ import annotations

import json
import math
import random
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from fashionclip.errors import FashionCLIPError
from fashionclip.train import checkpoint as ckpt
from fashionclip.train.config import TrainConfig
from fashionclip.train.data import PairCollate, PairDataset, PairSampleDataset, load_pair_datasets
from fashionclip.train.distributed import DistributedContext, barrier
from fashionclip.train.features import ImageViewCache, StepModule, TextFeatureCache, autocast
from fashionclip.train.label_prompts import label_prompt_loss
from fashionclip.train.loss import ContrastiveLoss, create_loss, resolve_loss_kind
from fashionclip.train.parts import ModelParts, release_package_towers
from fashionclip.train.state import SetupTimes, TrainRun
from fashionclip.train.validation import Validator

if TYPE_CHECKING:
    from fashionclip.models.model import FashionCLIP


def setup_run(config: TrainConfig, ctx: DistributedContext) -> TrainRun:
    """Data, resume point, model, loss, caches and optimizer of a run, in that order."""
    times = SetupTimes(started=time.perf_counter())
    show = config.progress and ctx.is_main
    seed_everything(config.seed + ctx.rank)
    train_set, val_set = load_pair_datasets(config.data, config.captions, progress=show)
    times.data = time.perf_counter() - times.started
    steps_per_epoch = check_sizes(config, train_set, ctx)
    validator = build_validator(config, val_set)
    resume_from, state = find_resume(config, ctx)
    output_dir = Path(config.output_dir)
    if ctx.is_main:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "train_config.json").write_text(json.dumps(config.to_dict(), indent=2) + "\n")
    barrier(ctx)

    model = load_model(config, ctx, resume_from)
    if resume_from is None and config.model.image_projection:
        replace_image_projection(model, config)
    precision = resolve_precision(config, model.device)
    parts = prepare_parts(config, model, fresh=state is None)
    loss_kind, loss_fn = setup_loss(config, parts, ctx)
    t0 = time.perf_counter()
    if config.loss.label_prompts and parts.logit_scale is None:
        raise FashionCLIPError("loss.label_prompts needs a model with a learned temperature")
    label_loss = label_prompt_loss(
        config.loss.label_prompts,
        config.loss.label_prompt_weight,
        train_set,
        config.loss.label_prompt_template_weights,
    )
    prompts = list(label_loss.label_prompts.prompts) if label_loss is not None else []
    text_cache = build_text_cache(
        config, model, parts, train_set, val_set, precision, show, extra=prompts
    )
    times.text_cache = time.perf_counter() - t0
    image_cache = build_image_cache(config, parts, train_set, model.device)
    optimizer = build_optimizer(parts, config)
    forward: nn.Module = StepModule(model, parts, text_cache, image_cache, prompts)
    if ctx.enabled:
        device = model.device
        forward = nn.parallel.DistributedDataParallel(
            forward, device_ids=[device.index] if device.type == "cuda" else None
        )
    samples = PairSampleDataset(
        train_set,
        config.augment,
        config.seed,
        views=config.model.cache_image_views,
        cached=image_cache.filled if image_cache is not None else None,
    )
    return TrainRun(
        config=config,
        ctx=ctx,
        train_set=train_set,
        val_set=val_set,
        validator=validator,
        steps_per_epoch=steps_per_epoch,
        resume_from=resume_from,
        state=state,
        model=model,
        parts=parts,
        precision=precision,
        loss_kind=loss_kind,
        loss_fn=loss_fn,
        label_loss=label_loss,
        text_cache=text_cache,
        image_cache=image_cache,
        optimizer=optimizer,
        forward=forward,
        samples=samples,
        collate=PairCollate(
            model.image_processor, keep_size=ctx.enabled, colour=label_loss is not None
        ),
        times=times,
    )


# ---------------------------------------------------------------------------- data and resume


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def check_sizes(config: TrainConfig, train_set: PairDataset, ctx: DistributedContext) -> int:
    """Optimizer steps per epoch; raises when the batch cannot be formed."""
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


def build_validator(config: TrainConfig, val_set: PairDataset | None) -> Validator | None:
    """The validation evaluators; checks that ``best_metric`` is one of their metrics."""
    if val_set is None:
        return None
    validator = Validator.build(config, val_set)
    names = validator.metric_names()
    if config.best_metric not in names:
        raise FashionCLIPError(
            f"best_metric {config.best_metric!r} is not a validation metric; "
            f"choose one of: {', '.join(names)}"
        )
    return validator


def find_resume(
    config: TrainConfig, ctx: DistributedContext
) -> tuple[Path | None, dict[str, Any] | None]:
    """The checkpoint to resume from (``resume``: auto, never or a folder) and its state."""
    resume_from: Path | None = None
    if config.resume == "auto":
        resume_from = ckpt.find_resume_checkpoint(Path(config.output_dir))
    elif config.resume != "never":
        resume_from = Path(config.resume)
        if not (resume_from / ckpt.STATE_DIR).is_dir():
            raise FashionCLIPError(f"cannot resume: {resume_from} has no {ckpt.STATE_DIR}/")
    state = ckpt.read_state(resume_from) if resume_from is not None else None
    if state is not None and state.get("world_size", 1) != ctx.world_size:
        raise FashionCLIPError(
            f"the checkpoint was written by {state.get('world_size')} processes; "
            "resume with the same number"
        )
    return resume_from, state


# ---------------------------------------------------------------------------- model and loss


def load_model(
    config: TrainConfig, ctx: DistributedContext, resume_from: Path | None
) -> FashionCLIP:
    """The starting weights: the checkpoint resumed, a dual encoder from towers, or ``init``."""
    import fashionclip

    source: str | Path
    if resume_from is not None:
        source = resume_from
    elif config.model.init == "dual-encoder":
        source = Path(config.output_dir) / "init"
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


def replace_image_projection(model: FashionCLIP, config: TrainConfig) -> None:
    """A fresh image projection (``model.image_projection``) over the image features (with
    ``model.image_feature_blocks``: multi-level ones), recorded in the model's config."""
    from fashionclip.models.dual_encoder import FashionDualEncoder, new_projection

    module = model.module
    if not isinstance(module, FashionDualEncoder):
        raise FashionCLIPError("model.image_projection needs a fashionclip dual-encoder model")
    kind = config.model.image_projection
    hidden = config.model.image_projection_hidden_dim
    if config.model.image_feature_blocks:
        module.vision_model.set_feature_blocks(config.model.image_feature_blocks)
        module.config.image_feature_blocks = list(module.vision_model.feature_blocks)
    torch.manual_seed(config.seed)
    head = new_projection(kind, module.vision_model.feature_dim, module.embedding_dim, hidden)
    module.visual_projection = head.to(model.device, dtype=module.logit_scale.dtype)
    if module.config.text_projection is None:  # the text side keeps its own kind
        module.config.text_projection = module.config.projection
        module.config.text_projection_hidden_dim = module.config.projection_hidden_dim
    module.config.projection = "mlp" if kind == "mlp" else "linear"
    module.config.projection_hidden_dim = hidden if kind == "mlp" else None


def resolve_precision(config: TrainConfig, device: torch.device) -> str:
    """``auto`` -> bf16 on CUDA, fp32 elsewhere."""
    if config.precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    return config.precision


def prepare_parts(config: TrainConfig, model: FashionCLIP, fresh: bool) -> ModelParts:
    """Lock what ``model.*`` locks; on a fresh start, set ``loss.init_logit_scale``."""
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
    init_scale = config.loss.init_logit_scale
    if fresh and init_scale is not None and parts.logit_scale is not None:
        with torch.no_grad():
            parts.logit_scale.fill_(init_scale)
    return parts


def setup_loss(
    config: TrainConfig, parts: ModelParts, ctx: DistributedContext
) -> tuple[str, ContrastiveLoss]:
    """The loss of ``loss.kind`` (``auto`` resolved by the model's bias), checked against it."""
    kind = resolve_loss_kind(config.loss.kind, parts.logit_bias is not None)
    loss_fn = create_loss(
        kind,
        local_loss=config.loss.local_loss,
        gather_with_grad=config.loss.gather_with_grad,
        rank=ctx.rank,
        world_size=ctx.world_size,
    )
    if parts.logit_bias is not None and not loss_fn.uses_logit_bias:
        parts.logit_bias.requires_grad_(False)  # unused by this loss
    if parts.logit_bias is None and loss_fn.uses_logit_bias:
        raise FashionCLIPError(
            f"loss.kind = {kind!r} needs a model with a logit_bias (a SigLIP model)"
        )
    return kind, loss_fn


# ---------------------------------------------------------------------------- caches, optimizer


def build_text_cache(
    config: TrainConfig,
    model: FashionCLIP,
    parts: ModelParts,
    train_set: PairDataset,
    val_set: PairDataset | None,
    precision: str,
    show: bool,
    extra: list[str] | None = None,
) -> TextFeatureCache | None:
    """A frozen text backbone's features of every caption (``model.cache_locked_text``), and of
    the ``extra`` texts (label prompts)."""
    if not (config.model.cache_locked_text and parts.text.backbone_frozen):
        return None
    parts.set_train_mode()
    text_cache = TextFeatureCache(model, parts, model.device)
    captions = train_set.caption_candidates() + list(extra or [])
    if val_set is not None:
        captions += val_set.eval_captions()
    t0 = time.perf_counter()
    with autocast(precision, model.device):
        text_cache.add(captions, progress=show)
    if show:
        tqdm.write(
            f"cached frozen text features of {len(text_cache):,} captions "
            f"in {time.perf_counter() - t0:.1f}s"
        )
    return text_cache


def build_image_cache(
    config: TrainConfig, parts: ModelParts, train_set: PairDataset, device: torch.device
) -> ImageViewCache | None:
    """Per-view frozen image features (``model.cache_image_views``); needs a frozen backbone."""
    views = config.model.cache_image_views
    if not views:
        return None
    if not parts.image.backbone_frozen:
        raise FashionCLIPError(
            "model.cache_image_views needs a fully frozen image backbone "
            "(model.lock_image = true, model.image_unlocked_groups = 0)"
        )
    return ImageViewCache(len(train_set), views, device)


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


def lr_factor(step: int, total: int, warmup: int, schedule: str, min_ratio: float) -> float:
    """The learning-rate multiplier at ``step``: linear warm-up, then cosine (or constant)."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
