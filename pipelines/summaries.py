"""Small summaries of frames for asset metadata and messages (no dagster).

Money stays exact: totals are `Decimal` rendered as text (`str(Decimal)`), never float.
Markdown previews escape `|` and line breaks, since values come from logs.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import polars as pl


def money_total(frame: pl.DataFrame, column: str) -> Decimal | None:
    """Exact sum of a Decimal column; None when no row has a value (unknown, not $0)."""
    if column not in frame.columns or frame.get_column(column).null_count() == frame.height:
        return None
    total = frame.get_column(column).sum()
    return Decimal(total) if total is not None else None


def money_text(value: Decimal | None) -> str:
    if value is None:
        return "unknown"
    return format(value.normalize(), "f") if value == value.to_integral() else format(value, "f")


def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").replace("\r", " ")


def markdown_table(frame: pl.DataFrame, limit: int = 10, columns: Sequence[str] = ()) -> str:
    """The first `limit` rows as a markdown table (all columns unless given)."""
    shown = frame.select(list(columns) or frame.columns).head(limit)
    if not shown.columns:
        return "(no columns)"
    head = "| " + " | ".join(_cell(c) for c in shown.columns) + " |"
    rule = "|" + "---|" * len(shown.columns)
    rows = ["| " + " | ".join(_cell(v) for v in row) + " |" for row in shown.iter_rows()]
    more = [f"\n… {frame.height - limit:,} more rows"] if frame.height > limit else []
    return "\n".join([head, rule, *rows, *more])


def count_by(frame: pl.DataFrame, column: str) -> dict[str, int]:
    """Rows per value of `column` (null as '(null)'), largest first."""
    if frame.is_empty() or column not in frame.columns:
        return {}
    counts = (
        frame.group_by(pl.col(column).fill_null("(null)"))
        .len()
        .sort(["len", column], descending=[True, False])
    )
    return {str(k): int(v) for k, v in counts.iter_rows()}


def count_by_counts(counts: pl.DataFrame, column: str) -> dict[str, int]:
    """`count_by` for an already grouped frame (`column`, `len`)."""
    ordered = counts.with_columns(pl.col(column).fill_null("(null)")).sort(
        ["len", column], descending=[True, False]
    )
    return {str(k): int(v) for k, v in ordered.select(column, "len").iter_rows()}


def quarantine_summary(quarantine: pl.DataFrame) -> pl.DataFrame:
    """Quarantined rows per (day, source, source_kind, reason kind): the reason without its
    detail after ':' is kept whole, since reasons are a small closed set."""
    return (
        quarantine.group_by("day", "source", "source_kind", "reason")
        .agg(pl.len().cast(pl.Int64).alias("rows"))
        .sort("day", "source", "source_kind", "reason", nulls_last=True)
    )
