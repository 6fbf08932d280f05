"""`fashionclip.load`: one entry point for every supported checkpoint kind."""

from __future__ import annotations

import json
import logging
import os
import warnings
from importlib import resources
from pathlib import Path

import torch

from fashionclip.errors import ModelNotFoundError, UnsafeCheckpointError
from fashionclip.models.model import FashionCLIP

logger = logging.getLogger(__name__)

#: Name of the offline default model shipped inside the package.
DEFAULT_MODEL = "fashion-clip-mini"
#: Hub id of the original FashionCLIP (needs the Hugging Face Hub or its local cache).
FASHION_CLIP_HUB_ID = "patrickjohncyh/fashion-clip"

HF_KINDS = {"clip", "siglip", "vision-text-dual-encoder"}
OWN_KIND = "fashionclip-dual-encoder"
SAFE_WEIGHTS = ("model.safetensors", "model.safetensors.index.json")
PICKLE_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json")


def default_model_path() -> Path | None:
    """Folder of the shipped default model, or None if this install has none."""
    folder = resources.files("fashionclip") / "pretrained" / DEFAULT_MODEL
    path = Path(str(folder))
    return path if (path / "config.json").is_file() else None


def load(
    name_or_path: str | os.PathLike | None = None,
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


def _read_config(path: Path) -> dict:
    config_file = path / "config.json"
    if not config_file.is_file():
        raise ModelNotFoundError(f"{path} is not a model folder: it has no config.json")
    try:
        return json.loads(config_file.read_text())
    except json.JSONDecodeError as exc:
        raise ModelNotFoundError(f"{config_file} is not valid JSON: {exc}") from None


def _check_weights(path: Path, allow_pickle: bool) -> bool:
    """True to load safetensors; False if only pickle weights exist and the caller allowed them."""
    if any((path / name).is_file() for name in SAFE_WEIGHTS):
        return True
    pickles = [name for name in PICKLE_WEIGHTS if (path / name).is_file()]
    if pickles and not allow_pickle:
        raise UnsafeCheckpointError(
            f"{path} holds only pickle weights ({pickles[0]}); unpickling can run arbitrary code. "
            "Convert them to safetensors, or pass allow_pickle=True (CLI: --allow-pickle) "
            "if you trust the source."
        )
    if not pickles:
        raise ModelNotFoundError(f"{path} has no weights (expected model.safetensors)")
    return False


def _load_folder(
    path: Path,
    *,
    name: str,
    device: str | torch.device | None,
    allow_pickle: bool,
    precision: str,
) -> FashionCLIP:
    config = _read_config(path)
    kind = config.get("model_type")
    if kind == OWN_KIND:
        from fashionclip.models.dual_encoder import load_dual_encoder

        module, processor, tokenizer = load_dual_encoder(path)
        max_length = min(int(getattr(tokenizer, "model_max_length", 128)), 128)
        padding = "longest"
    elif kind in HF_KINDS:
        module, processor, tokenizer = _load_transformers(path, allow_pickle)
        text_config = getattr(module.config, "text_config", None)
        positions = int(getattr(text_config, "max_position_embeddings", 77))
        tokenizer_max = int(getattr(tokenizer, "model_max_length", positions))
        max_length = min(positions, tokenizer_max) if tokenizer_max < 1_000_000 else positions
        tokenizer.model_max_length = max_length  # a saved CLIP tokenizer may say 1e30
        padding = "max_length" if kind == "siglip" else "longest"  # SigLIP pools the last token
    else:
        supported = ", ".join(sorted(HF_KINDS | {OWN_KIND}))
        raise ModelNotFoundError(
            f"{path}: unsupported model_type {kind!r}; supported kinds: {supported}"
        )
    return FashionCLIP(
        module,
        processor,
        tokenizer,
        name=name,
        kind=kind,
        device=device,
        text_padding=padding,
        max_text_length=max_length,
        precision=precision,
    )


def _load_transformers(path: Path, allow_pickle: bool):
    """Module, image processor and tokenizer of a transformers checkpoint folder."""
    use_safetensors = _check_weights(path, allow_pickle)
    from transformers import AutoImageProcessor, AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # torchvision-fallback and load-report chatter
    hf_logging.disable_progress_bar()
    try:
        module = AutoModel.from_pretrained(path, use_safetensors=use_safetensors)
        tokenizer = AutoTokenizer.from_pretrained(path)
        processor = AutoImageProcessor.from_pretrained(path)
    finally:
        hf_logging.set_verbosity(verbosity)
        hf_logging.enable_progress_bar()
    return module, processor, tokenizer
