"""`fashionclip.load`: one entry point for every supported checkpoint kind."""

from __future__ import annotations

import logging
import os
import warnings
from importlib import resources
from pathlib import Path

import torch

from fashionclip.errors import ModelNotFoundError
from fashionclip.models.model import FashionCLIP
from fashionclip.models.registry import model_kind, read_model_type

logger = logging.getLogger(__name__)

#: Name of the offline default model shipped inside the package.
DEFAULT_MODEL = "fashion-clip-mini"
#: Hub id of the original FashionCLIP (needs the Hugging Face Hub or its local cache).
FASHION_CLIP_HUB_ID = "patrickjohncyh/fashion-clip"


def default_model_path() -> Path | None:
    """Folder of the shipped default model, or None if this install has none."""
    folder = resources.files("fashionclip") / "pretrained" / DEFAULT_MODEL
    path = Path(str(folder))
    return path if (path / "config.json").is_file() else None


def load(
    name_or_path: str | os.PathLike[str] | None = None,
    device: str | torch.device | None = None,
    *,
    allow_pickle: bool = False,
    precision: str = "auto",
) -> FashionCLIP:
    """Load a CLIP-style model from a local folder or a Hugging Face Hub id.

    With no name, loads the offline default model shipped with the package. The device is
    chosen automatically (cuda, then mps, then cpu). ``precision="auto"`` runs inference in
    float16 on GPU and in bfloat16 autocast on CPUs with native bf16 support, else float32.
    Weights are read from safetensors; a pickle checkpoint is refused unless ``allow_pickle``.
    """
    if name_or_path is None or str(name_or_path) == DEFAULT_MODEL:
        path = default_model_path()
        if path is None:
            raise ModelNotFoundError(
                f"the default model '{DEFAULT_MODEL}' is not part of this install; "
                "pass a model explicitly (a local folder, or a hub id such as "
                f"'{FASHION_CLIP_HUB_ID}')"
            )
        name = DEFAULT_MODEL
    else:
        name = str(name_or_path)
        path = Path(name).expanduser()
        if not path.exists():
            if _looks_like_path(name):
                raise ModelNotFoundError(f"model folder not found: {name}")
            path = _download(name)
    return _load_folder(
        path, name=name, device=device, allow_pickle=allow_pickle, precision=precision
    )


def _looks_like_path(name: str) -> bool:
    """Hub ids look like 'owner/name'; anything else is meant as a local folder."""
    return name.startswith((".", "/", "~")) or name.count("/") != 1 or "\\" in name


def _download(repo_id: str) -> Path:
    """Fetch a hub checkpoint (or find it in the local cache) without pickle files."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError as exc:  # pragma: no cover - transformers depends on it
        raise ModelNotFoundError(f"cannot fetch {repo_id!r}: {exc}") from None
    patterns = ["*.json", "*.txt", "*.model", "*.safetensors"]
    errors: list[str] = []
    for local_only in (True, False):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                folder = snapshot_download(
                    repo_id, allow_patterns=patterns, local_files_only=local_only
                )
            return Path(folder)
        except Exception as exc:  # the hub raises many kinds; all mean "not available"
            errors.append(type(exc).__name__)
    raise ModelNotFoundError(
        f"cannot load model {repo_id!r}: it is not a local folder, it is not in the Hugging Face "
        "cache, and the Hugging Face Hub could not be reached. On a machine with internet, run "
        f"`huggingface-cli download {repo_id} --local-dir ./{repo_id.split('/')[-1]}`, copy that "
        "folder here and pass its path instead (e.g. "
        f"fashionclip.load('./{repo_id.split('/')[-1]}') or --model ./{repo_id.split('/')[-1]})."
    )


def _load_folder(
    path: Path,
    *,
    name: str,
    device: str | torch.device | None,
    allow_pickle: bool,
    precision: str,
) -> FashionCLIP:
    model_type = read_model_type(path)
    try:
        kind = model_kind(model_type)
    except ModelNotFoundError as exc:
        raise ModelNotFoundError(f"{path}: {exc}") from None
    loaded = kind.load(path, allow_pickle=allow_pickle)
    return FashionCLIP(
        loaded.module,
        loaded.image_processor,
        loaded.tokenizer,
        name=name,
        kind=kind.name,
        device=device,
        text_padding=kind.text_padding,
        max_text_length=loaded.max_text_length,
        precision=precision,
    )
