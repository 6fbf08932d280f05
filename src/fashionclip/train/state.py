"""The state a training run carries between its parts (setup, epochs, validation, checkpoints).

:class:`TrainRun` is what :func:`~fashionclip.train.setup.setup_run` builds and never changes
after; :class:`Progress` is where the run stands (what ``last/training_state`` records besides the
optimizer and RNG states); :class:`Throughput` measures the training time and samples.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torch import nn

    from fashionclip.models.model import FashionCLIP
    from fashionclip.train.config import TrainConfig
    from fashionclip.train.data import PairCollate, PairDataset, PairSampleDataset
    from fashionclip.train.distributed import DistributedContext
    from fashionclip.train.features import ImageViewCache, TextFeatureCache
    from fashionclip.train.label_prompts import LabelPromptLoss
    from fashionclip.train.loss import ContrastiveLoss
    from fashionclip.train.parts import ModelParts
    from fashionclip.train.validation import Validator

LOG_FILE = "log.jsonl"


@dataclass
class Progress:
    """Position (step, epoch, micro-batch within the epoch) and the best validation so far."""

    global_step: int = 0
    epoch: int = 0
    micro_batch: int = 0
    best_value: float | None = None
    best_epoch: int | None = None
    history: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_state(cls, state: dict[str, Any] | None) -> Progress:
        """The progress saved in a checkpoint's ``state.json`` (a fresh start for None)."""
        if state is None:
            return cls()
        return cls(
            global_step=int(state["global_step"]),
            epoch=int(state["epoch"]),
            micro_batch=int(state["micro_batch"]),
            best_value=state.get("best_value"),
            best_epoch=state.get("best_epoch"),
            history=list(state.get("history", [])),
        )


@dataclass
class Throughput:
    """Training seconds and samples (checkpointing and validation excluded), failed images."""

    train_time: float = 0.0
    train_samples: int = 0
    failed_images: int = 0
    tick: float = field(default_factory=time.perf_counter)

    def restart(self) -> None:
        """Start timing from now (after a pause that is not training)."""
        self.tick = time.perf_counter()

    def step(self, samples: int) -> None:
        """Count one optimizer step of ``samples`` pairs."""
        now = time.perf_counter()
        self.train_time += now - self.tick
        self.train_samples += samples
        self.tick = now

    @property
    def samples_per_second(self) -> float:
        return self.train_samples / self.train_time if self.train_time > 0 else 0.0


@dataclass
class SetupTimes:
    """Seconds spent before the first step (logged in the ``start`` row)."""

    started: float
    data: float = 0.0
    text_cache: float = 0.0


@dataclass
class TrainRun:
    """Everything one training run works with; built once by ``setup_run``."""

    config: TrainConfig
    ctx: DistributedContext
    train_set: PairDataset
    val_set: PairDataset | None
    validator: Validator | None
    steps_per_epoch: int
    resume_from: Path | None
    state: dict[str, Any] | None
    model: FashionCLIP
    parts: ModelParts
    precision: str
    loss_kind: str
    loss_fn: ContrastiveLoss
    label_loss: LabelPromptLoss | None
    text_cache: TextFeatureCache | None
    image_cache: ImageViewCache | None
    optimizer: torch.optim.Optimizer
    forward: nn.Module
    samples: PairSampleDataset
    collate: PairCollate
    times: SetupTimes

    @property
    def output_dir(self) -> Path:
        return Path(self.config.output_dir)

    @property
    def log_path(self) -> Path:
        return self.output_dir / LOG_FILE

    @property
    def show(self) -> bool:
        """Progress bars and messages: only on the main process."""
        return self.config.progress and self.ctx.is_main

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.config.epochs

    @property
    def micro_per_epoch(self) -> int:
        return self.steps_per_epoch * self.config.optim.accum_steps
