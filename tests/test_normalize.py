"""Normalization: every row ends normalized, duplicate or quarantined, and counts add up."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sources.base import SourceContext
from sources.ingest import ingest_file, write_outputs
from sources.litellm import to_canonical
from transforms.models import model_canonical, model_version
from transforms.normalize import split_requests
from transforms.schema import NORMALIZED_SCHEMA, QUARANTINE_SCHEMA


def spend_log(request_id: str, **overrides: object) -> dict[str, object]:
    row: dict[str, object] = {
        "request_id": request_id,
        "call_type": "acompletion",
        "api_key": "88dc28d0f030c55ed4ab77ed8faf0981",
        "spend": 0.004945,
        "prompt_tokens": 1250,
        "completion_tokens": 310,
        "startTime": "2025-06-01T10:15:02.113Z",
        "endTime": "2025-06-01T10:15:04.870Z",
        "completionStartTime": "2025-06-01T10:15:02.601Z",
        "model": "gpt-4o-2024-08-06",
        "model_group": "gpt-4o",
        "custom_llm_provider": "openai",
        "metadata": {
            "spend_logs_metadata": {"feature": "search"},
            "additional_usage_values": {"prompt_tokens_details": {"cached_tokens": 1024}},
        },
        "cache_hit": "False",
        "team_id": "team_search",
        "status": "success",
    }
    row.update(overrides)
    return row


def write_jsonl(path: Path, rows: list[object]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_litellm_rows_land_normalized_duplicate_or_quarantined(tmp_path: Path) -> None:
    rows: list[object] = [
        spend_log("a"),
        spend_log("b", prompt_tokens="lots"),
        spend_log("a"),  # delivered twice
        spend_log("c", startTime="not a time"),
        spend_log("d", prompt_tokens=0, completion_tokens=0),  # stream without usage
        spend_log("e", cache_hit="True"),
        '{"request_id": "f", "model": ',
        spend_log(
            "g",
            prompt_tokens=100,
            metadata={"additional_usage_values": {"cache_read_input_tokens": 500}},
        ),
    ]
    result = ingest_file("litellm", write_jsonl(tmp_path / "spend.jsonl", rows))
    assert result.problems() == []
    normalized = result.frames["normalized"]
    quarantine = result.frames["quarantine"]
    assert normalized["request_id"].to_list() == ["a", "d", "e"]
    assert normalized.schema == NORMALIZED_SCHEMA
    assert normalized.row(0, named=True)["input_tokens"] == 1250
    assert normalized.row(0, named=True)["cache_read_tokens"] == 1024
    assert normalized.row(0, named=True)["model_canonical"] == "gpt-4o"
    assert normalized.row(0, named=True)["model_version"] == "2024-08-06"
    assert normalized.row(0, named=True)["api_key_id"] == "sha256:88dc28d0f030c55ed4ab77ed8faf0981"
    assert normalized.row(1, named=True)["input_tokens"] is None  # usage missing, not zero
    assert normalized.row(2, named=True)["gateway_cache_hit"] is True
    assert dict(zip(quarantine["source_line"], quarantine["reason"], strict=True)) == {
        2: "invalid_value:input_tokens",
        4: "invalid_timestamp:started_at",
        7: "unreadable_record:invalid_json",
        8: "invalid_usage:cache_above_input",
    }
    assert quarantine.schema == QUARANTINE_SCHEMA
    assert (
        json.loads(quarantine.filter(pl.col("source_line") == 2)["record"][0])["prompt_tokens"]
        == "lots"
    )
    assert result.frames["duplicates"]["source_line"].to_list() == [3]
    totals = result.summary()
    assert (
        totals["rows_read"],
        totals["normalized"],
        totals["duplicates"],
        totals["quarantined"],
    ) == (8, 3, 1, 4)


def test_counts_are_per_day_and_add_up(tmp_path: Path) -> None:
    rows = [
        spend_log("a", startTime="2025-06-01T23:59:59Z"),
        spend_log("b", startTime="2025-06-02T00:00:00Z", endTime="2025-06-02T00:00:05Z"),
        spend_log(
            "c", startTime="2025-06-01T23:59:58Z", endTime="2025-06-02T00:00:30Z"
        ),  # crosses midnight
    ]
    counts = ingest_file("litellm", write_jsonl(tmp_path / "s.jsonl", rows)).counts
    assert counts.select("day", "rows_read", "normalized").rows() == [
        (dt.date(2025, 6, 1), 2, 2),
        (dt.date(2025, 6, 2), 1, 1),
    ]


def test_naive_timestamps_use_the_configured_zone() -> None:
    raw = pl.DataFrame(
        {
            "_line": [1],
            "_record": ["{}"],
            "_parse_error": [None],
            "request_id": ["x"],
            "startTime": ["2025-06-01 09:00:00"],
            "model": ["gpt-4o"],
            "custom_llm_provider": ["openai"],
            "prompt_tokens": [1],
            "completion_tokens": [1],
        },
        schema_overrides={"_parse_error": pl.String},
    )
    ctx = SourceContext("l", "litellm", "f.jsonl", timezone="Europe/Paris")
    out = split_requests(to_canonical(raw.lazy(), ctx)).normalized.collect()
    assert out["started_at"][0] == dt.datetime(2025, 6, 1, 7, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("raw", "canonical", "version"),
    [
        ("anthropic.claude-sonnet-4-5-20250929-v1:0", "claude-sonnet-4-5", "2025-09-29"),
        ("us.anthropic.claude-sonnet-4-5-20250929-v1:0", "claude-sonnet-4-5", "2025-09-29"),
        ("claude-sonnet-4-5@20250929", "claude-sonnet-4-5", "2025-09-29"),
        ("openai/gpt-4o-2024-08-06", "gpt-4o", "2024-08-06"),
        ("models/gemini-2.5-flash", "gemini-2.5-flash", None),
        ("GPT-4o", "gpt-4o", None),
    ],
)
def test_model_resolution_keeps_the_raw_string(
    raw: str, canonical: str, version: str | None
) -> None:
    frame = pl.DataFrame({"m": [raw]}).select(
        pl.col("m"), model_canonical(pl.col("m")).alias("c"), model_version(pl.col("m")).alias("v")
    )
    assert frame.row(0) == (raw, canonical, version)


def test_outputs_are_written_all_or_nothing(tmp_path: Path) -> None:
    result = ingest_file("litellm", write_jsonl(tmp_path / "s.jsonl", [spend_log("a")]))
    written = write_outputs(result, tmp_path / "out")
    assert sorted(Path(p).name for p in written.values()) == [
        "counts.parquet",
        "duplicates.parquet",
        "normalized.parquet",
        "quarantine.parquet",
    ]
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]


@settings(max_examples=40, deadline=None)
@given(
    ids=st.lists(st.sampled_from(["a", "b", "c", "d"]), min_size=0, max_size=12),
    bad=st.lists(st.booleans(), min_size=12, max_size=12),
)
def test_every_row_is_accounted_for(
    tmp_path_factory: pytest.TempPathFactory, ids: list[str], bad: list[bool]
) -> None:
    rows: list[object] = [
        spend_log(i, prompt_tokens=-1) if bad[n] else spend_log(i) for n, i in enumerate(ids)
    ]
    path = write_jsonl(tmp_path_factory.mktemp("h") / "s.jsonl", rows)
    result = ingest_file("litellm", path)
    assert result.problems() == []
    s = result.summary()
    assert s["rows_read"] == len(rows) == s["normalized"] + s["duplicates"] + s["quarantined"]
    good_ids = [i for n, i in enumerate(ids) if not bad[n]]
    assert s["normalized"] == len(set(good_ids))
    assert s["quarantined"] == sum(bad[: len(ids)])
