"""Canonical Parquet read lazily (sources.ingest `_canonical_parquet`): no `_record` for rows
that are kept, the verbatim record (secrets scrubbed) for rows that are quarantined, and
otherwise the same frames as the reference reader (`read_records` + `to_canonical`)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import polars as pl
from polars.testing import assert_frame_equal

from sources import canonical
from sources.base import SourceContext
from sources.ingest import adapt_file, ingest_file

DAY = dt.date(2025, 10, 1)
SECRET = "sk-proj-" + "A" * 24


def _requests(n: int) -> pl.DataFrame:
    start = dt.datetime(2025, 10, 1, 8, tzinfo=dt.UTC)
    return pl.DataFrame(
        {
            "request_id": [f"r{i}" for i in range(n)],
            "attempt": [1] * n,
            "started_at": [start + dt.timedelta(seconds=i) for i in range(n)],
            "ended_at": [start + dt.timedelta(seconds=i, milliseconds=900) for i in range(n)],
            "provider": ["OpenAI"] * n,
            "model": ["gpt-4o-mini"] * n,
            "feature": ["search"] * n,
            "status": ["success"] * n,
            "modality": ["text"] * n,
            "input_tokens": [1000 + i for i in range(n)],
            "cache_read_tokens": [100] * n,
            "output_tokens": [50] * n,
            "gateway_cost_usd": [Decimal("0.000123")] * n,
        },
        schema_overrides={"attempt": pl.Int32, "gateway_cost_usd": pl.Decimal(38, 18)},
    )


def _dirty(n: int) -> pl.DataFrame:
    frame = _requests(n)
    return frame.with_columns(
        # Row 3: no model; row 5: cache reads above input; row 7: a key pasted into feature;
        # row 8: negative output; row 9: the same request delivered twice (a duplicate).
        pl.when(pl.int_range(pl.len()) == 3).then(None).otherwise(pl.col("model")).alias("model"),
        pl.when(pl.int_range(pl.len()) == 5)
        .then(10**6)
        .otherwise(pl.col("cache_read_tokens"))
        .alias("cache_read_tokens"),
        pl.when(pl.int_range(pl.len()) == 7)
        .then(pl.lit(f"team {SECRET}"))
        .otherwise(pl.col("feature"))
        .alias("feature"),
        pl.when(pl.int_range(pl.len()) == 8)
        .then(-1)
        .otherwise(pl.col("output_tokens"))
        .alias("output_tokens"),
        pl.when(pl.int_range(pl.len()) == 9)
        .then(pl.lit("r0"))
        .otherwise(pl.col("request_id"))
        .alias("request_id"),
    )


def test_lazy_parquet_matches_the_reference_reader(tmp_path: Path) -> None:
    path = tmp_path / "requests.parquet"
    _dirty(40).write_parquet(path)
    fast = ingest_file("canonical", path, partition_day=DAY)
    reference = ingest_file("canonical", path, partition_day=DAY, fast=False)
    assert fast.frames.keys() == reference.frames.keys()
    for name in fast.frames:
        assert_frame_equal(fast.frames[name], reference.frames[name])
    quarantine = fast.frames["quarantine"]
    assert quarantine["source_line"].to_list() == [4, 6, 9]
    assert all(record.startswith('{"request_id":') for record in quarantine["record"])
    assert fast.frames["duplicates"]["source_line"].to_list() == [10]
    assert fast.frames["normalized"].height == 36
    assert not fast.problems()


def test_kept_rows_carry_no_record_and_secrets_never_reach_quarantine(tmp_path: Path) -> None:
    path = tmp_path / "requests.parquet"
    frame = _dirty(12).with_columns(
        # A secret in a row that is quarantined for another reason (no started_at).
        pl.when(pl.int_range(pl.len()) == 2)
        .then(pl.lit(f"u {SECRET}"))
        .otherwise(None)
        .alias("user"),
        pl.when(pl.int_range(pl.len()) == 2)
        .then(None)
        .otherwise(pl.col("started_at"))
        .alias("started_at"),
    )
    frame.write_parquet(path)
    ctx = SourceContext(name="gw", kind="canonical", file=str(path), partition_day=DAY)
    adapted = adapt_file(canonical, path, ctx)
    flagged = adapted.filter(pl.col("_record").is_not_null())
    assert flagged["source_line"].to_list() == [3, 4, 6, 9]
    assert adapted.filter(pl.col("_record").is_null()).height == 8
    assert not any(SECRET in record for record in flagged["_record"])
    assert "[redacted-key]" in flagged["_record"][0]


def test_clean_file_reads_every_row_with_no_record(tmp_path: Path) -> None:
    path = tmp_path / "requests.parquet"
    _requests(25).write_parquet(path)
    ctx = SourceContext(name="gw", kind="canonical", file=str(path), partition_day=DAY)
    adapted = adapt_file(canonical, path, ctx)
    assert adapted["source_line"].to_list() == list(range(1, 26))
    assert adapted["_record"].null_count() == 25
    assert adapted["model"].to_list() == ["gpt-4o-mini"] * 25
