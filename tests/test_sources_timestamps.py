"""transforms.timestamps.parse_utc: every accepted form reads to the right UTC instant,
anything else is null (flagged by the adapters), never an exception.

Property tests run a whole list of generated values through one Polars expression per
example: one column may mix forms, and it keeps the tests fast.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from zoneinfo import ZoneInfo

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sources.base import SourceContext
from sources.litellm import to_canonical
from transforms.timestamps import EARLIEST, LATEST, parse_utc

UTC = dt.UTC
PROPERTY = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata", "America/Santiago",
         "Australia/Lord_Howe", "Pacific/Chatham"]  # fmt: skip

# 2001-09-09 .. 2096: epoch seconds with 10 digits, well inside every magnitude band.
instants = st.datetimes(
    min_value=dt.datetime(2001, 9, 10), max_value=dt.datetime(2096, 12, 31)
).map(lambda d: d.replace(tzinfo=UTC))


def parse(values: list[object], dtype: pl.DataType, zone: str = "UTC") -> list[dt.datetime | None]:
    frame = pl.DataFrame({"v": values}, schema={"v": dtype})
    out = frame.select(parse_utc(pl.col("v"), dtype, zone).alias("t"))
    assert out.schema["t"] == pl.Datetime("us", "UTC")
    return out["t"].to_list()


def epoch_us(d: dt.datetime) -> int:
    return (d - dt.datetime(1970, 1, 1, tzinfo=UTC)) // dt.timedelta(microseconds=1)


# ------------------------------------------------------------------------------- epochs
@PROPERTY
@given(st.lists(instants, min_size=1, max_size=40))
def test_epoch_seconds_millis_micros_as_numbers_and_text(moments: list[dt.datetime]) -> None:
    us = [epoch_us(m) for m in moments]
    forms = {
        "s": ([u // 1_000_000 for u in us], 1_000_000),
        "ms": ([u // 1_000 for u in us], 1_000),
        "us": (us, 1),
    }
    for values, unit in forms.values():
        expected = [
            dt.datetime(1970, 1, 1, tzinfo=UTC) + dt.timedelta(microseconds=v * unit)
            for v in values
        ]
        assert parse(values, pl.Int64()) == expected
        assert parse([str(v) for v in values], pl.String()) == expected
    # nanoseconds: truncated to the microsecond
    assert parse([u * 1000 + 999 for u in us], pl.Int64()) == moments_to_us(moments)


def moments_to_us(moments: list[dt.datetime]) -> list[dt.datetime]:
    return [m.replace(microsecond=m.microsecond) for m in moments]


@PROPERTY
@given(st.lists(st.integers(1_000_000_000, 4_000_000_000), min_size=1, max_size=30),
       st.integers(0, 999))  # fmt: skip
def test_decimal_epoch_seconds(seconds: list[int], millis: int) -> None:
    text = [f"{s}.{millis:03d}" for s in seconds]
    expected = [
        dt.datetime(1970, 1, 1, tzinfo=UTC) + dt.timedelta(seconds=s, milliseconds=millis)
        for s in seconds
    ]
    assert parse(text, pl.String()) == expected
    assert parse([float(t) for t in text], pl.Float64()) == expected


# ------------------------------------------------------------------------------- RFC 3339
offsets = st.integers(-14 * 60, 14 * 60).map(lambda m: dt.timedelta(minutes=m))


def rfc3339(moment: dt.datetime, offset: dt.timedelta, style: int) -> str:
    local = (moment + offset).replace(tzinfo=None)
    minutes = int(offset.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    hh, mm = divmod(abs(minutes), 60)
    zone = [f"{sign}{hh:02d}:{mm:02d}", f"{sign}{hh:02d}{mm:02d}"][style % 2]
    if minutes == 0 and style >= 2:
        zone = "Z" if style == 2 else "z"
    sep = " " if style % 3 == 0 else "T"
    fraction = f".{local.microsecond:06d}" if local.microsecond else ""
    return local.strftime(f"%Y-%m-%d{sep}%H:%M:%S") + fraction + zone


@PROPERTY
@given(st.lists(st.tuples(instants, offsets, st.integers(0, 3)), min_size=1, max_size=40))
def test_rfc3339_with_offsets(items: list[tuple[dt.datetime, dt.timedelta, int]]) -> None:
    text = [rfc3339(m, o, style) for m, o, style in items]
    # Any zone: an explicit offset wins over the configured zone.
    assert parse(text, pl.String(), "Asia/Kolkata") == [m for m, _, _ in items]


# ------------------------------------------------------------------------------- naive local
def expected_local(naive: dt.datetime, zone: str) -> dt.datetime | None:
    """Wall time in `zone` -> UTC; ambiguous = the earlier instant; nonexistent = None."""
    aware = naive.replace(tzinfo=ZoneInfo(zone), fold=0)
    utc = aware.astimezone(UTC)
    if utc.astimezone(ZoneInfo(zone)).replace(tzinfo=None) != naive:
        return None  # skipped by a DST jump
    return utc


# Zone rules after 2037 are extrapolated, and Polars (chrono-tz) and zoneinfo disagree there.
naive_times = st.datetimes(min_value=dt.datetime(1990, 1, 1), max_value=dt.datetime(2037, 1, 1))


@PROPERTY
@given(st.lists(naive_times, min_size=1, max_size=40), st.sampled_from(ZONES),
       st.booleans())  # fmt: skip
def test_naive_local_times_in_a_zone(times: list[dt.datetime], zone: str, t_sep: bool) -> None:
    sep = "T" if t_sep else " "
    text = [t.isoformat(sep=sep) for t in times]
    expected = [expected_local(t, zone) for t in times]
    assert parse(text, pl.String(), zone) == expected
    assert parse(times, pl.Datetime("us"), zone) == expected


@pytest.mark.parametrize("zone", ["America/New_York", "Europe/Berlin"])
def test_ambiguous_hour_reads_as_the_earlier_instant(zone: str) -> None:
    repeated = {"America/New_York": "2025-11-02 01:30:00", "Europe/Berlin": "2025-10-26 02:30:00"}
    naive = dt.datetime.fromisoformat(repeated[zone])
    earlier = naive.replace(tzinfo=ZoneInfo(zone), fold=0).astimezone(UTC)
    later = naive.replace(tzinfo=ZoneInfo(zone), fold=1).astimezone(UTC)
    assert earlier < later
    assert parse([repeated[zone]], pl.String(), zone) == [earlier]


# ------------------------------------------------------------------------------- bare dates
dates = st.dates(min_value=dt.date(1970, 1, 1), max_value=dt.date(2037, 1, 1))


def expected_midnight(day: dt.date, zone: str) -> dt.datetime:
    midnight = dt.datetime.combine(day, dt.time())
    return expected_local(midnight, zone) or expected_local(midnight + dt.timedelta(hours=1), zone)  # type: ignore[return-value]


@PROPERTY
@given(st.lists(dates, min_size=1, max_size=40), st.sampled_from(ZONES))
def test_bare_dates_are_local_midnight(days: list[dt.date], zone: str) -> None:
    expected = [expected_midnight(d, zone) for d in days]
    assert parse([d.isoformat() for d in days], pl.String(), zone) == expected
    compact = [d.strftime("%Y%m%d") for d in days]
    assert parse(compact, pl.String(), zone) == expected  # never 1970 epoch seconds
    assert parse([int(c) for c in compact], pl.Int64(), zone) == expected
    assert parse(days, pl.Date(), zone) == expected


@PROPERTY
@given(st.lists(st.dates(min_value=dt.date(1900, 1, 1), max_value=dt.date(2199, 12, 31)),
                min_size=1, max_size=40))  # fmt: skip
def test_bare_dates_whole_range_in_utc(days: list[dt.date]) -> None:
    expected = [dt.datetime.combine(d, dt.time(), tzinfo=UTC) for d in days]
    assert parse([d.isoformat() for d in days], pl.String()) == expected
    assert parse([d.strftime("%Y%m%d") for d in days], pl.String()) == expected


def test_bare_date_is_not_an_epoch() -> None:
    assert (
        parse(["2025-06-01", "20250601"], pl.String()) == [dt.datetime(2025, 6, 1, tzinfo=UTC)] * 2
    )
    # midnight skipped by DST (Santiago moved clocks at 00:00 on 2024-09-08): 01:00 local
    assert parse(["2024-09-08"], pl.String(), "America/Santiago") == [
        dt.datetime(2024, 9, 8, 4, tzinfo=UTC)
    ]


# ------------------------------------------------------------------------------- garbage
GARBAGE = [
    "", "   ", "garbage", "2025-13-01", "2025-02-30", "2025-06-01T25:00:00Z", "1e10", "NaN",
    "inf", "12:00", "2025/06/01", "01/06/2025", "tomorrow", "0x1234", "2025-06-01T10:00:00+99:00",
    "20251399", "--5", "1.2.3", "2025-06-01 10:00:00 +02:00 extra", "null", "true", "[1]", "{}",
]  # fmt: skip
ACCEPTABLE = re.compile(r"^\s*(-?\d+(\.\d+)?|\d{4}-\d{2}-\d{2}([T ].*)?)\s*$", re.S)


def test_known_garbage_is_null() -> None:
    assert parse(GARBAGE, pl.String()) == [None] * len(GARBAGE)


@PROPERTY
@given(st.lists(st.text(max_size=40), min_size=1, max_size=40), st.sampled_from(ZONES))
def test_any_text_never_raises_and_non_timestamps_are_null(texts: list[str], zone: str) -> None:
    parsed = parse(texts, pl.String(), zone)
    assert len(parsed) == len(texts)
    for text, value in zip(texts, parsed, strict=True):
        if not ACCEPTABLE.match(text):
            assert value is None, text


@PROPERTY
@given(st.lists(st.one_of(st.integers(-(2**63), 2**63 - 1), st.integers(0, 5_000_000_000),
                          st.none()), min_size=1, max_size=40))  # fmt: skip
def test_any_integer_never_raises(values: list[int | None]) -> None:
    parsed = parse(values, pl.Int64())
    for value, moment in zip(values, parsed, strict=True):
        if value is None or moment is None:
            assert moment is None or value is not None
            continue
        assert EARLIEST <= moment < LATEST  # a huge number is unreadable, not year 0 or 10000
        if 1_000_000_000 <= value < 4_000_000_000:  # plainly epoch seconds
            assert epoch_us(moment) == value * 1_000_000


def test_unreadable_timestamp_is_flagged_by_the_adapter() -> None:
    rows = [
        {"request_id": "a", "startTime": "2025-06-01", "model": "gpt-4o",
         "custom_llm_provider": "openai", "prompt_tokens": 1, "completion_tokens": 1},
        {"request_id": "b", "startTime": "yesterday-ish", "model": "gpt-4o",
         "custom_llm_provider": "openai", "prompt_tokens": 1, "completion_tokens": 1},
    ]  # fmt: skip
    raw = pl.DataFrame(
        {
            "_line": [1, 2],
            "_record": [json.dumps(r) for r in rows],
            "_parse_error": [None, None],
        },
        schema_overrides={"_parse_error": pl.String},
    ).hstack(pl.DataFrame(rows))
    ctx = SourceContext(name="t", kind="litellm", file="t.jsonl", timezone="Europe/Berlin")
    out = to_canonical(raw.lazy(), ctx).collect()
    assert out["started_at"].to_list() == [dt.datetime(2025, 5, 31, 22, tzinfo=UTC), None]
    assert out["row_issues"].to_list()[0] is None
    assert "invalid_timestamp:started_at" in out["row_issues"].to_list()[1]
