"""The run's ``log.jsonl``: one JSON row per event (start, resume, train, val, end/stopped)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from fashionclip.train.state import Progress, TrainRun

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


def append_log(path: Path, row: dict[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(row) + "\n")


def truncate_log(path: Path, step: int) -> None:
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


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and key != "dual_encoder":
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def changed_settings(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Config keys whose value differs from the checkpoint's (ignoring run-control keys)."""
    old, new = _flatten(saved), _flatten(current)
    return sorted(k for k in new if k not in _RESUME_FREE and k in old and old[k] != new[k])


def summary(metrics: dict[str, float]) -> str:
    """The headline validation metrics, for the console."""
    return ", ".join(
        f"{k.removeprefix('val/')}={v:.4f}"
        for k, v in metrics.items()
        if "recall@1" in k or "mean_recall" in k or "accuracy" in k
    )


def log_start(run: TrainRun) -> None:
    """The ``start`` row of a fresh run (main rank)."""
    train_set, val_set, times = run.train_set, run.val_set, run.times
    append_log(
        run.log_path,
        {
            "type": "start",
            "train_size": len(train_set),
            "val_size": len(val_set) if val_set else 0,
            "skipped_train": train_set.skipped,
            "skipped_val": val_set.skipped if val_set else {},
            "steps_per_epoch": run.steps_per_epoch,
            "total_steps": run.total_steps,
            "world_size": run.ctx.world_size,
            "loss": run.loss_kind,
            "trainable_parameters": sum(p.numel() for _, p in run.parts.trainable_parameters()),
            "cached_captions": len(run.text_cache) if run.text_cache else 0,
            "data_seconds": round(times.data, 2),
            "text_cache_seconds": round(times.text_cache, 2),
            "setup_seconds": round(time.perf_counter() - times.started, 2),
        },
    )


def log_resume(run: TrainRun, progress: Progress) -> None:
    """Drop the interrupted run's later rows, add a ``resume`` row naming changed settings."""
    truncate_log(run.log_path, progress.global_step)
    changed = changed_settings((run.state or {}).get("config") or {}, run.config.to_dict())
    append_log(
        run.log_path,
        {
            "type": "resume",
            "step": progress.global_step,
            "from": str(run.resume_from),
            "changed": changed,
        },
    )
    if changed and run.show:
        tqdm.write(
            "resuming with changed settings: " + ", ".join(changed) + " (the optimizer "
            "keeps the checkpoint's learning rates and hyper-parameters)"
        )
