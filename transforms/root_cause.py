"""Root cause of a spend change: top contributors and the volume vs unit-price split.

Both compare one day (the anomaly day) with the mean of a set of baseline days (the
same-weekday days the detector's baseline used). Money is exact Decimal USD; means are
quantized to 1e-18 USD.

`contributors(priced, day, baseline_days, dimensions)`: reads repriced requests of those
days (already filtered to the anomalous series), and for each dimension (`model_key`,
`api_key_id`, `team`, `user`, ...) ranks the values by their change in spend:
  actual_usd    spend on the day
  expected_usd  mean spend over the baseline days
  delta_usd     actual - expected
  share         delta / total delta of the dimension (Float64; null when the total is 0)
Values whose |share| is below `min_share` are folded into one `(other)` row, so the email
shows the few values that explain the change. A null value is `(none)`. API keys are the
hashed ids of the canonical record and are masked again for display (`mask_key`).

`decompose(usage_daily, day, baseline_days)`: splits the change of spend, per model, into
  traffic_usd            more or fewer requests at the old cost per request
  tokens_per_request_usd bigger or smaller requests at the old price per token
  unit_price_usd         what remains: the price per token moved (a price change, a
                         contract term, a token-class mix such as fewer cache reads)
The three add up exactly to the change (unit price is the exact residual). volume_usd =
traffic + tokens per request. A model without tokens (images, video) uses requests as its
unit, so its size effect is 0. A model absent from the baseline is all traffic.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from decimal import Decimal, localcontext

import polars as pl

from transforms.schema import MONEY

NONE_LABEL = "(none)"
OTHER_LABEL = "(other)"
QUANTUM = Decimal("1e-18")

CONTRIBUTOR_SCHEMA = pl.Schema(
    {
        "dimension": pl.String(),
        "value": pl.String(),
        "rank": pl.Int32(),
        "actual_usd": MONEY,
        "expected_usd": MONEY,
        "delta_usd": MONEY,
        "share": pl.Float64(),
    }
)

DECOMPOSITION_SCHEMA = pl.Schema(
    {
        "row": pl.String(),  # 'model' or 'total' (the sum over all models)
        "model_key": pl.String(),
        "requests": pl.Int64(),
        "expected_requests": pl.Float64(),
        "actual_usd": MONEY,
        "expected_usd": MONEY,
        "delta_usd": MONEY,
        "traffic_usd": MONEY,
        "tokens_per_request_usd": MONEY,
        "unit_price_usd": MONEY,
    }
)


def mask_key(value: str | None) -> str:
    """`sha256:abcdef...` -> `sha256:abcd…cdef`: enough to recognize, never the full id."""
    if value is None:
        return NONE_LABEL
    prefix, _, rest = value.rpartition(":")
    body = rest if len(rest) <= 8 else f"{rest[:4]}…{rest[-4:]}"
    return f"{prefix}:{body}" if prefix else body


def _mean(total: Decimal, n: int) -> Decimal:
    with localcontext() as ctx:
        ctx.prec = 60
        return (total / n).quantize(QUANTUM)


def _day_expr() -> pl.Expr:
    return pl.col("started_at").dt.convert_time_zone("UTC").dt.date()


def contributors(
    priced: pl.LazyFrame,
    day: dt.date,
    baseline_days: Sequence[dt.date],
    dimensions: Sequence[str] = ("model_key", "api_key_id", "team", "user"),
    top: int = 5,
    min_share: float = 0.05,
) -> pl.LazyFrame:
    """Top contributors to the change of spend per dimension (`CONTRIBUTOR_SCHEMA`)."""
    n_base = len(baseline_days)
    rows = priced.filter(_day_expr().is_in([day, *baseline_days])).select(
        (_day_expr() == day).alias("_on_day"),
        *[pl.col(d).cast(pl.String) for d in dimensions],
        pl.col("cost_usd").fill_null(Decimal(0)).cast(MONEY),
    )
    records: list[dict[str, object]] = []
    for dim in dimensions:
        sums = rows.group_by(dim, "_on_day").agg(pl.col("cost_usd").sum().cast(MONEY)).collect()
        actual: dict[str | None, Decimal] = {}
        base: dict[str | None, Decimal] = {}
        for value, on_day, cost in sums.iter_rows():
            (actual if on_day else base)[value] = cost
        entries = []
        for value in set(actual) | set(base):
            a = actual.get(value, Decimal(0))
            e = _mean(base.get(value, Decimal(0)), n_base) if n_base else Decimal(0)
            entries.append((value, a, e, a - e))
        total = sum((d for *_, d in entries), Decimal(0))
        # Rank by the size of the change in the direction of the total change.
        sign = 1 if total >= 0 else -1
        entries.sort(key=lambda t: (-(sign * t[3]), str(t[0])))
        kept: list[tuple[tuple[str | None, Decimal, Decimal, Decimal], float | None]] = []
        rest: list[tuple[str | None, Decimal, Decimal, Decimal]] = []
        for entry in entries:
            share = float(entry[3] / total) if total != 0 else None
            if len(kept) < top and (share is None or abs(share) >= min_share) and entry[3] != 0:
                kept.append((entry, share))
            else:
                rest.append(entry)
        for rank, ((value, a, e, d), share) in enumerate(kept, start=1):
            label = mask_key(value) if dim == "api_key_id" else (value or NONE_LABEL)
            records.append(_row(dim, label, rank, a, e, d, share))
        # Values whose spend did not change explain nothing: no "(other)" row for them.
        rest = [r for r in rest if r[3] != 0]
        if rest:
            a = sum((r[1] for r in rest), Decimal(0))
            e = sum((r[2] for r in rest), Decimal(0))
            d = a - e
            share = float(d / total) if total != 0 else None
            records.append(_row(dim, OTHER_LABEL, len(kept) + 1, a, e, d, share))
    return pl.DataFrame(records, schema=CONTRIBUTOR_SCHEMA, orient="row").lazy()


def _row(
    dim: str, value: str, rank: int, a: Decimal, e: Decimal, d: Decimal, share: float | None
) -> dict[str, object]:
    return {
        "dimension": dim,
        "value": value,
        "rank": rank,
        "actual_usd": a,
        "expected_usd": e,
        "delta_usd": d,
        "share": share,
    }


def decompose(
    usage_daily: pl.LazyFrame, day: dt.date, baseline_days: Sequence[dt.date]
) -> pl.LazyFrame:
    """Traffic / tokens-per-request / unit-price split of the change in spend, per model and
    in total (`DECOMPOSITION_SCHEMA`; the total row has row = 'total'). `usage_daily`
    must already be filtered to the series being explained."""
    n_base = len(baseline_days)
    sums = (
        usage_daily.filter(pl.col("day").is_in([day, *baseline_days]))
        .group_by("model_key", (pl.col("day") == day).alias("_on_day"))
        .agg(
            pl.col("requests").fill_null(0).sum().cast(pl.Int64),
            (pl.col("input_tokens").fill_null(0) + pl.col("output_tokens").fill_null(0))
            .sum()
            .cast(pl.Int64)
            .alias("tokens"),
            pl.col("cost_usd").fill_null(Decimal(0)).sum().cast(MONEY),
        )
        .collect()
    )
    now: dict[str | None, tuple[int, int, Decimal]] = {}
    then: dict[str | None, tuple[int, int, Decimal]] = {}
    for model, on_day, requests, tokens, cost in sums.iter_rows():
        (now if on_day else then)[model] = (requests, tokens, cost)
    records: list[dict[str, object]] = []
    totals = [Decimal(0)] * 6
    total_requests = 0
    total_expected_requests = 0.0
    with localcontext() as ctx:
        ctx.prec = 60
        for model in sorted(set(now) | set(then), key=lambda m: (m is None, m or "")):
            r1, t1, c1 = now.get(model, (0, 0, Decimal(0)))
            r0_sum, t0_sum, c0_sum = then.get(model, (0, 0, Decimal(0)))
            r0 = Decimal(r0_sum) / n_base if n_base else Decimal(0)
            t0 = Decimal(t0_sum) / n_base if n_base else Decimal(0)
            c0 = _mean(c0_sum, n_base) if n_base else Decimal(0)
            delta = c1 - c0
            if r0 == 0:
                traffic, size = delta, Decimal(0)
            else:
                traffic = ((Decimal(r1) - r0) * (c0 / r0)).quantize(QUANTUM)
                if t0 > 0 and t1 > 0 and r1 > 0:
                    size = (Decimal(r1) * (Decimal(t1) / r1 - t0 / r0) * (c0 / t0)).quantize(
                        QUANTUM
                    )
                else:
                    size = Decimal(0)
            price = delta - traffic - size
            values = [c1, c0, delta, traffic, size, price]
            totals = [a + b for a, b in zip(totals, values, strict=True)]
            total_requests += r1
            total_expected_requests += float(r0)
            records.append(_decomposition_row(model, r1, float(r0), values))
    records.append(
        _decomposition_row(None, total_requests, total_expected_requests, totals, total=True)
    )
    return pl.DataFrame(records, schema=DECOMPOSITION_SCHEMA, orient="row").lazy()


def _decomposition_row(
    model: str | None,
    requests: int,
    expected_requests: float,
    values: list[Decimal],
    total: bool = False,
) -> dict[str, object]:
    c1, c0, delta, traffic, size, price = values
    return {
        "row": "total" if total else "model",
        "model_key": model,
        "requests": requests,
        "expected_requests": expected_requests,
        "actual_usd": c1,
        "expected_usd": c0,
        "delta_usd": delta,
        "traffic_usd": traffic,
        "tokens_per_request_usd": size,
        "unit_price_usd": price,
    }
