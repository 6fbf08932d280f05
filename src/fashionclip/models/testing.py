"""Tiny random models of every supported kind, saved in Hugging Face layout.

They exist so that tests (and docs examples) run offline in seconds: same file formats, same
loading code paths as the real checkpoints, random weights. Cf. timm's tiny test configs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from fashionclip.models.dual_encoder import FashionDualEncoder, FashionDualEncoderConfig
from fashionclip.models.kinds import (
    CLIP,
    FASHIONCLIP_DUAL_ENCODER,
    SIGLIP,
    VISION_TEXT_DUAL_ENCODER,
)

if TYPE_CHECKING:
    from transformers import CLIPTokenizer, PreTrainedTokenizerFast

#: Builds a tiny model folder at a path (with a seed) and returns the folder.
TinyBuilder = Callable[..., Path]

#: Words the tiny tokenizers know as whole tokens, so that test captions map to real ids.
TINY_WORDS = [
    "a",
    "photo",
    "of",
    "the",
    "an",
    "men",
    "women",
    "shirt",
    "dress",
    "shoes",
    "sneakers",
    "heels",
    "flats",
    "bag",
    "watch",
    "red",
    "blue",
    "black",
    "white",
    "green",
    "navy",
    "grey",
    "brown",
    "nike",
    "adidas",
    "gucci",
    "casual",
    "sports",
    "elegant",
    "streetwear",
    "t-shirt",
    "tshirts",
    "jeans",
    "kurta",
    "top",
    "tops",
    "sunglasses",
    "boys",
    "girls",
    "unisex",
]


def _clip_tokenizer(folder: Path, max_length: int) -> CLIPTokenizer:
    from transformers import CLIPTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    base = list(bytes_to_unicode().values())
    vocab_list = base + [c + "</w>" for c in base]
    merges: list[tuple[str, str]] = []
    # Merges that spell each tiny word, so that known words become single tokens.
    known = set(vocab_list)
    for word in TINY_WORDS:
        pieces = list(word[:-1]) + [word[-1] + "</w>"]
        while len(pieces) > 1:
            left, right = pieces[0], pieces[1]
            merged = left + right
            rule = (left, right)
            if rule not in merges:
                merges.append(rule)
            if merged not in known:
                known.add(merged)
                vocab_list.append(merged)
            pieces = [merged] + pieces[2:]
    vocab_list += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {token: i for i, token in enumerate(vocab_list)}
    # transformers' annotation says list[str]; its BPE backend takes (left, right) pairs too.
    tokenizer = CLIPTokenizer(
        vocab=vocab,
        merges=merges,  # type: ignore[arg-type]
        model_max_length=max_length,
    )
    tokenizer.save_pretrained(folder)
    return tokenizer


def _wordpiece_tokenizer(
    folder: Path, max_length: int, *, cls_sep: bool = True
) -> PreTrainedTokenizerFast:
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    chars = sorted({c for w in TINY_WORDS for c in w} | set("abcdefghijklmnopqrstuvwxyz0123456789"))
    vocab_list = specials + TINY_WORDS + chars + [f"##{c}" for c in chars]
    vocab = {token: i for i, token in enumerate(dict.fromkeys(vocab_list))}
    backend = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer(lowercase=True)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    if cls_sep:
        backend.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]",
            special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
        )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=max_length,
    )
    tokenizer.save_pretrained(folder)
    return tokenizer


#: Layer sizes shared by every tiny transformer tower (text or vision).
TINY_TRANSFORMER: dict[str, Any] = dict(
    hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2
)
#: A tiny vision tower: 32 px images in 8 px patches.
TINY_VISION: dict[str, Any] = dict(TINY_TRANSFORMER, image_size=32, patch_size=8)
#: A tiny EfficientNet-Lite (7 blocks, 320-d head) for the fashionclip dual encoder.
TINY_IMAGE_OVERRIDES: dict[str, Any] = {
    "width_coefficient": 0.25,
    "depth_coefficient": 0.1,
    "fix_head_stem": False,
}


def build_tiny_clip(path: str | Path, seed: int = 0, embed_dim: int = 32) -> Path:
    """A random CLIPModel (ViT 32px, 2 layers) with a real BPE tokenizer, saved at ``path``."""
    from transformers import CLIPConfig, CLIPModel
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = _clip_tokenizer(folder, max_length=32)
    torch.manual_seed(seed)
    config = CLIPConfig(
        text_config=dict(
            TINY_TRANSFORMER,
            vocab_size=len(tokenizer),
            max_position_embeddings=32,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        ),
        vision_config=dict(TINY_VISION),
        projection_dim=embed_dim,
    )
    CLIPModel(config).eval().save_pretrained(folder)
    CLIPImageProcessorPil(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
    ).save_pretrained(folder)
    return folder


def build_random_clip_b32(path: str | Path, seed: int = 0) -> Path:
    """A ViT-B/32-sized CLIPModel with random weights (transformers' CLIPConfig defaults).

    Vision: 224 px, 32 px patches, 12 layers of width 768; text: 12 layers of width 512;
    512-d embeddings; CLIP's standard preprocessing (resize 224, centre crop, CLIP mean/std).
    Same compute as the real ViT-B/32, so speed benchmarks need no downloaded weights; the
    tokenizer is the offline byte-level BPE of the tiny models, with CLIP's 77-token limit.
    """
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = _clip_tokenizer(folder, max_length=77)
    torch.manual_seed(seed)
    config = CLIPConfig(
        text_config=dict(
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    CLIPModel(config).eval().save_pretrained(folder)
    CLIPImageProcessor().save_pretrained(folder)
    return folder


def build_tiny_siglip(path: str | Path, seed: int = 0) -> Path:
    """A random SiglipModel (32px) with a WordPiece tokenizer, saved at ``path``."""
    from transformers import SiglipConfig, SiglipModel
    from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil

    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = _wordpiece_tokenizer(folder, max_length=16, cls_sep=False)
    torch.manual_seed(seed)
    config = SiglipConfig(
        text_config=dict(
            TINY_TRANSFORMER,
            vocab_size=len(tokenizer),
            max_position_embeddings=16,
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=None,
            eos_token_id=None,
        ),
        vision_config=dict(TINY_VISION),
    )
    SiglipModel(config).eval().save_pretrained(folder)
    SiglipImageProcessorPil(size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


def build_tiny_vision_text_dual_encoder(path: str | Path, seed: int = 0) -> Path:
    """A random transformers VisionTextDualEncoderModel (tiny ViT + tiny BERT), saved at ``path``."""
    from transformers import (
        BertConfig,
        VisionTextDualEncoderConfig,
        VisionTextDualEncoderModel,
        ViTConfig,
    )
    from transformers.models.vit.image_processing_pil_vit import ViTImageProcessorPil

    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = _wordpiece_tokenizer(folder, max_length=32)
    torch.manual_seed(seed)
    vision = ViTConfig(**TINY_VISION)
    text = BertConfig(**TINY_TRANSFORMER, vocab_size=len(tokenizer), max_position_embeddings=32)
    config = VisionTextDualEncoderConfig.from_vision_text_configs(vision, text, projection_dim=24)
    VisionTextDualEncoderModel(config).eval().save_pretrained(folder)
    ViTImageProcessorPil(size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


def tiny_config(vocab_size: int, **overrides: Any) -> FashionDualEncoderConfig:
    """Config of a tiny random dual encoder with both towers stored in the folder."""
    params: dict[str, Any] = dict(
        image_tower="efficientnet-lite0",
        image_size=32,
        image_tower_overrides=dict(TINY_IMAGE_OVERRIDES),
        image_tower_source="folder",
        text_tower="tiny-bert",
        text_config=dict(
            model_type="bert",
            vocab_size=vocab_size,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=64,
        ),
        text_tower_source="folder",
        text_max_length=32,
        projection_dim=16,
    )
    params.update(overrides)
    return FashionDualEncoderConfig(**params)


def build_tiny_dual_encoder(path: str | Path, seed: int = 0) -> Path:
    """A random fashionclip dual encoder (tiny EfficientNet, tiny BERT, WordPiece tokenizer).

    Same files and loading code as the real model; builds offline in about a second.
    """
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = _wordpiece_tokenizer(folder, max_length=32)
    torch.manual_seed(seed)
    model = FashionDualEncoder(tiny_config(len(tokenizer))).eval()
    model.save_pretrained(folder, tokenizer=tokenizer)
    return folder


#: One tiny builder per registered model kind (a test checks none is missing).
TINY_BUILDERS: dict[str, TinyBuilder] = {
    CLIP.name: build_tiny_clip,
    SIGLIP.name: build_tiny_siglip,
    VISION_TEXT_DUAL_ENCODER.name: build_tiny_vision_text_dual_encoder,
    FASHIONCLIP_DUAL_ENCODER.name: build_tiny_dual_encoder,
}
