"""Training data: image-caption records, up-front validation, augmentation and batching.

Records come from a CSV/Parquet table (image path + caption columns) or from the KAGL folder with
its canonical split. Every image is decoded once before training starts: rows whose image is
missing or unreadable, or that have no caption, are skipped and counted by reason, so an epoch never
stops on a bad file. The encoded bytes can be kept in memory (``cache_images``).

Augmentation works on the decoded image at its own resolution and leaves resizing and
normalisation to the model's image processor, so training sees exactly the inference
preprocessing of the augmented image. Every random choice is drawn from
:func:`~fashionclip.data.captions.sample_rng` ``(seed, epoch, index)``: batches are the same on any
number of workers, on every data-parallel rank and after a resume.
"""

from __future__ import annotations

import os
import random
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageEnhance, ImageOps
from tqdm.auto import tqdm

from fashionclip.data.captions import (
    CaptionBuilder,
    ColumnCaptionBuilder,
    caption_id,
    kagl_caption_builder,
    sample_rng,
)
from fashionclip.data.csvread import print_warnings, read_rows
from fashionclip.data.images import load_image
from fashionclip.data.kagl import (
    default_data_dir,  # noqa: F401  (re-exported: benchmarks use it)
    kagl_dir_default,
    read_kagl_splits,
    read_kagl_styles,
)
from fashionclip.errors import FashionCLIPError, ImageDecodeError
from fashionclip.train.config import AugmentConfig, CaptionConfig, DataConfig
from fashionclip.train.label_prompts import VOCABULARY_KEY
from fashionclip.train.photo import photo_like


@dataclass
class PairDataset:
    """Validated records: ``records[i]`` has the fields captions use; ``images[i]`` its source."""

    records: list[dict[str, Any]]
    images: list[str]
    image_bytes: list[bytes] | None
    captions: CaptionBuilder
    skipped: dict[str, int] = field(default_factory=dict)
    name: str = ""

    def __len__(self) -> int:
        return len(self.records)

    def load(self, index: int) -> Image.Image:
        source = self.image_bytes[index] if self.image_bytes is not None else self.images[index]
        return load_image(source)

    def eval_captions(self) -> list[str]:
        return [self.captions.eval_caption(r) for r in self.records]

    def caption_candidates(self) -> list[str]:
        """Every caption the builder can produce for these records (deduplicated, sorted)."""
        seen: set[str] = set()
        for record in self.records:
            seen.update(self.captions.candidates(record))
        return sorted(seen)


def build_caption_builder(captions: CaptionConfig, data: DataConfig) -> CaptionBuilder:
    if captions.builder == "kagl":
        return kagl_caption_builder(
            captions.templates,
            captions.template_weights,
            captions.val_template,
            article_synonyms=captions.article_synonyms,
        )
    return ColumnCaptionBuilder([data.caption_column, *captions.extra_columns])


def load_pair_datasets(
    data: DataConfig, captions: CaptionConfig, *, progress: bool = True
) -> tuple[PairDataset, PairDataset | None]:
    """Read, validate and (optionally) cache the training and validation sets."""
    builder = build_caption_builder(captions, data)
    if data.source == "kagl":
        kagl_dir = Path(data.kagl_dir) if data.kagl_dir else kagl_dir_default()
        train_rows = read_kagl_split(kagl_dir, data.train_split)
        val_rows = read_kagl_split(kagl_dir, data.val_split) if data.val_split else None
        train_name = f"KAGL {data.train_split}"
        val_name = f"KAGL {data.val_split}"
    else:
        needed = (
            [data.caption_column, *captions.extra_columns] if captions.builder == "column" else []
        )
        train_rows = read_pairs_table(data.train, data.image_column, needed, data.image_root)
        val_rows = (
            read_pairs_table(data.val, data.image_column, needed, data.image_root)
            if data.val
            else None
        )
        train_name, val_name = str(data.train), str(data.val)
    if not train_rows:
        raise FashionCLIPError(f"the training set {train_name} is empty")
    train_rows = _limit(train_rows, data.max_train_samples)
    if data.source == "kagl" and data.ccp_split:  # after the limit, which caps KAGL rows only
        train_rows = train_rows + read_ccp_pairs(data.ccp_dir, data.ccp_split) * data.ccp_repeat
        train_name += f" + CCP garments {data.ccp_split} x{data.ccp_repeat}"
    train = validate_pairs(
        train_rows, builder, cache=data.cache_images, progress=progress, name=train_name
    )
    if len(train) == 0:
        reasons = ", ".join(f"{k}: {v}" for k, v in sorted(train.skipped.items()))
        raise FashionCLIPError(
            f"the training set {train_name} has no usable rows (all {len(train_rows)} skipped: {reasons})"
        )
    val = None
    if val_rows:
        val_rows = _limit(val_rows, data.max_val_samples)
        val = validate_pairs(
            val_rows,
            builder,
            cache=data.cache_images,
            progress=progress,
            name=val_name,
            eval_only=True,
        )
        if len(val) == 0:
            val = None
    return train, val


def _limit(rows: list[dict[str, Any]], limit: int | None) -> list[dict[str, Any]]:
    return rows if limit is None or limit >= len(rows) else rows[:limit]


def read_pairs_table(
    path: str | os.PathLike[str] | None,
    image_column: str,
    caption_columns: Sequence[str],
    image_root: str | None = None,
    encoding: str | None = None,
) -> list[dict[str, Any]]:
    """Rows of a CSV/Parquet table as dicts with ``_image`` set to a resolved image path.

    The table is read by :func:`~fashionclip.data.csvread.read_rows`; its warnings (malformed
    lines, encoding fallback) are printed on stderr.
    """
    if path is None:
        raise FashionCLIPError("no training table given (data.train)")
    table = read_rows(path, encoding=encoding)
    for kind, col in [("image", image_column)] + [("caption", c) for c in caption_columns]:
        if col not in table.columns:
            raise FashionCLIPError(
                f"{kind} column {col!r} not found in {table.path}; "
                f"columns are: {', '.join(table.columns)}"
            )
    print_warnings(table.warnings)
    root = Path(image_root) if image_root else table.path.parent
    rows = []
    for record in table.records():
        value = record.get(image_column)
        image = "" if value is None else str(value)
        record["_image"] = str(root / image) if image and not Path(image).is_absolute() else image
        rows.append(record)
    return rows


def read_kagl_split(kagl_dir: str | os.PathLike[str], split: str) -> list[dict[str, Any]]:
    """KAGL rows of one canonical split, sorted by id, each with ``_image`` set."""
    kagl_dir = Path(kagl_dir)
    splits = read_kagl_splits(kagl_dir, hint=" (set data.kagl_dir)")
    if split not in splits.names():
        raise FashionCLIPError(
            f"KAGL split {split!r} not in {splits.path}; splits are {splits.names()}"
        )
    styles = read_kagl_styles(kagl_dir, hint=" (set data.kagl_dir)").rows
    rows: list[dict[str, Any]] = [
        {**styles[i], "_image": str(kagl_dir / "images" / f"{i}.jpg")}
        for i in splits.ids(split)
        if i in styles
    ]
    rows.sort(key=lambda r: int(r["id"]) if r["id"].isdigit() else r["id"])
    return rows


def read_ccp_pairs(data_dir: str | os.PathLike[str] | None, split: str) -> list[dict[str, Any]]:
    """CCP garment crops of one split (dominant crops only) as KAGL-like training rows.

    A crop's class ("dress", "t-shirt", "pants") fills both ``articleType`` and ``article``, so
    the KAGL templates that use only these fields caption it ("a photo of a dress"); templates
    needing a product name, colour or gender are not drawn for it. Its class names are not
    KAGL's, so the rows are marked with their vocabulary (the label-prompt loss leaves them
    out). ``data_dir`` holds ``ccp_garments/`` (default: ``$FASHIONCLIP_DATA_DIR``).
    """
    from fashionclip.evaluate.loaders import load_ccp_garments

    if split == "test":
        raise FashionCLIPError("the CCP garments test split is for reporting only, not training")
    crops = load_ccp_garments(
        split, None if data_dir is None else Path(data_dir), dominant_only=True
    )
    return [
        {
            "id": f"ccp:{file}",
            "articleType": cls,
            "article": cls,
            VOCABULARY_KEY: "ccp",
            "_image": str(path),
        }
        for file, cls, path in zip(crops.files, crops.classes, crops.image_paths, strict=True)
    ]


def _reason(exc: ImageDecodeError) -> str:
    return str(exc).split("(", 1)[0].split(":", 1)[0].strip() or "unreadable image"


def validate_pairs(
    rows: Sequence[Mapping[str, Any]],
    captions: CaptionBuilder,
    *,
    cache: bool,
    progress: bool,
    name: str,
    eval_only: bool = False,
) -> PairDataset:
    """Keep the rows whose image decodes and that have a caption; count the others by reason."""
    skipped: Counter[str] = Counter()
    records, images, blobs = [], [], []
    for row in tqdm(rows, desc=f"checking {name}", disable=not progress, unit="img", leave=False):
        record = {k: v for k, v in row.items() if k != "_image"}
        try:
            if eval_only:
                captions.eval_caption(record)
            elif not captions.candidates(record):
                raise ValueError("no caption")
        except ValueError:
            skipped["no caption"] += 1
            continue
        image = row.get("_image") or ""
        if not image:
            skipped["no image path"] += 1
            continue
        try:
            load_image(image)
            if cache:
                blobs.append(Path(image).read_bytes())
        except ImageDecodeError as exc:
            skipped[_reason(exc)] += 1
            continue
        except OSError:
            skipped["cannot read"] += 1
            continue
        records.append(record)
        images.append(image)
    return PairDataset(
        records=records,
        images=images,
        image_bytes=blobs if cache else None,
        captions=captions,
        skipped=dict(skipped),
        name=name,
    )


def augment_image(image: Image.Image, rng: random.Random, cfg: AugmentConfig) -> Image.Image:
    """Catalog-photo augmentation (see :class:`AugmentConfig`); returns a new RGB image."""
    if not cfg.enabled:
        return image
    if cfg.photo_like > 0 and rng.random() < cfg.photo_like:
        image = photo_like(image, rng)
    width, height = image.size
    if cfg.scale_min < 1.0 or cfg.ratio_jitter > 0:
        scale = rng.uniform(cfg.scale_min, 1.0)
        ratio = 1.0 + rng.uniform(-cfg.ratio_jitter, cfg.ratio_jitter)
        crop_w = min(width, max(1, round(width * (scale * ratio) ** 0.5)))
        crop_h = min(height, max(1, round(height * (scale / ratio) ** 0.5)))
        left = rng.randint(0, width - crop_w)
        top = rng.randint(0, height - crop_h)
        if (crop_w, crop_h) != (width, height):
            image = image.crop((left, top, left + crop_w, top + crop_h))
    if rng.random() < cfg.hflip:
        image = ImageOps.mirror(image)
    if cfg.color_jitter > 0:
        jitter = cfg.color_jitter
        for enhancer in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
            image = enhancer(image).enhance(rng.uniform(1 - jitter, 1 + jitter))
    negative = cfg.negative_thumbnail > 0 and rng.random() < cfg.negative_thumbnail
    if negative or rng.random() < cfg.lowres:
        w, h = image.size
        factor = cfg.lowres_size / max(1, min(w, h))
        if factor < 1:
            small = image.resize(
                (max(1, round(w * factor)), max(1, round(h * factor))), Image.Resampling.BILINEAR
            )
            image = small.resize((w, h), Image.Resampling.BILINEAR)
    if negative or rng.random() < cfg.grayscale:
        image = image.convert("L").convert("RGB")
    if negative or rng.random() < cfg.invert:
        image = ImageOps.invert(image)
    return image


class PairSampleDataset(torch.utils.data.Dataset):
    """Map-style view of a :class:`PairDataset`: key ``(epoch, index)`` -> one training sample.

    A sample is ``(augmented image, caption, index, view)`` or ``None`` when the image cannot be
    decoded any more (the collate function drops or replaces it and counts it).

    With ``views = K > 0`` (frozen image backbone, features cached per view) an item shows one of
    K fixed augmented views, view ``epoch % K``; when ``cached[index, view]`` is set its image is
    not decoded at all (the sample's image is None) and the cached features are used instead.
    Captions are still drawn per epoch.
    """

    def __init__(
        self,
        pairs: PairDataset,
        augment: AugmentConfig,
        seed: int,
        views: int = 0,
        cached: torch.Tensor | None = None,
    ) -> None:
        self.pairs = pairs
        self.augment = augment
        self.seed = seed
        self.views = views
        self.cached = cached

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, key: tuple[int, int]) -> tuple[Image.Image | None, str, int, int] | None:
        epoch, index = key
        rng = sample_rng(self.seed, epoch, index)
        caption = self.pairs.captions.sample(self.pairs.records[index], rng)
        view = -1
        if self.views > 0:
            view = epoch % self.views
            if self.cached is not None and bool(self.cached[index, view]):
                return None, caption, index, view
            rng = sample_rng(self.seed, view, index, "view")
        try:
            image = self.pairs.load(index)
        except ImageDecodeError:
            return None
        return augment_image(image, rng, self.augment), caption, index, view


@dataclass
class Batch:
    """One micro-batch. ``pixel_values`` holds only the rows with ``has_pixels`` (all of them
    unless image features are cached), or is None when every row is cached."""

    pixel_values: torch.Tensor | None
    captions: list[str]
    caption_ids: torch.Tensor
    indices: list[int]
    views: list[int]
    has_pixels: list[bool]
    failed: int = 0
    #: per row: whether its image shows colour (:func:`shows_colour`); None when not decoded
    colour: list[bool | None] = field(default_factory=list)

    def pin_memory(self) -> Batch:
        """Called by the DataLoader with ``pin_memory=True`` (faster copies to the GPU)."""
        if self.pixel_values is not None:
            self.pixel_values = self.pixel_values.pin_memory()
        self.caption_ids = self.caption_ids.pin_memory()
        return self


class PairCollate:
    """Turns samples into a :class:`Batch` with the model's image processor.

    Failed samples are dropped; with ``keep_size`` (data parallel: every rank must contribute the
    same number of rows to the feature gather) they are replaced by copies of good samples.
    With ``colour`` each decoded image is checked for colour (:func:`shows_colour`, for the
    label-prompt loss); without, the check is skipped and ``Batch.colour`` holds None.
    """

    def __init__(self, image_processor: Any, keep_size: bool = False, colour: bool = False) -> None:
        self.image_processor = image_processor
        self.keep_size = keep_size
        self.colour = colour

    def __call__(self, samples: list[tuple[Image.Image | None, str, int, int] | None]) -> Batch:
        good = [s for s in samples if s is not None]
        failed = len(samples) - len(good)
        if not good:
            raise FashionCLIPError(
                "every image of a training batch failed to decode; were the files changed during training?"
            )
        if self.keep_size and failed:
            good = good + [good[i % len(good)] for i in range(failed)]
        images, captions, indices, views = zip(*good, strict=True)
        present = [image for image in images if image is not None]
        pixel_values = (
            self.image_processor(images=present, return_tensors="pt")["pixel_values"]
            if present
            else None
        )
        ids = torch.tensor([caption_id(c) for c in captions], dtype=torch.int64)
        return Batch(
            pixel_values,
            list(captions),
            ids,
            list(indices),
            list(views),
            [image is not None for image in images],
            failed,
            [None if image is None or not self.colour else shows_colour(image) for image in images],
        )


def shows_colour(image: Image.Image) -> bool:
    """False for a grey image (every pixel R = G = B: the grayscale and negative-thumbnail
    augmentations), whose caption's colour cannot be seen in it."""
    if image.mode in ("L", "1", "I", "F"):
        return False
    pixels = np.asarray(image.convert("RGB"))
    return not (
        np.array_equal(pixels[..., 0], pixels[..., 1])
        and np.array_equal(pixels[..., 1], pixels[..., 2])
    )


class EpochBatchSampler(torch.utils.data.Sampler):
    """Yields this rank's micro-batches of ``(epoch, index)`` keys for one epoch.

    The epoch's permutation comes from ``seed + epoch``; each global batch of ``global_batch``
    indices is cut into ``world_size`` contiguous slices, one per rank, so that data-parallel
    training sees the same global batches as a single process. ``start`` skips micro-batches that
    were already trained (resume); the last incomplete global batch is dropped.
    """

    def __init__(
        self,
        num_samples: int,
        global_batch: int,
        epoch: int,
        seed: int,
        *,
        rank: int = 0,
        world_size: int = 1,
        start: int = 0,
        num_batches: int | None = None,
    ) -> None:
        self.num_samples = num_samples
        self.global_batch = global_batch
        self.epoch = epoch
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.start = start
        full = num_samples // global_batch
        self.num_batches = full if num_batches is None else min(num_batches, full)

    def __len__(self) -> int:
        return max(0, self.num_batches - self.start)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.num_samples, generator=generator).tolist()
        local = self.global_batch // self.world_size
        for b in range(self.start, self.num_batches):
            chunk = order[b * self.global_batch : (b + 1) * self.global_batch]
            mine = chunk[self.rank * local : (self.rank + 1) * local]
            yield [(self.epoch, i) for i in mine]
