"""Curated and local price files: YAML, reviewed by people, with line numbers kept.

A price file has up to three lists:

    prices:     price rows (tokens per MTok, images, video seconds, audio seconds, requests)
    aliases:    raw model strings -> a catalog model
    contracts:  negotiated terms on top of list price

Every entry remembers its file and line so that `aispend catalog validate` can point at it.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import yaml

from pricing_catalog.errors import CatalogError
from pricing_catalog.rows import OPEN_START, PriceRow
from pricing_catalog.units import UNITS_BY_NAME, resolve_chain

ROW_KEYS = {
    "provider",
    "model",
    "valid_from",
    "valid_to",
    "service_tier",
    "batch",
    "image_size",
    "image_quality",
    "video_resolution",
    "above_input_tokens",
    "note",
    "modality",
    "match",
}
CONTRACT_KEYS = {
    "name",
    "provider",
    "model",
    "valid_from",
    "valid_to",
    "discount_pct",
    "batch_discount_pct",
    "regions",
    "region_multiplier",
    "note",
}
ALIAS_KEYS = {"provider", "model", "pattern", "canonical"}
TOP_KEYS = {"prices", "aliases", "contracts"}


@dataclass(frozen=True)
class Alias:
    provider: str
    pattern: str  # fnmatch-style, case-insensitive, on the logged model string
    canonical: str  # model id in the catalog ("provider/model" or just "model")
    origin: str

    def matches(self, provider: str, model: str) -> bool:
        return self.provider == provider and fnmatch.fnmatchcase(model.lower(), self.pattern)


@dataclass(frozen=True)
class ContractTerm:
    name: str
    provider: str
    model: str  # catalog model id, or "*" for every model of the provider
    valid_from: dt.date
    valid_to: dt.date | None
    discount_pct: Decimal | None = None
    batch_discount_pct: Decimal | None = None
    regions: tuple[str, ...] = ()
    region_multiplier: Decimal | None = None
    rate_overrides: dict[str, Decimal] = field(default_factory=dict)
    source: str = "curated"
    origin: str = ""

    def active(self, day: dt.date) -> bool:
        return self.valid_from <= day and (self.valid_to is None or day < self.valid_to)

    def applies_to(self, provider: str, model_id: str) -> bool:
        return self.provider == provider and (self.model == "*" or self.model == model_id)

    def matches_region(self, region: str | None) -> bool:
        return bool(region) and any(
            fnmatch.fnmatchcase((region or "").lower(), p.lower()) for p in self.regions
        )


@dataclass
class PriceFile:
    path: str
    rows: list[PriceRow] = field(default_factory=list)
    aliases: list[Alias] = field(default_factory=list)
    contracts: list[ContractTerm] = field(default_factory=list)
    model_patterns: dict[str, list[str]] = field(default_factory=dict)  # model_key -> match globs


class _Loader(yaml.SafeLoader):
    """SafeLoader that records each mapping's line in a `__line__` key."""


def _construct_mapping(
    loader: _Loader, node: yaml.MappingNode, deep: bool = False
) -> dict[str, Any]:
    mapping: dict[str, Any] = {
        str(k): v for k, v in yaml.SafeLoader.construct_mapping(loader, node, deep=deep).items()
    }
    mapping["__line__"] = node.start_mark.line + 1
    return mapping


def _construct_timestamp(loader: _Loader, node: yaml.ScalarNode) -> Any:
    """An impossible date (2025-13-01) stays a string, so it is reported with its entry's line
    instead of aborting the whole file with a bare ValueError."""
    try:
        return yaml.SafeLoader.construct_yaml_timestamp(loader, node)
    except ValueError:
        return loader.construct_scalar(node)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_Loader.add_constructor("tag:yaml.org,2002:timestamp", _construct_timestamp)


def _date(path: str, line: int, key: str, value: Any) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise CatalogError(
            path, line, f"{key}: expected a date YYYY-MM-DD, got {value!r}"
        ) from None


def _money(path: str, line: int, key: str, value: Any) -> Decimal:
    if isinstance(value, bool) or value is None:
        raise CatalogError(path, line, f"{key}: expected a number, got {value!r}")
    try:
        # str() first: a YAML float like 0.1 must become Decimal('0.1'), not its binary value.
        number = Decimal(str(value))
    except InvalidOperation:
        raise CatalogError(path, line, f"{key}: expected a number, got {value!r}") from None
    if not number.is_finite():
        raise CatalogError(path, line, f"{key}: expected a finite number, got {value!r}")
    if number < 0:
        raise CatalogError(path, line, f"{key}: negative price {value}")
    return number


def _text(
    path: str, line: int, entry: dict[str, Any], key: str, required: bool = False
) -> str | None:
    value = entry.get(key)
    if value is None:
        if required:
            raise CatalogError(path, line, f"missing required field '{key}'")
        return None
    return str(value).strip()


def _parse_row(path: str, entry: dict[str, Any], source: str) -> tuple[PriceRow, list[str]]:
    line = entry.get("__line__", 0)
    rates: dict[str, Decimal] = {}
    for key in entry:
        if key == "__line__" or key in ROW_KEYS:
            continue
        if key not in UNITS_BY_NAME:
            known = ", ".join(sorted(UNITS_BY_NAME))
            raise CatalogError(path, line, f"unknown unit '{key}' (known units: {known})")
        rates[key] = _money(path, line, key, entry[key])
    if not rates:
        raise CatalogError(path, line, "price row has no price (give at least one unit)")
    provider = _text(path, line, entry, "provider", required=True) or ""
    model = _text(path, line, entry, "model", required=True) or ""
    tier = _text(path, line, entry, "service_tier")
    if tier is not None and tier not in ("default", "flex", "priority"):
        raise CatalogError(
            path, line, f"service_tier: expected default, flex or priority, got {tier!r}"
        )
    batch = entry.get("batch", False)
    if not isinstance(batch, bool):
        raise CatalogError(path, line, f"batch: expected true or false, got {batch!r}")
    valid_from = _date(path, line, "valid_from", entry.get("valid_from", OPEN_START))
    valid_to = entry.get("valid_to")
    valid_to_date = None if valid_to is None else _date(path, line, "valid_to", valid_to)
    if valid_to_date is not None and valid_to_date <= valid_from:
        raise CatalogError(
            path, line, f"valid_to {valid_to_date} is not after valid_from {valid_from}"
        )
    above = entry.get("above_input_tokens", -1)
    if isinstance(above, bool) or not isinstance(above, int) or above < -1:
        raise CatalogError(
            path, line, f"above_input_tokens: expected a whole number, got {above!r}"
        )
    match = entry.get("match") or []
    if isinstance(match, str):
        match = [match]
    # The YAML note cites where a price is from. PriceRow.note carries machine flags
    # (batch_rate_not_in_catalog, ...) into every repriced row's price_flags, so the citation
    # is kept in `extra` instead.
    note = _text(path, line, entry, "note")
    row = PriceRow(
        provider=provider.lower(),
        model_id=model.lower(),
        source=source,
        valid_from=valid_from,
        valid_to=valid_to_date,
        rates=resolve_chain(rates),
        service_tier=tier,
        batch=batch,
        image_size=_text(path, line, entry, "image_size"),
        image_quality=_text(path, line, entry, "image_quality"),
        video_resolution=_text(path, line, entry, "video_resolution"),
        band_above=above,
        origin=f"{path}:{line}",
        extra={"note": note} if note else {},
    )
    return row, [str(m).lower() for m in match]


def _parse_contract(path: str, entry: dict[str, Any], source: str) -> ContractTerm:
    line = entry.get("__line__", 0)
    overrides: dict[str, Decimal] = {}
    for key in entry:
        if key == "__line__" or key in CONTRACT_KEYS:
            continue
        if key not in UNITS_BY_NAME:
            raise CatalogError(path, line, f"unknown contract field or unit '{key}'")
        overrides[key] = _money(path, line, key, entry[key])
    pct: dict[str, Decimal | None] = {}
    for key in ("discount_pct", "batch_discount_pct"):
        value = entry.get(key)
        pct[key] = None if value is None else _money(path, line, key, value)
        if pct[key] is not None and pct[key] > 100:  # type: ignore[operator]
            raise CatalogError(path, line, f"{key}: {value} is above 100")
    multiplier = entry.get("region_multiplier")
    regions = entry.get("regions") or []
    if isinstance(regions, str):
        regions = [regions]
    if (multiplier is None) != (not regions):
        raise CatalogError(path, line, "region_multiplier and regions go together")
    term = ContractTerm(
        name=_text(path, line, entry, "name") or f"{path}:{line}",
        provider=(_text(path, line, entry, "provider", required=True) or "").lower(),
        model=(_text(path, line, entry, "model") or "*").lower(),
        valid_from=_date(path, line, "valid_from", entry.get("valid_from", OPEN_START)),
        valid_to=None
        if entry.get("valid_to") is None
        else _date(path, line, "valid_to", entry["valid_to"]),
        discount_pct=pct["discount_pct"],
        batch_discount_pct=pct["batch_discount_pct"],
        regions=tuple(str(r).lower() for r in regions),
        region_multiplier=None
        if multiplier is None
        else _money(path, line, "region_multiplier", multiplier),
        rate_overrides=overrides,
        source=source,
        origin=f"{path}:{line}",
    )
    if not (
        overrides or term.discount_pct is not None or term.batch_discount_pct is not None or regions
    ):
        raise CatalogError(
            path, line, "contract term changes nothing (no discount, multiplier or rate)"
        )
    if overrides and term.discount_pct is not None:
        raise CatalogError(path, line, "a term sets either rates or discount_pct, not both")
    return term


def _parse_alias(path: str, entry: dict[str, Any]) -> Alias:
    line = entry.get("__line__", 0)
    unknown = set(entry) - ALIAS_KEYS - {"__line__"}
    if unknown:
        raise CatalogError(path, line, f"unknown alias field '{sorted(unknown)[0]}'")
    pattern = _text(path, line, entry, "pattern") or _text(path, line, entry, "model")
    if not pattern:
        raise CatalogError(path, line, "alias needs 'pattern' (or 'model')")
    return Alias(
        provider=(_text(path, line, entry, "provider", required=True) or "").lower(),
        pattern=pattern.lower(),
        canonical=(_text(path, line, entry, "canonical", required=True) or "").lower(),
        origin=f"{path}:{line}",
    )


def load_price_file(path: Path, source: str) -> tuple[PriceFile, list[CatalogError]]:
    """Parse one file; returns what parsed and every error found (one per entry at most)."""
    name = str(path)
    out = PriceFile(path=name)
    errors: list[CatalogError] = []
    try:
        doc = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)
    except (OSError, UnicodeDecodeError) as exc:
        return out, [CatalogError(name, None, f"cannot read file: {exc}")]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        return out, [CatalogError(name, mark.line + 1 if mark else None, f"invalid YAML: {exc}")]
    if doc is None:
        return out, []
    if not isinstance(doc, dict):
        return out, [CatalogError(name, 1, "expected a mapping with prices/aliases/contracts")]
    for key in doc:
        if key != "__line__" and key not in TOP_KEYS:
            errors.append(CatalogError(name, doc["__line__"], f"unknown section '{key}'"))
    for section in ("prices", "aliases", "contracts"):
        entries = doc.get(section) or []
        if not isinstance(entries, list):
            errors.append(CatalogError(name, doc["__line__"], f"'{section}' must be a list"))
            continue
        for entry in entries:
            if not isinstance(entry, dict):
                errors.append(CatalogError(name, None, f"'{section}' entries must be mappings"))
                continue
            try:
                if section == "prices":
                    row, patterns = _parse_row(name, entry, source)
                    out.rows.append(row)
                    if patterns:
                        out.model_patterns.setdefault(row.model_key, []).extend(patterns)
                elif section == "aliases":
                    out.aliases.append(_parse_alias(name, entry))
                else:
                    out.contracts.append(_parse_contract(name, entry, source))
            except CatalogError as exc:
                errors.append(exc)
    return out, errors
