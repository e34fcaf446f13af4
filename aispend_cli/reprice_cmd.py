"""`aispend reprice`: file in, repriced file out, summary back."""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import polars as pl

from pricing_catalog.catalog import Catalog
from transforms.canonical_reader import InputError, read_canonical
from transforms.reprice import reprice

SAMPLE_FILE = Path(__file__).resolve().parent.parent / "docs" / "examples" / "sample_requests.jsonl"
OUTPUT_FORMATS = (".parquet", ".csv")
CENT = Decimal("0.01")


def write_atomically(frame: pl.LazyFrame, out: Path) -> None:
    """Write aside in the target directory, then rename: a crash never leaves half a file."""
    suffix = out.suffix.lower()
    if suffix not in OUTPUT_FORMATS:
        raise InputError(f"{out}: unknown output type '{out.suffix}' (use .parquet or .csv)")
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        if suffix == ".parquet":
            frame.sink_parquet(tmp)
        else:
            frame.sink_csv(tmp)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


def summarize(priced: pl.LazyFrame) -> dict[str, object]:
    totals = priced.select(
        pl.len().alias("rows"),
        pl.col("unpriced_reason").is_null().sum().alias("priced"),
        pl.col("list_cost_usd").sum().alias("list_cost_usd"),
        pl.col("cost_usd").sum().alias("cost_usd"),
    ).collect()
    reasons = (
        priced.filter(pl.col("unpriced_reason").is_not_null())
        .group_by("unpriced_reason")
        .len()
        .sort(["len", "unpriced_reason"], descending=[True, False])
        .collect()
    )
    row = totals.row(0, named=True)
    list_cost = row["list_cost_usd"] or Decimal(0)
    cost = row["cost_usd"] or Decimal(0)
    return {
        "rows": row["rows"],
        "priced": row["priced"],
        "unpriced": row["rows"] - row["priced"],
        "unpriced_by_reason": dict(reasons.iter_rows()),
        "list_cost_usd": str(list_cost.normalize() if list_cost else Decimal(0)),
        "cost_usd": str(cost.normalize() if cost else Decimal(0)),
        "list_cost_usd_cents": str(list_cost.quantize(CENT, ROUND_HALF_UP)),
        "cost_usd_cents": str(cost.quantize(CENT, ROUND_HALF_UP)),
    }


def run_reprice(
    input_path: Path, out: Path, catalog: Catalog, price_at: dt.date | None
) -> dict[str, object]:
    if out.suffix.lower() not in OUTPUT_FORMATS:
        raise InputError(f"{out}: unknown output type '{out.suffix}' (use .parquet or .csv)")
    requests = read_canonical(input_path)
    priced = reprice(requests, catalog, price_at)
    write_atomically(priced, out)
    summary = summarize(pl.scan_parquet(out) if out.suffix.lower() == ".parquet" else priced)
    summary["output"] = str(out)
    summary["input"] = str(input_path)
    return summary
