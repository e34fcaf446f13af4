"""`lake.sink_partition_batched`: a row-wise transform computed slice by slice is the same
frame as computed whole, written atomically and byte-identically on a rerun."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

import lake

DAY = dt.date(2025, 10, 1)


def _source(tmp_path: Path, rows: int) -> pl.LazyFrame:
    frame = pl.DataFrame(
        {
            "request_id": [f"r{i}" for i in range(rows)],
            "tokens": list(range(rows)),
            "model": [("a", "b", None)[i % 3] for i in range(rows)],
        },
        schema_overrides={"model": pl.String},
    )
    path = tmp_path / "source.parquet"
    frame.write_parquet(path)
    return pl.scan_parquet(path)


def _price(rows: pl.LazyFrame) -> pl.LazyFrame:
    rate = pl.lit(Decimal("0.000001500000000000"), pl.Decimal(38, 18))
    return rows.with_columns(
        (pl.col("tokens") * rate).cast(pl.Decimal(38, 18)).alias("cost_usd"),
        pl.when(pl.col("model").is_null()).then(pl.lit("unknown_model")).alias("reason"),
    )


@pytest.mark.parametrize("batch_rows", [1, 7, 100, 1000])
def test_slices_give_the_whole_frame(tmp_path: Path, batch_rows: int) -> None:
    source = _source(tmp_path, 100)
    base = str(tmp_path / "data")
    path = lake.sink_partition_batched(
        base, "priced_requests", DAY, source, _price, batch_rows=batch_rows
    )
    written = pl.read_parquet(path)
    assert_frame_equal(written, _price(source).collect())
    assert written["cost_usd"][99] == Decimal("0.0001485")


def test_rerun_is_byte_identical_and_replaces_atomically(tmp_path: Path) -> None:
    source = _source(tmp_path, 50)
    base = str(tmp_path / "data")
    first = Path(lake.sink_partition_batched(base, "p", DAY, source, _price, batch_rows=20))
    before = first.read_bytes()
    second = Path(lake.sink_partition_batched(base, "p", DAY, source, _price, batch_rows=20))
    assert second == first and second.read_bytes() == before
    # Nothing but the partition is left beside it (no staging directories).
    assert [p.name for p in first.parent.parent.iterdir()] == ["day=2025-10-01"]


def test_empty_source_writes_an_empty_partition_with_the_schema(tmp_path: Path) -> None:
    source = _source(tmp_path, 0)
    path = lake.sink_partition_batched(str(tmp_path / "data"), "p", DAY, source, _price)
    written = pl.read_parquet(path)
    assert written.height == 0
    assert written.schema == _price(source).collect_schema()


def test_a_failing_transform_leaves_the_old_partition(tmp_path: Path) -> None:
    source = _source(tmp_path, 30)
    base = str(tmp_path / "data")
    path = Path(lake.sink_partition_batched(base, "p", DAY, source, _price, batch_rows=10))
    before = path.read_bytes()

    def broken(rows: pl.LazyFrame) -> pl.LazyFrame:
        return rows.with_columns(pl.col("request_id").cast(pl.Int64).alias("oops"))

    with pytest.raises(pl.exceptions.InvalidOperationError):
        lake.sink_partition_batched(base, "p", DAY, source, broken, batch_rows=10)
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.parent.iterdir()) == ["day=2025-10-01"]
