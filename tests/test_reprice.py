"""Repricing: row preservation and money properties (hypothesis), then known prices, cliff
tiers, cache TTLs, contract terms, local overrides and provider fallbacks (the real catalog)."""

from __future__ import annotations

import datetime as dt
import textwrap
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from genai_prices import Usage, calc_price
from genai_prices.data_snapshot import get_snapshot
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pricing_catalog.catalog import Catalog
from pricing_catalog.rows import DAY_SECONDS, PriceRow
from tests.conftest import canonical_frame
from transforms.reprice import COMPONENT_COLUMNS, REPRICE_COLUMNS, reprice
from transforms.schema import MONEY, PROVIDER_ALIASES, TOKEN_COLUMNS

COMPONENTS = list(COMPONENT_COLUMNS.values())
UTC = dt.UTC


def ts(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


def run(catalog: Catalog, rows: list[dict[str, Any]]) -> pl.DataFrame:
    return reprice(canonical_frame(rows).lazy(), catalog).collect()


def one(catalog: Catalog, **row: Any) -> dict[str, Any]:
    out = run(catalog, [{"request_id": "r", **row}])
    assert out.height == 1
    return out.row(0, named=True)


def catalog_dir(tmp_path: Path, files: dict[str, str]) -> Catalog:
    """A catalog with the given extra files ('x.yaml' curated, 'overrides/x.yaml' override)."""
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    return Catalog.load([tmp_path])


# --------------------------------------------------------------------------- properties

PROVIDERS = ["openai", "anthropic", "google", "azure", "OpenAI ", "vertex_ai", "nonesuch", "", None]
MODELS = [
    "gpt-4o",
    "GPT-4o",
    "o3",
    "claude-sonnet-4-5",
    "gemini-2.5-pro",
    "deepseek-chat",
    "gpt-9-ultra",
    "",
    None,
]
NEGATIVE_FLAG = {c: f"invalid_usage:negative_{c}" for c in TOKEN_COLUMNS}


def _tokens(allow_negative: bool) -> st.SearchStrategy[int | None]:
    low = -1000 if allow_negative else 0
    return st.one_of(
        st.none(),
        st.integers(low, 2_000),
        st.integers(0, 3_000_000),
        st.sampled_from([0, 199_999, 200_000, 200_001, 272_000, 272_001]),
    )


@st.composite
def request_rows(draw: st.DrawFn, allow_negative_input: bool = True) -> list[dict[str, Any]]:
    """Random mixes of known and unknown providers/models, null and negative token counts,
    usage that is inconsistent (cache above input, reasoning above output), contexts, regions,
    timestamps (some null) and upstream row issues."""
    n = draw(st.integers(0, 25))
    rows = []
    for i in range(n):
        row: dict[str, Any] = {
            "request_id": f"req-{i}",
            "provider": draw(st.sampled_from(PROVIDERS)),
            "model": draw(st.sampled_from(MODELS)),
            "started_at": draw(
                st.one_of(
                    st.none(),
                    st.datetimes(
                        dt.datetime(2023, 1, 1), dt.datetime(2027, 12, 31), timezones=st.just(UTC)
                    ),
                )
            ),
            "service_tier": draw(st.sampled_from([None, "default", "flex", "priority"])),
            "batch": draw(st.sampled_from([None, False, True])),
            "region": draw(st.sampled_from([None, "eu-west-1", "us-east-1"])),
            "row_issues": draw(st.sampled_from([None, None, None, "invalid_timestamp"])),
        }
        for c in TOKEN_COLUMNS:
            negative_ok = allow_negative_input or c != "input_tokens"
            row[c] = draw(_tokens(negative_ok))
        rows.append(row)
    return rows


def _provider_key(provider: str | None) -> str | None:
    if provider is None:
        return None
    cleaned = provider.strip().lower()
    return PROVIDER_ALIASES.get(cleaned, cleaned)


def expected_reason(row: dict[str, Any]) -> str | None:
    """The reason a row must carry, derived independently of reprice: the upstream issue, else
    invalid usage, else an unknown provider/model (asked of genai-prices), else missing usage.
    None: the row must be priced. Returns the prefix the reason must start with."""
    if row["row_issues"] is not None:
        return row["row_issues"]
    v = {c: row[c] for c in TOKEN_COLUMNS}
    z = {c: v[c] or 0 for c in TOKEN_COLUMNS}
    if (
        any(x is not None and x < 0 for x in v.values())
        or z["cache_read_tokens"] + z["cache_write_tokens"] > z["input_tokens"]
        or z["cache_write_1h_tokens"] > z["cache_write_tokens"]
        or z["reasoning_tokens"] > z["output_tokens"]
    ):
        return "invalid_usage"
    provider, model = _provider_key(row["provider"]), (row["model"] or "").strip().lower()
    if not provider or not model:
        return "unknown_model"
    snapshot = get_snapshot()
    try:
        snapshot.find_provider_model(model, None, provider, None)
    except LookupError:
        try:
            snapshot.find_provider(None, provider, None)
        except LookupError:
            return "unknown_provider"
        return "unknown_model"
    if v["input_tokens"] is None and v["output_tokens"] is None:
        return "usage_missing"
    if row["started_at"] is None:
        return ""  # some reason, whichever: no date means no price
    return None


def check_rows_preserved(frame: pl.DataFrame, out: pl.DataFrame) -> None:
    assert out.height == frame.height
    assert out.columns == [*frame.columns, *REPRICE_COLUMNS.keys()]
    assert out.schema == pl.Schema({**frame.schema, **REPRICE_COLUMNS})
    # same rows, same order, input columns untouched
    assert out.select(frame.columns).equals(frame)


# A negative prompt size once matched no prompt-size band, and apply_prices dropped the row.
NEGATIVE_INPUT_ROW = {
    "request_id": "neg",
    "provider": "openai",
    "model": "gpt-4o",
    "started_at": ts(2025, 3, 1),
    "service_tier": None,
    "batch": None,
    "region": None,
    "row_issues": None,
    **dict.fromkeys(TOKEN_COLUMNS, 0),
    "input_tokens": -5,
}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@example(rows=[NEGATIVE_INPUT_ROW])
@given(rows=request_rows(allow_negative_input=True))
def test_no_row_dropped_or_duplicated_any_usage(
    catalog: Catalog, rows: list[dict[str, Any]]
) -> None:
    frame = canonical_frame(rows)
    check_rows_preserved(frame, reprice(frame.lazy(), catalog).collect())


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=request_rows(allow_negative_input=False))
def test_no_row_dropped_or_duplicated(catalog: Catalog, rows: list[dict[str, Any]]) -> None:
    """As above with every token column but input_tokens allowed negative."""
    frame = canonical_frame(rows)
    check_rows_preserved(frame, reprice(frame.lazy(), catalog).collect())


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=request_rows(allow_negative_input=False))
def test_every_row_priced_or_explained(catalog: Catalog, rows: list[dict[str, Any]]) -> None:
    frame = canonical_frame(rows)
    out = reprice(frame.lazy(), catalog).collect()
    assert out.height == len(rows)
    for row, got in zip(rows, out.iter_rows(named=True), strict=True):
        assert got["request_id"] == row["request_id"]
        reason = got["unpriced_reason"]
        # exactly one of: a cost, or the reason there is none
        assert (got["cost_usd"] is None) == (reason is not None), got
        if reason is not None:
            assert got["list_cost_usd"] is None
            assert all(got[c] is None for c in COMPONENTS)
        else:
            components = [got[c] for c in COMPONENTS]
            assert all(isinstance(c, Decimal) and c >= 0 for c in components)
            assert got["cost_usd"] == sum(components, Decimal(0))
            # the default catalog has no contract terms
            assert got["list_cost_usd"] == got["cost_usd"]
            assert got["contract_terms"] is None
            assert got["price_id"] is not None
        expected = expected_reason(row)
        if expected is None:
            assert reason is None, (row, got)
        else:
            assert reason is not None and reason.startswith(expected), (row, reason)
        if expected == "invalid_usage":
            for c in TOKEN_COLUMNS:
                if row[c] is not None and row[c] < 0:
                    assert NEGATIVE_FLAG[c] in reason.split(";")


# --------------------------------------------------------------------------- unit tests


def test_output_schema_and_money_dtype(catalog: Catalog) -> None:
    out = run(
        catalog,
        [
            {
                "request_id": "a",
                "provider": "openai",
                "model": "gpt-4o",
                "started_at": ts(2025, 3, 1),
            }
        ],
    )
    for col in ("list_cost_usd", "cost_usd", *COMPONENTS):
        assert out.schema[col] == MONEY


def test_empty_frame(catalog: Catalog) -> None:
    out = run(catalog, [])
    assert out.height == 0
    assert out.schema == pl.Schema({**canonical_frame([]).schema, **REPRICE_COLUMNS})


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ({"provider": "openai", "model": "gpt-9-ultra"}, "unknown_model"),
        ({"provider": "nonesuch", "model": "gpt-4o"}, "unknown_provider"),
        ({"provider": None, "model": "gpt-4o"}, "unknown_model"),
        ({"provider": "openai", "model": None}, "unknown_model"),
        (
            {"provider": "openai", "model": "gpt-4o", "input_tokens": None, "output_tokens": None},
            "usage_missing",
        ),
        (
            {
                "provider": "openai",
                "model": "gpt-4o",
                "input_tokens": 100,
                "cache_read_tokens": 101,
            },
            "invalid_usage:cache_above_input",
        ),
        (
            {
                "provider": "anthropic",
                "model": "claude-sonnet-4-5",
                "input_tokens": 100,
                "cache_read_tokens": 60,
                "cache_write_tokens": 41,
            },
            "invalid_usage:cache_above_input",
        ),
        (
            {
                "provider": "anthropic",
                "model": "claude-sonnet-4-5",
                "input_tokens": 100,
                "cache_write_tokens": 10,
                "cache_write_1h_tokens": 11,
            },
            "invalid_usage:cache_write_1h_above_cache_write",
        ),
        (
            {"provider": "openai", "model": "o3", "output_tokens": 10, "reasoning_tokens": 11},
            "invalid_usage:reasoning_above_output",
        ),
        (
            {"provider": "openai", "model": "o3", "output_tokens": 5, "cache_read_tokens": -1},
            "invalid_usage:negative_cache_read_tokens",
        ),
        (
            {
                "provider": "openai",
                "model": "o3",
                "input_tokens": 5,
                "output_tokens": -1,
                "reasoning_tokens": -1,
            },
            "invalid_usage:negative_output_tokens;invalid_usage:negative_reasoning_tokens",
        ),
        (
            {
                "provider": "openai",
                "model": "gpt-4o",
                "input_tokens": 5,
                "row_issues": "invalid_timestamp",
            },
            "invalid_timestamp",
        ),
    ],
)
def test_unpriced_reasons(catalog: Catalog, row: dict[str, Any], reason: str) -> None:
    got = one(
        catalog, **{"started_at": ts(2025, 3, 1), "input_tokens": 10, "output_tokens": 10, **row}
    )
    assert got["unpriced_reason"] == reason
    assert got["cost_usd"] is None and got["list_cost_usd"] is None


def test_negative_input_tokens_kept_and_flagged(catalog: Catalog) -> None:
    out = run(
        catalog,
        [
            {
                "request_id": "a",
                "provider": "openai",
                "model": "gpt-4o",
                "started_at": ts(2025, 3, 1),
                "input_tokens": 10,
            },
            {
                "request_id": "b",
                "provider": "openai",
                "model": "gpt-4o",
                "started_at": ts(2025, 3, 1),
                "input_tokens": -5,
            },
        ],
    )
    assert out["request_id"].to_list() == ["a", "b"]
    assert out["unpriced_reason"].to_list() == [None, "invalid_usage:negative_input_tokens"]


def test_exact_money_over_a_million_rows(catalog: Catalog) -> None:
    # odd counts against fractional per-token rates: every cost component has many decimals
    row = {
        "request_id": "r",
        "provider": "anthropic",
        "model": "claude-sonnet-4-5",
        "started_at": ts(2025, 11, 3, 9, 30),
        "input_tokens": 123_457,
        "cache_read_tokens": 98_765,
        "cache_write_tokens": 4_321,
        "cache_write_1h_tokens": 1_234,
        "output_tokens": 7_777,
        "reasoning_tokens": 3_333,
    }
    single = one(catalog, **row)["cost_usd"]
    assert single == Decimal("0.22637775")
    assert (
        single
        == calc_price(
            Usage(
                input_tokens=123_457,
                cache_read_tokens=98_765,
                cache_write_tokens=4_321,
                cache_write_1h_tokens=1_234,
                output_tokens=7_777,
                output_reasoning_tokens=3_333,
            ),
            model_ref="claude-sonnet-4-5",
            provider_id="anthropic",
            genai_request_timestamp=ts(2025, 11, 3, 9, 30),
        ).total_price
    )
    base = canonical_frame([row])
    thousand = pl.concat([base] * 1000)
    million = pl.concat([thousand] * 1000)
    out = reprice(million.lazy(), catalog)
    totals = out.select(
        pl.len().alias("n"),
        pl.col("cost_usd").sum().alias("cost"),
        pl.col("list_cost_usd").sum().alias("list"),
        pl.col("cost_usd").null_count().alias("unpriced"),
    ).collect()
    assert totals["n"].item() == 1_000_000
    assert totals["unpriced"].item() == 0
    assert totals["cost"].item() == single * 1_000_000
    assert totals["list"].item() == single * 1_000_000


O3_USAGE = {
    "input_tokens": 10_000,
    "cache_read_tokens": 2_000,
    "output_tokens": 5_000,
    "reasoning_tokens": 4_000,
}


@pytest.mark.parametrize(
    ("started_at", "cost", "reasoning_cost"),
    [
        (ts(2025, 4, 20, 12), "0.281", "0.16"),
        (ts(2025, 6, 9, 23, 59, 59), "0.281", "0.16"),  # last second before the price cut
        (ts(2025, 6, 10), "0.057", "0.032"),  # first second of the new price
        (ts(2025, 9, 1, 8), "0.057", "0.032"),
    ],
)
def test_o3_price_cut(
    catalog: Catalog, started_at: dt.datetime, cost: str, reasoning_cost: str
) -> None:
    got = one(catalog, provider="openai", model="o3", started_at=started_at, **O3_USAGE)
    assert got["unpriced_reason"] is None
    assert got["cost_usd"] == Decimal(cost)
    assert got["list_cost_usd"] == Decimal(cost)
    assert got["cost_reasoning_usd"] == Decimal(reasoning_cost)
    assert got["model_key"] == "openai/o3"
    assert got["match_kind"] == "genai"


@pytest.mark.parametrize(
    ("prompt", "cost", "band"),
    [
        # at the threshold: every token at the base rate ($1.25 in, $10 out)
        (200_000, Decimal("0.26"), False),
        # one token past: EVERY token at the tier rate ($2.50 in, $15 out), not just the last
        (200_001, Decimal("0.5150025"), True),
    ],
)
def test_gemini_25_pro_cliff_tier(catalog: Catalog, prompt: int, cost: Decimal, band: bool) -> None:
    got = one(
        catalog,
        provider="google",
        model="gemini-2.5-pro",
        started_at=ts(2025, 8, 1, 15),
        input_tokens=prompt,
        output_tokens=1_000,
    )
    assert got["cost_usd"] == cost
    assert (
        got["cost_input_usd"]
        == Decimal(prompt) * (Decimal("2.5") if band else Decimal("1.25")) / 1_000_000
    )
    assert got["price_id"].endswith(":>200000") is band


def test_cliff_tier_counts_cached_tokens_toward_the_threshold(catalog: Catalog) -> None:
    # 150k cached + 50,001 fresh = 200,001 prompt tokens: the whole prompt is in the tier
    got = one(
        catalog,
        provider="google",
        model="gemini-2.5-pro",
        started_at=ts(2025, 8, 1, 15),
        input_tokens=200_001,
        cache_read_tokens=150_000,
        output_tokens=0,
    )
    assert got["price_id"].endswith(":>200000")
    assert got["cost_input_usd"] == Decimal(50_001) * Decimal("2.5") / 1_000_000


def test_claude_sonnet_45_one_hour_cache_writes(catalog: Catalog) -> None:
    got = one(
        catalog,
        provider="anthropic",
        model="claude-sonnet-4-5",
        started_at=ts(2025, 11, 1),
        input_tokens=20_000,
        cache_read_tokens=15_000,
        cache_write_tokens=4_500,
        cache_write_1h_tokens=4_500,
        output_tokens=800,
    )
    assert got["cost_usd"] == Decimal("0.045")
    assert got["cost_input_usd"] == Decimal("0.0015")  # 500 uncached x $3
    assert got["cost_cache_read_usd"] == Decimal("0.0045")  # 15,000 x $0.30
    assert got["cost_cache_write_1h_usd"] == Decimal("0.027")  # 4,500 x $6
    assert got["cost_cache_write_5m_usd"] == 0
    assert got["cost_output_usd"] == Decimal("0.012")  # 800 x $15
    # the same writes at the 5-minute TTL cost $3.75/MTok instead of $6
    five_min = one(
        catalog,
        provider="anthropic",
        model="claude-sonnet-4-5",
        started_at=ts(2025, 11, 1),
        input_tokens=20_000,
        cache_read_tokens=15_000,
        cache_write_tokens=4_500,
        cache_write_1h_tokens=0,
        output_tokens=800,
    )
    assert five_min["cost_usd"] == Decimal("0.0348750")


def test_azure_gpt4o_falls_back_to_openai_without_request_context(catalog: Catalog) -> None:
    base = {
        "provider": "azure",
        "model": "gpt-4o",
        "started_at": ts(2025, 3, 1),
        "input_tokens": 1_000,
        "output_tokens": 100,
    }
    batch = one(catalog, **base, batch=True)
    assert batch["match_kind"] == "genai_fallback"
    assert batch["model_key"] == "openai/gpt-4o"
    assert "request_context_not_priced" in batch["price_flags"].split(";")
    assert batch["cost_usd"] == Decimal("0.0035")
    # genai-prices prices the fallback the same way: request context ignored
    assert (
        batch["list_cost_usd"]
        == calc_price(
            Usage(input_tokens=1_000, output_tokens=100),
            model_ref="gpt-4o",
            provider_id="azure",
            genai_request_timestamp=ts(2025, 3, 1),
            price_context={"service_tier": "default", "processing": "batch"},
        ).total_price
    )
    flex = one(catalog, **base, service_tier="flex")
    assert "request_context_not_priced" in flex["price_flags"].split(";")
    plain = one(catalog, **base)
    assert plain["price_flags"] is None
    assert plain["cost_usd"] == batch["cost_usd"]


def test_provider_aliases_and_case_resolve(catalog: Catalog) -> None:
    got = one(
        catalog,
        provider=" OpenAI ",
        model="GPT-4o",
        started_at=ts(2025, 3, 1),
        input_tokens=1_000,
        output_tokens=100,
    )
    assert got["model_key"] == "openai/gpt-4o"
    assert got["cost_usd"] == Decimal("0.0035")
    vertex = one(
        catalog,
        provider="vertex_ai",
        model="gemini-2.5-pro",
        started_at=ts(2025, 8, 1),
        input_tokens=1_000,
    )
    assert vertex["model_key"] == "google/gemini-2.5-pro"


# --------------------------------------------------------------------------- contracts

CONTRACTS = """
contracts:
  - name: anthropic-enterprise
    provider: anthropic
    model: "*"
    valid_from: 2025-01-01
    valid_to: 2026-01-01
    discount_pct: 12.5
  - name: gpt-4o-reseller
    provider: openai
    model: gpt-4o
    valid_from: 2025-01-01
    input_mtok: 1.80
  - name: openai-batch
    provider: openai
    model: gpt-4.1
    batch_discount_pct: 50
  - name: google-eu
    provider: google
    model: "*"
    regions: ["eu-*"]
    region_multiplier: 1.1
  - name: anthropic-eu
    provider: anthropic
    model: "*"
    valid_from: 2025-06-01
    regions: ["eu-*"]
    region_multiplier: 1.1
"""


@pytest.fixture(scope="module")
def contract_catalog(tmp_path_factory: pytest.TempPathFactory) -> Catalog:
    return catalog_dir(tmp_path_factory.mktemp("contracts"), {"contracts.yaml": CONTRACTS})


SONNET = {
    "provider": "anthropic",
    "model": "claude-sonnet-4-5",
    "input_tokens": 20_000,
    "cache_read_tokens": 15_000,
    "cache_write_tokens": 4_500,
    "cache_write_1h_tokens": 4_500,
    "output_tokens": 800,
}


@pytest.mark.parametrize(
    ("started_at", "applied"),
    [
        (ts(2024, 12, 31, 23, 59, 59), False),
        (ts(2025, 1, 1), True),
        (ts(2025, 11, 1), True),
        (ts(2025, 12, 31, 23, 59, 59), True),
        (ts(2026, 1, 1), False),  # valid_to is exclusive
    ],
)
def test_contract_discount_is_effective_dated(
    contract_catalog: Catalog, started_at: dt.datetime, applied: bool
) -> None:
    got = one(contract_catalog, **SONNET, started_at=started_at)
    list_cost = got["list_cost_usd"]
    assert list_cost == Decimal("0.045")  # list price is never touched by contracts
    if applied:
        assert got["cost_usd"] == Decimal("0.039375")  # 0.045 x 0.875, exactly
        assert got["cost_usd"] == list_cost * Decimal("0.875")
        assert got["contract_terms"] == "anthropic-enterprise"
        assert got["cost_cache_write_1h_usd"] == Decimal("0.023625")
    else:
        assert got["cost_usd"] == list_cost
        assert got["contract_terms"] is None
    assert got["cost_usd"] == sum((got[c] for c in COMPONENTS), Decimal(0))


def test_contract_discount_and_region_multiplier_stack(contract_catalog: Catalog) -> None:
    got = one(contract_catalog, **SONNET, started_at=ts(2025, 11, 1), region="eu-central-1")
    assert got["list_cost_usd"] == Decimal("0.045")
    assert got["cost_usd"] == Decimal("0.045") * Decimal("0.875") * Decimal("1.1")
    assert got["contract_terms"] == "anthropic-enterprise;anthropic-eu"


def test_contract_reseller_input_rate(contract_catalog: Catalog) -> None:
    got = one(
        contract_catalog,
        provider="openai",
        model="gpt-4o",
        started_at=ts(2025, 6, 1),
        input_tokens=10_000,
        cache_read_tokens=2_000,
        output_tokens=1_000,
    )
    # list: 8,000 x $2.50 + 2,000 x $1.25 + 1,000 x $10
    assert got["list_cost_usd"] == Decimal("0.0325")
    # contract: only the uncached input rate changes, to $1.80
    assert got["cost_input_usd"] == Decimal("0.0144")
    assert got["cost_cache_read_usd"] == Decimal("0.0025")
    assert got["cost_output_usd"] == Decimal("0.01")
    assert got["cost_usd"] == Decimal("0.0269")
    assert got["contract_terms"] == "gpt-4o-reseller"
    # other OpenAI models keep list price
    mini = one(
        contract_catalog,
        provider="openai",
        model="gpt-4o-mini",
        started_at=ts(2025, 6, 1),
        input_tokens=10_000,
    )
    assert mini["cost_usd"] == mini["list_cost_usd"]
    assert mini["contract_terms"] is None


@pytest.mark.parametrize(
    ("region", "applied"),
    [
        ("eu-west-1", True),
        ("EU-West-4", True),
        ("us-east-1", False),
        (None, False),
        ("europe-west1", False),
    ],
)
def test_contract_region_multiplier(
    contract_catalog: Catalog, region: str | None, applied: bool
) -> None:
    got = one(
        contract_catalog,
        provider="google",
        model="gemini-2.5-pro",
        started_at=ts(2025, 8, 1),
        input_tokens=200_000,
        output_tokens=1_000,
        region=region,
    )
    assert got["list_cost_usd"] == Decimal("0.26")
    if applied:
        assert got["cost_usd"] == Decimal("0.286")  # 0.26 x 1.1
        assert got["contract_terms"] == "google-eu"
    else:
        assert got["cost_usd"] == Decimal("0.26")
        assert got["contract_terms"] is None


def test_contract_batch_discount_only_without_catalog_batch_rate(contract_catalog: Catalog) -> None:
    usage = {
        "provider": "openai",
        "model": "gpt-4.1",
        "input_tokens": 10_000,
        "output_tokens": 1_000,
    }
    # 2025: genai-prices has no batch rate for gpt-4.1, so the standard rate is used, flagged,
    # and the contract's batch discount applies ($2 in, $8 out -> half)
    before = one(contract_catalog, **usage, started_at=ts(2025, 6, 1), batch=True)
    assert "batch_rate_not_in_catalog" in before["price_flags"].split(";")
    assert before["list_cost_usd"] == Decimal("0.028")
    assert before["cost_usd"] == Decimal("0.014")
    assert before["contract_terms"] == "openai-batch"
    # the same request without batch: no batch discount
    online = one(contract_catalog, **usage, started_at=ts(2025, 6, 1), batch=False)
    assert online["cost_usd"] == online["list_cost_usd"] == Decimal("0.028")
    assert online["contract_terms"] is None
    # from 2026-10-14 the catalog has a batch rate ($1 in, $4 out): it is the price, and the
    # contract's batch discount must not be applied on top of it
    after = one(contract_catalog, **usage, started_at=ts(2026, 11, 1), batch=True)
    assert after["price_flags"] is None
    assert after["list_cost_usd"] == Decimal("0.014")
    assert after["cost_usd"] == Decimal("0.014")
    assert after["contract_terms"] is None


def test_contract_catalog_leaves_other_requests_alone(
    contract_catalog: Catalog, catalog: Catalog
) -> None:
    rows = [
        {
            "request_id": "a",
            "provider": "openai",
            "model": "o3",
            "started_at": ts(2025, 6, 1),
            **O3_USAGE,
        },
        {
            "request_id": "b",
            "provider": "deepseek",
            "model": "deepseek-chat",
            "started_at": ts(2025, 6, 1, 17),
            "input_tokens": 5_000,
            "output_tokens": 500,
        },
    ]
    with_contracts = run(contract_catalog, rows)
    plain = run(catalog, rows)
    assert with_contracts["cost_usd"].to_list() == plain["cost_usd"].to_list()
    assert with_contracts["contract_terms"].to_list() == [None, None]


# --------------------------------------------------------------------------- overrides

OVERRIDE = """
prices:
  - provider: openai
    model: gpt-4o
    valid_from: 2025-03-01
    input_mtok: 2.00
    output_mtok: 8.00
"""


@pytest.mark.parametrize(
    ("started_at", "cost", "source"),
    [
        (ts(2024, 10, 1), "0.0035", "genai-prices"),
        (ts(2025, 2, 28, 23, 59, 59), "0.0035", "genai-prices"),  # $2.50 / $10 from genai-prices
        (ts(2025, 3, 1), "0.0028", "override"),  # $2 / $8 from the local override
        (ts(2026, 5, 1), "0.0028", "override"),
    ],
)
def test_local_override_wins_from_its_date(
    tmp_path: Path, started_at: dt.datetime, cost: str, source: str
) -> None:
    cat = catalog_dir(tmp_path, {"overrides/x.yaml": OVERRIDE})
    got = one(
        cat,
        provider="openai",
        model="gpt-4o",
        started_at=started_at,
        input_tokens=1_000,
        output_tokens=100,
    )
    assert got["model_key"] == "openai/gpt-4o"
    assert got["cost_usd"] == Decimal(cost)
    assert got["price_id"].startswith(source + ":")


# --------------------------------------------------------------------------- curated tiers

TIERED_ROWS = {
    "generic": """
  - provider: acme
    model: widget-1
    input_mtok: 1.00
    output_mtok: 2.00
""",
    "flex": """
  - provider: acme
    model: widget-1
    service_tier: flex
    input_mtok: 0.50
    output_mtok: 1.00
""",
}


@pytest.mark.parametrize(
    "order",
    [
        ("generic", "flex"),
        ("flex", "generic"),
    ],
)
def test_explicit_service_tier_row_beats_generic_row(
    tmp_path: Path, order: tuple[str, str]
) -> None:
    text = "prices:" + "".join(TIERED_ROWS[k] for k in order)
    cat = catalog_dir(tmp_path, {"acme.yaml": text})
    rows = [
        {
            "request_id": tier,
            "provider": "acme",
            "model": "widget-1",
            "started_at": ts(2025, 1, 1),
            "service_tier": tier,
            "input_tokens": 1_000_000,
        }
        for tier in ("default", "flex", "priority")
    ]
    out = run(cat, rows)
    assert out["cost_usd"].to_list() == [Decimal("1"), Decimal("0.5"), Decimal("1")]


# --------------------------------------------------------------------------- price segments

ACME_DAYS = [dt.date(2025, 1, 1), dt.date(2025, 2, 1), dt.date(2025, 3, 1)]
TOD_BOUNDS = [0, 1_800, 3_600, 43_200, 59_400, 86_399, 86_400]
BAND_BOUNDS = [100, 1_000, 200_000]


@st.composite
def acme_segments(draw: st.DrawFn) -> list[PriceRow]:
    """Arbitrary price segments for acme/widget-1, as no validated file could hold them:
    time-of-day windows with holes, bands without a base, overlapping bands and windows,
    overlapping validity, empty windows."""
    rows = []
    for i in range(draw(st.integers(1, 5))):
        # mostly whole days and base bands, so that segments overlap as often as they leave
        # holes
        tod_start = draw(st.sampled_from([0, 0, 0, *TOD_BOUNDS]))
        tod_end = draw(st.sampled_from([DAY_SECONDS, DAY_SECONDS, *TOD_BOUNDS]))
        above = draw(st.sampled_from([-1, -1, *BAND_BOUNDS]))
        upto = draw(st.sampled_from([None, None, *BAND_BOUNDS]))
        valid_from = draw(st.sampled_from(ACME_DAYS))
        rows.append(
            PriceRow(
                provider="acme",
                model_id="widget-1",
                source="curated",
                valid_from=valid_from,
                valid_to=draw(st.sampled_from([None, valid_from + dt.timedelta(days=45)])),
                rates={
                    "input_mtok": Decimal(draw(st.integers(0, 50))) / 4,
                    "output_mtok": Decimal(i + 1),
                },
                service_tier="default",
                tod_start_s=tod_start,
                tod_end_s=tod_end,
                band_above=above,
                band_upto=upto,
                origin=f"segment-{i}",
            )
        )
    return rows


@st.composite
def acme_requests(draw: st.DrawFn) -> list[dict[str, Any]]:
    rows = []
    for i in range(draw(st.integers(0, 20))):
        day = draw(st.sampled_from([dt.date(2024, 12, 31), *ACME_DAYS, dt.date(2025, 4, 20)]))
        second = draw(st.sampled_from([*TOD_BOUNDS[:-1], 1_799, 3_599, 59_399, 70_000]))
        started = dt.datetime.combine(day, dt.time(), UTC) + dt.timedelta(seconds=second)
        rows.append(
            {
                "request_id": f"r{i}",
                "provider": "acme",
                "model": "widget-1",
                "started_at": draw(st.sampled_from([started, started, started, None])),
                "input_tokens": draw(
                    st.sampled_from([None, -5, 0, 50, 100, 101, 999, 1_000, 1_001, 200_001])
                ),
                "output_tokens": draw(st.sampled_from([None, 0, 7])),
            }
        )
    return rows


def _covering(segments: list[PriceRow], at: dt.datetime, prompt: int) -> list[PriceRow] | None:
    """The segments (in catalog order) a request falls in; None: no price on that day."""
    day = at.date()
    valid = sorted(
        (r for r in segments if r.valid_from <= day and (r.valid_to is None or day < r.valid_to)),
        key=lambda r: (r.valid_from, r.tod_start_s, r.band_above),
    )
    if not valid:
        return None
    second = at.hour * 3600 + at.minute * 60 + at.second
    return [
        r
        for r in valid
        if r.tod_start_s <= second < r.tod_end_s
        and prompt > r.band_above
        and (r.band_upto is None or prompt <= r.band_upto)
    ]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(segments=acme_segments(), rows=acme_requests())
def test_no_row_dropped_or_duplicated_whatever_the_segments(
    segments: list[PriceRow], rows: list[dict[str, Any]]
) -> None:
    catalog = Catalog(rows=segments)
    frame = canonical_frame(rows)
    out = reprice(frame.lazy(), catalog).collect()
    check_rows_preserved(frame, out)
    for row, got in zip(rows, out.iter_rows(named=True), strict=True):
        usage_ok = (row["input_tokens"] or 0) >= 0 and not (
            row["input_tokens"] is None and row["output_tokens"] is None
        )
        if row["started_at"] is None or not usage_ok:
            assert got["cost_usd"] is None and got["unpriced_reason"] is not None
            continue
        covering = _covering(segments, row["started_at"], max(row["input_tokens"] or 0, 0))
        if covering is None:
            assert got["unpriced_reason"] == "no_price_at_date", (row, got)
        elif not covering:
            # between the segments: kept, unpriced, and said why
            assert got["unpriced_reason"] == "no_price_segment", (row, got)
            assert got["cost_usd"] is None and got["price_id"] is None
        else:
            assert got["price_id"] == covering[-1].price_id(), (row, got, covering)
            flags = (got["price_flags"] or "").split(";")
            assert ("overlapping_price_segments" in flags) == (len(covering) > 1)
            if got["unpriced_reason"] is None:
                rate = covering[-1].rates["input_mtok"] / 1_000_000
                assert got["cost_input_usd"] == (row["input_tokens"] or 0) * rate


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(segments=acme_segments(), rows=acme_requests())
def test_cell_lookup_equals_the_join_it_replaces(
    segments: list[PriceRow], rows: list[dict[str, Any]]
) -> None:
    """apply_prices finds each request's price cell by a hash of its context; when two
    contexts share a hash it joins on the context columns instead. Both give the same rows."""
    import transforms.reprice as reprice_module

    catalog = Catalog(rows=segments)
    frame = canonical_frame(rows).lazy()
    by_hash = reprice(frame, catalog).collect()
    original = reprice_module.cell_index
    reprice_module.cell_index = lambda *_: None  # type: ignore[assignment]
    try:
        by_join = reprice(frame, catalog).collect()
    finally:
        reprice_module.cell_index = original
    assert by_hash.equals(by_join)


def test_band_without_base_keeps_short_prompts_unpriced() -> None:
    # What a catalog with only an above_input_tokens band holds (Catalog.load refuses to
    # build it from a file; see test_catalog): prompts at or below the band have no segment.
    band = PriceRow(
        provider="acme",
        model_id="widget-2",
        source="curated",
        valid_from=dt.date(2025, 1, 1),
        valid_to=None,
        rates={"input_mtok": Decimal(6)},
        service_tier="default",
        band_above=200_000,
    )
    base = {"provider": "acme", "model": "widget-2", "started_at": ts(2025, 3, 1)}
    out = run(
        Catalog(rows=[band]),
        [
            {**base, "request_id": "short", "input_tokens": 10},
            {**base, "request_id": "long", "input_tokens": 300_000},
            {**base, "request_id": "edge", "input_tokens": 200_000},
        ],
    )
    assert out["request_id"].to_list() == ["short", "long", "edge"]
    assert out["unpriced_reason"].to_list() == ["no_price_segment", None, "no_price_segment"]
    assert out["cost_usd"].to_list() == [None, Decimal("1.8"), None]


# --------------------------------------------------------------------------- cache savings


def test_cache_savings_at_list_rates(catalog: Catalog) -> None:
    got = one(
        catalog,
        provider="openai",
        model="gpt-4o",
        started_at=ts(2025, 6, 1),
        input_tokens=10_000,
        cache_read_tokens=4_000,
        output_tokens=10,
    )
    # 4,000 cached tokens at $2.50 uncached vs $1.25 cached
    assert got["cache_savings_usd"] == Decimal("0.005")
    assert got["cost_cache_read_usd"] == Decimal("0.005")
    assert got["cache_savings_usd"] == Decimal(4_000) * Decimal("2.5") / 1_000_000 - Decimal(
        got["cost_cache_read_usd"]
    )


def test_cache_savings_use_the_band_of_the_request(catalog: Catalog) -> None:
    # gemini-2.5-pro above 200K prompt tokens: $2.50 uncached, $0.625 cached (genai-prices)
    got = one(
        catalog,
        provider="google",
        model="gemini-2.5-pro",
        started_at=ts(2025, 8, 1, 15),
        input_tokens=200_001,
        cache_read_tokens=150_000,
    )
    assert got["price_id"].endswith(":>200000")
    uncached = got["cost_input_usd"] / 50_001
    cached = got["cost_cache_read_usd"] / 150_000
    assert got["cache_savings_usd"] == 150_000 * (uncached - cached)
    assert got["cache_savings_usd"] > 0


def test_cache_savings_on_the_contract_basis(contract_catalog: Catalog) -> None:
    got = one(
        contract_catalog,
        provider="openai",
        model="gpt-4o",
        started_at=ts(2025, 6, 1),
        input_tokens=10_000,
        cache_read_tokens=2_000,
        output_tokens=1_000,
    )
    # the reseller charges $1.80 for uncached input; cache reads stay at $1.25
    assert got["contract_terms"] == "gpt-4o-reseller"
    assert got["cache_savings_usd"] == Decimal(2_000) * (Decimal("1.80") - Decimal("1.25")) / 10**6
    discounted = one(contract_catalog, **SONNET, started_at=ts(2025, 11, 1), region="eu-central-1")
    # 15,000 cache reads: ($3 - $0.30) x 0.875 x 1.1 per MTok
    assert (
        discounted["cache_savings_usd"]
        == Decimal(15_000) * Decimal("2.7") * Decimal("0.9625") / 10**6
    )


@pytest.mark.parametrize(
    ("row", "savings"),
    [
        ({"input_tokens": 100, "output_tokens": 5}, Decimal(0)),  # no cache reads
        ({"input_tokens": 100, "cache_read_tokens": None}, Decimal(0)),
        # the gateway answered from its own cache: no provider cache read happened
        ({"input_tokens": 100, "cache_read_tokens": 50, "gateway_cache_hit": True}, Decimal(0)),
        ({"input_tokens": 100, "cache_read_tokens": 101}, None),  # invalid usage: unpriced
        ({"input_tokens": 100, "cache_read_tokens": 50, "model": "gpt-9-ultra"}, None),
    ],
)
def test_cache_savings_zero_or_null(
    catalog: Catalog, row: dict[str, Any], savings: Decimal | None
) -> None:
    got = one(
        catalog, **{"provider": "openai", "model": "gpt-4o", "started_at": ts(2025, 6, 1), **row}
    )
    assert got["cache_savings_usd"] == savings
    assert (got["cache_savings_usd"] is None) == (got["cost_usd"] is None)
