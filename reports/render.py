"""Jinja2 rendering of aispend HTML reports: one self-contained file per day plus an index.

`environment()` is the one Jinja2 environment every HTML report uses (daily and
reconciliation): templates from `reports/templates/`, autoescape ON for every template, the
shared style sheet `reports/static/style.css` inlined through the `inline_css` global, and the
`fmt` filter that turns exact values into display text (`usd` rounds a Decimal half-even to
cents, never through float). Output files are written aside and renamed into place, so a
crash never leaves half a report and a rerun replaces the file byte for byte.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import tempfile
from collections.abc import Mapping, Sequence
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any

import jinja2

TEMPLATES_DIR = Path(__file__).parent / "templates"
STYLE_FILE = Path(__file__).parent / "static" / "style.css"
DAILY_TEMPLATE = "daily.html.j2"
INDEX_TEMPLATE = "index.html.j2"
DAILY_FILE = "daily-{day}.html"
INDEX_FILE = "index.html"

_CENT = Decimal("0.01")
_DASH = "–"


def _quantize(value: Decimal, places: int) -> Decimal:
    return value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN)


def _as_decimal(value: Any) -> Decimal:
    if isinstance(value, Decimal):
        return value
    # floats here are ratios or latencies, never money; str() keeps the shortest repr
    return Decimal(str(value))


def fmt(value: Any, kind: str = "text") -> str:
    """Display text for one value. None is an en dash (unknown), never 0."""
    if value is None:
        return _DASH
    if kind == "text":
        return str(value)
    if kind == "int":
        return f"{int(value):,}"
    if kind == "usd":
        d = _quantize(_as_decimal(value), 2)
        return f"{'-' if d < 0 else ''}${abs(d):,}"
    if kind == "usd_unit":
        # per-request and per-token unit costs are fractions of a cent
        d = _as_decimal(value)
        d = _quantize(d, 2 if abs(d) >= 100 else 4 if abs(d) >= 1 else 6)
        return f"{'-' if d < 0 else ''}${abs(d):,}"
    if kind == "pct":
        return f"{_as_decimal(value) * 100:.1f}%"
    if kind == "signed_pct":
        return f"{_as_decimal(value) * 100:+.1f}%"
    if kind == "signed_usd":
        d = _quantize(_as_decimal(value), 2)
        return f"{'+' if d >= 0 else '-'}${abs(d):,}"
    if kind == "ms":
        return f"{float(value):,.0f} ms"
    if kind == "ratio":
        return f"{float(value):,.2f}"
    if kind == "num":
        return f"{float(value):,.1f}"
    if kind == "date":
        return value.isoformat() if isinstance(value, dt.date) else str(value)
    raise ValueError(f"unknown format {kind!r}")


@functools.cache
def _inline_css() -> str:
    return STYLE_FILE.read_text(encoding="utf-8")


def environment(extra_template_dirs: Sequence[Path] = ()) -> jinja2.Environment:
    """The shared environment: autoescape on for every template (strings from logs end up
    in feature names, models and errors), undefined variables fail loudly."""
    loader = jinja2.FileSystemLoader([*map(str, extra_template_dirs), str(TEMPLATES_DIR)])
    env = jinja2.Environment(
        loader=loader,
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["fmt"] = fmt
    env.globals["inline_css"] = _inline_css()
    return env


def write_atomic(path: Path, text: str) -> Path:
    """Write `text` next to `path` and rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; reports are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def render_template(name: str, context: Mapping[str, Any]) -> str:
    return environment().get_template(name).render(**context)


# ----------------------------------------------------------------------------- daily report
def daily_charts(report: Mapping[str, Any]) -> dict[str, Any]:
    """The inline SVG charts of one daily report (Markup, escaped by reports.svg)."""
    from reports import svg

    usd = functools.partial(fmt, kind="usd")
    headline = report["headline"]
    trend = headline["trend"]
    top_n = 12
    providers = report["cost"]["provider"][:top_n]
    features = report["cost"]["feature"][:top_n]
    charts: dict[str, Any] = {
        "trend": svg.line_chart(
            [p["day"].strftime("%m-%d") for p in trend],
            [p["cost_usd"] for p in trend],
            title=f"Daily spend up to {report['day'].isoformat()}",
            value_format=usd,
            y_label="USD per day",
            reference=headline["daily_budget_usd"],
            reference_label="monthly budget / days in month",
        ),
        "by_provider": svg.bar_chart(
            [p["provider"] for p in providers],
            [p["cost_usd"] for p in providers],
            title="Cost by provider (USD)",
            value_format=usd,
            axis_label="USD",
        ),
        "by_feature": svg.bar_chart(
            [p["feature"] for p in features],
            [p["cost_usd"] for p in features],
            title="Cost by feature (USD)",
            value_format=usd,
            axis_label="USD",
        ),
        "movers": None,
        "latency": None,
    }
    movers = report["movers"]
    if movers["available"]:
        rows = movers["model"][:10]
        charts["movers"] = svg.bar_chart(
            [r["label"] for r in rows],
            [r["delta_usd"] for r in rows],
            title="Change in cost vs the previous day (USD)",
            value_format=functools.partial(fmt, kind="signed_usd"),
            axis_label="USD change",
            signed=True,
        )
    latency = report["latency"]
    if latency["by_model"] is not None:
        points = latency.get("chart", [])
        charts["latency"] = svg.bar_chart(
            [p[0] for p in points],
            [p[1] for p in points],
            title="p95 latency per model (ms)",
            value_format=functools.partial(fmt, kind="ms"),
            axis_label="milliseconds",
        )
    return charts


def render_daily(report: Mapping[str, Any]) -> str:
    """One self-contained HTML page for a report model from reports.daily."""
    return render_template(
        DAILY_TEMPLATE, {"report": report, "charts": daily_charts(report), "top_n": 12}
    )


def write_daily(report: Mapping[str, Any], out_dir: Path) -> Path:
    """Write `daily-YYYY-MM-DD.html` and its summary (read by the index), then the index."""
    import json

    from reports.daily import summary

    day = report["day"].isoformat()
    html_path = write_atomic(out_dir / DAILY_FILE.format(day=day), render_daily(report))
    write_atomic(
        out_dir / SUMMARY_DIR / f"{day}.json",
        json.dumps(summary(report), indent=1, sort_keys=True) + "\n",
    )
    write_index(out_dir)
    return html_path


SUMMARY_DIR = ".summaries"


def write_index(out_dir: Path) -> Path:
    """Rebuild `index.html` from the summaries of every report in `out_dir`."""
    import json

    from reports import svg

    days = []
    for path in sorted((out_dir / SUMMARY_DIR).glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        if not (out_dir / DAILY_FILE.format(day=data["day"])).exists():
            continue  # a report deleted by hand drops out of the index
        data["cost_usd"] = None if data["cost_usd"] is None else Decimal(data["cost_usd"])
        days.append(data)
    by_day = {d["day"]: d for d in days}
    series: list[Decimal | None] = []
    if days:
        first = dt.date.fromisoformat(days[0]["day"])
        last = dt.date.fromisoformat(days[-1]["day"])
        span = [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]
        series = [
            by_day[d.isoformat()]["cost_usd"] if d.isoformat() in by_day else None for d in span
        ]
    rows = []
    previous: Decimal | None = None
    for d in days:
        cost = d["cost_usd"]
        day = dt.date.fromisoformat(d["day"])
        trailing = [day - dt.timedelta(days=back) for back in range(13, -1, -1)]
        rows.append(
            {
                **d,
                "file": DAILY_FILE.format(day=d["day"]),
                "spark": svg.sparkline(
                    [
                        by_day[t.isoformat()]["cost_usd"] if t.isoformat() in by_day else None
                        for t in trailing
                    ],
                    title=f"Spend over the 14 days to {d['day']}",
                    width=100,
                    height=18,
                ),
                "change": None if cost is None or previous in (None, 0) else cost / previous - 1,  # type: ignore[operator]
            }
        )
        previous = cost
    rows.reverse()
    total = sum((d["cost_usd"] for d in days if d["cost_usd"] is not None), Decimal(0))
    spark = svg.sparkline(
        series,
        title="Daily spend, "
        + (f"{days[0]['day']} to {days[-1]['day']}" if days else "no reports yet"),
        width=360,
        height=48,
    )
    html = render_template(
        INDEX_TEMPLATE, {"rows": rows, "spark": spark, "total_usd": total if days else None}
    )
    return write_atomic(out_dir / INDEX_FILE, html)
