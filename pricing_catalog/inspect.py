"""Read-only views of the catalog for `aispend catalog show` and `aispend catalog diff`.

Both return plain data (dicts of str, bool, int, date, Decimal, lists and dicts of those);
formatting is the CLI's job. Rates are the quoted prices: USD per million tokens for token
units, USD per unit (image, video second, audio second, request) for the others, exactly as
in `pricing_catalog.units`.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from pricing_catalog.catalog import Catalog
from pricing_catalog.lookup import contract_adjustment
from pricing_catalog.matching import match_model
from pricing_catalog.rows import PriceRow
from pricing_catalog.units import UNITS
from pricing_catalog.yaml_source import ContractTerm

STANDARD_TIER = "default"


def _valid_at(row: PriceRow, day: dt.date) -> bool:
    return row.valid_from <= day and (row.valid_to is None or day < row.valid_to)


def _term_summary(term: ContractTerm) -> dict[str, Any]:
    return {
        "name": term.name,
        "provider": term.provider,
        "model": term.model,
        "source": term.source,
        "valid_from": term.valid_from,
        "valid_to": term.valid_to,
        "discount_pct": term.discount_pct,
        "batch_discount_pct": term.batch_discount_pct,
        "regions": list(term.regions),
        "region_multiplier": term.region_multiplier,
        "rate_overrides": dict(term.rate_overrides),
        "origin": term.origin,
    }


def _contract_rates(
    catalog: Catalog, row: PriceRow, day: dt.date
) -> tuple[dict[str, Decimal], list[str]]:
    """Quoted rates after the contract terms active on `day`, for a request without a region
    (regional multipliers depend on the request; they are listed in contract_terms)."""
    batch_unrated = row.batch and "batch_rate_not_in_catalog" in (row.note or "")
    adj = contract_adjustment(catalog.contracts, row.model_key, day, "", batch_unrated)
    rates: dict[str, Decimal] = {}
    for unit in UNITS:
        quoted = adj.overrides.get(unit.name)
        if quoted is None and unit.name in row.rates:
            quoted = row.rates[unit.name] * adj.factor
        if quoted is not None:
            rates[unit.name] = quoted * adj.batch_factor
    return rates, list(adj.names)


def _ordered_rates(rates: dict[str, Decimal]) -> dict[str, Decimal]:
    return {u.name: rates[u.name] for u in UNITS if u.name in rates}


def show_prices(catalog: Catalog, provider: str, model: str, at: dt.date) -> list[dict[str, Any]]:
    """Every price row of the model a logged (provider, model) resolves to, valid on `at`.

    One dict per row and request context (service tier, batch, media variant, time-of-day
    window, prompt-size band). An unknown provider or model gives an empty list; call
    `match_model` to tell why.
    """
    match = match_model(catalog, provider, model)
    if match.model_key is None:
        return []
    provider_id, model_id = match.model_key.split("/", 1)
    terms = [
        _term_summary(t)
        for t in catalog.contracts
        if t.applies_to(provider_id, model_id) and t.active(at)
    ]
    out: list[dict[str, Any]] = []
    for (model_key, _tier, _batch, _variant), rows in catalog.rows_by_series.items():
        if model_key != match.model_key:
            continue
        for row in rows:
            if not _valid_at(row, at):
                continue
            contract_rates, applied = _contract_rates(catalog, row, at)
            out.append(
                {
                    "model_key": row.model_key,
                    "match_kind": match.match_kind,
                    "context_applies": match.context_applies,
                    "service_tier": row.service_tier,
                    "batch": row.batch,
                    "media_variant": row.media_variant,
                    "tod_start_s": row.tod_start_s,
                    "tod_end_s": row.tod_end_s,
                    "band_above": row.band_above,
                    "band_upto": row.band_upto,
                    "valid_from": row.valid_from,
                    "valid_to": row.valid_to,
                    "source": row.source,
                    "origin": row.origin,
                    "price_id": row.price_id(),
                    "rates": _ordered_rates(row.rates),
                    "contract_rates": contract_rates,
                    "contract_terms_applied": applied,
                    "contract_terms": terms,
                    "flags": row.note,
                    "note": row.extra.get("note"),
                }
            )
    out.sort(
        key=lambda d: (
            d["service_tier"] is not None,
            d["service_tier"] or "",
            d["batch"],
            d["media_variant"],
            d["tod_start_s"],
            d["band_above"],
        )
    )
    return out


def _segment(row: PriceRow) -> tuple[int, int, int]:
    return (row.tod_start_s, row.tod_end_s, row.band_above)


def diff_catalog(catalog: Catalog, date_from: dt.date, date_to: dt.date) -> list[dict[str, Any]]:
    """Price rows that differ between two days, in the standard request context (service
    tier 'default') without and with batch.

    One dict per model, batch flag, media variant, time-of-day window and prompt-size band:
    change is 'added' (priced on date_to only), 'removed' (on date_from only) or 'changed'
    (rates differ); old and new are the quoted rates by unit (None when absent) and units
    lists the units whose rate differs.
    """
    out: list[dict[str, Any]] = []
    for (model_key, tier, batch, variant), rows in catalog.rows_by_series.items():
        if tier != STANDARD_TIER:
            continue
        before = {_segment(r): r for r in reversed(rows) if _valid_at(r, date_from)}
        after = {_segment(r): r for r in reversed(rows) if _valid_at(r, date_to)}
        for segment in sorted(before.keys() | after.keys()):
            old, new = before.get(segment), after.get(segment)
            old_rates = None if old is None else _ordered_rates(old.rates)
            new_rates = None if new is None else _ordered_rates(new.rates)
            if old_rates == new_rates:
                continue
            units = [
                u.name
                for u in UNITS
                if (old_rates or {}).get(u.name) != (new_rates or {}).get(u.name)
            ]
            ref = new or old
            assert ref is not None
            out.append(
                {
                    "model_key": model_key,
                    "service_tier": tier,
                    "batch": batch,
                    "media_variant": variant,
                    "tod_start_s": segment[0],
                    "tod_end_s": segment[1],
                    "band_above": segment[2],
                    "band_upto": ref.band_upto,
                    "change": "added" if old is None else "removed" if new is None else "changed",
                    "units": units,
                    "old": old_rates,
                    "new": new_rates,
                    "old_source": None if old is None else old.source,
                    "new_source": None if new is None else new.source,
                    "old_price_id": None if old is None else old.price_id(),
                    "new_price_id": None if new is None else new.price_id(),
                }
            )
    out.sort(
        key=lambda d: (
            d["model_key"],
            d["batch"],
            d["media_variant"],
            d["tod_start_s"],
            d["band_above"],
        )
    )
    return out
