"""Canonical request files (JSONL, CSV, Parquet) from a gateway of your own.

Grain: one row per upstream attempt, already in the canonical model (docs/data-model.md).
Unlike `aispend reprice`, which refuses a file with a wrong-typed value, ingest keeps going:
such a row is quarantined with its reason and line. A key-like secret pasted into a text
column (or anywhere in the record quarantine keeps) is redacted, as in the gateway adapters.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from sources.base import SourceContext, assemble, raw_dtype, read_records, value
from transforms.schema import CANONICAL_SCHEMA

KIND = "canonical"
TIMESTAMPS = ("started_at", "first_token_at", "ended_at")
# `read` is plain `read_records` and `to_canonical` only passes `_record` through: ingest may
# read Parquet files without it and build it for quarantined rows only (sources.ingest).
RECORD_PASSTHROUGH = True


def read(path: Path) -> pl.DataFrame:
    return read_records(path)


def to_canonical(raw: pl.LazyFrame, ctx: SourceContext) -> pl.LazyFrame:
    s = raw.collect_schema()
    # `value` hands a list or object where a scalar belongs over as JSON text: flagged, not fatal.
    values = {n: value(s, n) for n in CANONICAL_SCHEMA if n in s and n not in TIMESTAMPS}
    if "provider" in values:
        values["provider"] = values["provider"].cast(pl.String).str.to_lowercase()
    timestamps = {n: (value(s, n), raw_dtype(s, n)) for n in TIMESTAMPS if n in s}
    return assemble(raw, ctx, values, timestamps)
