"""One flattened, effective-dated price row, and the price table built from many of them.

A row is the price of one model in one request context (service tier, batch, media variant)
for one validity window [valid_from, valid_to), one UTC time-of-day window and one band of
prompt size (tiered prices switch every component once the prompt passes a threshold).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, replace
from decimal import Decimal

import polars as pl

from pricing_catalog.units import UNITS, UNITS_BY_NAME
from transforms.schema import schema_of

MONEY_RATE = pl.Decimal(38, 18)
RATE_QUANTUM = Decimal("1e-18")
DAY_SECONDS = 86_400
OPEN_START = dt.date(1970, 1, 1)

# Request contexts every model is priced for. `None` tier is "no request context", the price
# genai-prices uses when a model is reached through a provider fallback.
CONTEXTS: tuple[tuple[str | None, bool], ...] = (
    (None, False),
    ("default", False),
    ("default", True),
    ("flex", False),
    ("flex", True),
    ("priority", False),
    ("priority", True),
)


@dataclass(frozen=True)
class PriceRow:
    provider: str
    model_id: str
    source: str  # "genai-prices", "curated" or "override"
    valid_from: dt.date
    valid_to: dt.date | None
    rates: dict[str, Decimal]  # quoted prices by unit name (per MTok for tokens)
    service_tier: str | None = None
    batch: bool = False
    image_size: str | None = None
    image_quality: str | None = None
    video_resolution: str | None = None
    tod_start_s: int = 0
    tod_end_s: int = DAY_SECONDS
    band_above: int = -1  # prompt tokens strictly above this ...
    band_upto: int | None = None  # ... and at most this
    note: str | None = None
    origin: str = ""  # file:line or genai-prices model id, for error messages
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def model_key(self) -> str:
        return f"{self.provider}/{self.model_id}"

    @property
    def media_variant(self) -> str:
        return media_variant_key(self.image_size, self.image_quality, self.video_resolution)

    def with_(self, **changes: object) -> PriceRow:
        return replace(self, **changes)  # type: ignore[arg-type]

    def price_id(self) -> str:
        tier = self.service_tier or "std"
        parts = [
            self.source,
            self.model_key,
            self.valid_from.isoformat(),
            tier + ("+batch" if self.batch else ""),
        ]
        if self.media_variant:
            parts.append(self.media_variant)
        if self.tod_start_s or self.tod_end_s != DAY_SECONDS:
            parts.append(f"tod{self.tod_start_s}-{self.tod_end_s}")
        if self.band_above >= 0:
            parts.append(f">{self.band_above}")
        return ":".join(parts)


def media_variant_key(size: str | None, quality: str | None, resolution: str | None) -> str:
    """'' for token-priced rows; 'size|quality' for images; the resolution for video."""
    if resolution:
        return resolution.lower()
    if size or quality:
        return f"{(size or '*').lower()}|{(quality or '*').lower()}"
    return ""


PRICE_TABLE_SCHEMA = schema_of(
    {
        "price_id": pl.String,
        "model_key": pl.String,
        "provider": pl.String,
        "model_id": pl.String,
        "source": pl.String,
        "service_tier": pl.String,
        "batch": pl.Boolean,
        "media_variant": pl.String,
        "valid_from": pl.Date,
        "valid_to": pl.Date,
        "tod_start_s": pl.Int32,
        "tod_end_s": pl.Int32,
        "band_above": pl.Int64,
        "band_upto": pl.Int64,
        **{u.rate_column: MONEY_RATE for u in UNITS},
        "note": pl.String,
    }
)


def per_unit_rate(unit_name: str, quoted: Decimal) -> Decimal:
    return UNITS_BY_NAME[unit_name].per_unit(quoted).quantize(RATE_QUANTUM)


def rows_to_frame(rows: list[PriceRow]) -> pl.DataFrame:
    records = []
    for r in rows:
        rec: dict[str, object] = {
            "price_id": r.price_id(),
            "model_key": r.model_key,
            "provider": r.provider,
            "model_id": r.model_id,
            "source": r.source,
            "service_tier": r.service_tier,
            "batch": r.batch,
            "media_variant": r.media_variant,
            "valid_from": r.valid_from,
            "valid_to": r.valid_to,
            "tod_start_s": r.tod_start_s,
            "tod_end_s": r.tod_end_s,
            "band_above": r.band_above,
            "band_upto": r.band_upto,
            "note": r.note,
        }
        for u in UNITS:
            q = r.rates.get(u.name)
            rec[u.rate_column] = None if q is None else per_unit_rate(u.name, q)
        records.append(rec)
    return pl.DataFrame(records, schema=PRICE_TABLE_SCHEMA)
