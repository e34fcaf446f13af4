"""The streamed split (`split_requests_streamed`, what the ingest asset runs over spilled
Parquet) gives the same normalized rows, duplicates, quarantine and counts as the in-memory
`split_requests`, in the same order, on random canonical frames: repeated keys (also repeats
of a quarantined row), bad usage, missing values, many model strings and a NUL in one."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from sources import canonical
from sources.base import SourceContext
from transforms.normalize import split_requests, split_requests_streamed

DAY = dt.date(2025, 10, 1)
MODELS = [
    "gpt-4o",
    "gpt-4o-mini",
    "openai/gpt-4o-2024-08-06",
    "anthropic.claude-sonnet-4-5-20250929-v1:0",
    "claude-sonnet-4-5@20250929",
    "GPT-4o ",
    None,
]

row = st.fixed_dictionaries(
    {
        "request_id": st.sampled_from(["a", "b", "c", "d", None]),
        "attempt": st.sampled_from([1, 2]),
        "model": st.sampled_from(MODELS),
        "input_tokens": st.sampled_from([0, 10, 500, -1, None]),
        "cache_read_tokens": st.sampled_from([0, 5, 600, None]),
        "output_tokens": st.sampled_from([0, 3, 40, None]),
        "hour": st.sampled_from([0, 12, 23, None]),
    }
)


def _canonical(rows: list[dict[str, object]], tmp_path: Path, nul: bool) -> pl.LazyFrame:
    start = dt.datetime(2025, 10, 1, tzinfo=dt.UTC)
    frame = pl.DataFrame(
        {
            "request_id": [r["request_id"] for r in rows],
            "attempt": [r["attempt"] for r in rows],
            "started_at": [
                None if r["hour"] is None else start + dt.timedelta(hours=r["hour"])  # type: ignore[arg-type]
                for r in rows
            ],
            "provider": ["openai"] * len(rows),
            "model": [("gpt\x00x" if nul and i == 0 else r["model"]) for i, r in enumerate(rows)],
            "input_tokens": [r["input_tokens"] for r in rows],
            "cache_read_tokens": [r["cache_read_tokens"] for r in rows],
            "output_tokens": [r["output_tokens"] for r in rows],
        },
        schema_overrides={"attempt": pl.Int32, "model": pl.String, "request_id": pl.String},
    )
    raw = frame.with_columns(
        pl.int_range(1, pl.len() + 1, dtype=pl.Int64).alias("_line"),
        pl.struct(pl.all()).struct.json_encode().alias("_record"),
        pl.lit(None, pl.String).alias("_parse_error"),
    )
    ctx = SourceContext(name="gw", kind="canonical", file="f.parquet", partition_day=DAY)
    adapted = canonical.to_canonical(raw.lazy(), ctx).collect()
    # The streamed split reads spilled Parquet, as in the pipeline.
    path = tmp_path / "spill.parquet"
    adapted.write_parquet(path)
    return pl.scan_parquet(path)


@settings(max_examples=40, deadline=None)
@given(rows=st.lists(row, min_size=1, max_size=30), nul=st.booleans())
def test_streamed_split_equals_in_memory_split(
    rows: list[dict[str, object]], nul: bool, tmp_path_factory: object
) -> None:
    tmp = tmp_path_factory.mktemp("split")  # type: ignore[attr-defined]
    scan = _canonical(rows, tmp, nul)
    reference = split_requests(scan, DAY)
    expected = dict(
        zip(
            ("normalized", "duplicates", "quarantine"),
            pl.collect_all([reference.normalized, reference.duplicates, reference.quarantine]),
            strict=True,
        )
    )
    streamed = split_requests_streamed(scan, DAY)
    assert_frame_equal(streamed.normalized.collect(engine="streaming"), expected["normalized"])
    assert_frame_equal(streamed.duplicates, expected["duplicates"])
    assert_frame_equal(streamed.quarantine, expected["quarantine"])
    assert streamed.rows_read == len(rows)
    assert streamed.normalized_rows == expected["normalized"].height
    assert (
        streamed.normalized_rows + streamed.duplicates.height + streamed.quarantine.height
        == len(rows)
    )
