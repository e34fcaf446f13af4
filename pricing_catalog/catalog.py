"""The pricing catalog: list prices from genai-prices, curated files and local overrides,
merged by precedence, plus model aliases and contract terms.

Precedence, highest first: local overrides (a user can correct a price the day a provider
changes it), our curated files, genai-prices. A higher source wins for exactly the dates
it covers; outside them the lower source still applies.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import functools
import os
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import polars as pl

from pricing_catalog.errors import CatalogError, CatalogErrors
from pricing_catalog.genai_source import genai_rows, genai_version
from pricing_catalog.row_checks import band_errors
from pricing_catalog.rows import CONTEXTS, DAY_SECONDS, PriceRow, rows_to_frame
from pricing_catalog.yaml_source import Alias, ContractTerm, PriceFile, load_price_file

BUILTIN_DIR = Path(__file__).parent / "data"
PRECEDENCE = {"genai-prices": 0, "curated": 1, "override": 2}

SeriesKey = tuple[str, str | None, bool, str]  # model_key, service_tier, batch, media_variant


def catalog_files(extra_dirs: Sequence[Path] = ()) -> list[tuple[Path, str]]:
    """(file, source) for the built-in curated files and each extra catalog directory.

    In a catalog directory, `*.yaml` files are curated; `overrides/*.yaml` are local overrides.
    """
    files: list[tuple[Path, str]] = [(p, "curated") for p in sorted(BUILTIN_DIR.glob("*.yaml"))]
    for d in extra_dirs:
        if not d.is_dir():
            raise CatalogErrors([CatalogError(str(d), None, "catalog directory does not exist")])
        files += [(p, "curated") for p in sorted(d.glob("*.yaml"))]
        files += [(p, "override") for p in sorted((d / "overrides").glob("*.yaml"))]
    return files


def default_catalog_dirs() -> list[Path]:
    env = os.environ.get("AISPEND_CATALOG_DIR")
    return [Path(p) for p in env.split(os.pathsep) if p] if env else []


def _tier_key(r: PriceRow, tier: str | None, batch: bool) -> tuple[object, ...]:
    return (r.model_key, r.media_variant, r.source, tier, batch, r.valid_from, r.band_above)


def _expand_contexts(rows: list[PriceRow]) -> list[PriceRow]:
    """A YAML row without service_tier applies to every tier; batch rows only to batch.

    Batch requests of a model with no batch row get the standard row and a note saying so.
    """
    out: list[PriceRow] = []
    has_batch: set[tuple[str, str, str]] = {
        (r.model_key, r.media_variant, r.source) for r in rows if r.batch
    }
    # A row naming its service tier beats a row for every tier, whatever the file order.
    explicit = {_tier_key(r, r.service_tier, r.batch) for r in rows if r.service_tier is not None}
    for r in rows:
        for tier, batch in CONTEXTS:
            if r.service_tier is not None and tier != r.service_tier:
                continue
            # The explicit row also yields this context (or its batch fallback): skip ours.
            if r.service_tier is None and (
                _tier_key(r, tier, batch) in explicit
                or (batch and not r.batch and _tier_key(r, tier, False) in explicit)
            ):
                continue
            if r.service_tier is None and tier is None and r.batch:
                continue
            if batch == r.batch:
                out.append(r.with_(service_tier=tier, batch=batch))
            elif (
                batch and not r.batch and (r.model_key, r.media_variant, r.source) not in has_batch
            ):
                out.append(r.with_(service_tier=tier, batch=True, note="batch_rate_not_in_catalog"))
    return out


def _fill_bands(rows: list[PriceRow]) -> list[PriceRow]:
    groups: dict[tuple[object, ...], list[PriceRow]] = defaultdict(list)
    for r in rows:
        groups[
            (r.model_key, r.service_tier, r.batch, r.media_variant, r.valid_from, r.source)
        ].append(r)
    out = []
    for group in groups.values():
        group.sort(key=lambda r: r.band_above)
        for i, r in enumerate(group):
            upto = group[i + 1].band_above if i + 1 < len(group) else None
            out.append(r.with_(band_upto=upto))
    return out


def _clip(rows: list[PriceRow], covered: list[tuple[dt.date, dt.date | None]]) -> list[PriceRow]:
    """Cut away from each row the date ranges a higher-precedence source already covers."""
    out = []
    for r in rows:
        pieces: list[tuple[dt.date, dt.date | None]] = [(r.valid_from, r.valid_to)]
        for c_from, c_to in covered:
            nxt: list[tuple[dt.date, dt.date | None]] = []
            for p_from, p_to in pieces:
                # left remainder
                if p_from < c_from:
                    nxt.append((p_from, c_from if p_to is None or c_from < p_to else p_to))
                # right remainder
                if c_to is not None and (p_to is None or c_to < p_to):
                    nxt.append((max(p_from, c_to), p_to))
            pieces = [(a, b) for a, b in nxt if b is None or a < b]
        out += [r.with_(valid_from=a, valid_to=b) for a, b in pieces]
    return out


def merge_by_precedence(rows: Iterable[PriceRow]) -> list[PriceRow]:
    series: dict[SeriesKey, dict[str, list[PriceRow]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        series[(r.model_key, r.service_tier, r.batch, r.media_variant)][r.source].append(r)
    merged: list[PriceRow] = []
    for by_source in series.values():
        covered: list[tuple[dt.date, dt.date | None]] = []
        for source in sorted(by_source, key=lambda s: -PRECEDENCE[s]):
            source_rows = by_source[source]
            merged += _clip(source_rows, covered) if covered else source_rows
            covered += [(r.valid_from, r.valid_to) for r in source_rows]
    return merged


@dataclass
class Catalog:
    rows: list[PriceRow]
    aliases: list[Alias] = field(default_factory=list)
    contracts: list[ContractTerm] = field(default_factory=list)
    model_patterns: dict[str, list[str]] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    source_version: str = ""

    @classmethod
    def load(cls, extra_dirs: Sequence[Path] | None = None, *, with_genai: bool = True) -> Catalog:
        dirs = list(extra_dirs) if extra_dirs is not None else default_catalog_dirs()
        parsed: list[PriceFile] = []
        errors: list[CatalogError] = []
        sources: dict[str, str] = {}
        for path, source in catalog_files(dirs):
            pf, errs = load_price_file(path, source)
            parsed.append(pf)
            sources[pf.path] = source
            errors += errs
        yaml_rows = [r for pf in parsed for r in pf.rows]
        # A band without a base row leaves every shorter prompt between price segments.
        errors += band_errors(yaml_rows)
        if errors:
            raise CatalogErrors(errors)
        all_rows = list(_cached_genai_rows()) if with_genai else []
        all_rows += _fill_bands(_expand_contexts(yaml_rows))
        by_precedence = sorted(parsed, key=lambda pf: -PRECEDENCE[sources[pf.path]])
        patterns: dict[str, list[str]] = defaultdict(list)
        for pf in by_precedence:
            for key, globs in pf.model_patterns.items():
                patterns[key] += globs
        return cls(
            rows=merge_by_precedence(all_rows),
            aliases=[a for pf in by_precedence for a in pf.aliases],
            contracts=[c for pf in by_precedence for c in pf.contracts],
            model_patterns=dict(patterns),
            files=[pf.path for pf in parsed],
            source_version=f"genai-prices {genai_version()}" if with_genai else "",
        )

    @functools.cached_property
    def table(self) -> pl.DataFrame:
        return rows_to_frame(self.rows)

    @functools.cached_property
    def rows_by_series(self) -> dict[SeriesKey, list[PriceRow]]:
        out: dict[SeriesKey, list[PriceRow]] = defaultdict(list)
        for r in self.rows:
            out[(r.model_key, r.service_tier, r.batch, r.media_variant)].append(r)
        for rows in out.values():
            rows.sort(key=lambda r: (r.valid_from, r.tod_start_s, r.band_above))
        return dict(out)

    @functools.cached_property
    def segment_cuts(self) -> dict[str, tuple[frozenset[int], frozenset[int]]]:
        """model_key -> (time-of-day, prompt-size) bounds its price segments use besides the
        whole day and the base band; models without any are left out."""
        tods: dict[str, set[int]] = defaultdict(set)
        bands: dict[str, set[int]] = defaultdict(set)
        for r in self.rows:
            tods[r.model_key] |= {min(max(v, 0), DAY_SECONDS) for v in (r.tod_start_s, r.tod_end_s)}
            bands[r.model_key] |= {max(v, -1) for v in (r.band_above, r.band_upto) if v is not None}
        out = {}
        for key in tods:
            tod = frozenset(tods[key] - {0, DAY_SECONDS})
            band = frozenset(bands[key] - {-1})
            if tod or band:
                out[key] = (tod, band)
        return out

    @functools.cached_property
    def rated_unit_sets(self) -> frozenset[frozenset[str]]:
        """The distinct sets of units that some price row quotes."""
        return frozenset(frozenset(r.rates) for r in self.rows)

    def build_indexes(self) -> Catalog:
        """Build the lookup indexes repricing uses now rather than on first use (they depend
        on the catalog only, so a long-lived process or a benchmark pays for them once)."""
        for index in ("rows_by_series", "segment_cuts", "rated_unit_sets", "yaml_model_keys"):
            getattr(self, index)
        return self

    @functools.cached_property
    def yaml_model_keys(self) -> dict[str, set[str]]:
        """provider -> model ids priced by curated or override files."""
        out: dict[str, set[str]] = defaultdict(set)
        for r in self.rows:
            if r.source != "genai-prices":
                out[r.provider].add(r.model_id)
        return dict(out)

    def yaml_match(self, provider: str, model: str) -> str | None:
        ids = self.yaml_model_keys.get(provider, set())
        if model in ids:
            return f"{provider}/{model}"
        for key, globs in self.model_patterns.items():
            if key.startswith(provider + "/") and any(fnmatch.fnmatchcase(model, g) for g in globs):
                return key
        return None

    def with_rows(self, rows: list[PriceRow]) -> Catalog:
        return replace(self, rows=rows)


@functools.cache
def _cached_genai_rows() -> tuple[PriceRow, ...]:
    return tuple(genai_rows())
