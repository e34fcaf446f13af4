"""End to end: generated traffic -> repriced -> roll-ups in the lake -> `aispend report` ->
the HTML opened in headless Chromium (one browser for the module).

Checks what a reader sees: every section, no console error, no network request, charts
drawn, a hostile feature name shown as text without running, and the spend equal to the
cent to the sum computed straight from the priced requests (not through the roll-ups).
A full-page screenshot is written to the test's tmp dir for review.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from typer.testing import CliRunner

import lake
from aispend_cli.main import app
from datagen import generate
from pricing_catalog.catalog import Catalog
from reports.daily import SECTIONS
from transforms import usage_rollups as ur
from transforms.reprice import reprice

sync_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = "/usr/bin/chromium"
EVIL = "<script>alert(1)</script>"
START = dt.date(2025, 9, 5)
DAYS = 8
REPORT_DAY = START + dt.timedelta(days=DAYS - 1)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("report_e2e")
    generate(root / "gen", days=DAYS, requests_per_day=300, seed=11, start=START)
    catalog = Catalog.load([])
    data = root / "data"
    spend = Decimal(0)
    for day_index in range(DAYS):
        day = START + dt.timedelta(days=day_index)
        truth = pl.read_parquet(root / "gen" / "canonical" / f"requests-{day}.parquet")
        if day == REPORT_DAY:
            # a feature name straight from the logs, hostile
            truth = truth.with_columns(
                pl.when(pl.int_range(pl.len()) % 10 == 0)
                .then(pl.lit(EVIL))
                .otherwise(pl.col("feature"))
                .alias("feature")
            )
        priced = reprice(truth.lazy(), catalog).collect()
        lake.write_partition(data, "priced_requests", day, priced)
        if day == REPORT_DAY:
            spend = priced.get_column("cost_usd").sum()
            lake.write_partition(
                data, "latency_by_model", day, ur.latency_by_model(priced.lazy()).collect()
            )
        elif day_index % 2 == 0:
            # some days have stored roll-ups, the others are computed from priced requests
            lake.write_partition(data, "usage_daily", day, ur.usage_daily(priced.lazy()).collect())
    out = root / "site"
    result = CliRunner().invoke(
        app,
        ["report", "--date", REPORT_DAY.isoformat(), "--data-dir", str(data), "--out", str(out)],
    )
    assert result.exit_code == 0, result.output
    return {"out": out, "spend": spend, "root": root}


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.skip("chromium not installed")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield b
        b.close()


def open_page(browser: Any, path: Path) -> tuple[Any, dict[str, list[Any]]]:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    seen: dict[str, list[Any]] = {"console": [], "requests": [], "dialogs": [], "errors": []}
    page.on("console", lambda m: seen["console"].append((m.type, m.text)))
    page.on("pageerror", lambda e: seen["errors"].append(str(e)))
    page.on("request", lambda r: seen["requests"].append(r.url))

    def dialog(d: Any) -> None:
        seen["dialogs"].append(d.message)
        d.dismiss()

    page.on("dialog", dialog)
    page.goto(path.as_uri())
    page.wait_for_load_state("load")
    return page, seen


def test_report_in_chromium(site: dict[str, Any], browser: Any) -> None:
    html_path = site["out"] / f"daily-{REPORT_DAY}.html"
    page, seen = open_page(browser, html_path)
    try:
        shot = site["root"] / "daily-report.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 50_000

        assert seen["console"] == [] and seen["errors"] == []
        assert seen["requests"] == [html_path.as_uri()]  # nothing fetched but the file
        assert seen["dialogs"] == []
        assert page.locator("script").count() == 0

        for section_id, title in SECTIONS:
            heading = page.locator(f"section#{section_id} > h2")
            assert heading.inner_text() == title
            assert page.locator(f"section#{section_id}").inner_text().strip() != title

        # the hostile feature name is text in the cost table, not an element
        features = page.locator("section#cost table").nth(2).locator("tbody td:first-child")
        assert EVIL in features.all_inner_texts()
        assert EVIL in page.locator("section#cost svg").nth(1).inner_html().replace(
            "&lt;", "<"
        ).replace("&gt;", ">")

        expected = site["spend"].quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN)
        headline = page.locator("section#headline .kpi .value").first.inner_text()
        assert headline == f"${expected:,}"

        # charts are drawn with a title and axis labels
        charts = page.locator("svg.chart")
        assert charts.count() >= 4
        assert (page.locator("svg.chart > title").first.text_content() or "").startswith(
            "Daily spend"
        )
        box = charts.first.bounding_box()
        assert box is not None and box["width"] > 300 and box["height"] > 150

        # latency came from the stored roll-up, peaks were computed: both sections filled
        assert page.locator("section#latency table").count() >= 3
        assert page.locator("section#capacity table").count() == 1
        # sections whose inputs are missing say so
        for section_id in ("reconciliation", "anomalies"):
            assert "not available yet" in page.locator(f"section#{section_id}").inner_text()
    finally:
        page.close()


def test_index_in_chromium(site: dict[str, Any], browser: Any) -> None:
    page, seen = open_page(browser, site["out"] / "index.html")
    try:
        assert seen["console"] == [] and seen["errors"] == []
        assert page.locator("tbody svg.spark").count() == 1  # one row, its 14-day trend
        links = page.locator("tbody a")
        assert links.all_inner_texts() == [REPORT_DAY.isoformat()]
        assert (page.locator("figure.chart svg.spark > title").text_content() or "").startswith(
            "Daily spend"
        )
        links.first.click()
        page.wait_for_load_state("load")
        assert page.url.endswith(f"daily-{REPORT_DAY}.html")
    finally:
        page.close()
