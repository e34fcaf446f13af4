"""Reading canonical files: JSONL, CSV, Parquet; fatal file errors vs flagged rows."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from transforms.canonical_reader import InputError, read_canonical
from transforms.schema import CANONICAL_SCHEMA, ROW_ISSUES

ROWS = [
    {
        "request_id": "a",
        "started_at": "2026-11-01T10:00:00Z",
        "provider": "OpenAI",
        "model": "gpt-4o",
        "input_tokens": 1000,
        "output_tokens": 200,
        "batch": True,
        "gateway_cost_usd": "0.0045",
    },
    {
        "request_id": "b",
        "started_at": "2026-11-01T12:30:00+02:00",
        "provider": "bedrock",
        "model": "anthropic.claude-sonnet-4-5-20250929-v1:0",
        "input_tokens": 10,
        "output_tokens": 5,
        "service_tier": "flex",
    },
]


def write(path: Path, rows: list[dict[str, object]]) -> Path:
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif path.suffix == ".csv":
        pl.DataFrame(rows).write_csv(path)
    else:
        pl.DataFrame(rows).write_parquet(path)
    return path


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_every_format_reads_to_the_canonical_schema(tmp_path: Path, suffix: str) -> None:
    frame = read_canonical(write(tmp_path / f"r{suffix}", ROWS)).collect()
    assert frame.schema == pl.Schema({**CANONICAL_SCHEMA, ROW_ISSUES: pl.String})
    assert frame["request_id"].to_list() == ["a", "b"]
    assert frame["started_at"].to_list() == [
        dt.datetime(2026, 11, 1, 10, tzinfo=dt.UTC),
        dt.datetime(2026, 11, 1, 10, 30, tzinfo=dt.UTC),
    ]
    assert frame["provider"].to_list() == ["openai", "bedrock"]
    assert frame["batch"].to_list() == [True, False]
    assert frame["attempt"].to_list() == [1, 1]
    assert frame["status"].to_list() == ["success", "success"]
    assert frame[ROW_ISSUES].to_list() == [None, None]
    assert str(frame["gateway_cost_usd"][0]) == "0.004500000000000000"


def test_epoch_seconds_millis_and_naive_timestamps_are_utc(tmp_path: Path) -> None:
    rows = [
        {"request_id": "s", "started_at": 1761991200, "provider": "openai", "model": "gpt-4o"},
        {"request_id": "ms", "started_at": 1761991200000, "provider": "openai", "model": "gpt-4o"},
    ]
    frame = read_canonical(write(tmp_path / "e.jsonl", rows)).collect()
    assert frame["started_at"].to_list() == [dt.datetime(2025, 11, 1, 10, tzinfo=dt.UTC)] * 2
    naive = [
        {"request_id": "n", "started_at": "2025-11-01 10:00:00", "provider": "openai", "model": "m"}
    ]
    frame = read_canonical(write(tmp_path / "n.csv", naive)).collect()
    assert frame["started_at"][0] == dt.datetime(2025, 11, 1, 10, tzinfo=dt.UTC)


def test_bad_rows_are_flagged_never_dropped(tmp_path: Path) -> None:
    rows = [
        {
            "request_id": "ok",
            "started_at": "2026-11-01T10:00:00Z",
            "provider": "openai",
            "model": "gpt-4o",
        },
        {"request_id": "ts", "started_at": "yesterday", "provider": "openai", "model": "gpt-4o"},
        {
            "request_id": None,
            "started_at": "2026-11-01T10:00:00Z",
            "provider": "openai",
            "model": "gpt-4o",
        },
        {
            "request_id": "st",
            "started_at": "2026-11-01T10:00:00Z",
            "provider": "openai",
            "model": "x",
            "status": "meh",
        },
    ]
    frame = read_canonical(write(tmp_path / "b.jsonl", rows)).collect()
    assert frame.height == 4
    assert frame[ROW_ISSUES].to_list() == [
        None,
        "invalid_timestamp:started_at",
        "missing_value:request_id",
        "invalid_value:status",
    ]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        (
            "t.csv",
            "request_id,started_at,provider,model,input_tokens\nr,2026-01-01,openai,gpt-4o,12x\n",
            "t.csv: line 2: field 'input_tokens': expected a whole number, got '12x'",
        ),
        (
            "m.csv",
            "request_id,provider,model\nr,openai,gpt-4o\n",
            "m.csv: line 1: field 'started_at': required column is missing",
        ),
        (
            "j.jsonl",
            '{"request_id": "a", "started_at": "2026-01-01", "provider": "o", "model": "m"}\n'
            '{"request_id": \n',
            "j.jsonl: line 2: not valid JSON",
        ),
        (
            "w.jsonl",
            '{"request_id": "a", "started_at": "2026-01-01", "provider": "o", "model": "m", '
            '"batch": "maybe"}\n',
            "w.jsonl: line 1: field 'batch': expected true or false, got 'maybe'",
        ),
        ("x.txt", "hello", "unknown file type '.txt'"),
        ("e.parquet", "not parquet at all", "e.parquet: cannot read file"),
    ],
)
def test_file_level_mistakes_are_one_clear_line(
    tmp_path: Path, name: str, content: str, message: str
) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(InputError) as info:
        read_canonical(path).collect()
    text = str(info.value)
    assert message in text
    assert "\n" not in text
    assert text.startswith(str(tmp_path))


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"nope\.jsonl: cannot read file"):
        read_canonical(tmp_path / "nope.jsonl")


json_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    records=st.lists(
        st.dictionaries(
            st.sampled_from(list(CANONICAL_SCHEMA)), json_values, min_size=0, max_size=8
        ),
        min_size=0,
        max_size=6,
    )
)
def test_fuzzed_jsonl_either_reads_every_row_or_fails_with_one_line(
    tmp_path: Path, records: list[dict[str, object]]
) -> None:
    base = {
        "request_id": "r",
        "started_at": "2026-01-01T00:00:00Z",
        "provider": "openai",
        "model": "gpt-4o",
    }
    path = tmp_path / "fuzz.jsonl"
    lines = [json.dumps({**base, **r}, allow_nan=True) for r in records]
    path.write_text("".join(line + "\n" for line in lines))
    try:
        frame = read_canonical(path).collect()
    except InputError as exc:
        assert "\n" not in str(exc)
        assert str(path) in str(exc)
        return
    assert frame.height == len(records)
