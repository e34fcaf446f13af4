"""Billing adapters (AWS CUR 2.0, Google Cloud billing export, FOCUS 1.2) and invoice lines:
the data-formats.md examples map exactly, token buckets sum to canonical totals, credits and
taxes stay rows, malformed rows are quarantined with reason and line, counts add up."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from sources.billing_common import model_from_name, provider_id, token_bucket, unit_scale
from sources.ingest import IngestResult, ingest_file
from transforms.schema import INVOICE_LINE_SCHEMA, PROVIDER_USAGE_SCHEMA

# --------------------------------------------------------------------------- fixtures
# data-formats.md §2.5, verbatim.
CUR_EXAMPLE = """\
bill_billing_period_start_date,line_item_usage_start_date,line_item_usage_end_date,line_item_line_item_type,line_item_product_code,line_item_usage_type,line_item_operation,line_item_usage_amount,pricing_unit,line_item_unblended_rate,line_item_unblended_cost,line_item_currency_code,product_region_code,line_item_iam_principal,resource_tags
2025-06-01T00:00:00Z,2025-06-01T10:00:00Z,2025-06-01T11:00:00Z,Usage,AmazonBedrock,USE1-Claude4.6Sonnet-input-tokens,InvokeModelInference (illustrative),23000,tokens (illustrative),0.000003,0.069,USD,us-east-1,arn:aws:iam::123456789012:user/alice,"{""user:feature"":""search""}"
2025-06-01T00:00:00Z,2025-06-01T10:00:00Z,2025-06-01T11:00:00Z,Usage,AmazonBedrock,USE1-Claude4.6Sonnet-output-tokens,InvokeModelInference (illustrative),14267,tokens (illustrative),0.000015,0.214005,USD,us-east-1,arn:aws:iam::123456789012:user/alice,"{""user:feature"":""search""}"
"""  # noqa: E501
CUR_COLUMNS = CUR_EXAMPLE.splitlines()[0].split(",")

# data-formats.md §2.4, verbatim but for the SKU id (the reference masks it).
GCP_EXAMPLE = {
    "billing_account_id": "01A2B3-C4D5E6-F7A8B9",
    "invoice": {"month": "202506", "publisher_type": "Google"},
    "cost_type": "regular",
    "service": {"id": "C7E2-9256-1C43", "description": "Vertex AI"},
    "sku": {
        "id": "5D4A-8C1E-93F2",
        "description": "Gemini 2.5 Flash Input Text Tokens (illustrative)",
    },
    "usage_start_time": "2025-06-01T10:00:00Z",
    "usage_end_time": "2025-06-01T11:00:00Z",
    "project": {"id": "acme-prod", "number": "123456789012", "name": "acme-prod"},
    "labels": [{"key": "feature", "value": "summarize"}],
    "location": {"location": "us-central1", "region": "us-central1"},
    "cost": 0.4512,
    "currency": "USD",
    "currency_conversion_rate": 1.0,
    "usage": {
        "amount": 1504000,
        "unit": "count (illustrative)",
        "amount_in_pricing_units": 1.504,
        "pricing_unit": "1M tokens (illustrative)",
    },
    "credits": [
        {
            "name": "FreeTrial:…",
            "amount": -0.4512,
            "full_name": "Free trial credit",
            "id": "…",
            "type": "FREE_TIER",
        }
    ],
    "export_time": "2025-06-01T14:03:11Z",
    "cost_at_list": 0.4512,
}

# data-formats.md §3.3, the first row verbatim.
FOCUS_EXAMPLE = """\
BilledCost,BillingAccountId,BillingAccountName,BillingCurrency,BillingPeriodEnd,BillingPeriodStart,ChargeCategory,ChargeClass,ChargeDescription,ChargeFrequency,ChargePeriodEnd,ChargePeriodStart,ConsumedQuantity,ConsumedUnit,ContractedCost,ContractedUnitPrice,EffectiveCost,InvoiceIssuerName,ListCost,ListUnitPrice,PricingCategory,PricingQuantity,PricingUnit,ProviderName,PublisherName,RegionId,RegionName,ServiceCategory,ServiceName,ServiceSubcategory,SkuId,SkuPriceId,SubAccountId,SubAccountName,Tags,SkuMeter,SkuPriceDetails,InvoiceId,CommitmentDiscountStatus,PricingCurrency,PricingCurrencyListUnitPrice,PricingCurrencyContractedUnitPrice,PricingCurrencyEffectiveCost
3.125,org-AbC123,Acme AI,USD,2025-07-01T00:00:00Z,2025-06-01T00:00:00Z,Usage,,gpt-4o-2024-08-06 input tokens,Usage-Based,2025-06-02T00:00:00Z,2025-06-01T00:00:00Z,1250000.0,Tokens,3.125,2.5,3.125,OpenAI,3.125,2.5,Standard,1.25,1000000 Tokens,OpenAI,OpenAI,,,AI and Machine Learning,OpenAI API,Generative AI,gpt-4o-2024-08-06:input,gpt-4o-2024-08-06:input:standard,proj_abc123,search-feature,"{""feature"":""search"",""env"":""prod""}",Input Tokens,"{""x_Model"": ""gpt-4o-2024-08-06"", ""x_TokenType"": ""input"", ""x_ServiceTier"": ""default""}",INV-2025-06-0001,,USD,2.5,2.5,3.125
"""  # noqa: E501
FOCUS_COLUMNS = FOCUS_EXAMPLE.splitlines()[0].split(",")
FOCUS_FIRST = next(csv.DictReader(io.StringIO(FOCUS_EXAMPLE)))

INVOICE_COLUMNS = list(INVOICE_LINE_SCHEMA)


def write_csv(path: Path, columns: list[str], rows: list[dict[str, Any]]) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({c: row.get(c, "") for c in columns})
    return path


def cur_row(**values: Any) -> dict[str, Any]:
    base = next(csv.DictReader(io.StringIO(CUR_EXAMPLE)))
    return {**base, **values}


def focus_row(**values: Any) -> dict[str, Any]:
    return {**FOCUS_FIRST, **values}


def kept(result: IngestResult) -> pl.DataFrame:
    return result.frames[result.produces]


def reasons(result: IngestResult) -> dict[int, str]:
    q = result.frames["quarantine"]
    return dict(zip(q["source_line"].to_list(), q["reason"].to_list(), strict=True))


def assert_accounted(result: IngestResult) -> None:
    assert result.problems() == []
    assert kept(result).height + result.frames["quarantine"].height == result.records_read


def money(value: str) -> Decimal:
    return Decimal(value)


# --------------------------------------------------------------------------- AWS CUR
def test_cur_example_maps_exactly(tmp_path: Path) -> None:
    path = tmp_path / "cur-2025-06.csv"
    path.write_text(CUR_EXAMPLE)
    result = ingest_file("aws_cur", path)
    assert_accounted(result)
    rows = kept(result)
    assert rows.schema == PROVIDER_USAGE_SCHEMA
    assert rows.height == 2
    first, second = rows.iter_rows(named=True)
    assert first["cost_usd"] == money("0.069")
    assert second["cost_usd"] == money("0.214005")
    assert rows["cost_usd"].sum() == money("0.283005")
    for row in (first, second):
        assert row["provider"] == "aws"
        assert row["model"] == "Claude4.6Sonnet"
        assert row["model_canonical"] == "claude-sonnet-4-6"
        assert row["region"] == "us-east-1"
        assert row["currency"] == "USD"
        assert row["credits_usd"] == 0
        assert str(row["date"]) == "2025-06-01"
        assert row["source_line"] in (2, 3)
    assert (first["input_tokens"], first["output_tokens"]) == (23000, None)
    assert (second["input_tokens"], second["output_tokens"]) == (None, 14267)
    assert first["line_item"] == "USE1-Claude4.6Sonnet-input-tokens"


def test_cur_token_buckets_sum_to_canonical_totals(tmp_path: Path) -> None:
    """A cache line counts into input_tokens and its cache column; pricing units are parsed."""
    rows = [
        cur_row(),  # 23000 input
        cur_row(
            line_item_usage_type="USE1-Claude4.6Sonnet-cache-read-input-token-count",
            line_item_usage_amount="12.345",
            pricing_unit="1K tokens",
            line_item_unblended_cost="0.0037035",
        ),
        cur_row(
            line_item_usage_type="USE1-Claude4.6Sonnet-cache-write-input-token-count",
            line_item_usage_amount="0.002",
            pricing_unit="1M tokens",
            line_item_unblended_cost="0.0075",
        ),
        cur_row(line_item_usage_type="USE1-Claude4.6Sonnet-output-tokens"),
    ]
    result = ingest_file("aws_cur", write_csv(tmp_path / "cur.csv", CUR_COLUMNS, rows))
    assert_accounted(result)
    totals = (
        kept(result)
        .group_by("date", "model_canonical")
        .agg(
            pl.col("input_tokens", "cache_read_tokens", "cache_write_tokens", "output_tokens").sum()
        )
        .row(0, named=True)
    )
    assert totals["input_tokens"] == 23000 + 12345 + 2000
    assert totals["cache_read_tokens"] == 12345
    assert totals["cache_write_tokens"] == 2000
    assert totals["output_tokens"] == 23000
    # Every row on its own respects the subset rule.
    ok = kept(result).filter(
        pl.col("cache_read_tokens").fill_null(0) + pl.col("cache_write_tokens").fill_null(0)
        > pl.col("input_tokens").fill_null(0)
    )
    assert ok.height == 0


def test_cur_tax_credit_and_region_prefix(tmp_path: Path) -> None:
    rows = [
        cur_row(
            line_item_usage_type="EUC1-Claude3.5Haiku-batch-output-tokens",
            product_region_code="",
            line_item_currency_code="usd",
        ),
        cur_row(
            line_item_line_item_type="Tax",
            line_item_usage_type="",
            line_item_usage_amount="",
            pricing_unit="",
            line_item_unblended_cost="0.05",
        ),
        cur_row(
            line_item_line_item_type="Credit",
            line_item_usage_amount="",
            line_item_unblended_cost="-0.03",
        ),
    ]
    result = ingest_file("aws_cur", write_csv(tmp_path / "cur.csv", CUR_COLUMNS, rows))
    assert_accounted(result)
    usage, tax, credit = kept(result).iter_rows(named=True)
    assert usage["region"] == "eu-central-1"
    assert usage["model_canonical"] == "claude-3-5-haiku"
    assert usage["batch"] is True
    assert usage["currency"] == "USD"
    assert tax["line_item"].startswith("tax")
    assert tax["cost_usd"] == money("0.05")
    assert credit["line_item"].startswith("credit: ")
    assert (credit["cost_usd"], credit["credits_usd"]) == (0, money("-0.03"))
    for row in (tax, credit):
        assert row["model"] is None
        assert row["input_tokens"] is None and row["output_tokens"] is None
    net = kept(result).select(pl.col("cost_usd").sum() + pl.col("credits_usd").sum()).item()
    assert net == money("0.069") + money("0.05") - money("0.03")


def test_cur_malformed_rows_quarantined_with_reason_and_line(tmp_path: Path) -> None:
    rows = [
        cur_row(),
        cur_row(pricing_unit="Hours"),  # line 3: a token line in hours: unit not assumed
        cur_row(line_item_usage_amount="many"),  # line 4
        cur_row(line_item_unblended_cost="0.0.1"),  # line 5
        cur_row(line_item_usage_start_date="yesterday"),  # line 6
        cur_row(line_item_usage_amount="12.5"),  # line 7: half a token
        cur_row(line_item_currency_code="EUR"),  # line 8
    ]
    result = ingest_file("aws_cur", write_csv(tmp_path / "cur.csv", CUR_COLUMNS, rows))
    assert_accounted(result)
    assert kept(result)["source_line"].to_list() == [2]
    got = reasons(result)
    assert got[3] == "invalid_value:pricing_unit"
    assert got[4] == "invalid_value:line_item_usage_amount"
    assert "invalid_value:cost_usd" in got[5]
    assert "invalid_value:date" in got[6]
    assert got[7] == "invalid_value:input_tokens"
    assert got[8] == "unsupported_value:currency"
    record = json.loads(result.frames["quarantine"].filter(pl.col("source_line") == 4)["record"][0])
    assert record["line_item_usage_amount"] == "many"


# --------------------------------------------------------------------------- Google Cloud
def write_jsonl(path: Path, records: list[Any]) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in records) + "\n")
    return path


def gcp_row(**values: Any) -> dict[str, Any]:
    return {**json.loads(json.dumps(GCP_EXAMPLE)), **values}


def test_gcp_example_maps_exactly(tmp_path: Path) -> None:
    result = ingest_file("gcp_billing", write_jsonl(tmp_path / "billing.jsonl", [GCP_EXAMPLE]))
    assert_accounted(result)
    rows = kept(result)
    assert rows.schema == PROVIDER_USAGE_SCHEMA
    row = rows.row(0, named=True)
    assert row["cost_usd"] == money("0.4512")
    assert row["credits_usd"] == money("-0.4512")
    assert row["cost_usd"] + row["credits_usd"] == 0
    assert row["provider"] == "google"
    assert row["model"] == "Gemini 2.5 Flash"
    assert row["model_canonical"] == "gemini-2.5-flash"
    assert row["input_tokens"] == 1504000
    assert row["output_tokens"] is None
    assert row["account_id"] == "acme-prod"
    assert row["region"] == "us-central1"
    assert row["currency"] == "USD"
    assert str(row["date"]) == "2025-06-01"
    assert row["line_item"] == GCP_EXAMPLE["sku"]["description"]  # type: ignore[index]


def test_gcp_buckets_cost_types_and_non_model_skus(tmp_path: Path) -> None:
    records = [
        gcp_row(
            sku={"id": "a", "description": "Gemini 2.5 Pro Thinking Output Text Tokens"},
            usage={"amount": 2000, "unit": "count"},
            cost=0.02,
            credits=[],
        ),
        gcp_row(
            sku={"id": "b", "description": "Claude Sonnet 4.5 Cache Read Input Tokens"},
            # no usage.unit: tokens from the pricing units, exactly
            usage={"amount_in_pricing_units": 0.000321, "pricing_unit": "1M tokens"},
            cost=0.0000963,
            credits=[{"name": "a", "amount": -0.00001}, {"name": "b", "amount": -0.00002}],
        ),
        gcp_row(cost_type="tax", sku={"id": "t", "description": "Tax"}, usage=None, cost=0.5),
        gcp_row(
            service={"id": "c", "description": "Compute Engine"},
            sku={"id": "c", "description": "N1 Predefined Instance Core running in Americas"},
            usage={"amount": 3600, "unit": "seconds", "pricing_unit": "hour"},
            cost=2.5,
        ),
    ]
    result = ingest_file("gcp_billing", write_jsonl(tmp_path / "b.jsonl", records))
    assert_accounted(result)
    thinking, cached, tax, compute = kept(result).iter_rows(named=True)
    assert (thinking["output_tokens"], thinking["reasoning_tokens"]) == (2000, 2000)
    assert thinking["model_canonical"] == "gemini-2.5-pro"
    assert thinking["credits_usd"] == 0
    assert (cached["input_tokens"], cached["cache_read_tokens"]) == (321, 321)
    assert cached["model_canonical"] == "claude-sonnet-4-5"
    assert cached["credits_usd"] == money("-0.00003")
    assert tax["line_item"] == "tax: Tax"
    assert tax["model"] is None and tax["input_tokens"] is None
    assert compute["model"] is None and compute["input_tokens"] is None
    assert compute["cost_usd"] == money("2.5")
    assert compute["credits_usd"] == money("-0.4512")


def test_gcp_credits_as_json_text_are_exact(tmp_path: Path) -> None:
    """Flattened exports carry nested fields as JSON text: the amounts' own digits count."""
    columns = ["usage_start_time", "sku", "usage", "cost", "currency", "credits", "cost_type"]
    row = {
        "usage_start_time": "2025-06-02T00:00:00Z",
        "sku": json.dumps({"description": "Gemini 2.0 Flash Output Text Tokens"}),
        "usage": json.dumps({"amount": 10, "unit": "count"}),
        "cost": "0.100000000000000001",
        "currency": "USD",
        "credits": '[{"name":"x","amount":-0.000000000000000001},{"amount":"-0.1"}]',
        "cost_type": "regular",
    }
    bad = {**row, "credits": '[{"amount": "lots"}]'}
    result = ingest_file("gcp_billing", write_csv(tmp_path / "b.csv", columns, [row, bad]))
    assert_accounted(result)
    got = kept(result).row(0, named=True)
    assert got["cost_usd"] == money("0.100000000000000001")
    assert got["credits_usd"] == money("-0.100000000000000001")
    assert got["output_tokens"] == 10
    assert reasons(result) == {3: "invalid_value:credits"}


def test_gcp_money_keeps_every_exported_digit(tmp_path: Path) -> None:
    """JSON numbers with more digits than a float holds are read from the record text."""
    line = json.dumps(gcp_row(cost=1.0, credits=[{"name": "p", "amount": -1.0}]))
    line = line.replace('"cost": 1.0', '"cost": 0.123456789012345678')
    line = line.replace('"amount": -1.0', '"amount": -0.006172839450617284')
    result = ingest_file("gcp_billing", write_jsonl(tmp_path / "b.jsonl", [line]))
    assert_accounted(result)
    row = kept(result).row(0, named=True)
    assert row["cost_usd"] == money("0.123456789012345678")
    assert row["credits_usd"] == money("-0.006172839450617284")


def test_gcp_unreadable_and_malformed_lines(tmp_path: Path) -> None:
    records = [
        GCP_EXAMPLE,
        "{not json",
        gcp_row(usage_start_time=None),
        gcp_row(cost="n/a"),
        gcp_row(currency="EUR"),
    ]
    result = ingest_file("gcp_billing", write_jsonl(tmp_path / "b.jsonl", records))
    assert_accounted(result)
    got = reasons(result)
    assert got[2] == "unreadable_record:invalid_json"
    assert got[3] == "missing_value:date"
    assert "invalid_value:cost_usd" in got[4]
    assert got[5] == "unsupported_value:currency"
    assert kept(result)["source_line"].to_list() == [1]


# --------------------------------------------------------------------------- FOCUS
def test_focus_example_row_maps_exactly(tmp_path: Path) -> None:
    path = tmp_path / "focus-2025-06.csv"
    path.write_text(FOCUS_EXAMPLE)
    result = ingest_file("focus", path)
    assert_accounted(result)
    row = kept(result).row(0, named=True)
    assert row["cost_usd"] == money("3.125")
    assert row["credits_usd"] == 0
    assert row["input_tokens"] == 1250000
    assert row["output_tokens"] is None and row["cache_read_tokens"] is None
    assert row["provider"] == "openai"
    assert row["model"] == "gpt-4o-2024-08-06"
    assert row["model_canonical"] == "gpt-4o"
    assert row["service_tier"] == "default"
    assert row["batch"] is False
    assert row["account_id"] == "proj_abc123"
    assert row["line_item"] == "gpt-4o-2024-08-06 input tokens"
    assert str(row["date"]) == "2025-06-01"


def test_focus_credit_tax_correction_and_bad_category(tmp_path: Path) -> None:
    no_usage = {
        "ConsumedQuantity": "",
        "ConsumedUnit": "",
        "PricingQuantity": "",
        "PricingUnit": "",
        "ListUnitPrice": "",
        "SkuId": "",
        "SkuPriceId": "",
        "SkuMeter": "",
        "SkuPriceDetails": "",
        "ChargeFrequency": "One-Time",
    }
    rows = [
        focus_row(),
        focus_row(
            **no_usage,
            ChargeCategory="Credit",
            ChargeDescription="Promotional credit",
            BilledCost="-2.0",
            EffectiveCost="-2.0",
            ListCost="-2.0",
            ContractedCost="-2.0",
        ),
        focus_row(
            **no_usage, ChargeCategory="Tax", ChargeDescription="Sales tax", BilledCost="0.58"
        ),
        focus_row(
            **no_usage,
            ChargeCategory="Usage",
            ChargeClass="Correction",
            ChargeDescription="May output restated",
            ChargePeriodStart="2025-05-20T00:00:00Z",
            ChargePeriodEnd="2025-05-21T00:00:00Z",
            BilledCost="-0.75",
        ),
        focus_row(
            ChargeDescription="gpt-4o-2024-08-06 cached input",
            ConsumedQuantity="",
            PricingQuantity="0.4",
            BilledCost="0.5",
            SkuPriceDetails='{"x_Model": "gpt-4o-2024-08-06", "x_TokenType": "cached_input"}',
        ),
        focus_row(ChargeCategory="Refund", BilledCost="-1"),  # not a FOCUS category
    ]
    path = write_csv(tmp_path / "focus.csv", FOCUS_COLUMNS, rows)
    result = ingest_file("focus", path)
    assert_accounted(result)
    assert reasons(result) == {7: "invalid_value:charge_category"}
    _, credit, tax, correction, cached = kept(result).iter_rows(named=True)
    assert (credit["cost_usd"], credit["credits_usd"]) == (0, money("-2.0"))
    assert credit["line_item"] == "credit: Promotional credit"
    assert tax["cost_usd"] == money("0.58")
    assert tax["line_item"] == "tax: Sales tax"
    assert correction["line_item"] == "correction: May output restated"
    assert correction["cost_usd"] == money("-0.75")
    assert str(correction["date"]) == "2025-05-20"
    for row in (credit, tax, correction):
        assert row["input_tokens"] is None and row["output_tokens"] is None
    assert (cached["input_tokens"], cached["cache_read_tokens"]) == (400000, 400000)
    net = kept(result).select(pl.col("cost_usd").sum() + pl.col("credits_usd").sum()).item()
    assert net == money("3.125") - money("2.0") + money("0.58") - money("0.75") + money("0.5")


def test_focus_provider_names_and_quantity_errors(tmp_path: Path) -> None:
    rows = [
        focus_row(ProviderName="Amazon Web Services, Inc.", RegionId="us-east-1"),
        focus_row(ConsumedQuantity="1e3", ConsumedUnit="1000 Tokens"),
        focus_row(ConsumedQuantity="lots"),
        focus_row(BilledCost=""),
        focus_row(ChargeCategory=""),
    ]
    result = ingest_file("focus", write_csv(tmp_path / "focus.csv", FOCUS_COLUMNS, rows))
    assert_accounted(result)
    aws, thousands = kept(result).iter_rows(named=True)
    assert (aws["provider"], aws["region"]) == ("aws", "us-east-1")
    assert thousands["input_tokens"] == 1_000_000
    got = reasons(result)
    assert "invalid_value:ConsumedQuantity" in got[4]
    assert got[5] == "missing_value:cost_usd"
    assert got[6] == "missing_value:charge_category"


# --------------------------------------------------------------------------- invoices
def invoice_line(**values: Any) -> dict[str, Any]:
    base = {
        "invoice_id": "INV-2025-06-0001",
        "provider": "OpenAI",
        "billing_period_start": "2025-06-01",
        "billing_period_end": "2025-07-01",
        "currency": "USD",
    }
    return {**base, **values}


INVOICE = [
    invoice_line(
        line_id="1",
        description="gpt-4o-2024-08-06 input tokens",
        charge_category="usage",
        model="gpt-4o-2024-08-06",
        quantity="1250000",
        unit="tokens",
        unit_price_usd="0.0000025",
        amount_usd="3.125",
        is_correction="false",
    ),
    invoice_line(
        line_id="2",
        description="gpt-4o-2024-08-06 output tokens",
        charge_category="Usage",
        model="gpt-4o-2024-08-06",
        quantity="400000",
        unit="tokens",
        unit_price_usd="0.00001",
        amount_usd="4.00",
    ),
    invoice_line(line_id="3", description="Credit", charge_category="credit", amount_usd="-2.00"),
    invoice_line(line_id="4", description="Sales tax", charge_category="tax", amount_usd="0.58"),
    invoice_line(
        invoice_id="INV-2025-06-0002",
        line_id="1",
        description="Correction of May usage",
        charge_category="usage",
        model="gpt-4o-2024-08-06",
        quantity="-300000",
        unit="tokens",
        unit_price_usd="0.0000025",
        amount_usd="-0.75",
        is_correction="true",
        corrects_invoice_id="INV-2025-05-0001",
    ),
]


def test_invoice_lines_sum_exactly_and_keep_corrections(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "invoice-openai-2025-06.csv", INVOICE_COLUMNS, INVOICE)
    result = ingest_file("invoice", path)
    assert_accounted(result)
    lines = kept(result)
    assert lines.height == 5
    assert lines.select(list(INVOICE_LINE_SCHEMA)).schema == INVOICE_LINE_SCHEMA
    assert lines["amount_usd"].sum() == money("4.955")
    assert set(lines["provider"]) == {"openai"}
    assert lines["charge_category"].to_list() == ["usage", "usage", "credit", "tax", "usage"]
    correction = lines.filter(pl.col("is_correction")).row(0, named=True)
    assert correction["corrects_invoice_id"] == "INV-2025-05-0001"
    assert correction["amount_usd"] == money("-0.75")
    assert correction["quantity"] == Decimal("-300000")
    assert lines.filter(~pl.col("is_correction")).height == 4
    first = lines.row(0, named=True)
    assert first["unit_price_usd"] == money("0.0000025")
    assert str(first["billing_period_start"]) == "2025-06-01"
    assert str(first["billing_period_end"]) == "2025-07-01"
    # Lineage travels with every kept line: the file and the CSV data line it came from.
    assert lines["source_file"].unique().to_list() == [str(path)]
    assert lines["source_kind"].unique().to_list() == ["invoice"]
    assert lines["source_line"].to_list() == list(range(2, 2 + len(INVOICE)))


def test_invoice_invalid_lines_quarantined(tmp_path: Path) -> None:
    rows = [
        *INVOICE[:1],
        invoice_line(line_id="9", charge_category="refund", amount_usd="-1"),  # line 3
        invoice_line(line_id="10", charge_category="usage", amount_usd="1", is_correction="true"),
        invoice_line(line_id="11", charge_category="credit", amount_usd="5"),  # positive credit
        invoice_line(
            line_id="12", charge_category="usage", amount_usd="1", billing_period_end="2025-06-01"
        ),
        invoice_line(line_id="13", charge_category="usage", amount_usd="$1"),
        invoice_line(line_id="14", charge_category="usage", amount_usd="1", is_correction="maybe"),
        invoice_line(
            line_id="15",
            charge_category="usage",
            amount_usd="1",
            is_correction="false",
            corrects_invoice_id="INV-1",
        ),
        invoice_line(line_id="16", charge_category="", amount_usd="1"),
    ]
    result = ingest_file("invoice", write_csv(tmp_path / "i.csv", INVOICE_COLUMNS, rows))
    assert_accounted(result)
    assert kept(result)["line_id"].to_list() == ["1"]
    assert reasons(result) == {
        3: "invalid_value:charge_category",
        4: "missing_value:corrects_invoice_id",
        5: "invalid_sign:amount_usd",
        6: "invalid_value:billing_period_end",
        7: "invalid_value:amount_usd",
        8: "invalid_value:is_correction",
        9: "invalid_value:is_correction",
        10: "missing_value:charge_category",
    }


@pytest.mark.parametrize("layout", ["list", "object", "jsonl"])
def test_invoice_json_layouts(tmp_path: Path, layout: str) -> None:
    records = [
        {k: v for k, v in line.items() if v != ""} | {"amount_usd": float(line["amount_usd"])}
        for line in INVOICE
    ]
    if layout == "jsonl":
        path = write_jsonl(tmp_path / "inv.jsonl", records)
    else:
        doc: Any = records if layout == "list" else {"invoice_id": "x", "lines": records}
        path = tmp_path / "inv.json"
        path.write_text(json.dumps(doc))
    result = ingest_file("invoice", path)
    assert_accounted(result)
    assert kept(result)["amount_usd"].sum() == money("4.955")
    assert kept(result).filter(pl.col("is_correction")).height == 1


def test_nested_values_where_scalars_belong_are_quarantined(tmp_path: Path) -> None:
    """A list or object in a money field is an unreadable value, never a crash."""
    good = {k: v for k, v in INVOICE[0].items() if v != ""}
    lines = [good, {**good, "amount_usd": [1]}, {**good, "quantity": {"n": 1}}]
    result = ingest_file("invoice", write_jsonl(tmp_path / "i.jsonl", lines))
    assert_accounted(result)
    assert reasons(result) == {2: "invalid_value:amount_usd", 3: "invalid_value:quantity"}
    records = [GCP_EXAMPLE, gcp_row(credits=5), gcp_row(cost=[0.1])]
    result = ingest_file("gcp_billing", write_jsonl(tmp_path / "b.jsonl", records))
    assert_accounted(result)
    assert reasons(result) == {2: "invalid_value:credits", 3: "invalid_value:cost_usd"}


def test_invoice_reference_field_names_are_aliases(tmp_path: Path) -> None:
    """data-formats.md §2.7's invoice record, with its own field names."""
    record = {
        "invoice_id": "INV-2025-06-0001",
        "issuer": "OpenAI",
        "billing_account_id": "org-AbC123",
        "period_start": "2025-06-01",
        "period_end": "2025-07-01",
        "line_no": 3,
        "description": "gpt-4o-2024-08-06 output tokens",
        "quantity": 400000,
        "unit": "tokens",
        "unit_price": 0.00001,
        "amount": 4.00,
        "line_type": "usage",
        "currency": "USD",
        "restates_invoice_id": None,
    }
    result = ingest_file("invoice", write_jsonl(tmp_path / "i.jsonl", [record]))
    assert_accounted(result)
    row = kept(result).row(0, named=True)
    assert (row["provider"], row["line_id"], row["charge_category"]) == ("openai", "3", "usage")
    assert (row["unit_price_usd"], row["amount_usd"]) == (money("0.00001"), money("4"))
    assert row["is_correction"] is False


# --------------------------------------------------------------------------- helpers
@pytest.mark.parametrize(
    ("unit", "scale"),
    [
        ("Tokens", 1),
        ("tokens (illustrative)", 1),
        ("count", 1),
        ("1K tokens", 1_000),
        ("1000 Tokens", 1_000),
        ("1,000 tokens", 1_000),
        ("1000000 Tokens", 1_000_000),
        ("1M tokens (illustrative)", 1_000_000),
        ("per 1 million tokens", 1_000_000),
        ("Hours", None),
        ("GiB", None),
        ("characters", None),
        (None, None),
    ],
)
def test_unit_scale(unit: str | None, scale: int | None) -> None:
    frame = pl.DataFrame({"u": [unit]}, schema={"u": pl.String})
    assert frame.select(unit_scale(pl.col("u"))).item() == scale


@pytest.mark.parametrize(
    ("text", "bucket"),
    [
        ("USE1-Claude4.6Sonnet-input-tokens", "input"),
        ("-cache-read-input-token-count", "cache_read"),
        ("-cache-write-input-token-count", "cache_write"),
        ("cache_write_1h", "cache_write_1h"),
        ("cached_input", "cache_read"),
        ("uncached_input_tokens", "input"),
        ("Gemini 2.5 Pro Thinking Output Text Tokens", "reasoning"),
        ("Input Tokens", "input"),
        ("output", "output"),
        ("Gemini Context Cache Storage", None),
        ("N1 Predefined Instance Core", None),
    ],
)
def test_token_bucket(text: str, bucket: str | None) -> None:
    frame = pl.DataFrame({"t": [text]})
    assert frame.select(token_bucket(pl.col("t"))).item() == bucket


@pytest.mark.parametrize(
    ("name", "canonical"),
    [
        ("Claude4.6Sonnet", "claude-sonnet-4-6"),
        ("Claude4.5Haiku", "claude-haiku-4-5"),
        ("Claude4Opus", "claude-opus-4"),
        ("Claude3.5Sonnet", "claude-3-5-sonnet"),
        ("Claude Sonnet 4.5", "claude-sonnet-4-5"),
        ("Claude 3.7 Sonnet", "claude-3-7-sonnet"),
        ("Gemini 2.5 Flash Lite", "gemini-2.5-flash-lite"),
        ("NovaPro", "nova-pro"),
        ("gpt-4o-2024-08-06", "gpt-4o"),
    ],
)
def test_model_from_name(name: str, canonical: str) -> None:
    frame = pl.DataFrame({"m": [name]})
    assert frame.select(model_from_name(pl.col("m"))).item() == canonical


@pytest.mark.parametrize(
    ("name", "provider"),
    [
        ("OpenAI", "openai"),
        ("Anthropic, PBC", "anthropic"),
        ("Amazon Web Services, Inc.", "aws"),
        ("AWS", "aws"),
        ("Google Cloud", "google"),
        ("Microsoft", "azure"),
        ("Mistral AI", "mistral"),
        ("xAI", "x-ai"),
    ],
)
def test_provider_id(name: str, provider: str) -> None:
    frame = pl.DataFrame({"p": [name]})
    assert frame.select(provider_id(pl.col("p"))).item() == provider


# --------------------------------------------------------------------------- datagen
@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    build = pytest.importorskip("datagen.build")
    out = tmp_path_factory.mktemp("gen")
    # Two days across a month boundary: two CUR/GCP/FOCUS files and invoices per provider.
    manifest = build.generate(out, days=2, requests_per_day=60, seed=3, start=dt.date(2025, 9, 30))
    return out, manifest.data


def test_generated_billing_files_match_their_manifest(
    generated: tuple[Path, dict[str, Any]],
) -> None:
    """Everything the generator bills ingests without quarantine and sums to its manifest."""
    root, manifest = generated
    months = manifest["totals"]["by_month_provider"]
    assert months
    for month, providers in months.items():
        if "aws" in providers:
            s = providers["aws"]
            result = ingest_file("aws_cur", root / f"aws/cur-{month}.csv")
            assert_accounted(result)
            assert result.frames["quarantine"].height == 0
            rows = kept(result)
            usage = rows.filter(~pl.col("line_item").str.contains(r"^(?:tax|credit)"))
            assert usage["cost_usd"].sum() == money(s["usage_exact_usd"])
            assert rows["credits_usd"].sum() == money(s["credit_usd"])
            net = rows["cost_usd"].sum() + rows["credits_usd"].sum()
            assert net == money(s["usage_exact_usd"]) + money(s["credit_usd"]) + money(s["tax_usd"])
        if "google" in providers:
            s = providers["google"]
            result = ingest_file("gcp_billing", root / f"google/billing-{month}.jsonl")
            assert_accounted(result)
            assert result.frames["quarantine"].height == 0
            rows = kept(result)
            tax = rows.filter(pl.col("line_item").str.starts_with("tax"))
            assert tax["cost_usd"].sum() == money(s["tax_usd"])
            regular = rows.filter(~pl.col("line_item").str.starts_with("tax"))
            assert regular["cost_usd"].sum() == money(s["usage_exact_usd"])
        if "openai" in providers:
            result = ingest_file("focus", root / f"focus/focus-{month}.csv")
            assert_accounted(result)
            assert result.frames["quarantine"].height == 0
            rows = kept(result)
            billed = rows["cost_usd"].sum() + rows["credits_usd"].sum()
            assert billed == money(providers["openai"]["invoice_total_usd"])
        for provider, s in providers.items():
            result = ingest_file("invoice", root / f"invoices/invoice-{provider}-{month}.csv")
            assert_accounted(result)
            assert result.frames["quarantine"].height == 0
            assert kept(result)["amount_usd"].sum() == money(s["invoice_total_usd"])
