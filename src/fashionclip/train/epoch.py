"""One training epoch: micro-batches, gradient accumulation, optimizer steps, step logs.

One optimizer step = ``optim.accum_steps`` micro-batches of ``batch_size`` pairs (split over the
data-parallel ranks). Each micro-batch goes through the step module (image and text features)
and the run's loss; then gradient clipping, AdamW, the warm-up + cosine schedule and a clamp of
the temperature. The data order and augmentation are functions of (seed, epoch, index), so an
epoch can start at any micro-batch (resume).
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from fashionclip.train.data import Batch, EpochBatchSampler
from fashionclip.train.features import autocast
from fashionclip.train.loss import clamp_logit_scale_
from fashionclip.train.runlog import append_log
from fashionclip.train.saving import save_last
from fashionclip.train.setup import lr_factor
from fashionclip.train.state import Progress, Throughput, TrainRun


@dataclass
class _RunningLoss:
    """Mean loss of the micro-batches since the last ``train`` log row."""

    total: float = 0.0
    count: int = 0

    def add(self, value: float) -> None:
        self.total += value
        self.count += 1

    def mean(self) -> float:
        return self.total / self.count

    def reset(self) -> None:
        self.total, self.count = 0.0, 0


def train_one_epoch(run: TrainRun, progress: Progress, meter: Throughput) -> bool:
    """Train epoch ``progress.epoch`` from micro-batch ``progress.micro_batch`` to its end.

    Returns True when ``stop_after_steps`` stopped the run inside the epoch (``last/`` then holds
    the position to resume from); ``progress`` is advanced in place.
    """
    config = run.config
    accum = config.optim.accum_steps
    trainable = [p for _, p in run.parts.trainable_parameters()]
    loader = epoch_loader(run, progress.epoch, progress.micro_batch)
    bar = tqdm(
        total=run.micro_per_epoch,
        initial=progress.micro_batch,
        desc=f"epoch {progress.epoch + 1}/{config.epochs}",
        unit="batch",
        disable=not run.show,
    )
    running = _RunningLoss()
    meter.restart()
    try:
        for batch in loader:
            meter.failed_images += batch.failed
            last_micro = (progress.micro_batch + 1) % accum == 0
            running.add(forward_backward(run, batch, sync=last_micro))
            progress.micro_batch += 1
            bar.update(1)
            if not last_micro:
                continue
            factor = optimizer_step(run, trainable, progress.global_step)
            progress.global_step += 1
            meter.step(config.batch_size * accum)
            _report_step(run, progress, meter, running, factor, bar)
            if _checkpoint_within_epoch(run, progress, meter):
                return True
    finally:
        bar.close()
    return False


def epoch_loader(run: TrainRun, epoch: int, start: int) -> torch.utils.data.DataLoader[Any]:
    """This rank's micro-batches of ``epoch`` from micro-batch ``start`` on."""
    config, ctx = run.config, run.ctx
    sampler = EpochBatchSampler(
        len(run.train_set),
        config.batch_size,
        epoch,
        config.seed,
        rank=ctx.rank,
        world_size=ctx.world_size,
        start=start,
        num_batches=run.micro_per_epoch,
    )
    return torch.utils.data.DataLoader(
        run.samples,
        batch_sampler=sampler,
        collate_fn=run.collate,
        num_workers=config.data.num_workers,
        generator=torch.Generator(),
        persistent_workers=False,
        pin_memory=run.model.device.type == "cuda",
    )


def forward_backward(run: TrainRun, batch: Batch, sync: bool) -> float:
    """Loss of one micro-batch, its gradient accumulated (all-reduced only when ``sync``)."""
    device = run.model.device
    pixels = batch.pixel_values
    if pixels is not None:
        pixels = pixels.to(device, non_blocking=True)
        if device.type == "cpu":
            pixels = pixels.contiguous(memory_format=torch.channels_last)
    labels = batch.caption_ids.to(device) if run.config.loss.caption_positives else None
    context: AbstractContextManager[Any] = nullcontext()
    if not sync and isinstance(run.forward, nn.parallel.DistributedDataParallel):
        context = run.forward.no_sync()
    with context:
        with autocast(run.precision, device):
            image, text, scale, bias, prompts = run.forward(
                pixels, batch.captions, batch.indices, batch.views, batch.has_pixels
            )
        loss = run.loss_fn(image, text, scale, bias, labels=labels)
        if run.label_loss is not None:
            colour = shows_colour_per_row(run, batch)
            loss = loss + run.label_loss(image, prompts, scale, batch.indices, colour)
        (loss / run.config.optim.accum_steps).backward()
    return float(loss.detach())


def shows_colour_per_row(run: TrainRun, batch: Batch) -> list[bool]:
    """Whether each row's image shows colour: from the decoded image, and for a cached view
    from the cache (which records it when the view is first decoded)."""
    cache = run.image_cache
    if cache is None:
        return [True if c is None else c for c in batch.colour]
    decoded = [i for i, c in enumerate(batch.colour) if c is not None]
    cache.store_colour(
        [batch.indices[i] for i in decoded],
        [batch.views[i] for i in decoded],
        [bool(batch.colour[i]) for i in decoded],
    )
    return cache.colour[batch.indices, batch.views].tolist()


def optimizer_step(run: TrainRun, trainable: list[nn.Parameter], step: int) -> float:
    """Clip, set the scheduled learning rates, step AdamW, clamp the temperature.

    Returns the learning-rate factor of ``step``.
    """
    opt = run.config.optim
    if opt.grad_clip:
        torch.nn.utils.clip_grad_norm_(trainable, opt.grad_clip)
    factor = lr_factor(step, run.total_steps, opt.warmup_steps, opt.schedule, opt.min_lr_ratio)
    for group in run.optimizer.param_groups:
        group["lr"] = group["base_lr"] * factor
    run.optimizer.step()
    run.optimizer.zero_grad(set_to_none=True)
    logit_scale = run.parts.logit_scale
    if logit_scale is not None and logit_scale.requires_grad:
        clamp_logit_scale_(logit_scale)
    return factor


def _report_step(
    run: TrainRun,
    progress: Progress,
    meter: Throughput,
    running: _RunningLoss,
    factor: float,
    bar: tqdm[Any],
) -> None:
    """Progress-bar postfix and, every ``log_every_steps``, a ``train`` row in the log."""
    config = run.config
    lr = config.optim.lr * factor
    sps = meter.samples_per_second
    if run.show:
        bar.set_postfix(loss=f"{running.mean():.4f}", lr=f"{lr:.2e}", sps=f"{sps:.1f}")
    every = config.log_every_steps
    if not (run.ctx.is_main and every and progress.global_step % every == 0):
        return
    scale = run.parts.logit_scale
    append_log(
        run.log_path,
        {
            "type": "train",
            "epoch": progress.epoch + 1,
            "step": progress.global_step,
            "loss": running.mean(),
            "lr": lr,
            "logit_scale": float(scale.detach().exp()) if scale is not None else None,
            "samples_per_s": sps,
            "train_seconds": round(meter.train_time, 3),
        },
    )
    running.reset()


def _checkpoint_within_epoch(run: TrainRun, progress: Progress, meter: Throughput) -> bool:
    """Save ``last/`` inside the epoch when asked to; True when ``stop_after_steps`` is reached.

    At the end of an epoch nothing is saved here: the epoch's end saves (after validation).
    """
    config = run.config
    if progress.micro_batch == run.micro_per_epoch:
        return False
    step = progress.global_step
    if config.stop_after_steps is not None and step >= config.stop_after_steps:
        save_last(run, progress)
        return True
    if config.save_every_steps and step % config.save_every_steps == 0:
        save_last(run, progress)
        meter.restart()
    return False
