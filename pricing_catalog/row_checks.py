"""Checks on raw price rows that need no other file: shared by `Catalog.load` (which refuses
to build a catalog that would leave requests unpriceable) and `aispend catalog validate`.

Every finding is one CatalogError naming the file and line of the offending row.
"""

from __future__ import annotations

from collections import defaultdict

from pricing_catalog.errors import CatalogError
from pricing_catalog.rows import PriceRow

TIERS = ("default", "flex", "priority")


def location(origin: str) -> tuple[str, int | None]:
    """'file:line' (the origin every YAML row keeps) -> (file, line)."""
    path, _, line = origin.rpartition(":")
    return (path, int(line)) if path and line.isdigit() else (origin, None)


def error_at(origin: str, message: str) -> CatalogError:
    path, line = location(origin)
    return CatalogError(path, line, message)


def row_tiers(row: PriceRow) -> frozenset[str]:
    """Service tiers a raw row prices: a row without one prices all of them."""
    return frozenset(TIERS) if row.service_tier is None else frozenset({row.service_tier})


def describe_row(row: PriceRow) -> str:
    parts = [row.service_tier or "every tier"]
    if row.batch:
        parts.append("batch")
    if row.media_variant:
        parts.append(row.media_variant)
    if row.band_above >= 0:
        parts.append(f"prompt > {row.band_above} tokens")
    return f"{row.model_key} ({', '.join(parts)})"


def band_errors(rows: list[PriceRow]) -> list[CatalogError]:
    """A prompt-size band row prices prompts above a threshold; prompts below need a base row
    of the same model, context and valid_from in the same source. Without one, every request
    with a shorter prompt would fall between the price segments."""
    base_tiers: dict[tuple[object, ...], set[str]] = defaultdict(set)
    for r in rows:
        if r.band_above < 0:
            base_tiers[(r.source, r.model_key, r.batch, r.media_variant, r.valid_from)] |= (
                row_tiers(r)
            )
    errors = []
    for r in rows:
        if r.band_above < 0:
            continue
        key = (r.source, r.model_key, r.batch, r.media_variant, r.valid_from)
        missing = row_tiers(r) - base_tiers[key]
        if missing:
            errors.append(
                error_at(
                    r.origin,
                    f"{describe_row(r)}: band row above_input_tokens {r.band_above} has no base "
                    f"row (without above_input_tokens) valid from {r.valid_from} "
                    f"for tier {', '.join(sorted(missing))}",
                )
            )
    return errors
