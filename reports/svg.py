"""Inline SVG charts for the HTML reports: no JavaScript, no external resources.

Every chart is an `<svg role="img">` with a `<title>` (what screen readers and hover show)
and a `<desc>`, readable axes with tick labels, and the CSS classes of
`reports/static/style.css`. Values arrive exact (Decimal money) and are turned into float
only for geometry; the numbers printed on the chart come from a caller-supplied formatter,
so a label shows the same rounding as the tables. All text is XML-escaped here, which is why
templates may insert the returned `Markup` without further escaping.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from decimal import Decimal
from html import escape

from markupsafe import Markup

Number = int | float | Decimal
Formatter = Callable[[Number], str]

_FONT_PX = 11
_CHAR_PX = 6.4  # rough advance of an 11px sans-serif glyph, enough to size label gutters


def _esc(text: object) -> str:
    return escape(str(text), quote=True)


def _f(value: Number | None) -> float:
    return 0.0 if value is None else float(value)


def _num(x: float) -> str:
    """Compact coordinates: two decimals are plenty for pixels and keep files small."""
    return f"{x:.2f}".rstrip("0").rstrip(".")


def nice_ticks(low: float, high: float, target: int = 5) -> list[float]:
    """Round tick values (1, 2, 2.5, 5 x 10^k) covering [low, high], low <= 0 <= high ok."""
    if not math.isfinite(low) or not math.isfinite(high):
        return [0.0, 1.0]
    if high <= low:
        high = low + (abs(low) or 1.0)
    raw = (high - low) / max(target, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(low / step) * step
    ticks = []
    value = start
    while True:
        ticks.append(round(value, 12))
        # the last tick must reach `high`, or the longest bar overruns the axis
        if value >= high - step * 1e-9 or len(ticks) > 50:
            break
        value += step
    return ticks


def _open(width: int, height: int, title: str, desc: str, css: str = "chart") -> list[str]:
    return [
        f'<svg class="{css}" xmlns="http://www.w3.org/2000/svg" role="img" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}">',
        f"<title>{_esc(title)}</title>",
        f"<desc>{_esc(desc)}</desc>",
    ]


def _empty(width: int, height: int, title: str, message: str) -> Markup:
    parts = _open(width, height, title, message)
    parts.append(
        f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle">{_esc(message)}</text>'
    )
    parts.append("</svg>")
    return Markup("".join(parts))


def bar_chart(
    labels: Sequence[str],
    values: Sequence[Number | None],
    *,
    title: str,
    value_format: Formatter = lambda v: f"{float(v):,.2f}",
    axis_label: str = "",
    width: int = 560,
    bar_height: int = 18,
    signed: bool = False,
) -> Markup:
    """Horizontal bars, one per label, value printed at the bar's end.

    `signed=True` draws a diverging chart around zero (increases red, decreases green),
    used for top movers."""
    if not labels:
        return _empty(width, 60, title, "no data")
    floats = [_f(v) for v in values]
    label_px = min(220, int(max(len(str(label)) for label in labels) * _CHAR_PX) + 10)
    value_px = int(max(len(value_format(v if v is not None else 0)) for v in values) * _CHAR_PX)
    top, bottom = 8, 34
    plot_x0, plot_x1 = label_px, width - value_px - 14
    height = top + bottom + len(labels) * (bar_height + 6)
    ticks = nice_ticks(min(0.0, *floats) if signed else 0.0, max(0.0, *floats), 4)
    lo, hi = ticks[0], ticks[-1]
    span = (hi - lo) or 1.0

    def x(v: float) -> float:
        return plot_x0 + (v - lo) / span * (plot_x1 - plot_x0)

    desc = "; ".join(
        f"{label}: {value_format(v) if v is not None else 'no data'}"
        for label, v in zip(labels, values, strict=True)
    )
    parts = _open(width, height, title, desc)
    plot_bottom = height - bottom
    parts.append('<g class="grid">')
    for t in ticks:
        parts.append(f'<line x1="{_num(x(t))}" y1="{top}" x2="{_num(x(t))}" y2="{plot_bottom}"/>')
    parts.append("</g>")
    for i, (label, v, raw) in enumerate(zip(labels, floats, values, strict=True)):
        y = top + i * (bar_height + 6) + 3
        x0, x1 = sorted((x(0.0), x(v)))
        kind = "bar" + ((" pos" if v > 0 else " neg") if signed and v else "")
        shown = str(label) if len(str(label)) * _CHAR_PX < label_px else str(label)[:30] + "…"
        parts.append(
            f'<text x="{label_px - 6}" y="{_num(y + bar_height * 0.72)}" text-anchor="end">'
            f"{_esc(shown)}</text>"
        )
        parts.append(
            f'<rect class="{kind}" x="{_num(x0)}" y="{y}" width="{_num(max(x1 - x0, 0.5))}" '
            f'height="{bar_height}"><title>{_esc(label)}: '
            f"{_esc(value_format(raw) if raw is not None else 'no data')}</title></rect>"
        )
        text = value_format(raw) if raw is not None else "no data"
        parts.append(
            f'<text x="{_num(max(x1, x(0.0)) + 4)}" y="{_num(y + bar_height * 0.72)}">'
            f"{_esc(text)}</text>"
        )
    parts.append('<g class="axis">')
    parts.append(f'<line x1="{plot_x0}" y1="{plot_bottom}" x2="{plot_x1}" y2="{plot_bottom}"/>')
    if signed:
        parts.append(f'<line x1="{_num(x(0))}" y1="{top}" x2="{_num(x(0))}" y2="{plot_bottom}"/>')
    for t in ticks:
        parts.append(
            f'<text x="{_num(x(t))}" y="{plot_bottom + 14}" text-anchor="middle">'
            f"{_esc(value_format(t))}</text>"
        )
    parts.append("</g>")
    if axis_label:
        parts.append(
            f'<text x="{_num((plot_x0 + plot_x1) / 2)}" y="{height - 4}" text-anchor="middle">'
            f"{_esc(axis_label)}</text>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def line_chart(
    x_labels: Sequence[str],
    values: Sequence[Number | None],
    *,
    title: str,
    value_format: Formatter = lambda v: f"{float(v):,.2f}",
    y_label: str = "",
    highlight_last: bool = True,
    reference: Number | None = None,
    reference_label: str = "",
    width: int = 560,
    height: int = 220,
) -> Markup:
    """A daily series: points joined where consecutive, gaps where a value is None.

    `reference` draws a dashed horizontal line (a daily budget, for example)."""
    known = [_f(v) for v in values if v is not None]
    if not known:
        return _empty(width, 60, title, "no data")
    floats = [None if v is None else _f(v) for v in values]
    top_values = [*known, _f(reference)] if reference is not None else known
    ticks = nice_ticks(min(0.0, *known), max(top_values), 4)
    lo, hi = ticks[0], ticks[-1]
    span = (hi - lo) or 1.0
    left = int(max(len(value_format(t)) for t in ticks) * _CHAR_PX) + 14
    top, bottom, right = 10, 38, 14
    x_span = max(len(values) - 1, 1)

    def px(i: int) -> float:
        return left + i / x_span * (width - left - right)

    def py(v: float) -> float:
        return height - bottom - (v - lo) / span * (height - top - bottom)

    desc = "; ".join(
        f"{lab}: {value_format(v) if v is not None else 'no data'}"
        for lab, v in zip(x_labels, values, strict=True)
    )
    parts = _open(width, height, title, desc)
    parts.append('<g class="grid">')
    for t in ticks:
        parts.append(
            f'<line x1="{left}" y1="{_num(py(t))}" x2="{width - right}" y2="{_num(py(t))}"/>'
        )
    parts.append("</g>")
    parts.append('<g class="axis">')
    parts.append(
        f'<line x1="{left}" y1="{height - bottom}" x2="{width - right}" y2="{height - bottom}"/>'
    )
    parts.append(f'<line x1="{left}" y1="{top}" x2="{left}" y2="{height - bottom}"/>')
    for t in ticks:
        parts.append(
            f'<text x="{left - 4}" y="{_num(py(t) + 4)}" text-anchor="end">'
            f"{_esc(value_format(t))}</text>"
        )
    every = max(1, math.ceil(len(x_labels) / 8))
    last = len(x_labels) - 1
    for i, lab in enumerate(x_labels):
        # every `every`-th day plus the last one, unless a regular label sits right before it
        if (i % every == 0 and (i == last or last - i >= every / 2)) or i == last:
            parts.append(
                f'<text x="{_num(px(i))}" y="{height - bottom + 14}" text-anchor="middle">'
                f"{_esc(lab)}</text>"
            )
    parts.append("</g>")
    if y_label:
        parts.append(
            f'<text x="{left}" y="{height - 4}" text-anchor="start" class="muted">'
            f"{_esc(y_label)}</text>"
        )
    if reference is not None:
        ry = _num(py(_f(reference)))
        parts.append(
            f'<line x1="{left}" y1="{ry}" x2="{width - right}" y2="{ry}" '
            f'stroke="#a35c00" stroke-dasharray="5 4"><title>{_esc(reference_label)}</title></line>'
        )
    segment: list[str] = []
    for i, v in enumerate(floats):
        if v is None:
            if len(segment) > 1:
                parts.append(f'<polyline class="line" points="{" ".join(segment)}"/>')
            segment = []
            continue
        segment.append(f"{_num(px(i))},{_num(py(v))}")
    if len(segment) > 1:
        parts.append(f'<polyline class="line" points="{" ".join(segment)}"/>')
    for i, (lab, v, raw) in enumerate(zip(x_labels, floats, values, strict=True)):
        if v is None:
            continue
        last = highlight_last and i == len(floats) - 1
        parts.append(
            f'<circle class="{"marker" if last else "line"}" cx="{_num(px(i))}" '
            f'cy="{_num(py(v))}" r="{4 if last else 2.5}"><title>{_esc(lab)}: '
            f"{_esc(value_format(raw) if raw is not None else '')}</title></circle>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def sparkline(
    values: Sequence[Number | None], *, title: str, width: int = 120, height: int = 24
) -> Markup:
    """A tiny trend line without axes (its title carries the numbers)."""
    known = [_f(v) for v in values if v is not None]
    parts = _open(width, height, title, title, css="spark")
    if len(known) >= 2:
        lo, hi = min(known), max(known)
        span = (hi - lo) or 1.0
        x_span = max(len(values) - 1, 1)
        points = [
            f"{_num(1 + i / x_span * (width - 2))},"
            f"{_num(height - 2 - (_f(v) - lo) / span * (height - 4))}"
            for i, v in enumerate(values)
            if v is not None
        ]
        parts.append(f'<polyline class="line" points="{" ".join(points)}"/>')
    elif len(known) == 1:
        # one day: a dot, so the reader sees there is data but no trend yet
        i = next(i for i, v in enumerate(values) if v is not None)
        x = 1 + i / max(len(values) - 1, 1) * (width - 2) if len(values) > 1 else width / 2
        parts.append(f'<circle class="line" cx="{_num(x)}" cy="{height / 2}" r="2.5"/>')
    parts.append("</svg>")
    return Markup("".join(parts))
