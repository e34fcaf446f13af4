"""Great Expectations suites for normalized requests and provider usage (transforms/quality.py).

GX really runs here: a clean frame passes every expectation, and each kind of violation fails
exactly the expectation meant to catch it, with the right number of unexpected rows. GX takes
several seconds to import, so it is imported once per session by the `gx` fixture.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from transforms.canonical_reader import InputError
from transforms.quality import (
    PROVIDER_USAGE,
    REQUESTS,
    QualityInputError,
    QualityReport,
    provider_usage_suite,
    requests_suite,
    validate_path,
    validate_provider_usage,
    validate_requests,
)
from transforms.schema import NORMALIZED_SCHEMA, PROVIDER_USAGE_SCHEMA

DAY = dt.date(2026, 3, 14)
MIDNIGHT = dt.datetime(2026, 3, 14, tzinfo=dt.UTC)
ROWS = 50  # 1 unknown model in 50 is 2%: exactly the default threshold


# ##### FIXTURES


@pytest.fixture(scope="session", autouse=True)
def gx() -> None:
    """Import Great Expectations once for the whole session (it is slow)."""
    import great_expectations  # noqa: F401


def normalized(n: int = ROWS) -> pl.DataFrame:
    """Clean normalized requests on DAY: every NORMALIZED_SCHEMA column filled, every rule met."""
    i = list(range(n))
    columns: dict[str, list[Any]] = {
        "request_id": [f"req-{k:04d}" for k in i],
        "attempt": [1] * n,
        "trace_id": [f"trace-{k // 3}" for k in i],
        "started_at": [MIDNIGHT + dt.timedelta(minutes=20 * k) for k in i],
        "first_token_at": [MIDNIGHT + dt.timedelta(minutes=20 * k, seconds=1) for k in i],
        "ended_at": [MIDNIGHT + dt.timedelta(minutes=20 * k, seconds=4) for k in i],
        "gateway": ["litellm"] * n,
        "provider": ["openai" if k % 2 else "anthropic" for k in i],
        "model": ["gpt-4o" if k % 2 else "claude-sonnet-4-5" for k in i],
        "region": ["us-east-1"] * n,
        "service_tier": [("default", "flex", "priority")[k % 3] for k in i],
        "batch": [k % 5 == 0 for k in i],
        "feature": ["search"] * n,
        "team": ["core"] * n,
        "user": [f"user-{k % 7}" for k in i],
        "api_key_id": ["sha256:ab12"] * n,
        "status": ["success"] * n,
        "modality": ["text"] * n,
        "input_tokens": [1_000 + k for k in i],
        "cache_read_tokens": [400] * n,
        "cache_write_tokens": [300] * n,
        "cache_write_1h_tokens": [100] * n,
        "output_tokens": [200 + k for k in i],
        "reasoning_tokens": [50] * n,
        "image_count": [0] * n,
        "image_size": ["1024x1024"] * n,
        "image_quality": ["standard"] * n,
        "video_seconds": [0.0] * n,
        "video_resolution": ["720p"] * n,
        "audio_seconds": [0.0] * n,
        "gateway_cost_usd": [Decimal("0.0123")] * n,
        "gateway_cache_hit": [False] * n,
        "model_canonical": ["gpt-4o" if k % 2 else "claude-sonnet-4-5" for k in i],
        "model_version": ["2024-08-06" if k % 2 else "20250929" for k in i],
        "source": ["litellm-prod"] * n,
        "source_kind": ["litellm"] * n,
        "source_file": ["logs/2026-03-14.jsonl"] * n,
        "source_line": [k + 1 for k in i],
    }
    assert set(columns) == set(NORMALIZED_SCHEMA)
    return pl.DataFrame(columns, schema=NORMALIZED_SCHEMA)


def usage(n: int = 10) -> pl.DataFrame:
    """Clean provider usage rows in March 2026: every PROVIDER_USAGE_SCHEMA column filled."""
    i = list(range(n))
    columns: dict[str, list[Any]] = {
        "date": [DAY] * n,
        "provider": ["openai"] * n,
        "model": [f"gpt-4o-{k}" for k in i],
        "model_canonical": ["gpt-4o"] * n,
        "account_id": ["proj_abc"] * n,
        "api_key_id": ["key_123"] * n,
        "service_tier": ["default"] * n,
        "batch": [False] * n,
        "region": ["us"] * n,
        "input_tokens": [10_000] * n,
        "cache_read_tokens": [2_000] * n,
        "cache_write_tokens": [1_000] * n,
        "cache_write_1h_tokens": [500] * n,
        "output_tokens": [3_000] * n,
        "reasoning_tokens": [1_000] * n,
        "requests": [12] * n,
        "line_item": ["gpt-4o input"] * n,
        "cost_usd": [Decimal("1.25")] * n,
        "credits_usd": [Decimal("-0.25")] * n,
        "currency": ["USD"] * n,
        "source": ["openai-costs"] * n,
        "source_kind": ["openai_costs"] * n,
        "source_file": ["exports/costs.json"] * n,
        "source_line": [k + 1 for k in i],
    }
    assert set(columns) == set(PROVIDER_USAGE_SCHEMA)
    return pl.DataFrame(columns, schema=PROVIDER_USAGE_SCHEMA)


def set_rows(frame: pl.DataFrame, rows: list[int], **values: Any) -> pl.DataFrame:
    """`frame` with the given columns replaced by `values` on `rows` (0-based)."""
    schema = frame.schema
    hit = pl.int_range(pl.len()).is_in(rows)
    return frame.with_columns(
        pl.when(hit).then(pl.lit(v, dtype=schema[c])).otherwise(pl.col(c)).alias(c)
        for c, v in values.items()
    )


def failed(report: QualityReport) -> dict[str, int | None]:
    return {r.check: r.unexpected_count for r in report.failures}


def outcome(report: QualityReport, check: str) -> Any:
    (found,) = [r for r in report.results if r.check == check]
    return found


# ##### SUITES


def test_suites_are_real_gx_suites() -> None:
    import great_expectations as gx

    suite = requests_suite(DAY)
    assert isinstance(suite, gx.ExpectationSuite)
    types = {e.expectation_type for e in suite.expectations}
    assert {
        "expect_column_values_to_not_be_null",
        "expect_column_values_to_be_between",
        "expect_column_pair_values_a_to_be_greater_than_b",
        "expect_column_values_to_be_in_set",
        "expect_compound_columns_to_be_unique",
        "expect_column_values_to_be_null",
    } <= types
    # the partition check is only there with a day
    checks = [e.meta["check"] for e in requests_suite(None).expectations]
    assert "started_in_partition" not in checks
    assert len(checks) == len(set(checks)) == len(suite.expectations) - 1

    usage_types = {e.expectation_type for e in provider_usage_suite().expectations}
    assert "expect_column_values_to_match_regex" in usage_types


def test_suite_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="max_unknown_model_share"):
        requests_suite(DAY, max_unknown_model_share=1.5)
    with pytest.raises(ValueError, match="not both"):
        provider_usage_suite(DAY, DAY)


# ##### REQUESTS


def test_clean_requests_pass_every_expectation() -> None:
    report = validate_requests(normalized(), DAY)
    assert report.success, report.lines()
    assert report.kind == REQUESTS
    assert report.row_count == ROWS
    assert len(report.results) == len(requests_suite(DAY).expectations)
    assert all(r.success and r.error is None for r in report.results)
    assert all(r.unexpected_count == 0 for r in report.results)
    assert report.lines() == [
        f"requests day={DAY}: {ROWS} rows, {len(report.results)} expectations, passed"
    ]


def test_missing_token_counts_are_not_violations() -> None:
    # usage_missing: null counts are skipped by non-negative and subset rules alike
    frame = set_rows(
        normalized(),
        [0, 1, 2],
        input_tokens=None,
        cache_write_tokens=None,
        reasoning_tokens=None,
        image_count=None,
        service_tier=None,
    )
    report = validate_requests(frame, DAY)
    assert report.success, report.lines()


Mutation = Callable[[pl.DataFrame], pl.DataFrame]

# violation -> (how to break a clean frame, {the only failing check: unexpected rows})
REQUEST_VIOLATIONS: dict[str, tuple[Mutation, dict[str, int]]] = {
    "null request_id": (
        lambda f: set_rows(f, [7], request_id=None),
        {"not_null:request_id": 1},
    ),
    "negative tokens": (
        lambda f: set_rows(f, [0, 9], cache_write_1h_tokens=-3),
        {"non_negative:cache_write_1h_tokens": 2},
    ),
    "cache above input": (
        lambda f: set_rows(f, [1, 2, 3], input_tokens=699),  # read 400 + write 300 = 700
        {"cache_within_input": 3},
    ),
    "1h cache above cache write": (
        lambda f: set_rows(f, [4], cache_write_1h_tokens=301),
        {"cache_1h_within_cache_write": 1},
    ),
    "reasoning above output": (
        lambda f: set_rows(f, [8, 9], reasoning_tokens=5_000),
        {"reasoning_within_output": 2},
    ),
    "started outside the day": (
        # the last microsecond before the day, and the excluded upper bound
        lambda f: set_rows(
            set_rows(f, [3], started_at=MIDNIGHT - dt.timedelta(microseconds=1)),
            [4],
            started_at=MIDNIGHT + dt.timedelta(days=1),
        ),
        {"started_in_partition": 2},
    ),
    "unknown status": (lambda f: set_rows(f, [2], status="ok"), {"known_value:status": 1}),
    # every row of a duplicated (request_id, attempt) counts: the original and its copy
    "duplicate request_id + attempt": (
        lambda f: set_rows(f, [1], request_id="req-0000"),
        {"unique_request_attempt": 2},
    ),
    "unknown models above 2%": (
        lambda f: set_rows(f, [3, 4], model_canonical=None),
        {"unknown_model_share": 2},
    ),
    "other required and known values": (
        lambda f: set_rows(
            set_rows(set_rows(f, [1, 2], source=None), [5], audio_seconds=-0.5, attempt=0),
            [6],
            modality="chat",
            service_tier="turbo",
        ),
        {
            "not_null:source": 2,
            "non_negative:audio_seconds": 1,
            "attempt_from_1": 1,
            "known_value:modality": 1,
            "known_value:service_tier": 1,
        },
    ),
}


@pytest.mark.parametrize("case", list(REQUEST_VIOLATIONS))
def test_each_request_violation_fails_only_its_expectation(case: str) -> None:
    mutate, expected = REQUEST_VIOLATIONS[case]
    report = validate_requests(mutate(normalized()), DAY)
    assert not report.success
    assert failed(report) == expected
    assert all(r.error is None for r in report.results)


def test_unexpected_examples_are_plain_python_values() -> None:
    frame = set_rows(normalized(), [0, 9], cache_write_1h_tokens=-3)
    frame = set_rows(frame, [3], started_at=MIDNIGHT - dt.timedelta(hours=1))
    frame = set_rows(frame, [8], reasoning_tokens=5_000)
    frame = set_rows(frame, [1], request_id="req-0000")
    frame = set_rows(frame, [4], model_canonical=None, model="mystery-model")
    frame = set_rows(frame, [5], input_tokens=None)  # the column reaches pandas as float64
    frame = set_rows(frame, [6], input_tokens=-1)
    report = validate_requests(frame, DAY)

    negative = outcome(report, "non_negative:cache_write_1h_tokens")
    assert negative.unexpected_examples == (-3,)
    assert type(negative.unexpected_examples[0]) is int
    assert outcome(report, "non_negative:input_tokens").unexpected_examples == (-1,)
    assert type(outcome(report, "non_negative:input_tokens").unexpected_examples[0]) is int
    assert outcome(report, "started_in_partition").unexpected_examples == (
        MIDNIGHT - dt.timedelta(hours=1),
    )
    assert outcome(report, "reasoning_within_output").unexpected_examples == (
        {"output_tokens": 208, "reasoning_tokens": 5_000},
    )
    assert outcome(report, "unique_request_attempt").unexpected_examples == (
        {"request_id": "req-0000", "attempt": 1},
    )
    unknown = outcome(report, "unknown_model_share")
    assert (unknown.success, unknown.unexpected_count) == (True, 1)  # 1 of 50 = 2%: allowed
    assert unknown.unexpected_examples == ("mystery-model",)
    assert outcome(report, "non_negative:cache_write_1h_tokens").columns == (
        "cache_write_1h_tokens",
    )
    assert outcome(report, "cache_within_input").columns == (
        "input_tokens",
        "cache_read_write_tokens",
    )
    # JSON-ready, datetimes as ISO strings
    data = json.loads(json.dumps(report.to_dict()))
    by_check = {r["check"]: r for r in data["results"]}
    assert by_check["started_in_partition"]["unexpected_examples"] == ["2026-03-13T23:00:00+00:00"]
    assert data["success"] is False
    assert (
        {r["check"] for r in data["results"] if not r["success"]}
        == set(failed(report))
        == {
            "non_negative:input_tokens",
            "non_negative:cache_write_1h_tokens",
            "cache_within_input",  # -1 input tokens cannot hold 700 cached ones either
            "reasoning_within_output",
            "started_in_partition",
            "unique_request_attempt",
        }
    )


def test_unknown_model_share_threshold() -> None:
    two = set_rows(normalized(), [3, 4], model_canonical=None)  # 4% of 50 rows
    assert validate_requests(two, DAY, max_unknown_model_share=0.04).success
    one = set_rows(normalized(), [3], model_canonical=None)
    assert failed(validate_requests(one, DAY, max_unknown_model_share=0.0)) == {
        "unknown_model_share": 1
    }


def test_model_known_column_decides_when_given() -> None:
    # the caller's verdict (e.g. from the catalog) wins over model_canonical; null is unknown
    known = [None if k == 12 else k not in (10, 11) for k in range(ROWS)]
    frame = normalized().with_columns(pl.Series("model_known", known, dtype=pl.Boolean))
    report = validate_requests(frame, DAY)
    assert failed(report) == {"unknown_model_share": 3}


def test_match_kind_of_repriced_rows_decides_without_model_known() -> None:
    kinds = ["unknown_model", "unknown_provider", None] + ["genai"] * (ROWS - 3)
    frame = normalized().with_columns(pl.Series("match_kind", kinds, dtype=pl.String))
    report = validate_requests(frame, DAY)
    assert failed(report) == {"unknown_model_share": 3}


def test_report_lines_name_each_failure() -> None:
    frame = set_rows(normalized(), [1, 2, 3], input_tokens=699)
    frame = set_rows(frame, [2], status="ok")
    lines = validate_requests(frame, DAY).lines()
    total = len(requests_suite(DAY).expectations)
    assert lines[0] == f"requests day={DAY}: {ROWS} rows, {total} expectations, 2 failed"
    assert lines[1:] == [
        "FAIL cache_within_input: cache_read_tokens + cache_write_tokens <= input_tokens"
        " -- 3 rows (6%), e.g. {'input_tokens': 699, 'cache_read_write_tokens': 700}",
        "FAIL known_value:status: status in {success, error, timeout, rejected, cancelled}"
        " -- 1 row (2%), e.g. 'ok'",
    ]


def test_without_a_day_any_timestamp_is_fine_and_empty_frames_pass() -> None:
    frame = set_rows(normalized(), [0], started_at=MIDNIGHT - dt.timedelta(days=40))
    assert validate_requests(frame).success
    empty = validate_requests(normalized().clear(), DAY)
    assert empty.success and empty.row_count == 0


def test_naive_timestamps_are_utc() -> None:
    frame = normalized().with_columns(pl.col("started_at").dt.replace_time_zone(None))
    frame = set_rows(frame, [0], started_at=dt.datetime(2026, 3, 13, 23, 59))
    assert failed(validate_requests(frame, DAY)) == {"started_in_partition": 1}


def test_missing_columns_are_a_user_error() -> None:
    with pytest.raises(QualityInputError, match=r"missing columns: source, source_kind"):
        validate_requests(normalized().drop("source", "source_kind"), DAY)


# ##### PROVIDER USAGE


def test_clean_provider_usage_passes() -> None:
    report = validate_provider_usage(usage(), partition_month=DAY)
    assert report.success, report.lines()
    assert report.kind == PROVIDER_USAGE
    assert report.partition == {"month": "2026-03"}
    assert len(report.results) == len(provider_usage_suite(DAY).expectations)


USAGE_VIOLATIONS: dict[str, tuple[Mutation, dict[str, int]]] = {
    "bad currency": (
        lambda f: set_rows(set_rows(f, [1], currency="usd"), [2], currency="US$"),
        {"currency_iso_upper": 2},
    ),
    "negative counts": (
        lambda f: set_rows(set_rows(f, [0], requests=-1), [3, 4], cache_read_tokens=-10),
        {"non_negative:requests": 1, "non_negative:cache_read_tokens": 2},
    ),
    "subsets above totals": (
        lambda f: set_rows(set_rows(f, [5], cache_read_tokens=9_500), [6], reasoning_tokens=3_001),
        {"cache_within_input": 1, "reasoning_within_output": 1},
    ),
    "date outside the month": (
        lambda f: set_rows(f, [6, 7], date=dt.date(2026, 4, 1)),
        {"date_in_partition": 2},
    ),
    "positive credits, null provider": (
        lambda f: set_rows(set_rows(f, [8], credits_usd=Decimal("0.5")), [9], provider=None),
        {"credits_not_positive": 1, "not_null:provider": 1},
    ),
}


@pytest.mark.parametrize("case", list(USAGE_VIOLATIONS))
def test_each_usage_violation_fails_only_its_expectation(case: str) -> None:
    mutate, expected = USAGE_VIOLATIONS[case]
    report = validate_provider_usage(mutate(usage()), partition_month=DAY)
    assert failed(report) == expected


def test_usage_partition_day_and_month_bounds() -> None:
    frame = set_rows(usage(), [0], date=dt.date(2026, 3, 1))
    frame = set_rows(frame, [1], date=dt.date(2026, 3, 31))
    assert validate_provider_usage(frame, partition_month=dt.date(2026, 3, 1)).success
    by_day = validate_provider_usage(frame, DAY)
    assert failed(by_day) == {"date_in_partition": 2}
    assert outcome(by_day, "date_in_partition").unexpected_examples == (
        dt.date(2026, 3, 1),
        dt.date(2026, 3, 31),
    )


# ##### PATHS


def test_validate_path_on_a_parquet_file(tmp_path: Path) -> None:
    path = tmp_path / "requests.parquet"
    normalized().write_parquet(path)
    report = validate_path(path, None, partition_day=DAY)
    assert report.success and report.kind == REQUESTS and report.source == str(path)
    assert report.row_count == ROWS

    bad = tmp_path / "bad.parquet"
    set_rows(normalized(), [0], status="ok").write_parquet(bad)
    assert failed(validate_path(bad, REQUESTS)) == {"known_value:status": 1}


def test_validate_path_on_a_directory_detects_provider_usage(tmp_path: Path) -> None:
    (tmp_path / "provider=openai").mkdir()
    usage(4).write_parquet(tmp_path / "provider=openai" / "part-0.parquet")
    set_rows(usage(3), [0], currency="eur").write_parquet(tmp_path / "part-1.parquet")
    report = validate_path(tmp_path, None, partition_month=DAY)
    assert report.kind == PROVIDER_USAGE and report.row_count == 7
    assert failed(report) == {"currency_iso_upper": 1}


def test_validate_path_user_errors(tmp_path: Path) -> None:
    missing = tmp_path / "nope.parquet"
    with pytest.raises(QualityInputError, match="no such file or directory") as excinfo:
        validate_path(missing, None)
    assert str(excinfo.value) == f"{missing}: no such file or directory"
    assert isinstance(excinfo.value, InputError)  # the CLI maps these to exit code 2

    with pytest.raises(QualityInputError, match=r"no \.parquet files"):
        validate_path(tmp_path, None)

    not_parquet = tmp_path / "notes.parquet"
    not_parquet.write_text("hello")
    with pytest.raises(QualityInputError, match="not a readable Parquet file"):
        validate_path(not_parquet, None)

    other = tmp_path / "other.parquet"
    pl.DataFrame({"a": [1]}).write_parquet(other)
    with pytest.raises(QualityInputError, match="neither normalized requests"):
        validate_path(other, None)
    with pytest.raises(QualityInputError, match="unknown kind 'invoices'"):
        validate_path(other, "invoices")

    good = tmp_path / "good.parquet"
    normalized(3).write_parquet(good)
    with pytest.raises(QualityInputError, match="requests take a partition day, not a month"):
        validate_path(good, None, partition_month=DAY)
    with pytest.raises(QualityInputError, match="max_unknown_model_share"):
        validate_path(good, REQUESTS, max_unknown_model_share=2.0)
    with pytest.raises(QualityInputError, match="not both"):
        validate_path(good, PROVIDER_USAGE, partition_day=DAY, partition_month=DAY)

    canonical = tmp_path / "canonical.parquet"
    normalized().drop("model_canonical", "model_version", "source").write_parquet(canonical)
    with pytest.raises(QualityInputError, match="missing columns: source, model_canonical"):
        validate_path(canonical, None)
