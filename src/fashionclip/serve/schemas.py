"""Request and response models of the HTTP API (what ``/openapi.json`` describes)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, StrictInt

from fashionclip.index.traverse import MAX_PER_STEP, MAX_STEPS, WalkSettings

MetadataValue = str | int | float | bool | None
FilterValue = str | int | float | bool
FiltersIn = dict[str, FilterValue | list[FilterValue]]

FILTERS_DOC = (
    "Metadata filters: column -> value or list of accepted values, ANDed across columns, e.g. "
    '{"gender": "Women", "articleType": ["Heels", "Flats"]}. Columns: GET /api/facets.'
)


MODE_DOC = "vector, keyword or hybrid; default: hybrid when there is query text, else vector."
IGNORE_DOC = (
    'Understood columns not to use (chips the person removed), e.g. ["baseColour"]: their '
    "soft boost is dropped; never a filter."
)
SET_ASIDE_DOC = (
    "Understood columns hybrid search did not use: no product carries their values together "
    "with the others' (their words still count as keywords)."
)


class TextSearchIn(BaseModel):
    query: str = Field(description="What to look for, e.g. 'red summer dress'.")
    k: StrictInt | None = Field(None, description="Number of results, 1..max_k (GET /api/info).")
    filters: FiltersIn | None = Field(None, description=FILTERS_DOC)
    compare: bool = Field(False, description="Also answer with the compare model.")
    mode: str | None = Field(None, description=MODE_DOC)
    ignore_understood: list[str] | None = Field(None, description=IGNORE_DOC)


class LikeSearchIn(BaseModel):
    id: str = Field(description="A catalog product id; it is excluded from its results.")
    k: StrictInt | None = Field(None, description="Number of results, 1..max_k.")
    filters: FiltersIn | None = Field(None, description=FILTERS_DOC)
    compare: bool = Field(False, description="Also answer with the compare model.")
    text: str | None = Field(
        None, description="Words that refine the product: 'like this, but red' (composed)."
    )
    mode: str | None = Field(None, description=MODE_DOC)
    ignore_understood: list[str] | None = Field(None, description=IGNORE_DOC)


class TimingOut(BaseModel):
    queue_ms: float = Field(description="Waiting for the model (another request held it).")
    encode_ms: float = Field(description="Encoding the query with the model.")
    search_ms: float = Field(description="Vector search and reading the hits' metadata.")


class HitOut(BaseModel):
    id: str
    title: str
    score: float = Field(description="Cosine similarity to the query.")
    metadata: dict[str, MetadataValue]
    image_url: str
    content_hash: str | None = Field(
        None, description="sha256 of the image bytes: equal for byte-identical duplicates."
    )


class ResultListOut(BaseModel):
    side: str = Field(description="'catalog' (the catalog's model) or 'compare'.")
    model: str
    results: list[HitOut]
    timing: TimingOut
    error: str | None = Field(None, description="Why the compare side has no results.")
    mode: str | None = Field(None, description="The search mode used.")
    understood: dict[str, Any] = Field(
        default_factory=dict,
        description='Catalog values recognised in the query text, e.g. {"baseColour": "Red"}.',
    )
    set_aside: list[str] = Field(default_factory=list, description=SET_ASIDE_DOC)


class SearchOut(BaseModel):
    kind: str = Field(description="text, image or like")
    query: dict[str, Any]
    k: int
    filters: dict[str, list[FilterValue]]
    results: ResultListOut
    compare: ResultListOut | None
    took_ms: float = Field(description="Server time for the whole request.")
    mode: str | None = Field(None, description="The search mode used (catalog side).")
    understood: dict[str, Any] = Field(
        default_factory=dict, description="Catalog values recognised in the query text."
    )
    set_aside: list[str] = Field(default_factory=list, description=SET_ASIDE_DOC)


class LabelScoreOut(BaseModel):
    label: str
    score: float


class ClassificationOut(BaseModel):
    side: str
    model: str
    label: str
    scores: list[LabelScoreOut]
    timing: TimingOut


class ClassifyOut(BaseModel):
    labels: list[str]
    result: ClassificationOut
    compare: ClassificationOut | None
    took_ms: float


class FacetValueOut(BaseModel):
    value: MetadataValue
    count: int


class FacetOut(BaseModel):
    column: str
    values: list[FacetValueOut]
    truncated: bool = Field(description="True when the column has more values than listed.")


class FacetsOut(BaseModel):
    facets: list[FacetOut]


class ProductOut(BaseModel):
    id: str
    title: str
    metadata: dict[str, MetadataValue]
    has_image: bool
    image_url: str


class ErrorOut(BaseModel):
    error: str


class LimitsOut(BaseModel):
    max_k: int
    default_k: int
    max_query_chars: int
    max_labels: int
    max_upload_bytes: int = Field(description="Largest accepted image file (bytes).")
    max_image_pixels: int = Field(description="Largest accepted image (width x height).")


class CompareInfoOut(BaseModel):
    model: str
    products: int
    embedding_dim: int


class InfoOut(BaseModel):
    model: str = Field(description="The catalog model (name or local folder).")
    model_kind: str
    embedding_dim: int
    products: int
    columns: list[str] = Field(description="Metadata columns (filterable).")
    title_column: str | None = Field(description="The column shown as a product's name.")
    key_columns: list[str] = Field(description="Columns shown under the name on a result.")
    compare: CompareInfoOut | None = Field(description="The compare model, when configured.")
    weak_match_below: dict[str, float] | None = Field(
        None,
        description="Per search mode (vector, hybrid, ...): a text query whose best score is "
        "below this is a weak match (nothing fits well); chosen per model from data "
        "(docs/faults.md). null, or a mode missing: no such hint.",
    )
    limits: LimitsOut


class ReadyOut(BaseModel):
    ready: bool
    products: int
    compare_products: int | None = Field(None, description="Only with a compare catalog.")


class NotReadyOut(BaseModel):
    ready: bool = False
    error: str


class EndpointMetricsOut(BaseModel):
    count: int
    client_errors: int
    server_errors: int
    mean_ms: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float


class UploadMetricsOut(BaseModel):
    decode_slots: int = Field(description="Images decoded at most at once (process-wide).")
    decoding: int
    waiting: int = Field(description="Uploads waiting for a decode slot now.")
    peak_decoding: int
    refused_busy: int = Field(description="Uploads answered 503 (no slot within the timeout).")
    queue_timeout_s: float


class MetricsOut(BaseModel):
    uptime_s: float
    requests: int
    in_flight: int
    latency_window: int = Field(description="Percentiles cover this many recent requests.")
    endpoints: dict[str, EndpointMetricsOut] = Field(
        description="Per 'METHOD /route/template' (never raw paths)."
    )
    uploads: UploadMetricsOut


class TraverseIn(BaseModel):
    id: str = Field(description="The seed: a catalog product id (never in its own walk).")
    start: str = Field(alias="from", description="Start phrase, e.g. 'light' or 'casual'.")
    end: str = Field(alias="to", description="End phrase, e.g. 'dark' or 'formal'.")
    steps: StrictInt | None = Field(
        None, description=f"Number of steps, 1..{MAX_STEPS} (default {WalkSettings.steps})."
    )
    per_step: StrictInt | None = Field(
        None,
        description=f"Products per step, 1..{MAX_PER_STEP} (default {WalkSettings.per_step}).",
    )
    method: str = Field("gradrec", description="'gradrec' (default) or 'arithmetic'.")
    keep: str | None = Field(
        None,
        description="Stay at the seed's value of this column (default: articleType when the "
        "catalog has it; '' for none).",
    )
    filters: FiltersIn | None = Field(None, description=FILTERS_DOC)


class TraverseSeedOut(BaseModel):
    id: str
    title: str


class TraverseOut(BaseModel):
    seed: TraverseSeedOut
    start: str = Field(alias="from")
    end: str = Field(alias="to")
    method: str
    keep: str | None
    steps: list[list[HitOut]] = Field(description="Steps from the seed on; no product twice.")
    took_ms: float
