"""Finance reconciliation: our repriced requests vs provider usage reports vs invoices.

Three views, all pure `LazyFrame -> LazyFrame`:

* `expected_view(priced)`: what we expect to be billed, from repriced requests. Billable =
  status `success` and not a gateway cache hit (the provider never saw a cached call; failed
  calls are not billed). Grain: provider x UTC day x model group.
* `reported_view(usage, config)`: what the provider says (PROVIDER_USAGE_SCHEMA). Per
  provider, tokens come from ONE source kind and money from ONE source kind (preference
  lists below), so an OpenAI usage pull, a Costs pull and a FOCUS file never double count.
  Non-usage lines (tax, credit, refund, adjustment, purchase) become bill components.
* `invoice_view(lines)`: invoice lines (INVOICE_LINE_SCHEMA) per provider x billing month x
  model group. Correction lines (`is_correction`) are added to the period of the invoice they
  correct (`corrects_invoice_id`), so a restatement replaces what it corrects.

`reconcile_daily` compares expected with reported per day (provisional, as reports arrive);
`reconcile_month` sums the days and adds the invoice. Each output line carries exact
`Decimal(38, 18)` dollars: `difference_usd` = (invoiced, else reported) - expected, split
into category columns (`<category>_usd`) that sum to it exactly; what no rule explains is in
`unexplained_usd`, never hidden.

Models join on `model_group` (`model_group()`): the family name of `transforms.models`
with separators unified (`claude-3.5-haiku` = `claude-3-5-haiku`), `-latest`, a trailing
`-0` and `-generate-NNN` dropped (`veo-3.0-generate-001` = `Veo 3`), then the config's
`model_aliases`. Reported money without a model (`Image models`) is `(unattributed)` and
absorbs the expected models of that provider and day the report has no line for.

Tolerance per provider: a line matches when |difference| <= max(abs_usd, rel x |expected|);
tokens when |gap| <= max(tokens_abs, tokens_rel x expected tokens). Invoice usage lines are
rounded to the cent, so up to one cent per invoice line is `rounding`.

Currencies: an invoice line's amounts are as billed, in its `currency`; `invoice_view`
converts non-USD lines with `fx_rates[currency][billing month]` (exact) before summing, and
what a minor unit of that currency per line explains is `currency`. Lines without a rate stay
out of every dollar sum and become their own `currency` variance line. Media: invoice lines in
images or seconds are counted against our `image_count` / `video_seconds` like tokens.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

import polars as pl

from transforms.models import model_canonical
from transforms.schema import INVOICE_LINE_SCHEMA, MONEY, canonical_provider, schema_of

UNATTRIBUTED = "(unattributed)"
CENT = Decimal("0.01")
# A rate needs no more than 6 decimals; keeps Decimal products inside 38 digits.
RATE = pl.Decimal(38, 6)
# Exchange rates: up to 10 decimals, so that amount x rate stays exact within 38 digits.
FX_RATE = pl.Decimal(38, 10)
# Invoice units that count media instead of tokens (reconciled against image_count and
# video_seconds of our requests, like tokens).
IMAGE_UNITS = ("image", "images")
SECOND_UNITS = ("second", "seconds", "video seconds", "video second", "sec", "s")

# Variance categories, in the order the report lists them.
PROBLEM_CATEGORIES = (
    "missing_gateway_logs",
    "gateway_bypass",
    "price_change",
    "unpriced_model",
    "batch_tier_mismatch",
    "duplicate_billing",
    "currency",
)
BILL_CATEGORIES = ("credit", "tax", "adjustment")
BENIGN_CATEGORIES = ("rounding", "minor_difference")
CATEGORIES = (*PROBLEM_CATEGORIES, *BILL_CATEGORIES, *BENIGN_CATEGORIES, "unexplained")
STATUSES = ("matched", "within_tolerance", "variance", "unexplained")

# Which report a provider's tokens and money come from, best first. Billing exports carry
# both on the same line; the API pulls split them.
TOKEN_SOURCES = ("aws_cur", "gcp_billing", "openai_usage", "anthropic_usage", "focus")
MONEY_SOURCES = ("aws_cur", "gcp_billing", "focus", "openai_costs", "anthropic_cost")
TOKEN_UNITS = {"tokens": 1, "token": 1, "1k tokens": 1_000, "1m tokens": 1_000_000}


@dataclass(frozen=True)
class Tolerance:
    abs_usd: Decimal = Decimal("0.01")
    rel: Decimal = Decimal("0.001")
    tokens_abs: int = 0
    tokens_rel: Decimal = Decimal("0")

    def as_dict(self) -> dict[str, str]:
        return {
            "abs_usd": str(self.abs_usd),
            "rel": str(self.rel),
            "tokens_abs": str(self.tokens_abs),
            "tokens_rel": str(self.tokens_rel),
        }


@dataclass(frozen=True)
class ReconcileConfig:
    """Tolerances per provider, the accounts our gateway uses, model name aliases."""

    default: Tolerance = Tolerance()
    tolerances: Mapping[str, Tolerance] = field(default_factory=dict)
    # provider -> account ids (projects, workspaces, keys) the gateway sends traffic through;
    # usage on any other account of that provider bypasses the gateway.
    known_accounts: Mapping[str, frozenset[str]] = field(default_factory=dict)
    model_aliases: Mapping[str, str] = field(default_factory=dict)
    # currency -> billing month (YYYY-MM) -> USD per one unit of that currency. Invoice lines
    # in another currency are converted with the rate of their billing month; without one
    # they are a `currency` variance, never read as dollars.
    fx_rates: Mapping[str, Mapping[str, Decimal]] = field(default_factory=dict)

    def tolerance(self, provider: str) -> Tolerance:
        return self.tolerances.get(provider, self.default)

    def as_dict(self) -> dict[str, object]:
        return {
            "default": self.default.as_dict(),
            "tolerances": {p: t.as_dict() for p, t in sorted(self.tolerances.items())},
            "known_accounts": {p: sorted(a) for p, a in sorted(self.known_accounts.items())},
            "model_aliases": dict(sorted(self.model_aliases.items())),
            "fx_rates": {
                cur: {m: str(r) for m, r in sorted(months.items())}
                for cur, months in sorted(self.fx_rates.items())
            },
        }


# --------------------------------------------------------------------------- helpers
def model_group(model: pl.Expr, aliases: Mapping[str, str] | None = None) -> pl.Expr:
    """The name both sides join on (see the module docstring)."""
    group = (
        model_canonical(model)
        .str.replace_all(r"[._ ]", "-")
        .str.replace(r"-latest$", "")
        .str.replace(r"-generate-\d+$", "")
        .str.replace(r"-0$", "")
    )
    if aliases:
        group = group.replace({k.lower(): v for k, v in aliases.items()})
    return group


def _money(value: Decimal | int | str) -> pl.Expr:
    return pl.lit(Decimal(value), MONEY)


def _zero() -> pl.Expr:
    return _money(0)


def _tolerance_frame(config: ReconcileConfig, providers: Sequence[str]) -> pl.LazyFrame:
    rows = [(p, config.tolerance(p)) for p in providers]
    return pl.LazyFrame(
        {
            "provider": [p for p, _ in rows],
            "tol_abs": [t.abs_usd for _, t in rows],
            "tol_rel": [t.rel for _, t in rows],
            "tok_abs": [t.tokens_abs for _, t in rows],
            "tok_rel": [t.tokens_rel for _, t in rows],
        },
        schema={
            "provider": pl.String,
            "tol_abs": MONEY,
            "tol_rel": RATE,
            "tok_abs": pl.Int64,
            "tok_rel": RATE,
        },
    )


def _accounts_frame(config: ReconcileConfig) -> pl.LazyFrame:
    rows = [(p, a) for p, accts in config.known_accounts.items() for a in sorted(accts)]
    return pl.LazyFrame(
        {"provider": [p for p, _ in rows], "account_id": [a for _, a in rows]},
        schema={"provider": pl.String, "account_id": pl.String},
    )


def _fx_frame(config: ReconcileConfig) -> pl.LazyFrame:
    rows = [(cur, m, r) for cur, months in config.fx_rates.items() for m, r in months.items()]
    return pl.LazyFrame(
        {
            "currency": [cur.upper() for cur, _, _ in rows],
            "month": [m for _, m, _ in rows],
            "_rate": [r for _, _, r in rows],
        },
        schema={"currency": pl.String, "month": pl.String, "_rate": FX_RATE},
    )


def month_bounds(month: str) -> tuple[dt.date, dt.date]:
    """`YYYY-MM` -> (first day, first day of the next month)."""
    start = dt.date.fromisoformat(month + "-01")
    end = dt.date(start.year + (start.month == 12), start.month % 12 + 1, 1)
    return start, end


def _month_of(day: pl.Expr) -> pl.Expr:
    return day.dt.strftime("%Y-%m")


# --------------------------------------------------------------------------- expected
# The additive measures of `expected_view`, summed again whenever it is rolled up.
EXPECTED_SUMMED = (
    "e_requests",
    "e_tokens",
    "e_input_tokens",
    "e_output_tokens",
    "e_batch_tokens",
    "e_priority_tokens",
    "e_flex_tokens",
    "e_cost",
    "e_unpriced",
    "e_usage_missing",
    "e_images",
    "e_seconds",
)


def expected_view(priced: pl.LazyFrame, config: ReconcileConfig | None = None) -> pl.LazyFrame:
    """Billable repriced requests per provider, day and model group.

    `e_unpriced` counts billable requests with tokens but no price (unknown model, no price
    at that date, ...): the provider bills them, we cannot say what for. Requests whose usage
    is missing are counted apart (`e_usage_missing`): we do not know their tokens either."""
    cfg = config or ReconcileConfig()
    s = priced.collect_schema()

    def col(name: str, dtype: pl.DataType) -> pl.Expr:
        return pl.col(name) if name in s else pl.lit(None, dtype)

    tokens = col("input_tokens", pl.Int64()).fill_null(0) + col(
        "output_tokens", pl.Int64()
    ).fill_null(0)
    tier = col("service_tier", pl.String()).fill_null("default")
    batch = col("batch", pl.Boolean()).fill_null(False)
    reason = col("unpriced_reason", pl.String())
    billable = priced.filter(
        (col("status", pl.String()).fill_null("success") == "success")
        & ~col("gateway_cache_hit", pl.Boolean()).fill_null(False)
    )
    # Sums per distinct (provider, model, day, batch, tier, reason) first: the provider
    # aliases and model groups are string work that costs more per row than every sum, and
    # a day of millions of requests has only hundreds of such contexts.
    contexts = (
        billable.select(
            col("provider", pl.String()),
            col("model", pl.String()),
            pl.col("started_at").dt.date().alias("date"),
            batch.alias("_batch"),
            tier.alias("_tier"),
            reason.alias("_reason"),
            tokens.alias("_tok"),
            col("input_tokens", pl.Int64()).fill_null(0).alias("_in"),
            col("output_tokens", pl.Int64()).fill_null(0).alias("_out"),
            pl.col("cost_usd").cast(MONEY).alias("_cost"),
            col("image_count", pl.Int64()).cast(pl.Float64).alias("_images"),
            col("video_seconds", pl.Float64()).cast(pl.Float64).alias("_seconds"),
        )
        .group_by("provider", "model", "date", "_batch", "_tier", "_reason")
        .agg(
            pl.len().cast(pl.Int64).alias("_n"),
            pl.col("_tok", "_in", "_out", "_cost", "_images", "_seconds").sum(),
        )
    )
    reason = pl.col("_reason")
    unpriced = (reason.is_not_null() & (reason != "usage_missing")).fill_null(False)
    return (
        contexts.with_columns(
            # Gateways log providers their own way (`vertex_ai`, `bedrock`); reports use the
            # canonical ids, so the two only meet after the alias mapping.
            canonical_provider(pl.col("provider")).alias("provider"),
            model_group(pl.col("model"), cfg.model_aliases).alias("model_group"),
            unpriced.alias("_unpriced"),
            (reason == "usage_missing").fill_null(False).alias("_missing"),
        )
        .group_by("provider", "date", "model_group")
        .agg(
            pl.col("_n").sum().alias("e_requests"),
            pl.col("_tok").sum().alias("e_tokens"),
            pl.col("_in").sum().alias("e_input_tokens"),
            pl.col("_out").sum().alias("e_output_tokens"),
            pl.col("_tok").filter(pl.col("_batch")).sum().alias("e_batch_tokens"),
            pl.col("_tok")
            .filter(~pl.col("_batch") & (pl.col("_tier") == "priority"))
            .sum()
            .alias("e_priority_tokens"),
            pl.col("_tok")
            .filter(~pl.col("_batch") & (pl.col("_tier") == "flex"))
            .sum()
            .alias("e_flex_tokens"),
            pl.col("_cost").sum().alias("e_cost"),
            pl.col("_images").sum().alias("e_images"),
            pl.col("_seconds").sum().alias("e_seconds"),
            pl.col("_n").filter(pl.col("_unpriced")).sum().alias("e_unpriced"),
            pl.col("_n").filter(pl.col("_missing")).sum().alias("e_usage_missing"),
            reason.filter(pl.col("_unpriced")).unique().sort().str.join(",").alias("e_reasons"),
            pl.col("model").unique().sort().str.join(",").alias("e_models"),
        )
    )


# --------------------------------------------------------------------------- reported
def _line_kind(text: pl.Expr) -> pl.Expr:
    """Usage, or the kind of bill component a report line or invoice line is."""
    t = text.str.to_lowercase().str.strip_chars()
    return (
        pl.when(t.str.starts_with("tax"))
        .then(pl.lit("tax"))
        .when(t.str.starts_with("credit") | t.str.starts_with("refund"))
        .then(pl.lit("credit"))
        .when(t.str.contains("round"))
        .then(pl.lit("rounding"))
        .when(
            t.str.starts_with("adjustment")
            | t.str.starts_with("purchase")
            | t.str.starts_with("correction")
            | t.str.starts_with("fee")
        )
        .then(pl.lit("adjustment"))
        .otherwise(pl.lit("usage"))
    )


def _pick_source(frame: pl.LazyFrame, has: pl.Expr, preference: Sequence[str]) -> pl.LazyFrame:
    """Per provider, the source kind to trust for a measure (best in `preference`)."""
    rank = pl.col("source_kind").replace_strict(
        {k: i for i, k in enumerate(preference)}, default=len(preference), return_dtype=pl.Int64
    )
    return (
        frame.filter(has)
        .select("provider", "source_kind")
        .unique()
        .with_columns(rank.alias("_rank"))
        .sort("provider", "_rank", "source_kind")
        .group_by("provider", maintain_order=True)
        .first()
        .drop("_rank")
    )


@dataclass(frozen=True)
class ReportedViews:
    usage: pl.LazyFrame  # provider, date, model_group: tokens and money
    bill: pl.LazyFrame  # provider, month, kind: credit / tax / rounding / adjustment
    sources: pl.LazyFrame  # provider, token_source, money_source


def reported_view(usage: pl.LazyFrame, config: ReconcileConfig | None = None) -> ReportedViews:
    cfg = config or ReconcileConfig()
    base = usage.with_columns(
        pl.coalesce(pl.col("source_kind"), pl.col("source"), pl.lit("?")).alias("source_kind"),
        _line_kind(pl.col("line_item").fill_null("")).alias("_kind"),
    )
    has_tokens = pl.col("input_tokens").is_not_null() | pl.col("output_tokens").is_not_null()
    has_money = pl.col("cost_usd").is_not_null()
    tok_src = _pick_source(base, has_tokens, TOKEN_SOURCES).rename({"source_kind": "token_source"})
    money_src = _pick_source(base, has_money, MONEY_SOURCES).rename({"source_kind": "money_source"})
    sources = tok_src.join(money_src, on="provider", how="full", coalesce=True)
    known = _accounts_frame(cfg)
    configured = known.select("provider").unique().with_columns(pl.lit(True).alias("_cfg"))
    marked = (
        base.join(sources, on="provider", how="left")
        .join(
            known.with_columns(pl.lit(True).alias("_known")),
            on=["provider", "account_id"],
            how="left",
        )
        .join(configured, on="provider", how="left")
        .with_columns(
            (pl.col("_cfg").fill_null(False) & pl.col("_known").is_null()).alias("_bypass"),
            # The adapters already resolved billing names (`Claude4.5Sonnet`) to families.
            pl.when(pl.col("model").is_null() & pl.col("model_canonical").is_null())
            .then(pl.lit(UNATTRIBUTED))
            .otherwise(
                model_group(
                    pl.coalesce(pl.col("model_canonical"), pl.col("model")), cfg.model_aliases
                )
            )
            .alias("model_group"),
            (pl.col("input_tokens").fill_null(0) + pl.col("output_tokens").fill_null(0)).alias(
                "_tok"
            ),
            pl.col("batch").fill_null(False).alias("_batch"),
            pl.col("service_tier").fill_null("default").alias("_tier"),
        )
    )
    tok_rows = marked.filter(
        (pl.col("source_kind") == pl.col("token_source"))
        & has_tokens
        & (pl.col("_kind") == "usage")
    )
    money_rows = marked.filter(pl.col("source_kind") == pl.col("money_source"))
    keys = ["provider", "date", "model_group"]
    tokens = tok_rows.group_by(keys).agg(
        pl.col("_tok").sum().alias("r_tokens"),
        pl.col("input_tokens").fill_null(0).sum().alias("r_input_tokens"),
        pl.col("output_tokens").fill_null(0).sum().alias("r_output_tokens"),
        pl.col("requests").sum().alias("r_requests"),
        pl.col("_tok").filter(pl.col("_bypass")).sum().alias("r_bypass_tokens"),
        pl.col("_tok").filter(pl.col("_batch")).sum().alias("r_batch_tokens"),
        pl.col("_tok")
        .filter(~pl.col("_batch") & (pl.col("_tier") == "priority"))
        .sum()
        .alias("r_priority_tokens"),
        pl.col("_tok")
        .filter(~pl.col("_batch") & (pl.col("_tier") == "flex"))
        .sum()
        .alias("r_flex_tokens"),
        pl.col("account_id")
        .filter(pl.col("_bypass"))
        .drop_nulls()
        .unique()
        .sort()
        .str.join(",")
        .alias("r_bypass_accounts_tok"),
        pl.col("model").drop_nulls().unique().sort().str.join(",").alias("r_models_tok"),
    )
    money = (
        money_rows.filter(pl.col("_kind") == "usage")
        .group_by(keys)
        .agg(
            pl.col("cost_usd").fill_null(_zero()).sum().alias("r_cost"),
            pl.col("cost_usd")
            .fill_null(_zero())
            .filter(pl.col("_bypass"))
            .sum()
            .alias("r_bypass_cost"),
            pl.col("account_id")
            .filter(pl.col("_bypass"))
            .drop_nulls()
            .unique()
            .sort()
            .str.join(",")
            .alias("r_bypass_accounts"),
            pl.col("model").drop_nulls().unique().sort().str.join(",").alias("r_models"),
        )
    )
    joined = (
        tokens.join(money, on=keys, how="full", coalesce=True)
        .with_columns(
            pl.concat_str(
                [pl.col("r_bypass_accounts"), pl.col("r_bypass_accounts_tok")],
                separator=",",
                ignore_nulls=True,
            )
            .str.split(",")
            .list.unique()
            .list.sort()
            .list.join(",")
            .alias("r_bypass_accounts"),
            pl.coalesce(pl.col("r_models"), pl.col("r_models_tok")).alias("r_models"),
        )
        .drop("r_bypass_accounts_tok", "r_models_tok")
    )
    # Credits carried on usage rows (GCP) are a bill component, as are credit/tax lines.
    inline = money_rows.filter(
        (pl.col("_kind") == "usage") & (pl.col("credits_usd").fill_null(_zero()) != _zero())
    ).select(
        "provider",
        _month_of(pl.col("date")).alias("month"),
        pl.lit("credit").alias("kind"),
        pl.col("credits_usd").alias("amount"),
    )
    lines = money_rows.filter(pl.col("_kind") != "usage").select(
        "provider",
        _month_of(pl.col("date")).alias("month"),
        pl.col("_kind").alias("kind"),
        (pl.col("cost_usd").fill_null(_zero()) + pl.col("credits_usd").fill_null(_zero())).alias(
            "amount"
        ),
    )
    bill = (
        pl.concat([inline, lines])
        .group_by("provider", "month", "kind")
        .agg(pl.col("amount").sum().alias("r_amount"), pl.len().cast(pl.Int64).alias("r_lines"))
    )
    return ReportedViews(usage=joined, bill=bill, sources=sources)


# --------------------------------------------------------------------------- invoices
@dataclass(frozen=True)
class InvoiceViews:
    usage: pl.LazyFrame  # provider, month, model_group
    bill: pl.LazyFrame  # provider, month, kind
    lines: pl.LazyFrame  # every line with month, model_group, kind, duplicate flag
    # Lines in a currency without a configured rate for their month: kept out of the dollar
    # sums (never read as dollars), reported as `currency` lines in their own currency.
    unconverted: pl.LazyFrame | None = None


def _convert(lines: pl.LazyFrame, config: ReconcileConfig) -> pl.LazyFrame:
    """Invoice amounts in USD. `amount_usd` / `unit_price_usd` of a non-USD line are in its
    `currency` (as billed, see docs/data-model.md); they move to `amount_billed` /
    `unit_price_billed` and the USD columns become billed x `_rate` (the configured rate of
    the line's billing month, exact), null when no rate is configured."""
    currency = pl.col("currency").fill_null("USD").str.to_uppercase()
    return (
        lines.with_columns(
            currency.alias("currency"),
            _month_of(pl.col("billing_period_start")).alias("_fx_month"),
        )
        .join(
            _fx_frame(config).rename({"month": "_fx_month"}),
            on=["currency", "_fx_month"],
            how="left",
        )
        .with_columns(
            pl.when(pl.col("currency") == "USD")
            .then(pl.lit(Decimal(1), FX_RATE))
            .otherwise(pl.col("_rate"))
            .alias("_rate"),
            pl.col("amount_usd").alias("amount_billed"),
            pl.col("unit_price_usd").alias("unit_price_billed"),
        )
        .with_columns(
            (pl.col("amount_billed") * pl.col("_rate")).cast(MONEY).alias("amount_usd"),
            (pl.col("unit_price_billed") * pl.col("_rate")).cast(MONEY).alias("unit_price_usd"),
            (pl.col("currency") != "USD").alias("_fx"),
        )
    )


def invoice_view(lines: pl.LazyFrame, config: ReconcileConfig | None = None) -> InvoiceViews:
    cfg = config or ReconcileConfig()
    converted = _convert(lines, cfg)
    unconverted = (
        converted.filter(pl.col("_rate").is_null())
        .with_columns(_month_of(pl.col("billing_period_start")).alias("month"))
        .group_by("provider", "month", "currency")
        .agg(
            pl.col("amount_billed").sum(),
            pl.len().cast(pl.Int64).alias("lines"),
            pl.col("invoice_id").unique().sort().str.join(",").alias("invoices"),
            pl.col("line_id").sort().str.join(",").alias("line_ids"),
        )
    )
    lines = converted.filter(pl.col("_rate").is_not_null())
    originals = (
        lines.filter(~pl.col("is_correction").fill_null(False))
        .group_by("invoice_id")
        .agg(pl.col("billing_period_start").min().alias("_corrected_start"))
    )
    unit = pl.col("unit").str.to_lowercase().str.strip_chars()
    scale = unit.replace_strict(TOKEN_UNITS, default=None, return_dtype=pl.Int64)
    correction = pl.col("is_correction").fill_null(False)
    base = (
        lines.join(
            originals.rename({"invoice_id": "corrects_invoice_id"}),
            on="corrects_invoice_id",
            how="left",
        )
        .with_columns(
            # A correction belongs to the period of the invoice it corrects.
            pl.when(correction & pl.col("_corrected_start").is_not_null())
            .then(pl.col("_corrected_start"))
            .otherwise(pl.col("billing_period_start"))
            .alias("_start"),
            correction.alias("is_correction"),
        )
        .with_columns(
            _month_of(pl.col("_start")).alias("month"),
            pl.when(pl.col("charge_category") == "usage")
            .then(pl.lit("usage"))
            .when(pl.col("charge_category") == "credit")
            .then(pl.lit("credit"))
            .when(pl.col("charge_category") == "tax")
            .then(pl.lit("tax"))
            .when(pl.col("description").str.to_lowercase().str.contains("round"))
            .then(pl.lit("rounding"))
            .otherwise(pl.lit("adjustment"))
            .alias("kind"),
            pl.when(pl.col("model").is_null())
            .then(pl.lit(UNATTRIBUTED))
            .otherwise(model_group(pl.col("model"), cfg.model_aliases))
            .alias("model_group"),
            (pl.col("quantity") * scale).round(0).cast(pl.Int64).alias("_tokens"),
            pl.when(unit.is_in(IMAGE_UNITS))
            .then(pl.col("quantity").cast(pl.Float64))
            .alias("_images"),
            pl.when(unit.is_in(SECOND_UNITS))
            .then(pl.col("quantity").cast(pl.Float64))
            .alias("_seconds"),
        )
    )
    # The same line (description, model, quantity, price, amount) billed twice for a period.
    dup_key = [
        "provider",
        "month",
        "description",
        "model",
        "quantity",
        "unit_price_usd",
        "amount_usd",
    ]
    marked = base.with_columns(
        pl.when(~pl.col("is_correction"))
        .then(pl.int_range(pl.len()).over(dup_key, order_by="line_id") > 0)
        .otherwise(False)
        .alias("is_duplicate")
    )
    # A line whose amount is not its quantity x unit price (beyond a cent of rounding) was
    # misbilled: no price change or usage gap explains that.
    # Checked in the billed currency (its cents), converted after.
    billed = (pl.col("quantity").cast(MONEY) * pl.col("unit_price_billed")).round(2)
    off = pl.col("amount_billed") - billed
    misbilled = pl.when(~pl.col("is_correction") & (off.abs() > _money(CENT))).then(
        (off * pl.col("_rate")).cast(MONEY)
    )
    fx = pl.col("_fx")
    fx_text = pl.format(
        "{} {} x {} = USD {}",
        pl.col("currency"),
        pl.col("amount_billed").round(2),
        pl.col("_rate").cast(pl.String).str.strip_chars_end("0").str.strip_chars_end("."),
        pl.col("amount_usd").round(6),
    )
    usage = (
        marked.filter(pl.col("kind") == "usage")
        .group_by("provider", "month", "model_group")
        .agg(
            pl.col("amount_usd").sum().alias("i_cost"),
            misbilled.fill_null(_zero()).sum().alias("i_misbilled"),
            pl.col("line_id")
            .filter(misbilled.is_not_null())
            .sort()
            .str.join(",")
            .alias("i_misbilled_lines"),
            pl.col("_tokens").sum().alias("i_tokens"),
            pl.col("_tokens").is_not_null().any().alias("i_has_tokens"),
            pl.col("_images").sum().alias("i_images"),
            pl.col("_images").is_not_null().any().alias("i_has_images"),
            pl.col("_seconds").sum().alias("i_seconds"),
            pl.col("_seconds").is_not_null().any().alias("i_has_seconds"),
            pl.len().cast(pl.Int64).alias("i_lines"),
            fx.sum().cast(pl.Int64).alias("i_fx_lines"),
            # One minor unit of the billed currency per converted line, in dollars.
            (_money(CENT) * pl.col("_rate").filter(fx).cast(MONEY))
            .sum()
            .cast(MONEY)
            .alias("i_fx_allowance"),
            pl.col("amount_usd").filter(fx).sum().alias("i_fx_usd"),
            pl.col("currency").filter(fx).unique().sort().str.join(",").alias("i_fx_currencies"),
            fx_text.filter(fx).str.join("; ").alias("i_fx_conversions"),
            pl.col("amount_usd").filter(pl.col("is_duplicate")).sum().alias("i_duplicate"),
            pl.col("line_id")
            .filter(pl.col("is_duplicate"))
            .sort()
            .str.join(",")
            .alias("i_duplicate_lines"),
            pl.col("amount_usd").filter(pl.col("is_correction")).sum().alias("i_corrections"),
            pl.col("invoice_id")
            .filter(pl.col("is_correction"))
            .unique()
            .sort()
            .str.join(",")
            .alias("i_correction_invoices"),
            pl.col("invoice_id").unique().sort().str.join(",").alias("i_invoices"),
            pl.col("model").drop_nulls().unique().sort().str.join(",").alias("i_models"),
        )
    )
    bill = (
        marked.filter(pl.col("kind") != "usage")
        .group_by("provider", "month", "kind")
        .agg(
            pl.col("amount_usd").sum().alias("i_amount"),
            pl.len().cast(pl.Int64).alias("i_lines"),
            pl.col("amount_usd").filter(pl.col("is_correction")).sum().alias("i_corrections"),
            pl.col("description").unique().sort().str.join("; ").alias("i_descriptions"),
            pl.col("currency").filter(fx).unique().sort().str.join(",").alias("i_fx_currencies"),
            fx_text.filter(fx).str.join("; ").alias("i_fx_conversions"),
        )
    )
    return InvoiceViews(
        usage=usage,
        bill=bill,
        lines=marked.drop("_corrected_start", "_start", "_fx_month"),
        unconverted=unconverted,
    )


# --------------------------------------------------------------------------- categorize
LINE_SCHEMA = schema_of(
    {
        "provider": pl.String,
        "grain": pl.String,  # day | month
        "period_start": pl.Date,
        "period_end": pl.Date,  # exclusive
        "line_kind": pl.String,  # usage | credit | tax | rounding | adjustment | currency
        "model_group": pl.String,
        "models": pl.String,
        "expected_tokens": pl.Int64,
        "reported_tokens": pl.Int64,
        "invoiced_tokens": pl.Int64,
        "expected_usd": MONEY,
        "reported_usd": MONEY,
        "invoiced_usd": MONEY,
        "difference_usd": MONEY,
        "tolerance_usd": MONEY,
        "category": pl.String,
        "status": pl.String,
        **{f"{c}_usd": MONEY for c in CATEGORIES},
        "evidence": pl.String,
    }
)


def _cat(name: str) -> str:
    return f"{name}_usd"


def _categorize_cells(cells: pl.LazyFrame, allowance: pl.Expr) -> pl.LazyFrame:
    """Split `_gap` (theirs - expected) of each cell into categories.

    Order: traffic on accounts the gateway never uses (bypass); then a token gap (they saw
    more tokens: missing gateway logs; fewer: unexplained); equal tokens with a money gap:
    unpriced requests, a different batch/tier split, else a price the catalog lacks. Gaps
    within tolerance are rounding (within `allowance`) or a minor difference. Media (images,
    video seconds) count like tokens where the other side states a quantity (`_media_gap`,
    theirs - ours, beyond `_media_tol`)."""
    s = cells.collect_schema()
    if "_media_gap" not in s:
        cells = cells.with_columns(
            pl.lit(None, pl.Float64).alias("_media_gap"), pl.lit(0.0).alias("_media_tol")
        )
    media_gap = pl.col("_media_gap")
    media_tol = pl.col("_media_tol")
    bypass = pl.col("r_bypass_cost").fill_null(_zero())
    rest = pl.col("_gap") - bypass
    tok_gap = pl.col("_r_tok") - pl.col("r_bypass_tokens").fill_null(0) - pl.col("_e_tok")
    tok_tol = pl.max_horizontal(
        pl.col("tok_abs").cast(pl.Float64),
        pl.col("tok_rel").cast(pl.Float64) * pl.col("_e_tok").cast(pl.Float64),
    )
    has_tok = pl.col("_has_tok")
    big = rest.abs() > pl.col("tolerance_usd")
    tier_split = (
        (pl.col("r_batch_tokens").fill_null(0) != pl.col("e_batch_tokens").fill_null(0))
        | (pl.col("r_priority_tokens").fill_null(0) != pl.col("e_priority_tokens").fill_null(0))
        | (pl.col("r_flex_tokens").fill_null(0) != pl.col("e_flex_tokens").fill_null(0))
    )
    # A token gap is a finding even when its money is within tolerance: it is traffic.
    which = (
        pl.when(rest == _zero())
        .then(pl.lit(None, pl.String))
        .when(has_tok & (tok_gap.cast(pl.Float64) > tok_tol))
        .then(pl.lit("missing_gateway_logs"))
        .when(has_tok & (tok_gap.cast(pl.Float64) < -tok_tol))
        .then(pl.lit("unexplained"))
        .when(media_gap > media_tol)
        .then(pl.lit("missing_gateway_logs"))
        .when(media_gap < -media_tol)
        .then(pl.lit("unexplained"))
        .when(rest.abs() <= allowance)
        .then(pl.lit("rounding"))
        .when(~big)
        .then(pl.lit("minor_difference"))
        .when(pl.col("e_unpriced").fill_null(0) > 0)
        .then(pl.lit("unpriced_model"))
        .when(has_tok & (pl.col("_e_tok") > 0) & pl.col("_has_tier") & tier_split)
        .then(pl.lit("batch_tier_mismatch"))
        .when(has_tok & (pl.col("_e_tok") > 0))
        .then(pl.lit("price_change"))
        .otherwise(pl.lit("unexplained"))
    )
    return cells.with_columns(which.alias("_which"), rest.alias("_rest")).with_columns(
        *[
            (
                pl.when(pl.col("_which") == c).then(pl.col("_rest")).otherwise(_zero())
                + (bypass if c == "gateway_bypass" else _zero())
            ).alias(_cat(c))
            for c in CATEGORIES
        ]
    )


def _tolerance_expr(amount: pl.Expr) -> pl.Expr:
    return pl.max_horizontal(pl.col("tol_abs"), (amount.abs() * pl.col("tol_rel")).cast(MONEY))


def _status(line_kind_bill: pl.Expr, bill_variance: pl.Expr) -> pl.Expr:
    # A currency amount on a line is what the configured rate explains (a minor unit of the
    # billed currency per converted line), not a finding; a missing rate is its own line.
    problems = pl.any_horizontal(
        [
            pl.col(_cat(c)).abs() > pl.col("tolerance_usd")
            for c in PROBLEM_CATEGORIES
            if c != "currency"
        ]
    )
    return (
        pl.when(pl.col(_cat("unexplained")).abs() > pl.col("tolerance_usd"))
        .then(pl.lit("unexplained"))
        .when(problems | (line_kind_bill & bill_variance))
        .then(pl.lit("variance"))
        .when(pl.col("difference_usd") == _zero())
        .then(pl.lit("matched"))
        .when(line_kind_bill & ~bill_variance & pl.col("_bill_agrees"))
        .then(pl.lit("matched"))
        .otherwise(pl.lit("within_tolerance"))
    )


def _primary_category() -> pl.Expr:
    """The category with the largest absolute amount; null when nothing differs."""
    amounts = pl.concat_list([pl.col(_cat(c)).abs().cast(pl.Float64) for c in CATEGORIES])
    idx = amounts.list.arg_max()
    names = pl.lit(list(CATEGORIES), pl.List(pl.String))
    best = names.list.get(idx)
    return pl.when(amounts.list.max() > 0).then(best).otherwise(pl.lit(None, pl.String))


def _join_unique(name: str) -> pl.Expr:
    """Comma-joined values of a comma-joined string column, each once, sorted."""
    parts = pl.col(name).drop_nulls().str.split(",").explode()
    joined = parts.filter(parts != "").unique().sort().str.join(",")
    return pl.when(joined != "").then(joined).otherwise(pl.lit(None, pl.String)).alias(name)


def _absorb_unattributed(
    cells: pl.LazyFrame, reference: pl.LazyFrame, keys: list[str]
) -> pl.LazyFrame:
    """Move cells whose group the reference lacks into `(unattributed)` when the reference
    has an unattributed cell for the same remaining keys (same provider, same day)."""
    outer = [k for k in keys if k != "model_group"]
    groups = reference.select(keys).unique().with_columns(pl.lit(True).alias("_in_ref"))
    unattributed = (
        reference.filter(pl.col("model_group") == UNATTRIBUTED)
        .select(outer)
        .unique()
        .with_columns(pl.lit(True).alias("_unattr"))
    )
    return (
        cells.join(groups, on=keys, how="left")
        .join(unattributed, on=outer, how="left")
        .with_columns(
            pl.when(pl.col("_in_ref").is_null() & pl.col("_unattr").fill_null(False))
            .then(pl.lit(UNATTRIBUTED))
            .otherwise(pl.col("model_group"))
            .alias("model_group")
        )
        .drop("_in_ref", "_unattr")
    )


# --------------------------------------------------------------------------- daily
def _daily_cells(
    expected: pl.LazyFrame, reported: ReportedViews, config: ReconcileConfig
) -> pl.LazyFrame:
    """Expected and reported joined per provider, day and model group (reported providers)."""
    rep = reported.usage
    keys = ["provider", "date", "model_group"]
    reported_providers = reported.sources.select("provider", "token_source", "money_source")
    # Reported money without a model absorbs the expected models the report has no line for.
    exp = (
        _absorb_unattributed(expected, rep, keys)
        .group_by(keys)
        .agg(
            *[pl.col(c).sum() for c in EXPECTED_SUMMED],
            _join_unique("e_reasons"),
            _join_unique("e_models"),
        )
    )
    return (
        exp.join(rep, on=keys, how="full", coalesce=True)
        .join(reported_providers, on="provider", how="inner")
        .with_columns(
            pl.col("e_cost").fill_null(_zero()),
            pl.col("e_tokens").fill_null(0).alias("_e_tok"),
            pl.col("r_tokens").fill_null(0).alias("_r_tok"),
            pl.col("token_source").is_not_null().alias("_has_tok"),
            pl.col("token_source")
            .is_in(["openai_usage", "anthropic_usage", "focus"])
            .alias("_has_tier"),
        )
        .join(_tolerance_frame(config, _providers_hint(config)), on="provider", how="left")
        .with_columns(*_default_tolerance(config))
    )


def _providers_hint(config: ReconcileConfig) -> list[str]:
    return sorted(config.tolerances)


def _default_tolerance(config: ReconcileConfig) -> list[pl.Expr]:
    d = config.default
    return [
        pl.col("tol_abs").fill_null(pl.lit(d.abs_usd, MONEY)),
        pl.col("tol_rel").fill_null(pl.lit(d.rel, RATE)),
        pl.col("tok_abs").fill_null(d.tokens_abs),
        pl.col("tok_rel").fill_null(pl.lit(d.tokens_rel, RATE)),
    ]


def _usage_evidence() -> pl.Expr:
    e_tok = pl.col("_e_tok")
    r_tok = pl.col("_r_tok")
    per_m = pl.lit(Decimal(1_000_000), MONEY)
    catalog_rate = pl.when(e_tok > 0).then(pl.col("e_cost") * per_m / e_tok)
    implied_rate = pl.when(r_tok > 0).then(pl.col("_their_cost") * per_m / r_tok)
    return pl.struct(
        pl.col("e_models").alias("expected_models"),
        pl.col("r_models").alias("reported_models"),
        pl.col("e_requests").alias("expected_requests"),
        pl.col("r_requests").alias("reported_requests"),
        (r_tok - e_tok).alias("token_gap"),
        pl.col("e_input_tokens").alias("expected_input_tokens"),
        pl.col("e_output_tokens").alias("expected_output_tokens"),
        pl.col("r_input_tokens").alias("reported_input_tokens"),
        pl.col("r_output_tokens").alias("reported_output_tokens"),
        pl.col("e_batch_tokens").alias("expected_batch_tokens"),
        pl.col("r_batch_tokens").alias("reported_batch_tokens"),
        pl.col("e_priority_tokens").alias("expected_priority_tokens"),
        pl.col("r_priority_tokens").alias("reported_priority_tokens"),
        pl.col("e_flex_tokens").alias("expected_flex_tokens"),
        pl.col("r_flex_tokens").alias("reported_flex_tokens"),
        pl.col("e_unpriced").alias("unpriced_requests"),
        pl.col("e_reasons").alias("unpriced_reasons"),
        pl.col("e_usage_missing").alias("usage_missing_requests"),
        pl.col("r_bypass_tokens").alias("bypass_tokens"),
        pl.col("r_bypass_accounts").alias("bypass_accounts"),
        catalog_rate.round(6).cast(pl.String).alias("catalog_usd_per_mtok"),
        implied_rate.round(6).cast(pl.String).alias("implied_usd_per_mtok"),
        pl.col("_price_since").cast(pl.String).alias("price_change_since"),
        pl.col("_days").alias("days"),
        pl.col("token_source"),
        pl.col("money_source"),
        pl.col("e_images").alias("expected_images"),
        pl.col("i_images").alias("invoiced_images"),
        pl.col("e_seconds").round(3).alias("expected_video_seconds"),
        pl.col("i_seconds").alias("invoiced_video_seconds"),
        pl.when(
            # Media logged, or money with no token on either side (what a missing image or
            # video request leaves), and no count to compare it with.
            (
                (pl.col("e_images").fill_null(0) > 0)
                | (pl.col("e_seconds").fill_null(0) > 0)
                | ((e_tok == 0) & (r_tok == 0))
            )
            & pl.col("_media_gap").is_null()
        )
        .then(
            pl.lit(
                "images / video: the usage report states money but no image or second count,"
                " so a gap here cannot be split into missing traffic and price"
            )
        )
        .alias("media_note"),
        pl.col("_invoice").alias("invoice"),
    ).struct.json_encode()


def _finish_usage(cells: pl.LazyFrame, grain: str) -> pl.LazyFrame:
    s = cells.collect_schema()
    absent = {
        "e_images": pl.Float64(),
        "e_seconds": pl.Float64(),
        "i_images": pl.Float64(),
        "i_seconds": pl.Float64(),
        "_media_gap": pl.Float64(),
    }
    cells = cells.with_columns([pl.lit(None, t).alias(c) for c, t in absent.items() if c not in s])
    with_cats = cells.with_columns(
        pl.lit(False).alias("_bill_agrees"),
    )
    return with_cats.with_columns(
        _status(pl.lit(False), pl.lit(False)).alias("status"),
        _primary_category().alias("category"),
        _usage_evidence().alias("evidence"),
        pl.col("i_corrections").fill_null(_zero()).alias("_corrections"),
        pl.lit(grain).alias("grain"),
        pl.lit("usage").alias("line_kind"),
        pl.coalesce(pl.col("e_models"), pl.col("r_models"), pl.col("i_models")).alias("models"),
        pl.col("_e_tok").alias("expected_tokens"),
        pl.when(pl.col("_has_tok")).then(pl.col("r_tokens").fill_null(0)).alias("reported_tokens"),
        pl.col("e_cost").alias("expected_usd"),
    ).with_columns(
        # A restatement that brought the line back in line is what the controller should see.
        pl.when(
            (pl.col("_corrections") != _zero())
            & pl.col("status").is_in(["matched", "within_tolerance"])
        )
        .then(pl.lit("restated_invoice"))
        .otherwise(pl.col("category"))
        .alias("category")
    )


def reconcile_daily(
    expected: pl.LazyFrame,
    reported: ReportedViews,
    config: ReconcileConfig | None = None,
) -> pl.LazyFrame:
    """Provisional lines per provider, day and model group: expected vs usage reports."""
    cfg = config or ReconcileConfig()
    cells = _daily_cells(expected, reported, cfg).with_columns(
        pl.col("r_cost").fill_null(_zero()).alias("_their_cost"),
        pl.lit(None, pl.Int64).alias("i_tokens"),
        pl.lit(None, MONEY).alias("i_cost"),
        pl.lit(None, pl.String).alias("i_models"),
        pl.lit(None, MONEY).alias("i_corrections"),
        pl.lit(None, pl.String).alias("_invoice"),
        pl.lit(None, pl.List(pl.String)).alias("_days"),
    )
    cells = cells.with_columns(
        (pl.col("_their_cost") - pl.col("e_cost")).alias("_gap"),
        _tolerance_expr(pl.col("e_cost")).alias("tolerance_usd"),
    )
    cats = _categorize_cells(cells, _zero())
    cats = _with_price_since(cats, ["provider", "model_group"]).with_columns(
        pl.col("date").alias("period_start"),
        pl.col("date").dt.offset_by("1d").alias("period_end"),
        pl.col("_gap").alias("difference_usd"),
        pl.col("r_cost").alias("reported_usd"),
        pl.col("i_cost").alias("invoiced_usd"),
        pl.col("i_tokens").alias("invoiced_tokens"),
    )
    return (
        _finish_usage(cats, "day")
        .select(LINE_SCHEMA.names())
        .sort("provider", "period_start", "model_group")
    )


def _with_price_since(cells: pl.LazyFrame, by: list[str]) -> pl.LazyFrame:
    first = (
        pl.col("date").filter(pl.col(_cat("price_change")) != _zero()).min().over(by)
        if "date" in cells.collect_schema()
        else pl.lit(None, pl.Date)
    )
    return cells.with_columns(first.alias("_price_since"))


# --------------------------------------------------------------------------- monthly
SUMMED = (
    *EXPECTED_SUMMED,
    "r_tokens",
    "r_input_tokens",
    "r_output_tokens",
    "r_requests",
    "r_bypass_tokens",
    "r_batch_tokens",
    "r_priority_tokens",
    "r_flex_tokens",
    "r_cost",
    "r_bypass_cost",
)


def reconcile_month(
    month: str,
    expected: pl.LazyFrame,
    reported: ReportedViews,
    invoices: InvoiceViews | None,
    config: ReconcileConfig | None = None,
) -> pl.LazyFrame:
    """Lines per provider and model group for a calendar month, plus bill components.

    Providers with usage reports: the days' categories are summed, then the invoice is
    compared with the report (duplicate lines, one cent of rounding per invoice line, the
    rest unexplained). Providers with only an invoice: the invoice is their view, and the
    cell rules run on the month. Without an invoice the month is provisional (reported)."""
    cfg = config or ReconcileConfig()
    if invoices is None:
        invoices = invoice_view(pl.LazyFrame(schema=INVOICE_LINE_SCHEMA), cfg)
    start, end = month_bounds(month)
    in_month = pl.col("date").is_between(start, end, closed="left")
    exp_m = expected.filter(in_month)
    rep_usage = reported.usage.filter(in_month)
    rep = ReportedViews(rep_usage, reported.bill.filter(pl.col("month") == month), reported.sources)
    daily = _daily_cells(exp_m, rep, cfg).with_columns(
        pl.col("r_cost").fill_null(_zero()).alias("_their_cost")
    )
    daily = daily.with_columns(
        (pl.col("_their_cost") - pl.col("e_cost")).alias("_gap"),
        _tolerance_expr(pl.col("e_cost")).alias("tolerance_usd"),
    )
    daily = _with_price_since(_categorize_cells(daily, _zero()), ["provider", "model_group"])
    keys = ["provider", "model_group"]
    reported_month = daily.group_by(keys).agg(
        *[pl.col(c).sum() for c in SUMMED],
        *[pl.col(_cat(c)).sum() for c in CATEGORIES],
        *[_join_unique(c) for c in ("e_models", "r_models", "e_reasons", "r_bypass_accounts")],
        pl.col("_price_since").min(),
        pl.col("date").filter(pl.col("_gap") != _zero()).min().alias("_first_gap_day"),
        pl.col("date")
        .filter(
            pl.any_horizontal(
                [pl.col(_cat(c)) != _zero() for c in (*PROBLEM_CATEGORIES, "unexplained")]
            )
        )
        .unique()
        .sort()
        .cast(pl.String)
        .alias("_days"),
        pl.col("token_source").first(),
        pl.col("money_source").first(),
        pl.col("_has_tok").first(),
        pl.col("_has_tier").first(),
        pl.col("tol_abs").first(),
        pl.col("tol_rel").first(),
        pl.col("tok_abs").first(),
        pl.col("tok_rel").first(),
    )
    reported_month = _recheck_month(
        reported_month.with_columns(
            _tolerance_expr(pl.col("e_cost").fill_null(_zero())).alias("tolerance_usd")
        )
    ).drop("tolerance_usd")
    inv_usage = (
        invoices.usage.filter(pl.col("month") == month).drop("month")
        if invoices is not None
        else pl.LazyFrame(schema={"provider": pl.String, "model_group": pl.String})
    )
    invoiced_providers = (
        inv_usage.select("provider").unique().with_columns(pl.lit(True).alias("_invoiced"))
    )
    reported_providers = rep.sources.select("provider").with_columns(pl.lit(True).alias("_rep"))
    # Expected for providers without usage reports, per month.
    exp_month = (
        exp_m.join(reported_providers, on="provider", how="anti")
        .group_by(keys)
        .agg(
            *[pl.col(c).sum() for c in SUMMED if c.startswith("e_")],
            _join_unique("e_reasons"),
            _join_unique("e_models"),
        )
    )
    invoice_only = exp_month.join(
        inv_usage.join(reported_providers, on="provider", how="anti"),
        on=keys,
        how="full",
        coalesce=True,
    ).join(invoiced_providers, on="provider", how="inner")
    invoice_only = (
        invoice_only.join(_tolerance_frame(cfg, _providers_hint(cfg)), on="provider", how="left")
        .with_columns(*_default_tolerance(cfg))
        .with_columns(
            pl.col("e_cost").fill_null(_zero()),
            pl.col("e_tokens").fill_null(0).alias("_e_tok"),
            pl.col("i_tokens").fill_null(0).alias("_r_tok"),
            pl.col("i_has_tokens").fill_null(False).alias("_has_tok"),
            pl.lit(False).alias("_has_tier"),
            (
                pl.col("i_cost").fill_null(_zero())
                - pl.col("i_duplicate").fill_null(_zero())
                - pl.col("i_misbilled").fill_null(_zero())
            ).alias("_their_cost"),
            pl.lit(None, pl.String).alias("token_source"),
            pl.lit(None, pl.String).alias("money_source"),
            pl.lit(None, pl.Date).alias("_price_since"),
            pl.lit(None, pl.List(pl.String)).alias("_days"),
        )
        .with_columns(
            (pl.col("_their_cost") - pl.col("e_cost")).alias("_gap"),
            _tolerance_expr(pl.col("e_cost")).alias("tolerance_usd"),
        )
    )
    invoice_only = (
        _categorize_cells(
            invoice_only.with_columns(
                *_media_gap(),
                pl.lit(None, MONEY).alias("r_bypass_cost"),
                *[
                    pl.lit(None, pl.Int64).alias(c)
                    for c in (
                        "r_bypass_tokens",
                        "r_batch_tokens",
                        "r_priority_tokens",
                        "r_flex_tokens",
                    )
                ],
            ),
            _money(CENT) * pl.col("i_lines").fill_null(1).cast(MONEY)
            + pl.col("i_fx_allowance").fill_null(_zero()),
        )
        .with_columns(
            # Converted lines: the cents left are the conversion's (a minor unit of the billed
            # currency per line), not the invoice's rounding.
            pl.when(pl.col("i_fx_lines").fill_null(0) > 0)
            .then(pl.col(_cat("currency")) + pl.col(_cat("rounding")))
            .otherwise(pl.col(_cat("currency")))
            .alias(_cat("currency")),
            pl.when(pl.col("i_fx_lines").fill_null(0) > 0)
            .then(_zero())
            .otherwise(pl.col(_cat("rounding")))
            .alias(_cat("rounding")),
        )
        .with_columns(
            (pl.col(_cat("duplicate_billing")) + pl.col("i_duplicate").fill_null(_zero())).alias(
                _cat("duplicate_billing")
            ),
            (pl.col(_cat("unexplained")) + pl.col("i_misbilled").fill_null(_zero())).alias(
                _cat("unexplained")
            ),
            (pl.col("i_cost").fill_null(_zero()) - pl.col("e_cost")).alias("difference_usd"),
            pl.lit(None, MONEY).alias("r_cost"),
        )
    )
    # Providers with reports: add the invoice layer on top of the reported categories.
    # Invoice models the report has no line for go where the report's unattributed money is.
    inv_for_rep = (
        _absorb_unattributed(
            inv_usage.join(reported_providers, on="provider", how="semi"), reported_month, keys
        )
        .group_by(keys)
        .agg(
            *[
                pl.col(c).sum()
                for c in (
                    "i_cost",
                    "i_tokens",
                    "i_lines",
                    "i_duplicate",
                    "i_corrections",
                    "i_misbilled",
                    "i_images",
                    "i_seconds",
                    "i_fx_lines",
                    "i_fx_allowance",
                    "i_fx_usd",
                )
            ],
            pl.col("i_has_tokens").any(),
            pl.col("i_has_images").any(),
            pl.col("i_has_seconds").any(),
            *[
                _join_unique(c)
                for c in (
                    "i_duplicate_lines",
                    "i_misbilled_lines",
                    "i_correction_invoices",
                    "i_invoices",
                    "i_models",
                    "i_fx_currencies",
                )
            ],
            pl.col("i_fx_conversions").drop_nulls().str.join("; "),
        )
    )
    with_rep = (
        reported_month.join(inv_for_rep, on=keys, how="full", coalesce=True)
        .join(invoiced_providers, on="provider", how="left")
        .with_columns(
            pl.col("e_cost").fill_null(_zero()),
            pl.col("e_tokens").fill_null(0).alias("_e_tok"),
            pl.col("r_tokens").fill_null(0).alias("_r_tok"),
            pl.col("r_cost").fill_null(_zero()).alias("_their_cost"),
        )
        .with_columns(_tolerance_expr(pl.col("e_cost")).alias("tolerance_usd"), *_media_gap())
    )
    inv_gap = pl.col("i_cost").fill_null(_zero()) - pl.col("_their_cost")
    dup = pl.col("i_duplicate").fill_null(_zero())
    after_dup = inv_gap - dup
    fx_lines = pl.col("i_fx_lines").fill_null(0) > 0
    allowance = _money(CENT) * pl.col("i_lines").fill_null(0).cast(MONEY) + pl.col(
        "i_fx_allowance"
    ).fill_null(_zero())
    invoiced = pl.col("_invoiced").fill_null(False)
    # The report had money but no media count: what it billed beyond our logs was unexplained
    # per day; the invoice counts the images / seconds, and counted more than we logged.
    media_logs = (
        invoiced
        & (pl.col("_media_gap") > pl.col("_media_tol"))
        & (pl.col(_cat("unexplained")) > _zero())
    )
    with_rep = with_rep.with_columns(
        pl.when(media_logs)
        .then(pl.col(_cat("missing_gateway_logs")) + pl.col(_cat("unexplained")))
        .otherwise(pl.col(_cat("missing_gateway_logs")))
        .alias(_cat("missing_gateway_logs")),
        pl.when(media_logs)
        .then(_zero())
        .otherwise(pl.col(_cat("unexplained")))
        .alias(_cat("unexplained")),
    )
    with_rep = with_rep.with_columns(
        pl.when(invoiced & fx_lines & (after_dup.abs() <= allowance))
        .then(pl.col(_cat("currency")) + after_dup)
        .otherwise(pl.col(_cat("currency")))
        .alias(_cat("currency")),
        pl.when(invoiced)
        .then(pl.col(_cat("duplicate_billing")) + dup)
        .otherwise(pl.col(_cat("duplicate_billing")))
        .alias(_cat("duplicate_billing")),
        pl.when(invoiced & fx_lines & (after_dup.abs() <= allowance))
        .then(pl.col(_cat("rounding")))
        .when(invoiced & (after_dup.abs() <= allowance))
        .then(pl.col(_cat("rounding")) + after_dup)
        .when(invoiced)
        .then(pl.col(_cat("rounding")) + after_dup - after_dup.round(2))
        .otherwise(pl.col(_cat("rounding")))
        .alias(_cat("rounding")),
        # Invoice lines are whole cents: a sub-cent remainder is rounding, never a finding.
        pl.when(invoiced & (after_dup.abs() > allowance))
        .then(pl.col(_cat("unexplained")) + after_dup.round(2))
        .otherwise(pl.col(_cat("unexplained")))
        .alias(_cat("unexplained")),
        pl.when(invoiced & (after_dup.abs() > allowance))
        .then(pl.col(_cat("rounding")) + after_dup - after_dup.round(2))
        .otherwise(pl.col(_cat("rounding")))
        .alias("_unused"),
        pl.when(invoiced)
        .then(pl.col("i_cost").fill_null(_zero()))
        .otherwise(pl.col("_their_cost"))
        .sub(pl.col("e_cost"))
        .alias("difference_usd"),
    )
    common = [
        *keys,
        "difference_usd",
        "tolerance_usd",
        "e_cost",
        "r_cost",
        "i_cost",
        "i_tokens",
        "i_models",
        "e_models",
        "r_models",
        "_e_tok",
        "_r_tok",
        "r_tokens",
        "_has_tok",
        "_their_cost",
        "_price_since",
        "_days",
        "token_source",
        "money_source",
        "i_lines",
        "i_invoices",
        "i_duplicate_lines",
        "i_misbilled_lines",
        "i_corrections",
        "i_correction_invoices",
        "i_images",
        "i_seconds",
        "i_has_images",
        "i_has_seconds",
        "i_fx_lines",
        "i_fx_usd",
        "i_fx_currencies",
        "i_fx_conversions",
        "_media_gap",
        *[c for c in SUMMED if c not in ("e_cost", "r_cost", "r_tokens")],
        "e_reasons",
        "r_bypass_accounts",
        *[_cat(c) for c in CATEGORIES],
    ]

    def pick(frame: pl.LazyFrame) -> pl.LazyFrame:
        s = frame.collect_schema()
        dtypes: dict[str, pl.DataType] = {
            **{
                c: pl.Int64()
                for c in SUMMED
                if c not in ("e_cost", "r_cost", "r_bypass_cost", "e_images", "e_seconds")
            },
            "e_images": pl.Float64(),
            "e_seconds": pl.Float64(),
            "i_images": pl.Float64(),
            "i_seconds": pl.Float64(),
            "i_fx_usd": MONEY,
            "i_fx_lines": pl.Int64(),
            "i_has_images": pl.Boolean(),
            "i_has_seconds": pl.Boolean(),
            "_media_gap": pl.Float64(),
            "r_bypass_cost": MONEY,
            "i_cost": MONEY,
            "i_corrections": MONEY,
            "i_tokens": pl.Int64(),
            "i_lines": pl.Int64(),
            "_days": pl.List(pl.String),
            "_price_since": pl.Date(),
        }
        return frame.select(
            [
                pl.col(c) if c in s else pl.lit(None, dtypes.get(c, pl.String())).alias(c)
                for c in common
            ]
        ).with_columns(
            pl.col("_days").cast(pl.List(pl.String)),
            *[pl.col(c).cast(t) for c, t in dtypes.items() if c.startswith(("e_", "r_", "i_"))],
        )

    cells = pl.concat([pick(with_rep), pick(invoice_only)], how="vertical")
    invoice_struct = pl.struct(
        pl.col("i_invoices").alias("invoices"),
        pl.col("i_lines").alias("lines"),
        pl.col("i_duplicate_lines").alias("duplicate_lines"),
        pl.col("i_misbilled_lines").alias("lines_not_quantity_times_price"),
        pl.col("i_corrections").cast(pl.String).alias("corrections_usd"),
        pl.col("i_correction_invoices").alias("correction_invoices"),
        pl.col("i_fx_currencies").alias("currencies"),
        pl.col("i_fx_conversions").alias("conversions"),
        pl.col("i_fx_usd").cast(pl.String).alias("converted_usd"),
        pl.col("_currency_usd_text").alias("conversion_difference_usd"),
    )
    cells = cells.with_columns(
        pl.when(pl.col(_cat("currency")) != _zero())
        .then(pl.col(_cat("currency")).cast(pl.String))
        .alias("_currency_usd_text")
    ).with_columns(
        pl.when(pl.col("i_invoices").is_not_null()).then(invoice_struct).alias("_invoice"),
        pl.lit(start).alias("period_start"),
        pl.lit(end).alias("period_end"),
        pl.col("r_cost").alias("reported_usd"),
        pl.col("i_cost").alias("invoiced_usd"),
        pl.col("i_tokens").alias("invoiced_tokens"),
    )
    usage_lines = _finish_usage(cells, "month").select(LINE_SCHEMA.names())
    bill_lines = _bill_lines(month, rep, invoices, cfg)
    currency_lines = _currency_lines(month, invoices)
    return pl.concat([usage_lines, bill_lines, currency_lines]).sort(
        "provider", "line_kind", "model_group", nulls_last=True
    )


def _media_gap() -> list[pl.Expr]:
    """`_media_gap`: images (or video seconds) the invoice counts minus those we logged, null
    when the invoice states no media quantity; `_media_tol`: whole seconds are billed per
    line, so up to one second per invoice line is rounding."""
    images = pl.col("i_has_images").fill_null(False)
    seconds = pl.col("i_has_seconds").fill_null(False)
    return [
        pl.when(images)
        .then(pl.col("i_images").fill_null(0.0) - pl.col("e_images").fill_null(0.0))
        .when(seconds)
        .then(pl.col("i_seconds").fill_null(0.0) - pl.col("e_seconds").fill_null(0.0))
        .alias("_media_gap"),
        pl.when(seconds & ~images)
        .then(pl.col("i_lines").fill_null(0).cast(pl.Float64))
        .otherwise(0.0)
        .alias("_media_tol"),
    ]


def _recheck_month(cells: pl.LazyFrame) -> pl.LazyFrame:
    """Small daily differences can add up: a month whose sub-tolerance days sum beyond the
    month's tolerance gets that sum categorized on the month's totals (equal tokens: price
    change, or unpriced requests; else unexplained), from the first day that differed."""
    residual = pl.col(_cat("minor_difference"))
    over = residual.abs() > pl.col("tolerance_usd")
    # Minor days had no token gap (a token gap is categorized first), so only money moved.
    target = (
        pl.when(~over)
        .then(pl.lit(None, pl.String))
        .when(pl.col("_has_tok") & (pl.col("e_unpriced").fill_null(0) > 0))
        .then(pl.lit("unpriced_model"))
        .when(pl.col("_has_tok") & (pl.col("e_tokens").fill_null(0) > 0))
        .then(pl.lit("price_change"))
        .otherwise(pl.lit("unexplained"))
    )
    return (
        cells.with_columns(target.alias("_target"))
        .with_columns(
            *[
                pl.when(pl.col("_target") == c)
                .then(pl.col(_cat(c)) + residual)
                .otherwise(pl.col(_cat(c)))
                .alias(_cat(c))
                for c in ("unpriced_model", "price_change", "unexplained")
            ],
            pl.when(pl.col("_target") == "price_change")
            .then(pl.coalesce(pl.col("_price_since"), pl.col("_first_gap_day")))
            .otherwise(pl.col("_price_since"))
            .alias("_price_since"),
        )
        .with_columns(
            pl.when(pl.col("_target").is_not_null())
            .then(_zero())
            .otherwise(residual)
            .alias(_cat("minor_difference"))
        )
        .drop("_target", "_first_gap_day")
    )


def _bill_lines(
    month: str, rep: ReportedViews, invoices: InvoiceViews | None, cfg: ReconcileConfig
) -> pl.LazyFrame:
    """Credit, tax, rounding and adjustment lines: invoiced vs what the reports say.

    We do not forecast credits or tax: expected is null. Where a provider's money report
    carries lines of that kind, they are compared with the invoice; otherwise the invoice line
    stands alone (within tolerance, category credit/tax)."""
    start, end = month_bounds(month)
    inv_bill = (
        invoices.bill.filter(pl.col("month") == month).drop("month")
        if invoices is not None
        else pl.LazyFrame(
            schema={
                "provider": pl.String,
                "kind": pl.String,
                "i_amount": MONEY,
                "i_lines": pl.Int64,
                "i_corrections": MONEY,
                "i_descriptions": pl.String,
                "i_fx_currencies": pl.String,
                "i_fx_conversions": pl.String,
            }
        )
    )
    rep_bill = rep.bill.drop("month")
    reports_bill = rep_bill.select("provider").unique().with_columns(pl.lit(True).alias("_rb"))
    invoiced_providers = (
        invoices.usage.filter(pl.col("month") == month).select("provider").unique()
        if invoices is not None
        else pl.LazyFrame(schema={"provider": pl.String})
    ).with_columns(pl.lit(True).alias("_inv"))
    lines = (
        inv_bill.join(rep_bill, on=["provider", "kind"], how="full", coalesce=True)
        .join(reports_bill, on="provider", how="left")
        .join(invoiced_providers, on="provider", how="left")
        .join(_tolerance_frame(cfg, _providers_hint(cfg)), on="provider", how="left")
        .with_columns(*_default_tolerance(cfg))
    )
    inv_amt = pl.col("i_amount").fill_null(_zero())
    rep_amt = pl.col("r_amount").fill_null(_zero())
    has_inv = pl.col("_inv").fill_null(False)
    # Compared only when the reports carry that kind of line: a report that never lists tax
    # (most usage exports) says nothing about the invoice's tax line.
    compared = pl.col("_rb").fill_null(False) & pl.col("r_amount").is_not_null()
    theirs = pl.when(has_inv).then(inv_amt).otherwise(rep_amt)
    gap = inv_amt - rep_amt
    allowance = _money(CENT) * (pl.col("i_lines").fill_null(0) + 1).cast(MONEY)
    lines = lines.with_columns(
        theirs.alias("difference_usd"),
        _tolerance_expr(rep_amt).alias("tolerance_usd"),
        (
            has_inv
            & compared
            & (gap.abs() > pl.max_horizontal(_tolerance_expr(rep_amt), allowance))
        ).alias("_bill_variance"),
        (~has_inv | compared).alias("_bill_agrees"),
    )
    kind = pl.col("kind")
    bucket = pl.when(kind == "rounding").then(pl.lit("rounding")).otherwise(kind)
    lines = lines.with_columns(
        *[
            pl.when(bucket == c).then(pl.col("difference_usd")).otherwise(_zero()).alias(_cat(c))
            for c in CATEGORIES
        ]
    )
    evidence = pl.struct(
        pl.col("i_descriptions").alias("invoice_lines"),
        pl.col("i_lines").alias("invoice_line_count"),
        pl.col("r_lines").alias("report_lines"),
        gap.cast(pl.String).alias("invoice_minus_report_usd"),
        pl.when(compared)
        .then(pl.lit("invoice vs usage report"))
        .otherwise(pl.lit("invoice only: not in the usage reports"))
        .alias("basis"),
        pl.col("i_fx_currencies").alias("currencies"),
        pl.col("i_fx_conversions").alias("conversions"),
    ).struct.json_encode()
    return lines.with_columns(
        pl.lit("month").alias("grain"),
        pl.lit(start).alias("period_start"),
        pl.lit(end).alias("period_end"),
        kind.alias("line_kind"),
        pl.lit(None, pl.String).alias("model_group"),
        pl.lit(None, pl.String).alias("models"),
        pl.lit(None, pl.Int64).alias("expected_tokens"),
        pl.lit(None, pl.Int64).alias("reported_tokens"),
        pl.lit(None, pl.Int64).alias("invoiced_tokens"),
        pl.lit(None, MONEY).alias("expected_usd"),
        pl.col("r_amount").alias("reported_usd"),
        pl.col("i_amount").alias("invoiced_usd"),
        kind.alias("category"),
        _status(pl.lit(True), pl.col("_bill_variance")).alias("status"),
        evidence.alias("evidence"),
    ).select(LINE_SCHEMA.names())


def _currency_lines(month: str, invoices: InvoiceViews) -> pl.LazyFrame:
    """One `currency` variance per provider and currency whose invoice lines have no rate
    for the month: their amount in that currency, never read as dollars (USD columns null)."""
    start, end = month_bounds(month)
    if invoices.unconverted is None:
        return pl.LazyFrame(schema=LINE_SCHEMA)
    rows = invoices.unconverted.filter(pl.col("month") == month)
    evidence = pl.struct(
        pl.format("no rate for {} {}", pl.col("currency"), pl.col("month")).alias("reason"),
        pl.col("currency"),
        pl.col("amount_billed").cast(pl.String).alias("amount_in_currency"),
        pl.col("lines"),
        pl.col("invoices"),
        pl.col("line_ids"),
        pl.format(
            "set fx_rates.{}.{} (USD per one {}) in the reconciliation settings",
            pl.col("currency"),
            pl.col("month"),
            pl.col("currency"),
        ).alias("fix"),
    ).struct.json_encode()
    null_cols = {
        c: pl.lit(None, t).alias(c)
        for c, t in LINE_SCHEMA.items()
        if c.endswith(("_tokens", "_usd")) and c.removesuffix("_usd") not in CATEGORIES
    }
    return rows.select(
        "provider",
        pl.lit("month").alias("grain"),
        pl.lit(start).alias("period_start"),
        pl.lit(end).alias("period_end"),
        pl.lit("currency").alias("line_kind"),
        pl.lit(None, pl.String).alias("model_group"),
        pl.lit(None, pl.String).alias("models"),
        *null_cols.values(),
        pl.lit("currency").alias("category"),
        pl.lit("variance").alias("status"),
        *[_zero().alias(_cat(c)) for c in CATEGORIES],
        evidence.alias("evidence"),
    ).select(LINE_SCHEMA.names())


# --------------------------------------------------------------------------- summary
def summarize(lines: pl.LazyFrame) -> pl.LazyFrame:
    """One row per provider and period: totals, category amounts, unexplained, status."""
    usage = pl.col("line_kind") == "usage"
    worst = (
        pl.when((pl.col("status") == "unexplained").any())
        .then(pl.lit("unexplained"))
        .when((pl.col("status") == "variance").any())
        .then(pl.lit("variance"))
        .when((pl.col("status") == "within_tolerance").any())
        .then(pl.lit("within_tolerance"))
        .otherwise(pl.lit("matched"))
    )
    return (
        lines.group_by("provider", "period_start", "period_end")
        .agg(
            pl.col("expected_usd").filter(usage).sum().alias("expected_usd"),
            pl.col("reported_usd").filter(usage).sum().alias("reported_usage_usd"),
            pl.col("reported_usd").sum().alias("reported_total_usd"),
            pl.col("reported_usd").is_not_null().any().alias("has_reports"),
            pl.col("invoiced_usd").filter(usage).sum().alias("invoiced_usage_usd"),
            pl.col("invoiced_usd").sum().alias("invoiced_total_usd"),
            pl.col("invoiced_usd").is_not_null().any().alias("has_invoice"),
            pl.col("difference_usd").sum().alias("difference_usd"),
            *[pl.col(_cat(c)).sum() for c in CATEGORIES],
            pl.len().cast(pl.Int64).alias("lines"),
            *[(pl.col("status") == s).sum().cast(pl.Int64).alias(f"{s}_lines") for s in STATUSES],
            worst.alias("status"),
        )
        .with_columns(
            pl.when(pl.col("has_reports"))
            .then(pl.col("reported_total_usd"))
            .alias("reported_total_usd"),
            pl.when(pl.col("has_reports"))
            .then(pl.col("reported_usage_usd"))
            .alias("reported_usage_usd"),
            pl.when(pl.col("has_invoice"))
            .then(pl.col("invoiced_total_usd"))
            .alias("invoiced_total_usd"),
            pl.when(pl.col("has_invoice"))
            .then(pl.col("invoiced_usage_usd"))
            .alias("invoiced_usage_usd"),
        )
        .sort("provider", "period_start")
    )
