"""Provider usage/cost reports, a FOCUS 1.2 file and invoices that match the traffic exactly.

Everything here is derived from the ground truth repriced with the real catalog
(`transforms.reprice.reprice` with `Catalog.load([])`): the provider "saw" every successful
attempt that reached it, i.e. truth rows with status success and gateway_cache_hit false, of
the provider that billed them (OpenRouter rows are billed by "openrouter", never by the
upstream lab). Token columns follow canonical semantics unless a format says otherwise.
Amounts are exact decimals unless rounded to the cent where stated.

Files, per calendar month (YYYY-MM) touched by the period (only the generated days appear):

openai/usage-completions-YYYY-MM.json   JSON list of Usage API pages (>= 2 when the month has
    >= 2 days): {"object":"page","data":[bucket],"has_more","next_page"}; a bucket
    {"object":"bucket","start_time","end_time" (unix s, 1d),"results":[...]} for every day,
    empty results on a day without usage; results are `organization.usage.completions.result`
    grouped by model (the dated snapshot), batch, service_tier (default|flex|priority) and
    project_id (one project per team): input_tokens INCLUDES cached, input_cached_tokens,
    input_uncached_tokens, output_tokens (incl. reasoning), num_model_requests (successful
    attempts); user_id/api_key_id null; audio tokens 0. Text models only.
openai/costs-YYYY-MM.json   Costs API pages, same paging; results `organization.costs.result`
    {"amount":{"value": exact decimal number, "currency":"usd"},"line_item","project_id"}.
    line_item: "<model>, input" (uncached input), "<model>, cached input", "<model>, output"
    (incl. reasoning), with " (batch)", " (flex)" or " (priority)" appended for those
    contexts; "Image models" (dall-e-3, gpt-image-1.5) and "Video models" (sora-2).
anthropic/usage-YYYY-MM.json   list of pages {"data":[bucket],"has_more","next_page"}, a bucket
    {"starting_at","ending_at" (RFC 3339 Z),"results":[...]} per day; results grouped by
    workspace_id (one per team), model, service_tier (standard|batch), context_window
    (0-200k|200k-1M by total input): uncached_input_tokens (input minus cache reads and writes),
    cache_read_input_tokens, cache_creation {ephemeral_5m_input_tokens,
    ephemeral_1h_input_tokens}, output_tokens (incl. thinking), server_tool_use; api_key_id
    null. Buckets listed in the manifest (`anthropic_flattened_buckets`) use the flattened
    alternative instead: cache_creation_5m_input_tokens / cache_creation_1h_input_tokens.
anthropic/cost-YYYY-MM.json   same paging; results {"workspace_id","description","cost_type":
    "tokens","model","service_tier","token_type","context_window","currency":"USD","amount"}
    with amount a decimal STRING in CENTS (exact: "80.3253" = $0.803253); token_type one of
    uncached_input_tokens | cache_read_input_tokens | cache_creation.ephemeral_5m_input_tokens
    | cache_creation.ephemeral_1h_input_tokens | output_tokens.
aws/cur-YYYY-MM.csv   CUR 2.0 Bedrock lines per day, usage type, rate and team:
    line_item_usage_type USE1-<Claude4.5Sonnet|...>-input-tokens (uncached input),
    -output-tokens, -cache-read-input-token-count, -cache-write-input-token-count;
    line_item_usage_amount in tokens, pricing_unit "Tokens", unblended rate per token and cost
    exact; resource_tags a JSON map {"user:team": team}; one Credit and one Tax line a month.
google/billing-YYYY-MM.jsonl   BigQuery standard-export rows per day, SKU, feature and team:
    service.description "Vertex AI", sku.description "<Gemini 2.5 Pro|...>[ Batch] <Input Text
    Tokens|Cached Input Text Tokens|Output Text Tokens>[ Long Context]" or "Veo 3 Video
    Generation with Audio"; usage.amount tokens (unit "count") or seconds; cost exact before
    credits; credits [{"amount": -5% of cost, "type":"PROMOTION",...}]; labels
    [{"key":"feature"},{"key":"team"}]; invoice.month "YYYYMM"; cost_type regular, plus one
    cost_type "tax" row a month.
focus/focus-YYYY-MM.csv   FOCUS 1.2 cost-and-usage rows for OpenAI: Usage rows per day, model,
    token type, rate, team and context; a Credit, a Tax and a rounding Adjustment row so that
    sum(BilledCost) equals the OpenAI invoice total. Numbers always with a decimal point
    (1250000.0), timestamps YYYY-MM-DDTHH:MM:SSZ, PricingUnit "1000000 Tokens" / "Images" /
    "Seconds", ListUnitPrice per pricing unit.
invoices/invoice-<provider>-YYYY-MM.csv   exactly the INVOICE_LINE_SCHEMA columns: usage lines
    per model, token type (or image variant / video) and unit price, amounts rounded to the
    cent so that they sum to the month's exact cost rounded to the cent (largest remainder);
    then a credit line (-5% of usage) and a tax line (8% of usage + credit).

Billing faults (`datagen.faults.BillingFaults`, `write_reports(..., faults=)`) change what the
providers bill before any file is written, so every report and the invoice agree on them:
price changes, bypass traffic on an account the gateway never uses, default tier billed as
priority, a duplicated invoice line, a correction invoice restating an invoice mismatch, and
an invoice in another currency (converted from the exact cost at a given rate, then rounded
to that currency's cents; the usage reports stay in USD). Each is recorded with its exact
amount in `Reports.billing_faults`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import polars as pl

from datagen import jsonio, org
from datagen.faults import BillingFaults
from datagen.org import MODELS
from transforms.schema import INVOICE_LINE_SCHEMA

CREDIT_RATE = Decimal("0.05")
TAX_RATE = Decimal("0.08")
CENT = Decimal("0.01")
LONG_CONTEXT = 200_000
KEYS = (
    "date",
    "provider",
    "spec",
    "model",
    "team",
    "feature",
    "batch",
    "service_tier",
    "long",
    "price_id",
    "image_size",
    "image_quality",
)
# component -> (quantity expression, reprice cost column, unit)
COMPONENTS: dict[str, tuple[pl.Expr, str, str]] = {
    "input": (
        pl.col("input_tokens") - pl.col("cache_read_tokens") - pl.col("cache_write_tokens"),
        "cost_input_usd",
        "tokens",
    ),
    "cache_read": (pl.col("cache_read_tokens"), "cost_cache_read_usd", "tokens"),
    "cache_write_5m": (
        pl.col("cache_write_tokens") - pl.col("cache_write_1h_tokens"),
        "cost_cache_write_5m_usd",
        "tokens",
    ),
    "cache_write_1h": (pl.col("cache_write_1h_tokens"), "cost_cache_write_1h_usd", "tokens"),
    "output": (
        pl.col("output_tokens") - pl.col("reasoning_tokens"),
        "cost_output_usd",
        "tokens",
    ),
    # Billed as output by every provider here (same rate): merged into "output" lines.
    "reasoning": (pl.col("reasoning_tokens"), "cost_reasoning_usd", "tokens"),
    "image": (pl.col("image_count"), "cost_image_usd", "images"),
    "video": (pl.col("video_seconds").round(0).cast(pl.Int64), "cost_video_usd", "seconds"),
}
TOKEN_SUMS = (
    "input_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cache_write_1h_tokens",
    "output_tokens",
    "reasoning_tokens",
    "image_count",
)


def _sha(text: str, n: int) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:n]


def project_id(team: str | None) -> str:
    return f"proj_{_sha('project-' + str(team), 24)}"


def workspace_id(team: str | None) -> str:
    return f"wrkspc_01{_sha('workspace-' + str(team), 22)}"


def unix(day: dt.date) -> int:
    return int(dt.datetime.combine(day, dt.time(0), dt.UTC).timestamp())


def rfc3339(day: dt.date) -> str:
    return f"{day.isoformat()}T00:00:00Z"


def round_cent(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def month_key(day: dt.date) -> str:
    return f"{day.year:04d}-{day.month:02d}"


def month_bounds(month: str) -> tuple[dt.date, dt.date]:
    start = dt.date.fromisoformat(month + "-01")
    end = dt.date(start.year + (start.month == 12), start.month % 12 + 1, 1)
    return start, end


# --------------------------------------------------------------------------- aggregation
def billable(priced: pl.DataFrame) -> pl.DataFrame:
    """What the providers saw: successful attempts that reached them, grouped finely."""
    spec = pl.col("_spec")
    resolved = spec.replace_strict(
        pl.Series(range(len(MODELS))),
        pl.Series([m.resolved for m in MODELS]),
        return_dtype=pl.String,
    )
    rows = priced.filter(
        (pl.col("status") == "success")
        & ~pl.col("gateway_cache_hit")
        & pl.col("cost_usd").is_not_null()
    ).with_columns(
        pl.col("started_at").dt.date().alias("date"),
        spec.alias("spec"),
        pl.when(pl.col("provider") == "openrouter")
        .then(pl.col("model"))
        .otherwise(resolved)
        .alias("billed_model"),
        (pl.col("input_tokens").fill_null(0) > LONG_CONTEXT).alias("long"),
        *[pl.col(c).fill_null(0) for c in TOKEN_SUMS],
        pl.col("service_tier").fill_null("default"),
        pl.col("video_seconds").fill_null(0.0),
    )
    keys = [k if k != "model" else "billed_model" for k in KEYS]
    agg = (
        rows.group_by(keys)
        .agg(
            *[pl.col(c).sum() for c in TOKEN_SUMS],
            *[q.sum().alias(f"q_{name}") for name, (q, _, _) in COMPONENTS.items()],
            *[pl.col(cost).sum() for _, cost, _ in COMPONENTS.values()],
            pl.col("cost_usd").sum(),
            pl.len().alias("requests"),
        )
        .rename({"billed_model": "model"})
        .sort(list(KEYS), nulls_last=True)
    )
    return agg


def cost_lines(agg: pl.DataFrame) -> list[dict[str, Any]]:
    """One dict per (agg row, component with usage): quantity, exact cost and exact rate."""
    out: list[dict[str, Any]] = []
    for row in agg.iter_rows(named=True):
        base = {k: row[k] for k in KEYS}
        for name, (_, cost_col, unit) in COMPONENTS.items():
            qty = int(row[f"q_{name}"])
            if qty <= 0:
                continue
            cost = Decimal(row[cost_col])
            out.append(
                {
                    **base,
                    "component": "output" if name == "reasoning" else name,
                    "unit": unit,
                    "quantity": qty,
                    "cost": cost,
                    "rate": (cost / qty).normalize(),
                }
            )
    return out


def rollup(
    rows: Iterable[dict[str, Any]],
    key: Callable[[dict[str, Any]], tuple[Any, ...]],
    sums: Sequence[str],
) -> dict[tuple[Any, ...], dict[str, Any]]:
    """Sum `sums` by key, in first-seen key order (inputs are sorted, so output is stable)."""
    out: dict[tuple[Any, ...], dict[str, Any]] = {}
    for r in rows:
        k = key(r)
        acc = out.get(k)
        if acc is None:
            out[k] = {s: r[s] for s in sums}
        else:
            for s in sums:
                acc[s] += r[s]
    return out


def _pages(buckets: list[dict[str, Any]], openai_style: bool) -> list[dict[str, Any]]:
    """Split buckets over pages of up to 7 (the Costs API default), >= 2 pages when possible."""
    size = max(1, min(7, -(-len(buckets) // 2))) if len(buckets) > 1 else 1
    chunks = [buckets[i : i + size] for i in range(0, len(buckets), size)] or [[]]
    pages = []
    for i, chunk in enumerate(chunks):
        more = i + 1 < len(chunks)
        token = f"page_{_sha(str(chunks[i + 1][0]), 16)}" if more else None
        page: dict[str, Any] = {"object": "page"} if openai_style else {}
        page.update({"data": chunk, "has_more": more, "next_page": token})
        pages.append(page)
    return pages


# --------------------------------------------------------------------------- OpenAI
def _openai_suffix(r: dict[str, Any]) -> str:
    if r["batch"]:
        return " (batch)"
    if r["service_tier"] in ("flex", "priority"):
        return f" ({r['service_tier']})"
    return ""


OPENAI_TYPE = {"input": "input", "cache_read": "cached input", "output": "output"}


def openai_line_item(r: dict[str, Any]) -> str:
    if r["component"] == "image":
        return "Image models"
    if r["component"] == "video":
        return "Video models"
    return f"{r['model']}, {OPENAI_TYPE[r['component']]}{_openai_suffix(r)}"


def openai_usage(agg_rows: list[dict[str, Any]], days: list[dt.date]) -> list[dict[str, Any]]:
    text = [r for r in agg_rows if MODELS[r["spec"]].modality == "text"]
    by_day: dict[dt.date, list[dict[str, Any]]] = defaultdict(list)
    for r in text:
        by_day[r["date"]].append(r)
    buckets = []
    for day in days:
        groups = rollup(
            by_day[day],
            lambda r: (project_id(r["team"]), r["model"], r["batch"], r["service_tier"]),
            ("requests", "input_tokens", "cache_read_tokens", "output_tokens"),
        )
        results = [
            {
                "object": "organization.usage.completions.result",
                "input_tokens": g["input_tokens"],
                "output_tokens": g["output_tokens"],
                "input_cached_tokens": g["cache_read_tokens"],
                "input_uncached_tokens": g["input_tokens"] - g["cache_read_tokens"],
                "input_audio_tokens": 0,
                "output_audio_tokens": 0,
                "num_model_requests": g["requests"],
                "project_id": project,
                "user_id": None,
                "api_key_id": None,
                "model": model,
                "batch": batch,
                "service_tier": tier,
            }
            for (project, model, batch, tier), g in sorted(groups.items())
        ]
        buckets.append(
            {
                "object": "bucket",
                "start_time": unix(day),
                "end_time": unix(day + dt.timedelta(1)),
                "results": results,
            }
        )
    return _pages(buckets, openai_style=True)


def openai_costs(lines: list[dict[str, Any]], days: list[dt.date]) -> list[dict[str, Any]]:
    by_day: dict[dt.date, list[dict[str, Any]]] = defaultdict(list)
    for r in lines:
        by_day[r["date"]].append(r)
    buckets = []
    for day in days:
        groups = rollup(
            by_day[day], lambda r: (project_id(r["team"]), openai_line_item(r)), ("cost",)
        )
        results = [
            {
                "object": "organization.costs.result",
                "amount": {"value": g["cost"], "currency": "usd"},
                "line_item": item,
                "project_id": project,
            }
            for (project, item), g in sorted(groups.items())
        ]
        buckets.append(
            {
                "object": "bucket",
                "start_time": unix(day),
                "end_time": unix(day + dt.timedelta(1)),
                "results": results,
            }
        )
    return _pages(buckets, openai_style=True)


# --------------------------------------------------------------------------- Anthropic
ANTHROPIC_TYPE = {
    "input": ("uncached_input_tokens", "Input Tokens"),
    "cache_read": ("cache_read_input_tokens", "Cache Read"),
    "cache_write_5m": ("cache_creation.ephemeral_5m_input_tokens", "Cache Write 5m"),
    "cache_write_1h": ("cache_creation.ephemeral_1h_input_tokens", "Cache Write 1h"),
    "output": ("output_tokens", "Output Tokens"),
}


def _context_window(long: bool) -> str:
    return "200k-1M" if long else "0-200k"


def anthropic_usage(
    agg_rows: list[dict[str, Any]], days: list[dt.date], flattened: set[dt.date]
) -> list[dict[str, Any]]:
    by_day: dict[dt.date, list[dict[str, Any]]] = defaultdict(list)
    for r in agg_rows:
        by_day[r["date"]].append(r)
    buckets = []
    for day in days:
        groups = rollup(
            by_day[day],
            lambda r: (
                workspace_id(r["team"]),
                r["model"],
                "batch" if r["batch"] else "standard",
                _context_window(r["long"]),
            ),
            (
                "input_tokens",
                "cache_read_tokens",
                "cache_write_tokens",
                "cache_write_1h_tokens",
                "output_tokens",
            ),
        )
        results = []
        for (ws, model, tier, window), g in sorted(groups.items()):
            w5 = g["cache_write_tokens"] - g["cache_write_1h_tokens"]
            w1 = g["cache_write_1h_tokens"]
            result: dict[str, Any] = {
                "workspace_id": ws,
                "api_key_id": None,
                "model": model,
                "service_tier": tier,
                "context_window": window,
                "uncached_input_tokens": g["input_tokens"]
                - g["cache_read_tokens"]
                - g["cache_write_tokens"],
                "cache_read_input_tokens": g["cache_read_tokens"],
            }
            if day in flattened:
                result["cache_creation_5m_input_tokens"] = w5
                result["cache_creation_1h_input_tokens"] = w1
            else:
                result["cache_creation"] = {
                    "ephemeral_5m_input_tokens": w5,
                    "ephemeral_1h_input_tokens": w1,
                }
            result["output_tokens"] = g["output_tokens"]
            result["server_tool_use"] = {"web_search_requests": 0}
            results.append(result)
        buckets.append(
            {
                "starting_at": rfc3339(day),
                "ending_at": rfc3339(day + dt.timedelta(1)),
                "results": results,
            }
        )
    return _pages(buckets, openai_style=False)


def anthropic_costs(lines: list[dict[str, Any]], days: list[dt.date]) -> list[dict[str, Any]]:
    by_day: dict[dt.date, list[dict[str, Any]]] = defaultdict(list)
    for r in lines:
        by_day[r["date"]].append(r)
    buckets = []
    for day in days:
        groups = rollup(
            by_day[day],
            lambda r: (
                workspace_id(r["team"]),
                r["model"],
                r["component"],
                "batch" if r["batch"] else "standard",
                _context_window(r["long"]),
                MODELS[r["spec"]].display,
            ),
            ("cost",),
        )
        results = []
        for (ws, model, comp, tier, window, display), g in sorted(groups.items()):
            token_type, label = ANTHROPIC_TYPE[comp]
            results.append(
                {
                    "workspace_id": ws,
                    "description": f"{display} Usage - {label}",
                    "cost_type": "tokens",
                    "model": model,
                    "service_tier": tier,
                    "token_type": token_type,
                    "context_window": window,
                    "currency": "USD",
                    "amount": jsonio.dec_text(g["cost"] * 100),
                }
            )
        buckets.append(
            {
                "starting_at": rfc3339(day),
                "ending_at": rfc3339(day + dt.timedelta(1)),
                "results": results,
            }
        )
    return _pages(buckets, openai_style=False)


# --------------------------------------------------------------------------- invoices
TYPE_LABEL = {
    "input": "input tokens",
    "cache_read": "cached input tokens",
    "cache_write_5m": "cache write (5m) tokens",
    "cache_write_1h": "cache write (1h) tokens",
    "output": "output tokens",
    "image": "images",
    "video": "video seconds",
}


def _line_description(r: dict[str, Any]) -> str:
    text = f"{r['model']} {TYPE_LABEL[r['component']]}"
    if r["component"] == "image":
        variant = " ".join(v for v in (r["image_size"], r["image_quality"]) if v)
        text += f" {variant}" if variant else ""
    if r["batch"]:
        text += " (batch)"
    elif r["service_tier"] in ("flex", "priority"):
        text += f" ({r['service_tier']})"
    return text


def month_summary(lines: list[dict[str, Any]]) -> dict[str, Decimal]:
    usage = sum((r["cost"] for r in lines), Decimal(0))
    usage_billed = round_cent(usage)
    credit = -round_cent(usage * CREDIT_RATE)
    tax = round_cent((usage_billed + credit) * TAX_RATE)
    return {
        "usage_exact": usage,
        "usage": usage_billed,
        "credit": credit,
        "tax": tax,
        "total": usage_billed + credit + tax,
    }


def invoice_id(provider: str, month: str) -> str:
    return f"INV-{provider.upper()}-{month.replace('-', '')}-0001"


def in_currency(lines: list[dict[str, Any]], usd_per_unit: Decimal) -> list[dict[str, Any]]:
    """Cost lines priced in another currency: exact cost and rate divided by the rate (to 18
    decimals, the lake's precision), before any rounding to that currency's cents."""
    q = Decimal(10) ** -18
    return [
        {
            **r,
            "cost": (r["cost"] / usd_per_unit).quantize(q),
            "rate": (r["rate"] / usd_per_unit).quantize(q),
        }
        for r in lines
    ]


def invoice_lines(
    provider: str, month: str, lines: list[dict[str, Any]], currency: str = "USD"
) -> list[dict[str, Any]]:
    """Canonical invoice lines (INVOICE_LINE_SCHEMA keys) for one provider and month. In
    another currency, `lines` are already in it (`in_currency`) and so are `amount_usd` and
    `unit_price_usd` (docs/data-model.md: amounts as billed, in `currency`)."""
    start, end = month_bounds(month)
    inv = invoice_id(provider, month)
    groups = rollup(
        lines,
        lambda r: (r["model"], r["component"], r["unit"], r["rate"], _line_description(r)),
        ("quantity", "cost"),
    )
    items = sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][4], kv[0][3]))
    summary = month_summary(lines)
    rounded = [round_cent(g["cost"]) for _, g in items]
    # Largest remainder: the usage lines sum exactly to the month's cost rounded to the cent.
    diff = summary["usage"] - sum(rounded, Decimal(0))
    order = sorted(
        range(len(items)),
        key=lambda i: (-(items[i][1]["cost"] - rounded[i]) * (1 if diff > 0 else -1), i),
    )
    step = CENT if diff > 0 else -CENT
    for i in order[: int(abs(diff) / CENT)]:
        rounded[i] += step
    out: list[dict[str, Any]] = []

    def add(**kw: Any) -> None:
        out.append(
            {
                "invoice_id": inv,
                "provider": provider,
                "billing_period_start": start,
                "billing_period_end": end,
                "line_id": f"{inv}-{len(out) + 1:04d}",
                "description": kw["description"],
                "charge_category": kw["category"],
                "model": kw.get("model"),
                "quantity": kw.get("quantity"),
                "unit": kw.get("unit"),
                "unit_price_usd": kw.get("unit_price"),
                "amount_usd": kw["amount"],
                "currency": currency,
                "is_correction": False,
                "corrects_invoice_id": None,
            }
        )

    for ((model, _comp, unit, rate, desc), g), amount in zip(items, rounded, strict=True):
        add(
            description=desc,
            category="usage",
            model=model,
            quantity=Decimal(g["quantity"]),
            unit=unit,
            unit_price=rate,
            amount=amount,
        )
    add(description="Promotional credit", category="credit", amount=summary["credit"])
    add(description=f"Sales tax ({int(TAX_RATE * 100)}%)", category="tax", amount=summary["tax"])
    return out


def write_invoice(path: Path, rows: list[dict[str, Any]]) -> int:
    header = list(INVOICE_LINE_SCHEMA.names())

    def cell(k: str, v: Any) -> Any:
        if k == "amount_usd":
            return jsonio.cents(v)
        return v

    return jsonio.write_csv(path, header, ([cell(k, r[k]) for k in header] for r in rows))


# --------------------------------------------------------------------------- AWS CUR 2.0
CUR_COLUMNS = (
    "bill_billing_period_start_date",
    "bill_billing_period_end_date",
    "bill_payer_account_id",
    "bill_invoice_id",
    "bill_invoicing_entity",
    "bill_bill_type",
    "line_item_usage_account_id",
    "line_item_line_item_type",
    "line_item_usage_start_date",
    "line_item_usage_end_date",
    "line_item_product_code",
    "line_item_usage_type",
    "line_item_operation",
    "line_item_usage_amount",
    "line_item_unblended_rate",
    "line_item_unblended_cost",
    "line_item_net_unblended_cost",
    "line_item_currency_code",
    "line_item_line_item_description",
    "line_item_resource_id",
    "line_item_iam_principal",
    "product_region_code",
    "product_servicecode",
    "pricing_unit",
    "pricing_public_on_demand_rate",
    "pricing_public_on_demand_cost",
    "resource_tags",
)
CUR_SUFFIX = {
    "input": "input-tokens",
    "output": "output-tokens",
    "cache_read": "cache-read-input-token-count",
    "cache_write_5m": "cache-write-input-token-count",
    "cache_write_1h": "cache-write-input-token-count",
}
AWS_ACCOUNT = "123456789012"


def cur_rows(month: str, lines: list[dict[str, Any]]) -> list[list[Any]]:
    start, end = month_bounds(month)
    period = (rfc3339(start), rfc3339(end))
    inv = invoice_id("aws", month)
    groups = rollup(
        lines,
        lambda r: (
            r["date"],
            f"USE1-{MODELS[r['spec']].bedrock_tag}-{CUR_SUFFIX[r['component']]}",
            r["rate"],
            r["team"],
            r["model"],
        ),
        ("quantity", "cost"),
    )
    rows = []
    for (day, usage_type, rate, team, model), g in sorted(
        groups.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2], str(kv[0][3]))
    ):
        rows.append(
            [
                *period,
                AWS_ACCOUNT,
                inv,
                "Amazon Web Services, Inc.",
                "Anniversary",
                AWS_ACCOUNT,
                "Usage",
                rfc3339(day),
                rfc3339(day + dt.timedelta(1)),
                "AmazonBedrock",
                usage_type,
                "InvokeModelInference",
                g["quantity"],
                rate,
                g["cost"],
                g["cost"],
                "USD",
                f"{model} {usage_type.split('-', 2)[2].replace('-', ' ')}",
                f"arn:aws:bedrock:us-east-1::foundation-model/{model}",
                f"arn:aws:iam::{AWS_ACCOUNT}:role/{team}-service",
                "us-east-1",
                "AmazonBedrock",
                "Tokens",
                rate,
                g["cost"],
                jsonio.dumps({"user:team": team}),
            ]
        )
    summary = month_summary(lines)
    for kind, amount, desc in (
        ("Credit", summary["credit"], "AWS Promotional Credit"),
        ("Tax", summary["tax"], "Tax for product code AmazonBedrock"),
    ):
        rows.append(
            [
                *period,
                AWS_ACCOUNT,
                inv,
                "Amazon Web Services, Inc.",
                "Anniversary",
                AWS_ACCOUNT,
                kind,
                period[0],
                period[1],
                "AmazonBedrock",
                "",
                "",
                None,
                None,
                amount,
                amount,
                "USD",
                desc,
                "",
                "",
                "us-east-1",
                "AmazonBedrock",
                None,
                None,
                None,
                "{}",
            ]
        )
    return rows


# --------------------------------------------------------------------------- Google Cloud
GOOGLE_TYPE = {
    "input": "Input Text Tokens",
    "cache_read": "Cached Input Text Tokens",
    "output": "Output Text Tokens",
}


def google_sku(r: dict[str, Any]) -> str:
    spec = MODELS[r["spec"]]
    if r["component"] == "video":
        return f"{spec.display} Video Generation with Audio"
    batch = " Batch" if r["batch"] else ""
    long = " Long Context" if r["long"] else ""
    return f"{spec.display}{batch} {GOOGLE_TYPE[r['component']]}{long}"


def google_rows(month: str, lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    start, _ = month_bounds(month)
    invoice_month = f"{start.year:04d}{start.month:02d}"
    groups = rollup(
        lines,
        lambda r: (r["date"], google_sku(r), r["feature"], r["team"], r["unit"]),
        ("quantity", "cost"),
    )
    service = {"id": "C7E2-9256-1C43", "description": "Vertex AI"}
    project = {"id": "acme-prod", "number": "123456789012", "name": "acme-prod"}
    location = {"location": "us-central1", "country": "US", "region": "us-central1", "zone": None}
    out = []
    for (day, sku, feature, team, unit), g in sorted(groups.items()):
        sku_id = "-".join(_sha(sku, 12).upper()[i : i + 4] for i in (0, 4, 8))
        seconds = unit == "seconds"
        out.append(
            {
                "billing_account_id": "01A2B3-C4D5E6-F7A8B9",
                "service": service,
                "sku": {"id": sku_id, "description": sku},
                "usage_start_time": rfc3339(day),
                "usage_end_time": rfc3339(day + dt.timedelta(1)),
                "project": project,
                "labels": [{"key": "feature", "value": feature}, {"key": "team", "value": team}],
                "system_labels": [],
                "location": location,
                "export_time": f"{(day + dt.timedelta(1)).isoformat()}T06:00:00Z",
                "cost": g["cost"],
                "currency": "USD",
                "currency_conversion_rate": Decimal(1),
                "usage": {
                    "amount": g["quantity"],
                    "unit": "seconds" if seconds else "count",
                    "amount_in_pricing_units": Decimal(g["quantity"])
                    if seconds
                    else Decimal(g["quantity"]) / 1_000_000,
                    "pricing_unit": "seconds" if seconds else "1M tokens",
                },
                "credits": [
                    {
                        "name": "Vertex AI promotional credit",
                        "amount": -(g["cost"] * CREDIT_RATE),
                        "full_name": "Promotional credit: Vertex AI",
                        "id": "promo-vertex-2025",
                        "type": "PROMOTION",
                    }
                ],
                "invoice": {"month": invoice_month, "publisher_type": "Google"},
                "cost_type": "regular",
                "adjustment_info": None,
                "cost_at_list": g["cost"],
                "transaction_type": "GOOGLE",
                "seller_name": "Google",
            }
        )
    summary = month_summary(lines)
    if lines:
        last = max(r["date"] for r in lines)
        out.append(
            {
                "billing_account_id": "01A2B3-C4D5E6-F7A8B9",
                "service": service,
                "sku": {"id": "TAX0-0000-0000", "description": "Tax: US sales tax"},
                "usage_start_time": rfc3339(start),
                "usage_end_time": rfc3339(last + dt.timedelta(1)),
                "project": project,
                "labels": [],
                "system_labels": [],
                "location": location,
                "export_time": f"{(last + dt.timedelta(1)).isoformat()}T06:00:00Z",
                "cost": summary["tax"],
                "currency": "USD",
                "currency_conversion_rate": Decimal(1),
                "usage": {
                    "amount": 0,
                    "unit": None,
                    "amount_in_pricing_units": 0,
                    "pricing_unit": None,
                },
                "credits": [],
                "invoice": {"month": invoice_month, "publisher_type": "Google"},
                "cost_type": "tax",
                "adjustment_info": None,
                "cost_at_list": summary["tax"],
                "transaction_type": "GOOGLE",
                "seller_name": "Google",
            }
        )
    return out


# --------------------------------------------------------------------------- FOCUS 1.2
FOCUS_COLUMNS = (
    "BilledCost",
    "BillingAccountId",
    "BillingAccountName",
    "BillingCurrency",
    "BillingPeriodEnd",
    "BillingPeriodStart",
    "ChargeCategory",
    "ChargeClass",
    "ChargeDescription",
    "ChargeFrequency",
    "ChargePeriodEnd",
    "ChargePeriodStart",
    "ConsumedQuantity",
    "ConsumedUnit",
    "ContractedCost",
    "ContractedUnitPrice",
    "EffectiveCost",
    "InvoiceIssuerName",
    "ListCost",
    "ListUnitPrice",
    "PricingCategory",
    "PricingQuantity",
    "PricingUnit",
    "ProviderName",
    "PublisherName",
    "RegionId",
    "RegionName",
    "ServiceCategory",
    "ServiceName",
    "ServiceSubcategory",
    "SkuId",
    "SkuPriceId",
    "SubAccountId",
    "SubAccountName",
    "Tags",
    "SkuMeter",
    "SkuPriceDetails",
    "InvoiceId",
    "CommitmentDiscountStatus",
    "PricingCurrency",
    "PricingCurrencyListUnitPrice",
    "PricingCurrencyContractedUnitPrice",
    "PricingCurrencyEffectiveCost",
)
FOCUS_METER = {
    "input": "Input Tokens",
    "cache_read": "Cached Input Tokens",
    "output": "Output Tokens",
    "image": "Images",
    "video": "Video Seconds",
}


def _f(value: Decimal | int | None) -> str | None:
    return None if value is None else jsonio.dec_text(Decimal(value), point=True)


def focus_rows(provider: str, month: str, lines: list[dict[str, Any]]) -> list[list[Any]]:
    start, end = month_bounds(month)
    inv = invoice_id(provider, month)
    issuer = org.ISSUERS[provider]
    account = ("org-acme-openai", "Acme AI")
    groups = rollup(
        lines,
        lambda r: (
            r["date"],
            r["model"],
            r["component"],
            r["rate"],
            r["team"],
            "batch" if r["batch"] else r["service_tier"],
            r["unit"],
            r["image_size"],
            r["image_quality"],
        ),
        ("quantity", "cost"),
    )
    rows = []

    def row(**kw: Any) -> list[Any]:
        base: dict[str, Any] = dict.fromkeys(FOCUS_COLUMNS)
        base.update(
            BillingAccountId=account[0],
            BillingAccountName=account[1],
            BillingCurrency="USD",
            BillingPeriodStart=rfc3339(start),
            BillingPeriodEnd=rfc3339(end),
            InvoiceIssuerName=issuer,
            ProviderName=issuer,
            PublisherName=issuer,
            ServiceCategory="AI and Machine Learning",
            ServiceName=f"{issuer} API",
            ServiceSubcategory="Generative AI",
            InvoiceId=inv,
        )
        base.update(kw)
        return [base[c] for c in FOCUS_COLUMNS]

    for (day, model, comp, rate, team, context, unit, size, quality), g in sorted(
        groups.items(), key=lambda kv: tuple(str(x) for x in kv[0])
    ):
        per_million = unit == "tokens"
        scale = Decimal(1_000_000) if per_million else Decimal(1)
        pricing_qty = Decimal(g["quantity"]) / scale
        price = rate * scale
        variant = ":".join(v for v in (size, quality) if v)
        sku = f"{model}:{comp}" + (f":{variant}" if variant else "")
        details = {"x_Model": model, "x_TokenType": comp, "x_ServiceTier": context}
        if variant:
            details["x_Variant"] = variant
        rows.append(
            row(
                BilledCost=_f(g["cost"]),
                EffectiveCost=_f(g["cost"]),
                ListCost=_f(g["cost"]),
                ContractedCost=_f(g["cost"]),
                ChargeCategory="Usage",
                ChargeDescription=f"{model} {TYPE_LABEL[comp]}",
                ChargeFrequency="Usage-Based",
                ChargePeriodStart=rfc3339(day),
                ChargePeriodEnd=rfc3339(day + dt.timedelta(1)),
                ConsumedQuantity=_f(g["quantity"]),
                ConsumedUnit={"tokens": "Tokens", "images": "Images", "seconds": "Seconds"}[unit],
                ContractedUnitPrice=_f(price),
                ListUnitPrice=_f(price),
                PricingCategory="Standard",
                PricingQuantity=_f(pricing_qty),
                PricingUnit={"tokens": "1000000 Tokens", "images": "Images", "seconds": "Seconds"}[
                    unit
                ],
                SkuId=sku,
                SkuPriceId=f"{sku}:{context}",
                SubAccountId=project_id(team),
                SubAccountName=f"{team}",
                Tags=jsonio.dumps({"team": team}),
                SkuMeter=FOCUS_METER[comp],
                SkuPriceDetails=jsonio.dumps(details),
                PricingCurrency="USD",
                PricingCurrencyListUnitPrice=_f(price),
                PricingCurrencyContractedUnitPrice=_f(price),
                PricingCurrencyEffectiveCost=_f(g["cost"]),
            )
        )
    summary = month_summary(lines)
    period = {"ChargePeriodStart": rfc3339(start), "ChargePeriodEnd": rfc3339(end)}
    one_off = {"ChargeFrequency": "One-Time", "PricingCurrency": "USD"}
    rounding = summary["usage"] - summary["usage_exact"]
    extra = [
        ("Credit", summary["credit"], "Promotional credit"),
        ("Tax", summary["tax"], f"Sales tax ({int(TAX_RATE * 100)}%)"),
    ]
    if rounding:
        extra.append(("Adjustment", rounding, "Invoice rounding to the cent"))
    for category, amount, desc in extra:
        a = _f(amount)
        rows.append(
            row(
                BilledCost=a,
                EffectiveCost=a,
                ListCost=a,
                ContractedCost=a,
                ChargeCategory=category,
                ChargeDescription=desc,
                PricingCurrencyEffectiveCost=a,
                **period,
                **one_off,
            )
        )
    return rows


# --------------------------------------------------------------------------- driver
@dataclass
class Reports:
    files: dict[str, int]  # relative path -> records (results, rows or lines)
    agg_rows: list[dict[str, Any]]  # billable usage, finely grouped
    lines: list[dict[str, Any]]  # exact cost lines (component, quantity, cost, rate)
    months: dict[str, dict[str, dict[str, Decimal]]]  # month -> provider -> month_summary
    mismatches: list[dict[str, Any]]
    billing_faults: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


def _apply_mismatch(rows: list[dict[str, Any]], amount: Decimal, rel: str) -> dict[str, Any]:
    usage = [i for i, r in enumerate(rows) if r["charge_category"] == "usage"]
    i = max(usage, key=lambda j: (rows[j]["amount_usd"], -j))
    original = rows[i]["amount_usd"]
    rows[i]["amount_usd"] = original + amount
    return {
        "provider": rows[i]["provider"],
        "amount": str(amount),
        "file": rel,
        "invoice_id": rows[i]["invoice_id"],
        "line_id": rows[i]["line_id"],
        "csv_line": i + 2,  # the header is line 1
        "original_amount": jsonio.cents(original),
        "new_amount": jsonio.cents(rows[i]["amount_usd"]),
    }


BYPASS_TEAM = "shadow-it"  # a team whose traffic never goes through the gateway
BYPASS_PROVIDERS = ("openai", "anthropic")  # their reports name a per-team account
TIER_PROVIDERS = ("openai",)  # the only reports here that name the service tier


def _scale(line: dict[str, Any], factor: Decimal) -> Decimal:
    """Multiply a cost line by factor in place; returns the extra cost."""
    before: Decimal = line["cost"]
    line["cost"] = before * factor
    line["rate"] = (line["cost"] / line["quantity"]).normalize()
    return before * factor - before


def apply_billing_faults(
    agg_rows: list[dict[str, Any]], lines: list[dict[str, Any]], faults: BillingFaults
) -> dict[str, list[dict[str, Any]]]:
    """Change what the providers bill (in place): price changes, bypass traffic, tiers."""
    recorded: dict[str, list[dict[str, Any]]] = {
        "price_changes": [],
        "bypass": [],
        "tier_mismatch": [],
    }
    for provider, model, since, factor in faults.price_changes:
        hit = [
            r
            for r in lines
            if r["provider"] == provider and model in r["model"] and r["date"] >= since
        ]
        if not hit:
            raise ValueError(f"price change: no {provider} usage of {model!r} from {since}")
        extra = sum((_scale(r, factor) for r in hit), Decimal(0))
        for row in agg_rows:
            if row["provider"] == provider and model in row["model"] and row["date"] >= since:
                row["cost_usd"] = Decimal(row["cost_usd"]) * factor
        recorded["price_changes"].append(
            {
                "provider": provider,
                "model": model,
                "since": since.isoformat(),
                "factor": str(factor),
                "first_billed_day": min(r["date"] for r in hit).isoformat(),
                "extra_usd": jsonio.dec_text(extra),
            }
        )
    for provider, day in faults.bypass:
        if provider not in BYPASS_PROVIDERS:
            raise ValueError(f"bypass: provider must be one of {BYPASS_PROVIDERS}")
        extra_lines = [
            {**r, "team": BYPASS_TEAM}
            for r in lines
            if r["provider"] == provider and r["date"] == day
        ]
        extra_rows = [
            {**r, "team": BYPASS_TEAM}
            for r in agg_rows
            if r["provider"] == provider and r["date"] == day
        ]
        if not extra_lines:
            raise ValueError(f"bypass: no {provider} usage on {day}")
        lines += extra_lines
        agg_rows += extra_rows
        account = project_id(BYPASS_TEAM) if provider == "openai" else workspace_id(BYPASS_TEAM)
        recorded["bypass"].append(
            {
                "provider": provider,
                "date": day.isoformat(),
                "account_id": account,
                "tokens": sum(r["input_tokens"] + r["output_tokens"] for r in extra_rows),
                "cost_usd": jsonio.dec_text(sum((r["cost"] for r in extra_lines), Decimal(0))),
            }
        )
    for provider, day in faults.tier_mismatch:
        if provider not in TIER_PROVIDERS:
            raise ValueError(f"tier mismatch: provider must be one of {TIER_PROVIDERS}")

        def standard(r: dict[str, Any], provider: str = provider, day: dt.date = day) -> bool:
            return (
                r["provider"] == provider
                and r["date"] == day
                and not r["batch"]
                and r["service_tier"] == "default"
            )

        hit = [r for r in lines if standard(r) and r["unit"] == "tokens"]
        if not hit:
            raise ValueError(f"tier mismatch: no default-tier {provider} usage on {day}")
        extra = sum((_scale(r, Decimal(2)) for r in hit), Decimal(0))
        models = {r["model"] for r in hit}
        for r in hit:
            r["service_tier"] = "priority"
        for row in agg_rows:
            if standard(row) and row["model"] in models:
                row["service_tier"] = "priority"
        recorded["tier_mismatch"].append(
            {
                "provider": provider,
                "date": day.isoformat(),
                "models": sorted(models),
                "extra_usd": jsonio.dec_text(extra),
            }
        )
    return recorded


def _duplicate_line(rows: list[dict[str, Any]], rel: str) -> dict[str, Any]:
    usage = [i for i, r in enumerate(rows) if r["charge_category"] == "usage"]
    i = max(usage, key=lambda j: (rows[j]["amount_usd"], -j))
    copy = {**rows[i], "line_id": f"{rows[i]['invoice_id']}-{len(rows) + 1:04d}"}
    rows.append(copy)
    return {
        "provider": copy["provider"],
        "file": rel,
        "invoice_id": copy["invoice_id"],
        "line_id": rows[i]["line_id"],
        "duplicate_line_id": copy["line_id"],
        "amount": jsonio.cents(copy["amount_usd"]),
    }


def _correction(mismatch: dict[str, Any], rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A correction invoice that takes back an invoice mismatch."""
    original = next(r for r in rows if r["line_id"] == mismatch["line_id"])
    inv = original["invoice_id"][: -len("0001")] + "0002"
    return [
        {
            **{k: None for k in INVOICE_LINE_SCHEMA.names()},
            "invoice_id": inv,
            "provider": original["provider"],
            "billing_period_start": original["billing_period_start"],
            "billing_period_end": original["billing_period_end"],
            "line_id": f"{inv}-0001",
            "description": f"Correction: {original['description']}",
            "charge_category": "usage",
            "model": original["model"],
            "amount_usd": -Decimal(mismatch["amount"]),
            "currency": "USD",
            "is_correction": True,
            "corrects_invoice_id": original["invoice_id"],
        }
    ]


def write_reports(
    out: Path,
    priced: pl.DataFrame,
    days: list[dt.date],
    mismatch: Sequence[tuple[str, Decimal]] = (),
    faults: BillingFaults | None = None,
) -> Reports:
    """Write every provider report and invoice."""
    agg = billable(priced)
    agg_rows = agg.to_dicts()
    lines = cost_lines(agg)
    billing_faults = BillingFaults() if faults is None else faults
    recorded = apply_billing_faults(agg_rows, lines, billing_faults)
    recorded.update({"duplicate_billing": [], "restated": [], "currency": []})
    months: dict[str, list[dt.date]] = defaultdict(list)
    for d in days:
        months[month_key(d)].append(d)
    files: dict[str, int] = {}
    flattened = {d for i, d in enumerate(days) if i % 3 == 1}
    summaries: dict[str, dict[str, dict[str, Decimal]]] = defaultdict(dict)
    mismatched: set[str] = set()
    duplicated: set[str] = set()
    mismatches: list[dict[str, Any]] = []

    def of(provider: str, month: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [r for r in rows if r["provider"] == provider and month_key(r["date"]) == month]

    def count_results(pages: list[dict[str, Any]]) -> int:
        return sum(len(b["results"]) for p in pages for b in p["data"])

    for month, mdays in months.items():
        rel = f"openai/usage-completions-{month}.json"
        pages = openai_usage(of("openai", month, agg_rows), mdays)
        jsonio.write_json(out / rel, pages)
        files[rel] = count_results(pages)
        rel = f"openai/costs-{month}.json"
        pages = openai_costs(of("openai", month, lines), mdays)
        jsonio.write_json(out / rel, pages)
        files[rel] = count_results(pages)
        rel = f"anthropic/usage-{month}.json"
        pages = anthropic_usage(of("anthropic", month, agg_rows), mdays, flattened)
        jsonio.write_json(out / rel, pages)
        files[rel] = count_results(pages)
        rel = f"anthropic/cost-{month}.json"
        pages = anthropic_costs(of("anthropic", month, lines), mdays)
        jsonio.write_json(out / rel, pages)
        files[rel] = count_results(pages)
        rel = f"aws/cur-{month}.csv"
        files[rel] = jsonio.write_csv(
            out / rel, CUR_COLUMNS, cur_rows(month, of("aws", month, lines))
        )
        rel = f"google/billing-{month}.jsonl"
        files[rel] = jsonio.write_jsonl(out / rel, google_rows(month, of("google", month, lines)))
        rel = f"focus/focus-{month}.csv"
        files[rel] = jsonio.write_csv(
            out / rel, FOCUS_COLUMNS, focus_rows("openai", month, of("openai", month, lines))
        )
        for provider in sorted({r["provider"] for r in lines}):
            plines = of(provider, month, lines)
            if not plines:
                continue
            rel = f"invoices/invoice-{provider}-{month}.csv"
            fx = next((f for f in billing_faults.currency if f[0] == provider), None)
            if fx is None:
                rows = invoice_lines(provider, month, plines)
            else:
                billed = in_currency(plines, fx[2])
                rows = invoice_lines(provider, month, billed, fx[1])
                recorded["currency"].append(
                    {
                        "provider": provider,
                        "currency": fx[1],
                        "usd_per_unit": str(fx[2]),
                        "file": rel,
                        "invoice_id": rows[0]["invoice_id"],
                        "lines": len(rows),
                        **{
                            f"{k}_in_currency": jsonio.cents(v)
                            for k, v in month_summary(billed).items()
                            if k != "usage_exact"
                        },
                    }
                )
            for p, amount in mismatch:
                if p == provider and provider not in mismatched:
                    mismatched.add(provider)
                    mismatches.append(_apply_mismatch(rows, amount, rel))
                    if provider in billing_faults.restated:
                        fix = _correction(mismatches[-1], rows)
                        crel = f"invoices/invoice-{provider}-{month}-correction.csv"
                        files[crel] = write_invoice(out / crel, fix)
                        recorded["restated"].append(
                            {**mismatches[-1], "file": crel, "invoice_id": fix[0]["invoice_id"]}
                        )
            if provider in billing_faults.duplicate_billing and provider not in duplicated:
                duplicated.add(provider)
                recorded["duplicate_billing"].append(_duplicate_line(rows, rel))
            files[rel] = write_invoice(out / rel, rows)
            summaries[month][provider] = month_summary(plines)
    return Reports(files, agg_rows, lines, dict(summaries), mismatches, recorded)


def flattened_buckets(days: list[dt.date]) -> list[dict[str, str]]:
    return [
        {"file": f"anthropic/usage-{month_key(d)}.json", "starting_at": rfc3339(d)}
        for i, d in enumerate(days)
        if i % 3 == 1
    ]
