"""Checkpoints: the model in Hugging Face layout plus a resumable training state, without pickle.

``<output_dir>/last/`` is a complete model folder (``fashionclip.load`` reads it) with a
``training_state/`` subfolder:

* ``state.json``: epoch, step, position in the epoch, best metric, validation history, the
  optimizer's hyper-parameters and Python/NumPy RNG states;
* ``optimizer.safetensors``: the optimizer's per-parameter tensors (AdamW moments and steps);
* ``rng-rank<r>.safetensors``: each data-parallel rank's torch CPU (and CUDA) RNG state.

Folders are written under a temporary name and renamed into place, so an interruption while
saving leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from fashionclip.errors import FashionCLIPError

if TYPE_CHECKING:
    from fashionclip.models.model import FashionCLIP

#: What ``np.random.get_state()`` returns (legacy form).
NumpyRngState = tuple[str, np.ndarray, int, int, float]

STATE_DIR = "training_state"
STATE_FILE = "state.json"
OPTIMIZER_FILE = "optimizer.safetensors"
FORMAT_VERSION = 1


def save_model(model: FashionCLIP, folder: Path) -> None:
    """Write a ``fashionclip.load``-able model folder (weights as safetensors, tokenizer, processor)."""
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # "Writing model shards" at every save
    try:
        model.save_pretrained(folder)  # its kind's adapter keeps the module's memory format
    finally:
        if bars:
            hf_logging.enable_progress_bar()


def optimizer_tensors(
    optimizer: torch.optim.Optimizer,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer state dict into safetensors-able tensors and JSON-able rest."""
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, entries in state["state"].items():
        for key, value in entries.items():
            if torch.is_tensor(value):
                tensors[f"{index}.{key}"] = value.detach().to("cpu").contiguous()
            else:
                scalars.setdefault(str(index), {})[key] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def load_optimizer_state(
    optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, Any]
) -> None:
    state: dict[int, dict[str, Any]] = {}
    for name, tensor in tensors.items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = tensor
    for index, entries in meta.get("scalars", {}).items():
        state.setdefault(int(index), {}).update(entries)
    groups = meta["param_groups"]
    if len(groups) != len(optimizer.param_groups) or any(
        len(a["params"]) != len(b["params"])
        for a, b in zip(groups, optimizer.param_groups, strict=True)
    ):
        raise FashionCLIPError(
            "the checkpoint's optimizer state does not match this model's trainable parameters "
            "(were towers locked differently?); resume with the same model settings"
        )
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def rng_tensors() -> dict[str, torch.Tensor]:
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda.{i}"] = s
    return tensors


def restore_rng(tensors: dict[str, torch.Tensor], python_state: Any, numpy_state: Any) -> None:
    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("cuda."))]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    if python_state is not None:
        version, internal, gauss = python_state
        random.setstate((version, tuple(internal), gauss))
    if numpy_state is not None:
        name, keys, pos, has_gauss, cached = numpy_state
        np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))


def python_rng_state() -> list[Any]:
    version, internal, gauss = random.getstate()
    return [version, list(internal), gauss]


def numpy_rng_state() -> list[Any]:
    name, keys, pos, has_gauss, cached = cast(NumpyRngState, np.random.get_state())
    return [name, keys.tolist(), int(pos), int(has_gauss), float(cached)]


def write_state(
    folder: Path,
    state: dict[str, Any],
    optimizer: torch.optim.Optimizer | None,
    rank: int,
    is_main: bool,
) -> None:
    """Write this rank's part of the training state into ``folder/training_state``."""
    state_dir = folder / STATE_DIR
    state_dir.mkdir(parents=True, exist_ok=True)
    save_file(rng_tensors(), str(state_dir / f"rng-rank{rank}.safetensors"))
    if not is_main:
        return
    meta: dict[str, Any] = {}
    if optimizer is not None:
        tensors, meta = optimizer_tensors(optimizer)
        save_file(tensors, str(state_dir / OPTIMIZER_FILE))
    payload = dict(state, format_version=FORMAT_VERSION, optimizer=meta)
    payload["python_rng"] = python_rng_state()
    payload["numpy_rng"] = numpy_rng_state()
    (state_dir / STATE_FILE).write_text(json.dumps(payload, indent=1) + "\n")


def read_state(folder: Path) -> dict[str, Any]:
    path = folder / STATE_DIR / STATE_FILE
    if not path.is_file():
        raise FashionCLIPError(
            f"{folder} is not a resumable checkpoint (no {STATE_DIR}/{STATE_FILE})"
        )
    state = json.loads(path.read_text())
    if state.get("format_version") != FORMAT_VERSION:
        raise FashionCLIPError(
            f"{path}: unsupported training-state format {state.get('format_version')}"
        )
    return state


def restore_training_state(
    folder: Path, state: dict[str, Any], optimizer: torch.optim.Optimizer, rank: int
) -> None:
    """Load the optimizer tensors and this rank's RNG states saved by :func:`write_state`."""
    state_dir = folder / STATE_DIR
    optimizer_path = state_dir / OPTIMIZER_FILE
    if optimizer_path.is_file():
        load_optimizer_state(optimizer, load_file(str(optimizer_path)), state["optimizer"])
    rng_path = state_dir / f"rng-rank{rank}.safetensors"
    if not rng_path.is_file():
        raise FashionCLIPError(
            f"{rng_path} is missing: resume with the same number of processes as the saved run"
        )
    restore_rng(load_file(str(rng_path)), state.get("python_rng"), state.get("numpy_rng"))


def find_resume_checkpoint(output_dir: Path) -> Path | None:
    """``last`` if complete, else ``last.old`` (an interrupted save), else None."""
    for name in ("last", "last.old"):
        folder = output_dir / name
        if (folder / STATE_DIR / STATE_FILE).is_file() and (folder / "config.json").is_file():
            return folder
    return None


def replace_folder(tmp: Path, final: Path) -> None:
    """Move ``tmp`` to ``final``, keeping the old ``final`` as ``.old`` until the move is done."""
    old = final.with_name(final.name + ".old")
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    if old.exists():
        shutil.rmtree(old)
