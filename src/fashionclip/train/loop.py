"""The training orchestrator: ``train(config) -> TrainResult``.

Like open_clip's ``main``: :func:`~fashionclip.train.setup.setup_run` (data, resume point, model,
loss, caches, optimizer), then per epoch :func:`~fashionclip.train.epoch.train_one_epoch`, and
after every ``val_every_epochs`` epochs the :class:`~fashionclip.train.validation.Validator`
(retrieval recall and zero-shot accuracy, appended to ``log.jsonl``); the best model by
``best_metric`` is kept in ``best/``, ``last/`` holds the latest model plus the state to resume
(:mod:`fashionclip.train.saving`).

Resuming is exact: data order and augmentation are functions of (seed, epoch, index), the
schedule is a function of the step, and optimizer and RNG states are restored, so N steps in one
run and N/2 + N/2 across a resume give the same weights.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from fashionclip.errors import FashionCLIPError
from fashionclip.train.config import TrainConfig
from fashionclip.train.distributed import (
    DistributedContext,
    barrier,
    broadcast_object,
    init_distributed,
    shutdown_distributed,
)
from fashionclip.train.epoch import train_one_epoch
from fashionclip.train.runlog import append_log, log_resume, log_start, summary
from fashionclip.train.saving import restore_progress, save_best, save_last
from fashionclip.train.setup import setup_run
from fashionclip.train.state import LOG_FILE, Progress, Throughput, TrainRun

__all__ = ["LOG_FILE", "TrainResult", "train"]


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
    run = setup_run(config, ctx)
    progress = restore_progress(run)
    if ctx.is_main:
        if run.state is None:
            log_start(run)
        else:
            log_resume(run, progress)
        if run.train_set.skipped:
            tqdm.write(f"skipped training rows: {run.train_set.skipped}")
    if run.state is None and config.val_before_training:
        _validate_start(run)
    run.parts.set_train_mode()
    meter = Throughput()
    finished = True
    while progress.epoch < config.epochs:
        if train_one_epoch(run, progress, meter):
            finished = False
            break
        progress.epoch += 1
        progress.micro_batch = 0
        _validate_epoch(run, progress)
        save_last(run, progress)
        if config.stop_after_steps is not None and progress.global_step >= config.stop_after_steps:
            finished = progress.epoch >= config.epochs
            break
    barrier(ctx)
    if ctx.is_main:
        append_log(
            run.log_path,
            {
                "type": "end" if finished else "stopped",
                "step": progress.global_step,
                "epoch": progress.epoch,
                "samples_per_s": meter.samples_per_second,
                "failed_images": meter.failed_images,
                "best_value": progress.best_value,
                "best_epoch": progress.best_epoch,
            },
        )
    return _result(run, progress, meter, finished)


def _validation_row(
    run: TrainRun, epoch: int, step: int
) -> tuple[dict[str, Any], dict[str, float]]:
    """Validate the current weights (main rank); the log row and the metrics."""
    assert run.validator is not None
    t0 = time.perf_counter()
    metrics = run.validator(run.model, run.parts, run.text_cache, run.precision)
    row: dict[str, Any] = {"type": "val", "epoch": epoch, "step": step, **metrics}
    row["seconds"] = round(time.perf_counter() - t0, 2)
    append_log(run.log_path, row)
    return row, metrics


def _validate_start(run: TrainRun) -> None:
    """``val_before_training``: the starting weights, logged as epoch 0 (never ``best``)."""
    if run.validator is None:
        return
    if run.ctx.is_main:
        _, metrics = _validation_row(run, 0, 0)
        if run.show:
            tqdm.write(f"before training: {summary(metrics)}")
    barrier(run.ctx)


def _validate_epoch(run: TrainRun, progress: Progress) -> None:
    """After every ``val_every_epochs`` epochs and the last: validate, keep the best model."""
    config = run.config
    epoch = progress.epoch
    if run.validator is None or not (
        epoch % config.val_every_epochs == 0 or epoch == config.epochs
    ):
        return
    error, is_best = None, False
    if run.ctx.is_main:
        row, metrics = _validation_row(run, epoch, progress.global_step)
        progress.history.append(row)
        value = metrics.get(config.best_metric)
        if value is None:
            error = (
                f"best_metric {config.best_metric!r} is not a validation metric; "
                f"available: {sorted(metrics)}"
            )
        elif _improves(value, progress.best_value, config.best_mode):
            progress.best_value, progress.best_epoch, is_best = float(value), epoch, True
        if run.show:
            tqdm.write(f"epoch {epoch}: {summary(metrics)}{' (best)' if is_best else ''}")
    shared = (progress.history, progress.best_value, progress.best_epoch, is_best, error)
    history, best_value, best_epoch, is_best, error = broadcast_object(run.ctx, shared)
    progress.history, progress.best_value, progress.best_epoch = history, best_value, best_epoch
    if error:
        raise FashionCLIPError(error)
    if is_best and run.ctx.is_main:
        save_best(run, progress.history[-1])


def _improves(value: float, best: float | None, mode: str) -> bool:
    return best is None or (value > best if mode == "max" else value < best)


def _result(run: TrainRun, progress: Progress, meter: Throughput, finished: bool) -> TrainResult:
    best_path = run.output_dir / "best"
    has_best = progress.best_epoch is not None and best_path.is_dir()
    return TrainResult(
        output_dir=run.output_dir,
        last_checkpoint=run.output_dir / "last",
        best_checkpoint=best_path if has_best else None,
        best_metric=progress.best_value,
        best_epoch=progress.best_epoch,
        global_step=progress.global_step,
        total_steps=run.total_steps,
        epochs_completed=progress.epoch,
        finished=finished,
        samples_per_second=meter.samples_per_second,
        train_size=len(run.train_set),
        val_size=len(run.val_set) if run.val_set else 0,
        skipped_train=dict(run.train_set.skipped),
        skipped_val=dict(run.val_set.skipped) if run.val_set else {},
        history=progress.history,
        model=run.model,
    )
