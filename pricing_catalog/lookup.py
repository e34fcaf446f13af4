"""Resolve prices for distinct request keys: the small side of the repricing join.

Requests are reduced to distinct (model, context, media variant, day, region) keys first;
each key gets its price rows (one per time-of-day window and prompt-size band) with list and
contract rates computed here in exact Decimal arithmetic. The big frame then only joins.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from decimal import Decimal

import polars as pl

from pricing_catalog.catalog import Catalog
from pricing_catalog.rows import MONEY_RATE, RATE_QUANTUM, PriceRow, per_unit_rate
from pricing_catalog.units import UNITS
from pricing_catalog.yaml_source import ContractTerm
from transforms.schema import schema_of

KEY_COLUMNS = ("model_key", "price_tier", "price_batch", "media_variant", "day", "region_key")
KEY_SCHEMA = pl.Schema(
    {
        "model_key": pl.String,
        "price_tier": pl.String,  # "" = no request context
        "price_batch": pl.Boolean,
        "media_variant": pl.String,
        "day": pl.Date,
        "region_key": pl.String,
    }
)
LOOKUP_SCHEMA = schema_of(
    {
        **KEY_SCHEMA,
        "price_id": pl.String,
        "lookup_miss": pl.String,  # why no price: no_price_at_date | no_price_for_variant
        "tod_start_s": pl.Int32,
        "tod_end_s": pl.Int32,
        "band_above": pl.Int64,
        "band_upto": pl.Int64,
        **{f"list_{u.rate_column}": MONEY_RATE for u in UNITS},
        **{u.rate_column: MONEY_RATE for u in UNITS},
        "price_note": pl.String,
        "contract_terms": pl.String,
    }
)
ONE = Decimal(1)
HUNDRED = Decimal(100)


@dataclass(frozen=True)
class Adjustment:
    factor: Decimal
    batch_factor: Decimal
    region_factor: Decimal
    overrides: dict[str, Decimal]
    names: tuple[str, ...]


def _specificity(t: ContractTerm) -> tuple[int, int]:
    return (1 if t.model != "*" else 0, 1 if t.source == "override" else 0)


def contract_adjustment(
    terms: list[ContractTerm], model_key: str, day: dt.date, region: str, batch_unrated: bool
) -> Adjustment:
    provider, model_id = model_key.split("/", 1)
    active = [t for t in terms if t.applies_to(provider, model_id) and t.active(day)]
    active.sort(key=_specificity, reverse=True)  # most specific first; stable for file order
    factor = batch_factor = region_factor = ONE
    overrides: dict[str, Decimal] = {}
    names: list[str] = []
    discount = next((t for t in active if t.discount_pct is not None or t.rate_overrides), None)
    if discount is not None:
        names.append(discount.name)
        if discount.rate_overrides:
            overrides = dict(discount.rate_overrides)
        else:
            factor = ONE - (discount.discount_pct or Decimal(0)) / HUNDRED
    if batch_unrated:
        batch = next((t for t in active if t.batch_discount_pct is not None), None)
        if batch is not None:
            names.append(batch.name)
            batch_factor = ONE - (batch.batch_discount_pct or Decimal(0)) / HUNDRED
    regional = next(
        (t for t in active if t.region_multiplier is not None and t.matches_region(region)), None
    )
    if regional is not None:
        names.append(regional.name)
        region_factor = regional.region_multiplier or ONE
    return Adjustment(factor, batch_factor, region_factor, overrides, tuple(names))


def _variant_fallbacks(variant: str) -> list[str]:
    if not variant:
        return [""]
    if "|" in variant:
        size, quality = variant.split("|", 1)
        return [variant, f"{size}|*", f"*|{quality}", "*|*", ""]
    # Video sizes are logged as "1280x720" or "720p"; prices may use either spelling.
    dims = re.fullmatch(r"(\d+)x(\d+)", variant)
    short = [f"{min(int(dims[1]), int(dims[2]))}p"] if dims else []
    return [variant, *short, "*", ""]


def _rows_for_key(
    catalog: Catalog, model_key: str, tier: str | None, batch: bool, variant: str, day: dt.date
) -> tuple[list[PriceRow], str | None]:
    series = catalog.rows_by_series
    any_variant = False
    for candidate in _variant_fallbacks(variant):
        rows = series.get((model_key, tier, batch, candidate))
        if not rows:
            continue
        any_variant = True
        hits = [r for r in rows if r.valid_from <= day and (r.valid_to is None or day < r.valid_to)]
        if hits:
            return hits, None
    return [], ("no_price_at_date" if any_variant else "no_price_for_variant")


def resolve_keys(catalog: Catalog, keys: pl.DataFrame) -> pl.DataFrame:
    """keys: distinct KEY_COLUMNS -> LOOKUP_SCHEMA rows (one per price segment, or one miss)."""
    records: list[dict[str, object]] = []
    for key in keys.select(KEY_COLUMNS).unique().iter_rows(named=True):
        model_key, day = key["model_key"], key["day"]
        if model_key is None or day is None:
            continue
        tier = key["price_tier"] or None
        rows, miss = _rows_for_key(
            catalog, model_key, tier, bool(key["price_batch"]), key["media_variant"] or "", day
        )
        if not rows:
            records.append({**key, "lookup_miss": miss})
            continue
        for row in rows:
            batch_unrated = bool(key["price_batch"]) and "batch_rate_not_in_catalog" in (
                row.note or ""
            )
            adj = contract_adjustment(
                catalog.contracts, model_key, day, key["region_key"] or "", batch_unrated
            )
            rec: dict[str, object] = {
                **key,
                "price_id": row.price_id(),
                "tod_start_s": row.tod_start_s,
                "tod_end_s": row.tod_end_s,
                "band_above": row.band_above,
                "band_upto": row.band_upto,
                "price_note": row.note,
                "contract_terms": ";".join(adj.names) or None,
            }
            for unit in UNITS:
                quoted = row.rates.get(unit.name)
                rec[f"list_{unit.rate_column}"] = (
                    None if quoted is None else per_unit_rate(unit.name, quoted)
                )
                contract_quoted = adj.overrides.get(unit.name)
                if contract_quoted is None and quoted is not None:
                    contract_quoted = quoted * adj.factor
                if contract_quoted is not None:
                    contract_quoted *= adj.batch_factor * adj.region_factor
                    rec[unit.rate_column] = (contract_quoted / unit.per).quantize(RATE_QUANTUM)
                else:
                    rec[unit.rate_column] = None
            records.append(rec)
    return pl.DataFrame(records, schema=LOOKUP_SCHEMA)
