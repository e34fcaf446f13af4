"""generate(): the whole synthetic dataset for a period, deterministic for a seed.

Steps: build the ground-truth attempts (datagen.traffic), reprice them with the real catalog
(`reprice(lf, Catalog.load([]))`), write the truth as Parquet, every gateway's native logs
(datagen.gateways, with datagen.faults applied), every provider report and invoice
(datagen.billing), and `manifest.json` describing all of it.

Layout under `out_dir`:
    canonical/requests-YYYY-MM-DD.parquet     truth: CANONICAL_SCHEMA + row_issues (null)
    litellm/spend-logs-YYYY-MM-DD.jsonl       helicone/requests-YYYY-MM-DD.jsonl
    openrouter/generations-YYYY-MM-DD.jsonl   cloudflare/logs-YYYY-MM-DD.jsonl
    otel/spans-YYYY-MM-DD.jsonl
    openai/usage-completions-YYYY-MM.json     openai/costs-YYYY-MM.json
    anthropic/usage-YYYY-MM.json              anthropic/cost-YYYY-MM.json
    aws/cur-YYYY-MM.csv                       google/billing-YYYY-MM.jsonl
    focus/focus-YYYY-MM.csv                   invoices/invoice-<provider>-YYYY-MM.csv
    manifest.json

Same seed and arguments -> byte-identical files (no clock, no unordered iteration; every
random draw comes from a named stream derived from the seed).

The default start, 2025-09-05, makes a 35-day run cross the Veo 3 price cut in the catalog
(media.yaml: $0.75 -> $0.40 per second on 2025-09-09), the Claude Sonnet 4.5 launch
(2025-09-29, when its traffic moves from Sonnet 4), a month boundary and the Sora 2 launch
(2025-10-06). genai-prices has batch and priority rates for OpenAI/Anthropic only from
2026-10-12/14: a run started on 2026-10-01 crosses that change instead (before it, batch
requests are priced at the standard rate with the flag batch_rate_not_in_catalog).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl

from datagen import billing, gateways, jsonio, org
from datagen import faults as injection
from datagen.faults import FaultSpec
from datagen.traffic import build_attempts, rng_for, truth_columns
from pricing_catalog.catalog import Catalog
from transforms.reprice import reprice

DEFAULT_START = dt.date(2025, 9, 5)
TRUTH_FILE = "canonical/requests-{day}.parquet"
PRICE_CHANGES = [
    {
        "model": "google/veo-3.0-generate-001",
        "date": "2025-09-09",
        "change": "per_video_second 0.75 -> 0.40 (pricing_catalog/data/media.yaml)",
    },
    {
        "model": "openai/*, anthropic/* (genai-prices)",
        "date": "2026-10-14",
        "change": "batch rates appear (half price); before, batch is priced at standard",
    },
]


@dataclass
class GenerationManifest:
    path: Path
    data: dict[str, Any]

    @property
    def files(self) -> dict[str, dict[str, Any]]:
        return self.data["files"]

    @property
    def faults(self) -> dict[str, Any]:
        return self.data["faults"]


def _validate(
    days: int, requests_per_day: int, seed: int, faults_: FaultSpec, start: dt.date
) -> None:
    if days < 1:
        raise ValueError(f"days must be >= 1, got {days}")
    if requests_per_day < 1:
        raise ValueError(f"requests_per_day must be >= 1, got {requests_per_day}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    end = start + dt.timedelta(days)
    for s in faults_.spikes:
        if s.feature not in org.FEATURE_INDEX:
            raise ValueError(
                f"spike: unknown feature {s.feature!r} (one of {sorted(org.FEATURE_INDEX)})"
            )
        if not start <= s.day < end:
            raise ValueError(f"spike: day {s.day} outside {start}..{end - dt.timedelta(1)}")
        if s.multiplier < 1:
            raise ValueError(f"spike: multiplier must be >= 1, got {s.multiplier}")
    for g, d in faults_.missing_logs:
        if g not in org.GATEWAYS:
            raise ValueError(f"missing logs: unknown gateway {g!r} (one of {list(org.GATEWAYS)})")
        if not start <= d < end:
            raise ValueError(f"missing logs: day {d} outside the period")
    for p, _ in faults_.invoice_mismatch:
        if p not in org.ISSUERS:
            raise ValueError(
                f"invoice mismatch: unknown provider {p!r} (one of {sorted(org.ISSUERS)})"
            )
    for name, rate in (
        ("duplicates", faults_.duplicate_rate),
        ("malformed", faults_.malformed_rate),
    ):
        if not 0 <= rate < 1:
            raise ValueError(f"{name} rate must be in [0, 1), got {rate}")


def _write_truth(out: Path, priced: pl.DataFrame, day_list: list[dt.date]) -> dict[str, int]:
    files = {}
    truth = priced.select(truth_columns()).with_columns(pl.col("started_at").dt.date().alias("_d"))
    parts = truth.partition_by("_d", as_dict=True, include_key=False)
    for day in day_list:
        part = parts.get((day,), truth.clear().drop("_d"))
        rel = TRUTH_FILE.format(day=day.isoformat())
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        part.write_parquet(out / rel, compression="zstd", compression_level=3, statistics=True)
        files[rel] = part.height
    return files


def _write_gateways(
    out: Path, seed: int, priced: pl.DataFrame, day_list: list[dt.date], spec: FaultSpec
) -> tuple[dict[str, dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    files: dict[str, dict[str, Any]] = {}
    recorded: dict[str, list[dict[str, Any]]] = {
        "missing_logs": [],
        "duplicates": [],
        "malformed": [],
    }
    missing = set(spec.missing_logs)
    for gateway in org.GATEWAYS:
        _, pattern = gateways.WRITERS[gateway]
        lines = gateways.gateway_lines(priced, gateway)
        by_day = lines.partition_by("_date", as_dict=True)
        for day in day_list:
            rel = pattern.format(day=day.isoformat())
            part = by_day.get((day,))
            text = part["line"].to_list() if part is not None else []
            keys = (
                list(zip(part["request_id"].to_list(), part["attempt"].to_list(), strict=True))
                if part is not None
                else []
            )
            if (gateway, day) in missing:
                recorded["missing_logs"].append(
                    {
                        "gateway": gateway,
                        "date": day.isoformat(),
                        "file": rel,
                        "rows_missing": len(text),
                    }
                )
                continue
            rng = rng_for(seed, f"faults:{rel}")
            bad, malformed = injection.corrupt(
                rng, gateway, rel, text, keys, spec.malformed_rate, len(recorded["malformed"])
            )
            dups = injection.duplicate(rng, rel, text, keys, spec.duplicate_rate, bad)
            jsonio.write_lines(out / rel, text)
            recorded["malformed"] += malformed
            recorded["duplicates"] += dups
            files[rel] = {
                "lines": len(text),
                "records": len(keys),
                "duplicates": len(dups),
                "malformed": len(malformed),
            }
    return files, recorded


def _totals(priced: pl.DataFrame, reports: billing.Reports) -> dict[str, Any]:
    truth = (
        priced.group_by(pl.col("started_at").dt.date().alias("date"), "provider")
        .agg(
            pl.len().alias("attempts"),
            (pl.col("status") == "success").sum().alias("successful"),
            pl.col("cost_usd").sum().alias("cost_usd"),
            pl.col("unpriced_reason").is_not_null().sum().alias("unpriced"),
        )
        .sort("date", "provider")
    )
    by_day: dict[str, dict[str, Any]] = {}
    for r in truth.iter_rows(named=True):
        by_day.setdefault(r["date"].isoformat(), {})[r["provider"]] = {
            "attempts": r["attempts"],
            "successful": r["successful"],
            "unpriced": r["unpriced"],
            "cost_usd": jsonio.dec_text(Decimal(r["cost_usd"])),
        }
    usage = billing.rollup(
        reports.agg_rows,
        lambda r: (r["date"].isoformat(), r["provider"], r["model"]),
        (
            "requests",
            "input_tokens",
            "cache_read_tokens",
            "cache_write_tokens",
            "cache_write_1h_tokens",
            "output_tokens",
            "reasoning_tokens",
            "image_count",
            "cost_usd",
        ),
    )
    by_model: dict[str, dict[str, dict[str, Any]]] = {}
    for (day, provider, model), g in usage.items():
        g = dict(g)
        g["cost_usd"] = jsonio.dec_text(Decimal(g["cost_usd"]))
        by_model.setdefault(day, {}).setdefault(provider, {})[model] = g
    months = {
        month: {
            p: {
                "usage_exact_usd": jsonio.dec_text(s["usage_exact"]),
                "usage_usd": jsonio.cents(s["usage"]),
                "credit_usd": jsonio.cents(s["credit"]),
                "tax_usd": jsonio.cents(s["tax"]),
                "invoice_total_usd": jsonio.cents(s["total"]),
            }
            for p, s in sorted(providers.items())
        }
        for month, providers in sorted(reports.months.items())
    }
    grand = priced.select(pl.col("cost_usd").sum()).item()
    return {
        "cost_usd": jsonio.dec_text(Decimal(grand)),
        "by_day_provider": by_day,
        "provider_usage_by_day_model": by_model,
        "by_month_provider": months,
    }


def generate(
    out_dir: Path,
    days: int,
    requests_per_day: int,
    seed: int,
    start: dt.date = DEFAULT_START,
    faults: FaultSpec | None = None,
) -> GenerationManifest:
    """Write the dataset under out_dir and return its manifest (also in manifest.json)."""
    spec = faults or FaultSpec()
    _validate(days, requests_per_day, seed, spec, start)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    day_list = [start + dt.timedelta(d) for d in range(days)]

    attempts, spike_records = build_attempts(seed, start, days, requests_per_day, spec.spikes)
    priced = reprice(attempts.lazy(), Catalog.load([])).collect()

    files: dict[str, dict[str, Any]] = {
        rel: {"records": n} for rel, n in _write_truth(out, priced, day_list).items()
    }
    gw_files, recorded = _write_gateways(out, seed, priced, day_list, spec)
    files.update(gw_files)
    reports = billing.write_reports(
        out, priced, day_list, spec.invoice_mismatch, faults=spec.billing
    )
    files.update({rel: {"records": n} for rel, n in reports.files.items()})

    logical = priced.filter(pl.col("attempt") == 1).height
    unpriced = (
        priced.filter(pl.col("unpriced_reason").is_not_null())
        .group_by("unpriced_reason", "gateway")
        .len()
        .sort("unpriced_reason", "gateway")
    )
    data: dict[str, Any] = {
        "generator": "aispend datagen",
        "seed": seed,
        "start": start.isoformat(),
        "days": days,
        "requests_per_day": requests_per_day,
        "counts": {
            "logical_requests": logical,
            "attempts": priced.height,
            "by_gateway": {g: priced.filter(pl.col("gateway") == g).height for g in org.GATEWAYS},
            "by_status": {
                s: priced.filter(pl.col("status") == s).height
                for s in ("success", "error", "timeout")
            },
            "retries": priced.filter(pl.col("attempt") > 1).height,
            "batch": priced.filter(pl.col("batch")).height,
            "gateway_cache_hits": priced.filter(pl.col("gateway_cache_hit")).height,
            "long_context": priced.filter(pl.col("input_tokens") > 200_000).height,
            "unpriced": [
                {"reason": r, "gateway": g, "rows": n} for r, g, n in unpriced.iter_rows()
            ],
        },
        "files": dict(sorted(files.items())),
        "faults": {
            "spec": spec.describe(),
            "spikes": spike_records,
            "missing_logs": recorded["missing_logs"],
            "invoice_mismatch": reports.mismatches,
            "billing_faults": reports.billing_faults,
            "duplicates": recorded["duplicates"],
            "malformed": recorded["malformed"],
        },
        "anthropic_flattened_buckets": billing.flattened_buckets(day_list),
        "price_changes": PRICE_CHANGES,
        "totals": _totals(priced, reports),
    }
    path = out / "manifest.json"
    jsonio.write_json(path, data)
    return GenerationManifest(path, data)
