"""Daily report model, formatting, SVG charts, index and the `aispend report` command.

Roll-up rows are written by hand here so every expected figure can be worked out on paper;
tests/test_report_browser.py renders a generated day end to end in Chromium.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from decimal import Decimal
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import polars as pl
import pytest
from typer.testing import CliRunner

import lake
from aispend_cli.main import app
from reports import svg
from reports.daily import (
    SECTIONS,
    RateLimit,
    ReportInputError,
    ReportInputs,
    build_daily_report,
    summary,
)
from reports.render import environment, fmt, render_daily, write_daily, write_index
from transforms.usage_rollups import PEAKS_SCHEMA, USAGE_DAILY_SCHEMA

DAY = dt.date(2025, 9, 12)  # a Friday
MONEY_COLUMNS = ("list_cost_usd", "cost_usd", "cost_success_usd", "cache_savings_usd")


def usage_row(day: dt.date = DAY, **values: Any) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for name, dtype in USAGE_DAILY_SCHEMA.items():
        keyed = name in ("day", "provider", "model_key", "model", "feature", "team")
        row[name] = None if keyed or isinstance(dtype, pl.Decimal) else 0
    row.update(day=day, provider="openai", model_key="openai/gpt-4o", model="gpt-4o")
    row.update(values)
    for name in MONEY_COLUMNS:
        if isinstance(row[name], (int, str)):
            row[name] = Decimal(str(row[name]))
    return row


def usage(*rows: dict[str, Any]) -> pl.DataFrame:
    return pl.DataFrame(list(rows), schema=USAGE_DAILY_SCHEMA)


def text_row(day: dt.date, cost: str, requests: int, **more: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "requests": requests,
        "logical_requests": requests,
        "success": requests,
        "priced_requests": requests,
        "input_tokens": 1000 * requests,
        "output_tokens": 100 * requests,
        "cost_usd": cost,
        "list_cost_usd": cost,
        "cost_success_usd": cost,
        "feature": "chat",
        "team": "web",
    }
    values.update(more)
    return usage_row(day, **values)


def model_for(frame: pl.DataFrame, **kw: Any) -> dict[str, Any]:
    return build_daily_report(ReportInputs(day=DAY, usage=frame, **kw))


# ----------------------------------------------------------------------------- formatting
def test_fmt_money_is_exact_half_even_and_unknown_is_a_dash() -> None:
    assert fmt(Decimal("1234.565"), "usd") == "$1,234.56"  # half-even, no float detour
    assert fmt(Decimal("0.125000000000000001"), "usd") == "$0.13"
    assert fmt(Decimal("0.000123456"), "usd_unit") == "$0.000123"
    assert fmt(None, "usd") == "–"
    assert fmt(Decimal("-0.5"), "signed_pct") == "-50.0%"
    assert fmt(Decimal("-2.005"), "signed_usd") == "-$2.00"
    assert fmt(Decimal("-1234.5"), "usd") == "-$1,234.50"
    with pytest.raises(ValueError, match="unknown format"):
        fmt(1, "furlongs")


def test_environment_autoescapes_every_template() -> None:
    env = environment()
    html = env.from_string("{{ x }}").render(x="<script>alert(1)</script>")
    assert html == "&lt;script&gt;alert(1)&lt;/script&gt;"


# ----------------------------------------------------------------------------- svg
def test_bar_chart_is_valid_svg_with_title_axes_and_escaped_labels() -> None:
    chart = svg.bar_chart(
        ["<b>evil</b>", "ok"],
        [Decimal("6.99"), Decimal("1.5")],
        title="Cost & more",
        value_format=lambda v: fmt(v, "usd"),
        axis_label="USD",
    )
    root = ElementTree.fromstring(str(chart))
    ns = "{http://www.w3.org/2000/svg}"
    assert root.find(f"{ns}title").text == "Cost & more"  # type: ignore[union-attr]
    texts = [t.text for t in root.iter(f"{ns}text")]
    assert "<b>evil</b>" in texts  # parsed back as text, so it was escaped
    assert "$6.99" in texts and "USD" in texts
    # the axis reaches the largest value: its last tick label is at least $6.99
    ticks = [Decimal(t[1:]) for t in texts if t and t.startswith("$") and t != "$6.99"]
    assert max(ticks) >= Decimal("6.99")
    assert "<script" not in str(chart)


def test_nice_ticks_cover_the_range() -> None:
    for low, high in [(0, 6.99), (0, 66.7), (-2.17, 3.2), (0, 1_066_955), (0, 0.0004)]:
        ticks = svg.nice_ticks(low, high, 4)
        assert ticks[0] <= low and ticks[-1] >= high
        assert len(ticks) <= 8


def test_line_chart_leaves_gaps_for_missing_days_and_sparkline_titles() -> None:
    chart = svg.line_chart(
        ["09-10", "09-11", "09-12", "09-13"],
        [Decimal(1), None, Decimal(2), Decimal(3)],
        title="Spend",
        value_format=lambda v: fmt(v, "usd"),
    )
    root = ElementTree.fromstring(str(chart))
    lines = [e for e in root.iter("{http://www.w3.org/2000/svg}polyline")]
    # 09-10 stands alone (no segment), 09-12..09-13 is one segment
    assert len(lines) == 1 and len(lines[0].get("points", "").split()) == 2
    assert "09-11: no data" in str(chart)
    spark = svg.sparkline([1, 2, None, 4], title="Daily <spend>")
    assert "Daily &lt;spend&gt;" in str(spark)


# ----------------------------------------------------------------------------- headline
def history() -> pl.DataFrame:
    rows = [
        text_row(DAY - dt.timedelta(days=back), str(10 + back), 100)
        for back in range(1, 12)  # 2025-09-01 .. 2025-09-11
    ]
    rows.append(text_row(DAY, "15", 120))
    return usage(*rows)


def test_headline_changes_month_to_date_and_forecast() -> None:
    report = model_for(history(), monthly_budget_usd=Decimal("300"))
    kpis = {k["label"]: k for k in report["headline"]["kpis"]}
    spend = kpis["Spend (contract)"]
    assert spend["value"] == Decimal("15")
    assert spend["vs_prev_day"] == Decimal("15") / Decimal("11") - 1
    assert spend["vs_last_week"] == Decimal("15") / Decimal("17") - 1
    assert kpis["Requests (attempts)"]["vs_prev_day"] == Decimal("0.2")
    mtd = report["headline"]["mtd"]
    # Sept 1..11 cost 21 + 20 + ... + 11 = 176, plus 15 today
    assert mtd["cost_usd"] == Decimal(176 + 15)
    assert mtd["forecast_usd"] == Decimal(191) / 12 * 30
    assert mtd["over_budget_forecast"] is True  # 477.5 > 300
    assert mtd["missing_days"] == 0
    assert [p["day"] for p in report["headline"]["trend"]][-1] == DAY


def test_forecast_waits_for_three_days_and_missing_comparisons_are_none() -> None:
    early = dt.date(2025, 9, 2)
    frame = usage(text_row(early, "5", 10))
    report = build_daily_report(ReportInputs(day=early, usage=frame))
    spend = report["headline"]["kpis"][0]
    assert spend["vs_prev_day"] is None and spend["vs_last_week"] is None
    assert report["headline"]["mtd"]["forecast_usd"] is None
    assert report["movers"]["available"] is False


def test_unpriced_only_group_is_unknown_not_free() -> None:
    frame = usage(
        text_row(DAY, "2", 10),
        usage_row(
            DAY,
            provider="acme",
            model_key=None,
            model="mystery-1",
            requests=5,
            logical_requests=5,
            success=5,
            unpriced_requests=5,
            input_tokens=500,
        ),
    )
    report = model_for(frame)
    by_provider = {r["provider"]: r for r in report["cost"]["provider"]}
    assert by_provider["acme"]["cost_usd"] is None
    assert by_provider["acme"]["unpriced_requests"] == 5
    assert report["headline"]["unpriced_requests"] == 5
    assert report["savings"]["unpriced"][0]["model"] == "mystery-1"
    html = render_daily(report)
    assert "5 of 15 requests could not be priced" in html


def test_day_without_rows_or_columns_is_an_input_error() -> None:
    with pytest.raises(ReportInputError, match="no rows for 2025-09-12"):
        model_for(usage(text_row(DAY - dt.timedelta(days=1), "1", 1)))
    with pytest.raises(ReportInputError, match="missing column"):
        model_for(history().drop("cost_success_usd"))


# ----------------------------------------------------------------------------- movers, units
def test_movers_split_into_volume_and_unit_cost_that_add_up() -> None:
    prev = DAY - dt.timedelta(days=1)
    frame = usage(
        text_row(prev, "10", 100, model_key="openai/gpt-4o"),
        text_row(DAY, "18", 120, model_key="openai/gpt-4o"),
        text_row(prev, "3", 30, model_key="openai/o3", feature="plan"),
    )
    report = model_for(frame)
    rows = {r["label"]: r for r in report["movers"]["model"]}
    gpt = rows["openai / openai/gpt-4o"]
    assert gpt["delta_usd"] == Decimal(8)
    assert gpt["volume_effect_usd"] == Decimal(2)  # 20 more requests at $0.10
    assert gpt["unit_cost_effect_usd"] == Decimal(6)
    gone = rows["openai / openai/o3"]
    assert gone["delta_usd"] == Decimal(-3) and gone["cost_usd"] is None
    assert report["movers"]["model"][0]["label"] == "openai / openai/gpt-4o"  # largest first


def test_four_generations_for_one_usable_image_cost_four_times() -> None:
    frame = usage(
        usage_row(
            provider="openai",
            model_key="openai/dall-e-3",
            model="dall-e-3",
            requests=4,
            logical_requests=1,
            retries=3,
            success=1,
            errors=3,
            priced_requests=4,
            image_count=4,
            usable_images=1,
            cost_usd="0.16",
            list_cost_usd="0.16",
            cost_success_usd="0.04",
        )
    )
    report = model_for(frame)
    row = report["unit"]["media"][0]
    assert row["output_kind"] == "image"
    assert row["nominal_unit_cost_usd"] == Decimal("0.04")
    assert row["cost_per_usable_usd"] == Decimal("0.16")
    assert row["multiplier"] == Decimal(4)
    assert row["overhead_usd"] == Decimal("0.12")
    assert report["unit"]["cost_per_success_usd"] == Decimal("0.16")


# ----------------------------------------------------------------------------- capacity
def peaks(*rows: tuple[str, str, int, int, int]) -> pl.DataFrame:
    return pl.DataFrame(
        [
            {
                "day": DAY,
                "provider": p,
                "model_key": m,
                "peak_rpm": rpm,
                "peak_rpm_minute": dt.datetime(2025, 9, 12, 14, 5, tzinfo=dt.UTC),
                "peak_tpm": tpm,
                "peak_tpm_minute": dt.datetime(2025, 9, 12, 14, 5, tzinfo=dt.UTC),
                "peak_concurrency": conc,
            }
            for p, m, rpm, tpm, conc in rows
        ],
        schema=PEAKS_SCHEMA,
    )


def test_capacity_flags_headroom_under_20_percent() -> None:
    frame = usage(text_row(DAY, "1", 10))
    limits = [
        RateLimit("openai", "openai/gpt-4o", rpm=100, tpm=1_000_000),
        RateLimit("anthropic", None, rpm=50),
    ]
    report = model_for(
        frame,
        peaks=peaks(
            ("openai", "openai/gpt-4o", 85, 100_000, 3),  # RPM headroom 15% -> flagged
            ("openai", "openai/o3", 10, 1000, 1),  # no limit of its own
            ("anthropic", "anthropic/a", 20, 1000, 1),
            ("anthropic", "anthropic/b", 25, 1000, 1),  # provider sum 45 of 50 -> 10%
        ),
        rate_limits=limits,
    )
    rows = {(r["provider"], r["model_key"]): r for r in report["capacity"]["rows"]}
    gpt = rows[("openai", "openai/gpt-4o")]
    assert gpt["rpm_headroom"] == Decimal("0.15") and gpt["flag"] == "flagged"
    assert gpt["tpm_headroom"] == Decimal("0.9")
    assert rows[("openai", "openai/o3")]["status"] == "no limit configured"
    shared = rows[("anthropic", "(all models, sum of peaks)")]
    assert shared["peak_rpm"] == 45 and shared["rpm_headroom"] == Decimal("0.1")
    assert report["capacity"]["flagged"] == 2
    assert report["capacity"]["rows"][0]["lowest_headroom"] == Decimal("0.1")  # worst first


# ----------------------------------------------------------------------------- optional parts
def test_missing_optional_inputs_render_not_available_not_empty_tables() -> None:
    html = render_daily(model_for(history()))
    for section_id, _ in SECTIONS:
        assert f'id="{section_id}"' in html
    for what in ("Capacity", "Reconciliation", "Anomalies", "Ingest counts and freshness"):
        assert f"<strong>{what}: not available yet.</strong>" in html
    assert "<script" not in html and "http://" not in html.replace("http://www.w3.org/2000/svg", "")


def test_quality_reconciliation_and_anomaly_sections_with_inputs() -> None:
    counts = pl.DataFrame(
        {
            "source": ["litellm", "litellm", "helicone"],
            "day": [DAY, DAY - dt.timedelta(days=1), DAY - dt.timedelta(days=2)],
            "rows_read": [100, 90, 50],
            "normalized": [95, 90, 50],
            "duplicates": [1, 0, 0],
            "quarantined": [4, 0, 0],
        }
    )
    quarantine = pl.DataFrame(
        {
            "source": ["litellm"] * 4,
            "day": [DAY] * 4,
            "reason": ["invalid_value:status"] * 3 + ["<img src=x onerror=alert(1)>"],
            "record": ["{}"] * 4,
        }
    )
    anomalies = pl.DataFrame(
        {
            "day": [DAY, DAY],
            "scope": ["feature", "feature"],
            "series": ["chat", "calm"],
            "metric": ["cost_usd", "cost_usd"],
            "status": ["anomaly", "normal"],
            "is_anomaly": [True, False],
            "impact": [12.5, 0.1],
            "impact_usd": [Decimal("12.5"), Decimal("0.1")],
        }
    )
    recon = pl.DataFrame(
        {"provider": ["openai"], "status": ["mismatch"], "difference_usd": [Decimal("3.21")]}
    )
    report = model_for(
        history(),
        ingest_counts=counts,
        quarantine=quarantine,
        anomalies=anomalies,
        reconciliation=recon,
        quality_checks=[{"name": "rows_read adds up", "success": False, "detail": "x"}],
    )
    fresh = {r["source"]: r for r in report["quality"]["freshness"]}
    assert fresh["litellm"]["lag_days"] == 0 and fresh["helicone"]["status"] == "stale"
    assert report["quality"]["ingest"][0]["quarantine_share"] == Decimal("0.04")
    assert [r["series"] for r in report["anomalies"]["rows"]] == ["chat"]
    html = render_daily(report)
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "FAILED" in html and "$3.21" in html and "mismatch: 1" in html


# ----------------------------------------------------------------------------- files
def test_write_daily_is_idempotent_and_index_lists_days(tmp_path: Path) -> None:
    frame = history()
    paths = []
    for day in (DAY - dt.timedelta(days=1), DAY):
        paths.append(write_daily(build_daily_report(ReportInputs(day=day, usage=frame)), tmp_path))
    first = paths[-1].read_bytes()
    write_daily(model_for(frame), tmp_path)
    assert paths[-1].read_bytes() == first  # rerun: same bytes
    index = (tmp_path / "index.html").read_text()
    assert index.index("daily-2025-09-12.html") < index.index("daily-2025-09-11.html")
    assert "$15.00" in index and "$11.00" in index
    assert "<svg" in index and "<title>Daily spend, 2025-09-11 to 2025-09-12</title>" in index
    assert json.loads((tmp_path / ".summaries" / "2025-09-12.json").read_text()) == summary(
        model_for(frame)
    ) | {"day": "2025-09-12"}
    paths[0].unlink()
    write_index(tmp_path)
    assert "daily-2025-09-11.html" not in (tmp_path / "index.html").read_text()


# ----------------------------------------------------------------------------- CLI
runner = CliRunner()


def test_cli_renders_from_roll_ups_in_the_lake(tmp_path: Path) -> None:
    frame = history()
    for day in frame.get_column("day").unique().to_list():
        lake.write_partition(tmp_path, "usage_daily", day, frame.filter(pl.col("day") == day))
    out = tmp_path / "site"
    result = runner.invoke(
        app, ["report", "--date", "2025-09-12", "--data-dir", str(tmp_path), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    html = (out / "daily-2025-09-12.html").read_text()
    assert re.search(r'<div class="value">\$15\.00</div>', html)
    assert "vs previous day: +36.4%" in html  # 15 / 11 - 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--date", "2025-02-30"], "--date: expected a date YYYY-MM-DD, got '2025-02-30'"),
        (["--date", "2025-09-12"], "no usage_daily or priced_requests partition for 2025-09-12"),
    ],
)
def test_cli_user_mistakes_are_one_line_and_write_nothing(
    tmp_path: Path, args: list[str], message: str
) -> None:
    out = tmp_path / "site"
    result = runner.invoke(app, ["report", *args, "--data-dir", str(tmp_path), "--out", str(out)])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in result.output
    assert not out.exists()


def test_cli_unreadable_partition_is_one_line(tmp_path: Path) -> None:
    part = lake.partition_file(tmp_path, "usage_daily", DAY)
    Path(str(part)).parent.mkdir(parents=True)
    Path(str(part)).write_bytes(b"not parquet")
    result = runner.invoke(
        app,
        [
            "report",
            "--date",
            "2025-09-12",
            "--data-dir",
            str(tmp_path),
            "--out",
            str(tmp_path / "o"),
        ],
    )
    assert result.exit_code == 2
    assert len(result.output.strip().splitlines()) == 1
    assert "usage_daily/day=2025-09-12" in result.output


def test_cli_reads_budgets_and_rate_limits_from_the_alerts_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    frame = history()
    for day in frame.get_column("day").unique().to_list():
        lake.write_partition(tmp_path, "usage_daily", day, frame.filter(pl.col("day") == day))
    lake.write_partition(
        tmp_path, "peaks_by_model", DAY, peaks(("openai", "openai/gpt-4o", 90, 5000, 2))
    )
    config = tmp_path / "alerts.yaml"
    config.write_text(
        "budgets:\n"
        "  - {total: true, monthly_usd: '300'}\n"
        "  - {team: web, monthly_usd: '150.50'}\n"
        "rate_limits:\n"
        "  - {provider: openai, model: gpt-4o, rpm: 100}\n"
    )
    monkeypatch.setenv("AISPEND_ALERTS_CONFIG", str(config))
    out = tmp_path / "site"
    args = ["report", "--date", "2025-09-12", "--data-dir", str(tmp_path), "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    html = (out / "daily-2025-09-12.html").read_text()
    assert "budget $300.00: 63.7% used" in html  # 191 / 300
    assert "$150.50" in html
    capacity = html[html.index('id="capacity"') : html.index('id="quality"')]
    assert '<tr class="flagged">' in capacity and "headroom &lt; 20%" in capacity
    assert "10.0%" in capacity  # 1 - 90/100

    config.write_text("budgets:\n  - {team: web, monthly_usd: lots}\n")
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert len(result.output.strip().splitlines()) == 1
    assert "budgets[0].monthly_usd" in result.output


def test_reconciliation_lines_of_the_day_problems_first() -> None:
    from transforms.reconcile import LINE_SCHEMA

    def line(status: str, diff: str, grain: str = "day", model: str = "gpt-4o") -> dict[str, Any]:
        return {
            "provider": "openai",
            "grain": grain,
            "period_start": DAY if grain == "day" else DAY.replace(day=1),
            "model_group": model,
            "status": status,
            "expected_usd": Decimal("10"),
            "difference_usd": Decimal(diff),
            "evidence": "<i>from logs</i>",
        }

    frame = pl.DataFrame(
        [
            line("matched", "0"),
            line("variance", "-4.5", model="o3"),
            line("variance", "99", grain="month"),
        ],
        schema=LINE_SCHEMA,
    )
    report = model_for(history(), reconciliation=frame)
    recon = report["reconciliation"]
    assert recon["statuses"] == {"matched": 1, "variance": 1}  # the month line is not the day's
    assert [r["model_group"] for r in recon["rows"]] == ["o3", "gpt-4o"]
    assert {c["key"] for c in recon["columns"]} >= {"provider", "status", "difference_usd"}
    html = render_daily(report)
    section = html[html.index('id="reconciliation"') : html.index('id="anomalies"')]
    assert section.index("-$4.50") < section.index("$0.00")  # the variance row comes first
    assert "&lt;i&gt;from logs&lt;/i&gt;" in section
