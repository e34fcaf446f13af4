"""`aispend catalog validate`: every problem in the catalog files, each one line with file and line.

Catalog.load stops at parse errors and at band rows without a base row; this goes further and
also checks what only shows up across entries and files: overlapping or gapped validity within
one price series, match globs that capture another model, alias targets the catalog does not
know, and contract terms of one kind that overlap in time.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import itertools
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

from pricing_catalog.catalog import PRECEDENCE, catalog_files
from pricing_catalog.errors import CatalogError
from pricing_catalog.row_checks import (
    TIERS,
    band_errors,
    describe_row,
    error_at,
    row_tiers,
)
from pricing_catalog.rows import PriceRow
from pricing_catalog.yaml_source import Alias, ContractTerm, PriceFile, load_price_file

# Raw YAML rows: one price series per (source, model, batch, media variant, prompt band); the
# service tiers a row covers are compared separately, since a row without one covers all.
GroupKey = tuple[str, str, bool, str, int]


def validate_catalog(extra_dirs: list[Path]) -> list[CatalogError]:
    """Every problem in the built-in files and those of `extra_dirs`, sorted by file and line."""
    errors: list[CatalogError] = []
    dirs: list[Path] = []
    for d in extra_dirs:
        if d.is_dir():
            dirs.append(d)
        else:
            errors.append(CatalogError(str(d), None, "catalog directory does not exist"))
    parsed: list[PriceFile] = []
    for path, source in catalog_files(dirs):
        pf, file_errors = load_price_file(path, source)
        parsed.append(pf)
        errors += file_errors
    rows = [r for pf in parsed for r in pf.rows]
    genai_ids = _genai_model_ids()
    errors += _series_errors(rows, genai_ids)
    errors += band_errors(rows)
    errors += _glob_errors(parsed, genai_ids)
    errors += _alias_errors([a for pf in parsed for a in pf.aliases], parsed)
    errors += _contract_errors([c for pf in parsed for c in pf.contracts])
    one_line = [CatalogError(e.path, e.line, " ".join(e.message.split())) for e in errors]
    return sorted(one_line, key=lambda e: (e.path, e.line or 0, e.message))


# --------------------------------------------------------------------------- helpers


def _overlaps(a_from: dt.date, a_to: dt.date | None, b_from: dt.date, b_to: dt.date | None) -> bool:
    return (b_to is None or a_from < b_to) and (a_to is None or b_from < a_to)


def _span(valid_from: dt.date, valid_to: dt.date | None) -> str:
    return f"[{valid_from}, {valid_to or 'open'})"


def _effective_tiers(row: PriceRow, explicit: set[tuple[str, dt.date]]) -> frozenset[str]:
    if row.service_tier is not None:
        return frozenset({row.service_tier})
    return frozenset(t for t in TIERS if (t, row.valid_from) not in explicit)


def _group_key(row: PriceRow) -> GroupKey:
    return (row.source, row.model_key, row.batch, row.media_variant, row.band_above)


def _genai_model_ids() -> dict[str, set[str]]:
    """provider id -> lowercase genai-prices model ids."""
    from genai_prices.data import providers

    return {p.id: {m.id.lower() for m in p.models} for p in providers}


def _genai_resolves(provider: str, model: str) -> bool:
    from genai_prices.data_snapshot import get_snapshot

    try:
        get_snapshot().find_provider_model(model, None, provider, None)
    except LookupError:
        return False
    return True


# --------------------------------------------------------------------------- price rows


def _series_errors(rows: list[PriceRow], genai_ids: dict[str, set[str]]) -> list[CatalogError]:
    groups: dict[GroupKey, list[PriceRow]] = defaultdict(list)
    for r in rows:
        groups[_group_key(r)].append(r)
    errors: list[CatalogError] = []
    for key, group in groups.items():
        # A row naming its service tier beats a row for every tier with the same valid_from
        # (Catalog expands the latter to the other tiers only).
        explicit = {(r.service_tier, r.valid_from) for r in group if r.service_tier is not None}
        tiers = {id(r): _effective_tiers(r, explicit) for r in group}

        # Overlap: two rows of one source pricing the same context on the same day.
        for a, b in itertools.combinations(group, 2):
            if tiers[id(a)] & tiers[id(b)] and _overlaps(
                a.valid_from, a.valid_to, b.valid_from, b.valid_to
            ):
                errors.append(
                    error_at(
                        b.origin,
                        f"{describe_row(b)} {_span(b.valid_from, b.valid_to)} overlaps with "
                        f"{a.origin} {_span(a.valid_from, a.valid_to)}",
                    )
                )
        # Gap: within one tier, a row ends before the next one starts and no lower-precedence
        # source prices the days in between.
        reported: set[tuple[str, str]] = set()
        for tier in TIERS:
            in_tier = sorted((r for r in group if tier in tiers[id(r)]), key=lambda r: r.valid_from)
            if not in_tier:
                continue
            last = in_tier[0]  # the row that reaches furthest so far
            for nxt in in_tier[1:]:
                if last.valid_to is None:
                    break
                if (
                    last.valid_to < nxt.valid_from
                    and (last.origin, nxt.origin) not in reported
                    and not _covered_below(
                        key, tier, last.valid_to, nxt.valid_from, rows, genai_ids
                    )
                ):
                    reported.add((last.origin, nxt.origin))
                    errors.append(
                        error_at(
                            nxt.origin,
                            f"{describe_row(nxt)}: no price from {last.valid_to} to "
                            f"{nxt.valid_from} (previous row {last.origin} ends {last.valid_to})",
                        )
                    )
                if nxt.valid_to is None or nxt.valid_to > last.valid_to:
                    last = nxt
    return errors


def _covered_below(
    key: GroupKey,
    tier: str,
    gap_from: dt.date,
    gap_to: dt.date,
    rows: list[PriceRow],
    genai_ids: dict[str, set[str]],
) -> bool:
    """Do lower-precedence sources price every day of [gap_from, gap_to) for this series?"""
    source, model_key, batch, variant, band = key
    provider, model_id = model_key.split("/", 1)
    if variant == "" and model_id in genai_ids.get(provider, set()):
        return True  # genai-prices prices its models on every day, in every context
    spans = sorted(
        (r.valid_from, r.valid_to)
        for r in rows
        if PRECEDENCE[r.source] < PRECEDENCE[source]
        and (r.model_key, r.batch, r.media_variant, r.band_above)
        == (model_key, batch, variant, band)
        and tier in row_tiers(r)
    )
    day = gap_from
    for start, end in spans:
        if start > day:
            break
        if end is None or end >= gap_to:
            return True
        day = max(day, end)
    return False


def _glob_errors(parsed: list[PriceFile], genai_ids: dict[str, set[str]]) -> list[CatalogError]:
    """A match glob must not capture the id of another model: curated globs are tried before
    genai-prices' own rules, so a loose glob would silently reprice someone else's requests."""
    yaml_ids: dict[str, set[str]] = defaultdict(set)
    literal: dict[str, set[str]] = defaultdict(set)  # model_key -> wildcard-free globs
    for pf in parsed:
        for r in pf.rows:
            yaml_ids[r.provider].add(r.model_id)
        for key, globs in pf.model_patterns.items():
            literal[key] |= {g for g in globs if not any(ch in g for ch in "*?[")}
    errors: list[CatalogError] = []
    seen: set[tuple[str, str]] = set()
    for pf in parsed:
        first_row: dict[str, PriceRow] = {}
        for r in pf.rows:
            first_row.setdefault(r.model_key, r)
        for key, globs in pf.model_patterns.items():
            provider, model_id = key.split("/", 1)
            for glob in dict.fromkeys(globs):
                others = {
                    f"{provider}/{other}"
                    for other in yaml_ids[provider]
                    if other != model_id
                    and (
                        fnmatch.fnmatchcase(other, glob)
                        or any(
                            fnmatch.fnmatchcase(lit, glob) for lit in literal[f"{provider}/{other}"]
                        )
                    )
                }
                others |= {
                    f"genai-prices {provider}/{gid}"
                    for gid in genai_ids.get(provider, set())
                    if gid != model_id and fnmatch.fnmatchcase(gid, glob)
                }
                if not others or (key, glob) in seen:
                    continue
                seen.add((key, glob))
                names = sorted(others)
                more = f" (+{len(names) - 3} more)" if len(names) > 3 else ""
                errors.append(
                    error_at(
                        first_row[key].origin,
                        f"match glob '{glob}' of {key} also matches model "
                        f"{', '.join(names[:3])}{more}",
                    )
                )
    return errors


# --------------------------------------------------------------------------- aliases, contracts


def _alias_errors(aliases: list[Alias], parsed: list[PriceFile]) -> list[CatalogError]:
    yaml_ids: dict[str, set[str]] = defaultdict(set)
    for pf in parsed:
        for r in pf.rows:
            yaml_ids[r.provider].add(r.model_id)
    globs: dict[str, list[str]] = defaultdict(list)
    for pf in parsed:
        for key, patterns in pf.model_patterns.items():
            globs[key.split("/", 1)[0]] += patterns
    errors = []
    for alias in aliases:
        if "/" in alias.canonical:
            provider, model = alias.canonical.split("/", 1)
        else:
            provider, model = alias.provider, alias.canonical
        known = (
            model in yaml_ids[provider]
            or any(fnmatch.fnmatchcase(model, g) for g in globs[provider])
            or _genai_resolves(provider, model)
        )
        if not known:
            errors.append(
                error_at(
                    alias.origin,
                    f"alias '{alias.pattern}' -> '{alias.canonical}': {provider}/{model} is not in "
                    "the catalog (no curated or override row, no genai-prices model)",
                )
            )
    return errors


def _kinds(term: ContractTerm) -> Iterable[str]:
    if term.discount_pct is not None or term.rate_overrides:
        yield "discount"
    if term.batch_discount_pct is not None:
        yield "batch discount"
    if term.region_multiplier is not None:
        yield "region multiplier"


def _regions_overlap(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(x, y) or fnmatch.fnmatchcase(y, x) for x in a for y in b)


def _contract_errors(terms: list[ContractTerm]) -> list[CatalogError]:
    errors = []
    groups: dict[tuple[str, str, str, str], list[ContractTerm]] = defaultdict(list)
    for t in terms:
        if t.valid_to is not None and t.valid_to <= t.valid_from:
            errors.append(
                error_at(t.origin, f"valid_to {t.valid_to} is not after valid_from {t.valid_from}")
            )
            continue
        for kind in _kinds(t):
            # An override term is meant to beat a curated one; only terms of one source clash.
            groups[(t.source, t.provider, t.model, kind)].append(t)
    for (_, provider, model, kind), group in groups.items():
        for a, b in itertools.combinations(group, 2):
            if not _overlaps(a.valid_from, a.valid_to, b.valid_from, b.valid_to):
                continue
            if kind == "region multiplier" and not _regions_overlap(a.regions, b.regions):
                continue
            scope = "every model" if model == "*" else model
            errors.append(
                error_at(
                    b.origin,
                    f"contract '{b.name}' ({kind}, {provider} {scope}, "
                    f"{_span(b.valid_from, b.valid_to)}) overlaps with '{a.name}' at {a.origin} "
                    f"{_span(a.valid_from, a.valid_to)}",
                )
            )
    return errors
