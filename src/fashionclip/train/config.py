"""Typed training configuration, read from TOML or JSON with ``key=value`` overrides.

A config file mirrors :class:`TrainConfig`: top-level keys (``epochs``, ``batch_size``, ...) plus one
table per section (``[data]``, ``[captions]``, ``[augment]``, ``[model]``, ``[optim]``, ``[loss]``).
Overrides use dotted keys (``optim.lr=1e-4``); a bare key that names exactly one field anywhere
(``lr=1e-4``, ``epochs=3``) is accepted too. Values are parsed as JSON when they can be
(``true``, ``3``, ``[1, 2]``, ``null``) and kept as strings otherwise, then checked against the
field's type. Unknown keys and ill-typed values raise :class:`FashionCLIPError` naming the key.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fashionclip.data.captions import (
    DEFAULT_KAGL_TEMPLATE_WEIGHTS,
    DEFAULT_KAGL_TEMPLATES,
    template_field,
)
from fashionclip.errors import FashionCLIPError


@dataclass
class DataConfig:
    """Where the image-caption pairs come from.

    ``source = "table"``: ``train`` / ``val`` are CSV or Parquet files with ``image_column`` (a path,
    relative paths resolve against ``image_root`` or else the table's folder) and, for the ``column``
    caption builder, ``caption_column``. ``source = "kagl"``: the KAGL folder (styles.csv, images/,
    splits.csv) with the canonical split; ``kagl_dir`` defaults to ``$FASHIONCLIP_DATA_DIR/kagl``.
    Batches are plain random draws: hard negatives by batch composition (clumps of 16 items of
    one article type, about 8 kinds a batch; session 11, candidate 23) cost name -> image R@10
    0.007, article type 0.021 and CCP val 0.031 on the dev sets (docs/issue14-model-runlog.md).
    """

    source: str = "table"
    train: str | None = None
    val: str | None = None
    image_column: str = "image"
    caption_column: str = "caption"
    image_root: str | None = None
    kagl_dir: str | None = None
    train_split: str = "train"
    val_split: str = "val"
    max_train_samples: int | None = None
    max_val_samples: int | None = None
    #: Add the CCP garment crops of this split (real street photos, 18 garment classes) to the
    #: KAGL training pairs, each ``ccp_repeat`` times; captions from the class name
    #: (``ccp_garments/`` under ``ccp_dir`` or ``$FASHIONCLIP_DATA_DIR``). Never its test split.
    ccp_split: str | None = None
    ccp_repeat: int = 1
    ccp_dir: str | None = None
    #: Keep every training image's encoded bytes in memory (KAGL: ~62 MB) so epochs do no disk I/O.
    cache_images: bool = True
    num_workers: int = 0


@dataclass
class CaptionConfig:
    """How a caption is chosen for an item, per epoch.

    ``builder = "column"`` uses the table's caption column (a list of columns: one non-empty column
    drawn per epoch). ``builder = "kagl"`` fills ``templates`` from KAGL attributes. Validation always
    uses ``val_template`` (KAGL) or the first caption column, so epochs are comparable.
    ``article_synonyms`` feeds the ``{article_synonym}`` template field: ``"wordnet"`` (the packaged
    WordNet table), a JSON file of ``{article type: [names]}``, or ``"none"``. Every view draws
    from the same weights, grey ones too: captioning the grey, inverted thumbnails without the
    product name and colour words (session 10, candidate 21) cost name -> image R@10 0.033 on
    KAGL val and left Fashion-MNIST level; a heavier name weight on the colour views only
    (candidate 22) gave R@10 +0.014 but cost CCP val 0.015 (docs/issue14-model-runlog.md).
    """

    builder: str = "column"
    templates: list[str] = field(default_factory=lambda: list(DEFAULT_KAGL_TEMPLATES))
    template_weights: list[float] | None = field(
        default_factory=lambda: list(DEFAULT_KAGL_TEMPLATE_WEIGHTS)
    )
    val_template: str = "{name}"
    extra_columns: list[str] = field(default_factory=list)
    article_synonyms: str | None = "wordnet"


@dataclass
class AugmentConfig:
    """Image augmentation for catalog photos (white background, centred product).

    Probabilities are per image; ``scale_min`` is the smallest crop area relative to the view the
    inference preprocessing takes; ``lowres`` shrinks to ``lowres_size`` px and back (Fashion-MNIST
    is 28x28 grey); ``invert`` turns white backgrounds black (Fashion-MNIST is light-on-black).
    ``negative_thumbnail`` applies all three at once: a grey, inverted copy of the whole frame
    with ``lowres_size`` px on its short side, like Fashion-MNIST's images of catalog photos (the
    independent draws above rarely coincide: 0.15 x 0.15 x 0.1 = 0.2% of images). It keeps the
    frame's shape, so the model's white padding frames it in white. Two closer copies of
    Fashion-MNIST's own steps were measured (session 9, run log): squared first, so no white
    frame, scored level on the Fashion-MNIST dev set; trimmed to the product, 28 px, sharpened
    and squared, it scored 0.06 lower (shoes all taken for sneakers). Neither is kept.
    """

    enabled: bool = True
    scale_min: float = 0.8
    ratio_jitter: float = 0.1
    hflip: float = 0.5
    color_jitter: float = 0.1
    grayscale: float = 0.1
    lowres: float = 0.1
    lowres_size: int = 28
    invert: float = 0.0
    negative_thumbnail: float = 0.0
    #: Probability of :func:`fashionclip.train.photo.photo_like` (random background, zoom,
    #: rotation, lighting, blur, JPEG; colour-preserving), applied before the steps above.
    photo_like: float = 0.0


@dataclass
class ModelConfig:
    """The starting point and which parts are trained.

    ``init``: a checkpoint folder or name that :func:`fashionclip.load` reads, or ``"dual-encoder"``
    to assemble :class:`~fashionclip.models.dual_encoder.FashionDualEncoder` from pretrained towers
    (``dual_encoder`` holds the keyword arguments of its config).
    ``lock_image`` / ``lock_text`` freeze a tower's backbone except its last ``*_unlocked_groups``
    layer groups (0 = the whole backbone); the projection above it keeps training unless
    ``lock_*_projection``. Frozen parts run in eval mode under ``no_grad``; the outputs of a fully
    frozen text backbone are computed once per distinct caption (``cache_locked_text``).
    A tower taken from an installed package is stored in the checkpoint once it trains; of the
    dual encoder's packaged text tower only the trained transformer layers are (MiniLM's last
    two: +14 MB, not +90 MB), the rest is read from the package again.
    """

    init: str = ""
    dual_encoder: dict[str, Any] = field(default_factory=dict)
    allow_pickle: bool = False
    lock_image: bool = False
    image_unlocked_groups: int = 0
    lock_image_projection: bool = False
    lock_text: bool = False
    text_unlocked_groups: int = 0
    lock_text_projection: bool = False
    cache_locked_text: bool = True
    #: With a fully frozen image backbone (``lock_image``, ``image_unlocked_groups = 0``): show each
    #: image as one of this many fixed augmented views (view = epoch % K) and keep the backbone's
    #: features of every view in memory (N x K x feature_dim floats), so that from epoch K on no
    #: image is decoded or encoded. 0 = off. Resumed runs recompute the features, which can differ
    #: from the first computation in the last bits.
    cache_image_views: int = 0
    #: A fresh image projection of this kind ("linear" or "mlp", with ``image_projection_hidden_dim``)
    #: in place of ``init``'s, on a fresh start of a dual-encoder model: a bigger head over a frozen
    #: backbone (fashion-clip-mini stage 3). Empty: keep ``init``'s projection.
    image_projection: str = ""
    image_projection_hidden_dim: int | None = None
    #: With ``image_projection``: MBConv blocks whose pooled outputs join the image features under
    #: the fresh projection (multi-level features, ``FashionDualEncoderConfig.image_feature_blocks``).
    image_feature_blocks: list[int] = field(default_factory=list)


@dataclass
class OptimConfig:
    """AdamW with a warm-up then cosine (or constant) learning-rate schedule."""

    lr: float = 5e-5
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.98
    eps: float = 1e-6
    warmup_steps: int = 100
    schedule: str = "cosine"
    min_lr_ratio: float = 0.0
    grad_clip: float | None = 1.0
    accum_steps: int = 1
    #: Learning rate of the pretrained backbones; ``None`` = ``lr`` (the projections use ``lr``).
    backbone_lr: float | None = None
    #: Learning rate of the temperature / bias; ``None`` = ``lr``.
    logit_lr: float | None = None


@dataclass
class LossConfig:
    """``kind``: ``clip`` (InfoNCE), ``siglip`` (sigmoid), or ``auto`` (siglip iff the model has a bias)."""

    kind: str = "auto"
    local_loss: bool = False
    gather_with_grad: bool = True
    #: Items with identical captions are positives of each other (multi-positive targets).
    caption_positives: bool = True
    #: Reset the model's temperature to this log value before training (``None``: keep it).
    init_logit_scale: float | None = None
    learn_logit_scale: bool = True
    #: Templates of one field each ("a photo of a {baseColour}"): each training image is also
    #: classified among every value of the field (fashionclip.train.label_prompts).
    label_prompts: list[str] = field(default_factory=list)
    label_prompt_weight: float = 0.5
    #: One positive weight per ``label_prompts`` template: the loss is their weighted mean over
    #: image-template pairs (``None``: all 1, a plain mean).
    label_prompt_template_weights: list[float] | None = None


@dataclass
class TrainConfig:
    """Everything :func:`fashionclip.train.train` needs; see the section classes for details."""

    output_dir: str = "runs/train"
    epochs: int = 1
    #: Global batch (split evenly over data-parallel ranks) per forward pass.
    batch_size: int = 64
    eval_batch_size: int = 128
    seed: int = 0
    device: str = "auto"
    #: ``auto``: bf16 autocast on CUDA, fp32 on CPU; or ``fp32`` / ``bf16``.
    precision: str = "auto"
    #: ``auto``: continue from ``output_dir/last`` when it exists; ``never``; or a checkpoint folder.
    resume: str = "auto"
    #: Stop this run after this many optimizer steps in total (the schedule still spans ``epochs``);
    #: the state is saved so that the next run resumes.
    stop_after_steps: int | None = None
    save_every_steps: int | None = None
    val_every_epochs: int = 1
    #: Also validate the starting weights (logged as epoch 0; not a candidate for ``best``).
    val_before_training: bool = False
    #: Record columns to classify zero-shot at each validation (skipped when a column is absent).
    val_zero_shot: list[str] = field(default_factory=lambda: ["articleType"])
    val_zero_shot_template: str = "a photo of a {}"
    best_metric: str = "val/mean_recall"
    best_mode: str = "max"
    log_every_steps: int = 10
    progress: bool = True
    num_threads: int | None = None
    data: DataConfig = field(default_factory=DataConfig)
    captions: CaptionConfig = field(default_factory=CaptionConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        return _build(cls, data, prefix="")

    def validate(self) -> None:
        """Raise FashionCLIPError for values that cannot work (before anything is loaded)."""
        from fashionclip.train.loss import loss_kinds

        kinds = loss_kinds()
        checks = [
            (self.epochs >= 1, "epochs must be >= 1"),
            (self.batch_size >= 1, "batch_size must be >= 1"),
            (self.eval_batch_size >= 1, "eval_batch_size must be >= 1"),
            (self.optim.accum_steps >= 1, "optim.accum_steps must be >= 1"),
            (self.optim.lr > 0, "optim.lr must be > 0"),
            (self.optim.warmup_steps >= 0, "optim.warmup_steps must be >= 0"),
            (self.optim.schedule in ("cosine", "constant"), "optim.schedule: cosine or constant"),
            (self.loss.kind in kinds, f"loss.kind: one of {', '.join(kinds)}"),
            (self.precision in ("auto", "fp32", "bf16"), "precision: auto, fp32 or bf16"),
            (self.best_mode in ("max", "min"), "best_mode: max or min"),
            (self.data.source in ("table", "kagl"), "data.source: table or kagl"),
            (self.captions.builder in ("column", "kagl"), "captions.builder: column or kagl"),
            (0 < self.augment.scale_min <= 1, "augment.scale_min must be in (0, 1]"),
            (0 <= self.augment.photo_like <= 1, "augment.photo_like must be in [0, 1]"),
            (self.data.ccp_repeat >= 1, "data.ccp_repeat must be at least 1"),
            (self.data.ccp_split != "test", "data.ccp_split must not be the test split"),
            (self.model.init != "", "model.init is required (checkpoint folder or 'dual-encoder')"),
            (self.stop_after_steps is None or self.stop_after_steps >= 1, "stop_after_steps >= 1"),
            (self.val_every_epochs >= 1, "val_every_epochs must be >= 1"),
            (
                self.val_zero_shot_template.count("{}") == 1,
                "val_zero_shot_template must contain '{}' exactly once",
            ),
            (self.model.cache_image_views >= 0, "model.cache_image_views must be >= 0"),
            (
                self.model.image_projection in ("", "linear", "mlp"),
                "model.image_projection must be 'linear', 'mlp' or empty",
            ),
            (
                not self.model.image_feature_blocks or self.model.image_projection != "",
                "model.image_feature_blocks needs a fresh model.image_projection",
            ),
            (self.loss.label_prompt_weight > 0, "loss.label_prompt_weight must be > 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise FashionCLIPError(f"invalid training config: {message}")
        for template in self.loss.label_prompts:
            template_field(template)
        label_weights = self.loss.label_prompt_template_weights
        if label_weights is not None and (
            len(label_weights) != len(self.loss.label_prompts) or any(w <= 0 for w in label_weights)
        ):
            raise FashionCLIPError(
                "invalid training config: loss.label_prompt_template_weights needs one "
                f"positive weight per label prompt ({len(self.loss.label_prompts)}), "
                f"got {label_weights}"
            )
        weights = self.captions.template_weights
        if weights is not None and len(weights) != len(self.captions.templates):
            raise FashionCLIPError(
                "invalid training config: captions.template_weights has "
                f"{len(weights)} entries for {len(self.captions.templates)} templates"
            )
        if self.data.source == "table" and not self.data.train:
            raise FashionCLIPError(
                "invalid training config: data.train (a CSV/Parquet table) is required"
            )


def load_train_config(
    path: str | Path | None = None, overrides: list[str] | None = None
) -> TrainConfig:
    """Read a ``.toml`` or ``.json`` config (or start from defaults) and apply ``key=value`` overrides."""
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FashionCLIPError(f"config file not found: {path}")
        text = path.read_text(encoding="utf-8")
        try:
            if path.suffix.lower() == ".toml":
                data = tomllib.loads(text)
            elif path.suffix.lower() == ".json":
                data = json.loads(text)
            else:
                raise FashionCLIPError(f"config must be .toml or .json: {path}")
        except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
            raise FashionCLIPError(f"cannot parse config {path}: {exc}") from None
        if not isinstance(data, dict):
            raise FashionCLIPError(f"config {path} must hold a table/object at the top level")
    for item in overrides or []:
        key, value = parse_override(item)
        _set_dotted(data, _resolve_key(key), value)
    config = TrainConfig.from_dict(data)
    config.validate()
    return config


def parse_override(item: str) -> tuple[str, Any]:
    """``"optim.lr=1e-4"`` -> ``("optim.lr", 0.0001)``; values are JSON when they parse as JSON."""
    if "=" not in item:
        raise FashionCLIPError(f"override must look like key=value: {item!r}")
    key, raw = item.split("=", 1)
    key = key.strip()
    raw = raw.strip()
    if not key:
        raise FashionCLIPError(f"override without a key: {item!r}")
    try:
        value: Any = json.loads(raw)
    except json.JSONDecodeError:
        lowered = raw.lower()
        value = {"none": None, "true": True, "false": False}.get(lowered, raw)
    return key, value


def _field_paths(cls: type = TrainConfig, prefix: str = "") -> dict[str, type]:
    paths: dict[str, type] = {}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        path = f"{prefix}{f.name}"
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            paths.update(_field_paths(tp, path + "."))
        else:
            paths[path] = tp
    return paths


def _resolve_key(key: str) -> str:
    paths = _field_paths()
    if key in paths:
        return key
    top = key.split(".", 1)[0]
    if "." in key and top == "model" and key.split(".")[1] == "dual_encoder":
        return key
    matches = [p for p in paths if p.endswith("." + key)]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise FashionCLIPError(f"override key {key!r} is ambiguous: use one of {sorted(matches)}")
    raise FashionCLIPError(f"unknown config key {key!r}{_suggest(key, list(paths))}")


def _suggest(key: str, candidates: list[str]) -> str:
    import difflib

    close = difflib.get_close_matches(key, candidates, n=3, cutoff=0.6)
    return f" (did you mean {', '.join(close)}?)" if close else ""


def _set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = data
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise FashionCLIPError(f"config key {part!r} is not a table")
        node = child
    node[parts[-1]] = value


def _build(cls: type, data: Any, prefix: str) -> Any:
    if not isinstance(data, dict):
        raise FashionCLIPError(f"config section {prefix.rstrip('.') or '<top>'} must be a table")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        full = [prefix + u for u in unknown]
        raise FashionCLIPError(
            f"unknown config key {full[0]!r}{_suggest(unknown[0], sorted(names))}"
            + (f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else "")
        )
    kwargs = {}
    for name, value in data.items():
        tp = hints[name]
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            kwargs[name] = _build(tp, value, f"{prefix}{name}.")
        else:
            kwargs[name] = _coerce(value, tp, prefix + name)
    return cls(**kwargs)


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against ``tp`` (int -> float and str -> number conversions allowed)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except FashionCLIPError as exc:
                errors.append(str(exc))
        raise FashionCLIPError(errors[0] if errors else f"config key {key!r}: bad value {value!r}")
    if tp is Any:
        return value
    if origin in (list, tuple):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise FashionCLIPError(f"config key {key!r} expects a list, got {value!r}")
        inner = args[0] if args else Any
        return [_coerce(v, inner, key) for v in value]
    if origin is dict:
        if not isinstance(value, dict):
            raise FashionCLIPError(f"config key {key!r} expects a table, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise FashionCLIPError(f"config key {key!r} expects true/false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise FashionCLIPError(f"config key {key!r} expects an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise FashionCLIPError(f"config key {key!r} expects a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise FashionCLIPError(f"config key {key!r} expects a string, got {value!r}")
    raise FashionCLIPError(f"config key {key!r}: unsupported type {tp}")
