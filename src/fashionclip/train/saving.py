"""Saving and restoring a run: ``last/`` (model + resumable state), ``best/``, resume.

The file formats are :mod:`fashionclip.train.checkpoint`'s; this module decides what goes into
them (the :class:`~fashionclip.train.state.Progress` of the run) and when folders are replaced.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch

from fashionclip.errors import FashionCLIPError
from fashionclip.train import checkpoint as ckpt
from fashionclip.train.distributed import barrier
from fashionclip.train.state import Progress, TrainRun


def restore_progress(run: TrainRun) -> Progress:
    """The progress, optimizer and RNG states of the checkpoint resumed (or a seeded start)."""
    if run.state is None or run.resume_from is None:
        torch.manual_seed(run.config.seed + run.ctx.rank)
        return Progress()
    progress = Progress.from_state(run.state)
    ckpt.restore_training_state(run.resume_from, run.state, run.optimizer, run.ctx.rank)
    planned = run.state.get("total_steps")
    if planned != run.total_steps:
        raise FashionCLIPError(
            f"cannot resume {run.resume_from}: it planned {planned} steps, this "
            f"config plans {run.total_steps} (epochs, batch size, accumulation or data changed)"
        )
    return progress


def state_payload(run: TrainRun, progress: Progress) -> dict[str, Any]:
    """What ``state.json`` records of the run (besides optimizer and RNG states)."""
    return {
        "global_step": progress.global_step,
        "epoch": progress.epoch,
        "micro_batch": progress.micro_batch,
        "total_steps": run.total_steps,
        "best_value": progress.best_value,
        "best_epoch": progress.best_epoch,
        "history": progress.history,
        "world_size": run.ctx.world_size,
        "config": run.config.to_dict(),
    }


def save_last(run: TrainRun, progress: Progress) -> Path:
    """Write ``last/``: the model and the state to resume at ``progress`` (every rank calls it)."""
    ctx = run.ctx
    final = run.output_dir / "last"
    tmp = run.output_dir / "last.tmp"
    if ctx.is_main:
        if tmp.exists():
            shutil.rmtree(tmp)
        ckpt.save_model(run.model, tmp)
    barrier(ctx)
    ckpt.write_state(tmp, state_payload(run, progress), run.optimizer, ctx.rank, ctx.is_main)
    barrier(ctx)
    if ctx.is_main:
        ckpt.replace_folder(tmp, final)
    barrier(ctx)
    return final


def save_best(run: TrainRun, metrics_row: dict[str, Any]) -> Path:
    """Write ``best/``: the model and its validation row as ``metrics.json`` (main rank only)."""
    best_tmp = run.output_dir / "best.tmp"
    if best_tmp.exists():
        shutil.rmtree(best_tmp)
    ckpt.save_model(run.model, best_tmp)
    (best_tmp / "metrics.json").write_text(json.dumps(metrics_row, indent=2) + "\n")
    final = run.output_dir / "best"
    ckpt.replace_folder(best_tmp, final)
    return final
