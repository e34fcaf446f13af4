"""Shared fixtures: the real pricing catalog and a builder for canonical request frames."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import polars as pl
import pytest

from pricing_catalog.catalog import Catalog
from transforms.schema import CANONICAL_SCHEMA, COLUMN_DEFAULTS, ROW_ISSUES

INPUT_SCHEMA = pl.Schema({**CANONICAL_SCHEMA, ROW_ISSUES: pl.String})


def canonical_frame(rows: Iterable[Mapping[str, Any]]) -> pl.DataFrame:
    """Canonical requests from partial dicts.

    Every CANONICAL_SCHEMA column is present with its dtype; missing values are null, except
    the defaults a reader would fill (status 'success', modality 'text', attempt 1, batch
    False). `row_issues` is null unless given. Columns not in the schema are rejected, so a
    typo in a test cannot silently become a null.
    """
    records: list[dict[str, Any]] = []
    for i, row in enumerate(rows):
        unknown = set(row) - set(INPUT_SCHEMA)
        if unknown:
            raise KeyError(f"row {i}: not canonical columns: {sorted(unknown)}")
        record: dict[str, Any] = dict.fromkeys(INPUT_SCHEMA)
        record.update(COLUMN_DEFAULTS)
        record.update(row)
        records.append(record)
    return pl.DataFrame(records, schema=INPUT_SCHEMA, orient="row")


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    """The built-in catalog (genai-prices + curated files), no extra directories."""
    return Catalog.load([])
