"""Alert emails as MIME: what an alert says (`AlertView`), how it looks (Jinja2 templates in
reports/templates/email/) and the message itself.

Structure of every message (`build_message`):

    multipart/alternative
      text/plain                      the whole alert as text (read by terminals and filters)
      multipart/related
        text/html                     inline CSS only (mail clients drop <style> and <link>)
        image/png  Content-ID <...>   the 28-day chart, referenced as <img src="cid:...">

PNG by CID because Outlook, Gmail and Yahoo drop SVG and `data:` URIs. A message stays under
`MAX_MESSAGE_BYTES` (100 KB, below Gmail's clipping at 102 KB): if the chart pushes it over,
it is re-drawn smaller, then dropped with a note.

Safety: HTML autoescapes everything (feature names, models, users come from logs); the text
part and every header go through `clean_text` / `header_text`, which remove CR, LF and other
control characters, so a feature called "x\\r\\nBcc: evil@example.com" stays one harmless line.
The Message-ID is derived from the alert key: the same alert is the same message, so a mail
client threads or drops a copy.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import math
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import jinja2

TEMPLATES = Path(__file__).resolve().parent.parent / "reports" / "templates" / "email"
MAX_MESSAGE_BYTES = 100_000
CHART_CID_DOMAIN = "aispend.chart"
_SPACES = re.compile(r"\s+")


# --------------------------------------------------------------------------- text safety
def clean_text(value: object, limit: int | None = None) -> str:
    """Printable text: control characters (CR, LF, NUL, ESC, bidi overrides ...) become
    spaces and runs of whitespace collapse; cut to `limit` characters with an ellipsis."""
    text = "" if value is None else str(value)
    text = "".join(
        " " if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") else ch for ch in text
    )
    text = _SPACES.sub(" ", text).strip()
    if limit is not None and len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text


def clean_lines(value: object) -> str:
    """Like clean_text, line by line: keeps our own line breaks, nothing else."""
    return "\n".join(clean_text(line) for line in str(value or "").split("\n"))


def header_text(value: object, limit: int = 180) -> str:
    """A header value that cannot start a new header line."""
    return clean_text(value, limit)


def usd(amount: Decimal | None, signed: bool = False) -> str:
    """$1,234.57 (cents, half up); with `signed`, +$ / -$. Sub-cent amounts show 4 places."""
    if amount is None:
        return "n/a"
    places = Decimal("0.01") if abs(amount) >= Decimal("0.01") or amount == 0 else Decimal("0.0001")
    q = amount.quantize(places, rounding=ROUND_HALF_UP)
    sign = "-" if q < 0 else ("+" if signed else "")
    body = f"{abs(q):,.{-places.as_tuple().exponent}f}"  # type: ignore[operator]
    return f"{sign}${body}"


def pct(value: float | None, signed: bool = True) -> str:
    if value is None or math.isnan(value):
        return "n/a"
    return f"{value:+.0%}" if signed else f"{value:.0%}"


def metric_value(metric: str, value: float | None) -> str:
    if value is None or math.isnan(value):
        return "n/a"
    if metric == "cost_usd":
        return usd(Decimal(str(round(value, 6))))
    if metric in ("error_rate", "retry_rate", "unpriced_share"):
        return f"{value:.2%}"
    if metric == "latency_p95_ms":
        return f"{value:,.0f} ms"
    return f"{value:,.0f}"


METRIC_TITLES = {
    "cost_usd": "spend",
    "tokens_per_request": "tokens per request",
    "error_rate": "error rate",
    "retry_rate": "retry rate",
    "unpriced_share": "unpriced share",
    "latency_p95_ms": "p95 latency",
}


# --------------------------------------------------------------------------- view model
@dataclass
class Chart:
    days: list[dt.date]
    actual: list[float | None]
    expected: list[float | None]
    upper: list[float | None]  # expected + z_threshold x scale: the alert line
    flagged: list[bool]
    unit: str


@dataclass
class AlertView:
    """Everything one alert says, already as display strings (the templates only lay out)."""

    alert_key: str
    kind: str  # anomaly | new_spend | budget | rate_limit | data_missing
    day: dt.date
    headline: str  # e.g. "code-review spend +$34.63 (+100%) on 2025-10-30"
    severity: str = "warning"  # warning | critical | notice
    feature: str | None = None
    team: str | None = None
    facts: list[tuple[str, str]] = field(default_factory=list)
    episode: list[tuple[str, str]] = field(default_factory=list)
    contributors: list[dict[str, str]] = field(default_factory=list)
    decomposition: list[tuple[str, str]] = field(default_factory=list)
    freshness: list[str] = field(default_factory=list)
    how_to_mark: str | None = None
    chart: Chart | None = None

    def summary(self) -> dict[str, Any]:
        """The digest's JSON-safe line for this alert (stored in the outbox)."""
        return {
            "alert_key": self.alert_key,
            "kind": self.kind,
            "day": self.day.isoformat(),
            "headline": self.headline,
            "severity": self.severity,
            "facts": [list(f) for f in self.facts[:4]],
        }


# --------------------------------------------------------------------------- rendering
def _environment(autoescape: bool) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=autoescape,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["clean"] = clean_text
    env.filters["clean_lines"] = clean_lines
    return env


_HTML = _environment(autoescape=True)
_TEXT = _environment(autoescape=False)

COLORS = {"critical": "#b42318", "warning": "#b54708", "notice": "#175cd3"}


def render_chart_png(chart: Chart, width_in: float = 6.0, dpi: int = 100) -> bytes:
    """28-day chart: actual (bars, anomalous days red), expected (line) and the alert line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nan = float("nan")
    xs = list(range(len(chart.days)))
    actual = [nan if v is None else v for v in chart.actual]
    expected = [nan if v is None else v for v in chart.expected]
    upper = [nan if v is None else v for v in chart.upper]
    fig, ax = plt.subplots(figsize=(width_in, width_in * 0.36), dpi=dpi)
    try:
        colors = ["#d92d20" if f else "#98a2b3" for f in chart.flagged]
        ax.bar(xs, actual, color=colors, width=0.8, label="actual")
        ax.plot(xs, expected, color="#1570ef", linewidth=1.6, label="expected")
        ax.plot(xs, upper, color="#1570ef", linewidth=0.9, linestyle="--", label="alert line")
        step = max(1, len(xs) // 7)
        ax.set_xticks(xs[::step])
        ax.set_xticklabels([d.strftime("%b %d") for d in chart.days[::step]], fontsize=7)
        ax.tick_params(axis="y", labelsize=7)
        ax.set_ylabel(chart.unit, fontsize=7)
        ax.spines[["top", "right"]].set_visible(False)
        ax.legend(fontsize=7, frameon=False, loc="upper left")
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=dpi)
    finally:
        plt.close(fig)
    return buffer.getvalue()


def message_id(alert_key: str) -> str:
    digest = hashlib.sha256(alert_key.encode()).hexdigest()[:32]
    return f"<{digest}@aispend>"


def build_message(
    views: Sequence[AlertView],
    *,
    sender: str,
    recipients: Sequence[str],
    subject_prefix: str,
    key: str,
    digest_day: dt.date | None = None,
    now: dt.datetime | None = None,
) -> EmailMessage:
    """One email: a single alert (one view, with chart) or a digest (several, no charts)."""
    digest = digest_day is not None
    chart_bytes: bytes | None = None
    view = views[0]
    if not digest and view.chart is not None and view.chart.days:
        chart_bytes = render_chart_png(view.chart)
    for attempt in range(3):
        msg = _assemble(
            views, sender, recipients, subject_prefix, key, digest_day, now, chart_bytes
        )
        size = len(msg.as_bytes())
        if size <= MAX_MESSAGE_BYTES or chart_bytes is None:
            return msg
        # Too big: a smaller chart first, then none.
        chart_bytes = (
            render_chart_png(view.chart, width_in=4.5, dpi=72)
            if attempt == 0 and view.chart is not None
            else None
        )
    return _assemble(views, sender, recipients, subject_prefix, key, digest_day, now, None)


def _subject(views: Sequence[AlertView], prefix: str, digest_day: dt.date | None) -> str:
    if digest_day is not None:
        n = len(views)
        first = views[0].headline if views else ""
        more = f" (+{n - 1} more)" if n > 1 else ""
        return header_text(f"{prefix} digest {digest_day.isoformat()}: {first}{more}")
    return header_text(f"{prefix} {views[0].headline}")


def _assemble(
    views: Sequence[AlertView],
    sender: str,
    recipients: Sequence[str],
    prefix: str,
    key: str,
    digest_day: dt.date | None,
    now: dt.datetime | None,
    chart_bytes: bytes | None,
) -> EmailMessage:
    cid_key = hashlib.sha256(key.encode()).hexdigest()[:16]
    cid = f"chart-{cid_key}@{CHART_CID_DOMAIN}"
    context = {
        "views": list(views),
        "view": views[0],
        "digest_day": digest_day,
        "chart_cid": cid if chart_bytes else None,
        "chart_dropped": (not digest_day) and views[0].chart is not None and not chart_bytes,
        "colors": COLORS,
    }
    name = "digest" if digest_day is not None else "alert"
    text = _TEXT.get_template(f"{name}.txt.j2").render(context)
    html = _HTML.get_template(f"{name}.html.j2").render(context)
    msg = EmailMessage()
    msg["Subject"] = _subject(views, prefix, digest_day)
    msg["From"] = Address(addr_spec=header_text(sender))
    msg["To"] = ", ".join(header_text(r) for r in recipients)
    msg["Message-ID"] = message_id(key)
    msg["Date"] = format_datetime(now or dt.datetime.now(dt.UTC))
    msg["X-Aispend-Alert-Key"] = header_text(hashlib.sha256(key.encode()).hexdigest())
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(text, subtype="plain", charset="utf-8")
    msg.add_alternative(html, subtype="html", charset="utf-8")
    if chart_bytes:
        html_part = msg.get_payload()[1]  # type: ignore[index]
        assert isinstance(html_part, EmailMessage)
        html_part.add_related(
            chart_bytes,
            maintype="image",
            subtype="png",
            cid=f"<{cid}>",
            filename="chart.png",
            disposition="inline",
        )
    return msg
