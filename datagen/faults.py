"""Injected faults: what they are, how they are applied to native lines, how they are recorded.

All faults are off by default. Each one is recorded in the manifest with enough detail for a
test to find it again (file relative to the output directory, 1-based line number).

* spikes: `Spike(feature, day, multiplier)` adds (multiplier - 1) x the feature's requests of
  that day (drawn like the others, from their own random stream: the rest of the traffic is
  unchanged). It is real traffic: the truth, the logs and the provider reports all have it.
* missing_logs: `(gateway, day)`: that gateway's file of that day is not written. The truth
  and the provider reports still have its requests.
* invoice_mismatch: `(provider, amount)`: the largest usage line of the provider's first
  invoice is off by `amount` (USD, may be negative); the usage reports stay right.
* duplicate_rate: that fraction of every gateway file's lines (at least one when > 0) is
  delivered twice: byte-identical copies appended at the end of the file.
* billing faults (`BillingFaults`, applied by datagen.billing to the provider reports and the
  invoices; the truth and the gateway logs never change), each recorded with its exact
  amount in `billing.Reports.billing_faults` (`FaultSpec.billing` is applied when
  datagen.build passes it to `billing.write_reports(..., faults=)`):
  - price_changes `(provider, model, since, factor)`: from `since` on, the provider bills the
    model (substring of the billed model name) at `factor` x the catalog price, tokens equal.
  - bypass `(provider, day)`: the provider also bills a copy of that day's usage on a project
    or workspace the gateway never uses (openai, anthropic: accounts are per team).
  - tier_mismatch `(provider, day)`: that day's default-tier usage is billed as priority, at
    twice the price (openai: the only report that names the tier).
  - duplicate_billing `(provider, ...)`: the largest usage line of the provider's first
    invoice appears twice.
  - restated `(provider, ...)`: a correction invoice takes back the provider's
    invoice_mismatch (`is_correction` lines pointing at the original invoice).
* malformed_rate: that fraction of every gateway file's lines (at least one when > 0) is
  corrupted in place, cycling through `truncated_json` (the first half of the line),
  `wrong_type` (the output-token field becomes the string "<n> tokens") and
  `negative_tokens` (the output-token field is negated); lines without a positive output
  count get truncated instead. The truth keeps the real request: a log line was damaged, not
  the call.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import numpy as np

from datagen.traffic import Spike

# The output-token field of each gateway's lines (dotted names are OTel attribute keys).
TOKEN_FIELD = {
    "litellm": "completion_tokens",
    "helicone": "completion_tokens",
    "openrouter": "native_tokens_completion",
    "cloudflare": "tokens_out",
    "otel": "gen_ai.usage.output_tokens",
}
MALFORMED_KINDS = ("truncated_json", "wrong_type", "negative_tokens")


@dataclass(frozen=True)
class BillingFaults:
    price_changes: tuple[tuple[str, str, dt.date, Decimal], ...] = ()
    bypass: tuple[tuple[str, dt.date], ...] = ()
    tier_mismatch: tuple[tuple[str, dt.date], ...] = ()
    duplicate_billing: tuple[str, ...] = ()
    restated: tuple[str, ...] = ()
    # (provider, currency, USD per one unit): that provider invoices in another currency,
    # converting its exact cost at that rate before rounding to the currency's cents.
    currency: tuple[tuple[str, str, Decimal], ...] = ()

    def describe(self) -> dict[str, Any]:
        return {
            "currency": [
                {"provider": p, "currency": c, "usd_per_unit": str(r)} for p, c, r in self.currency
            ],
            "price_changes": [
                {"provider": p, "model": m, "since": d.isoformat(), "factor": str(f)}
                for p, m, d, f in self.price_changes
            ],
            "bypass": [{"provider": p, "date": d.isoformat()} for p, d in self.bypass],
            "tier_mismatch": [
                {"provider": p, "date": d.isoformat()} for p, d in self.tier_mismatch
            ],
            "duplicate_billing": list(self.duplicate_billing),
            "restated": list(self.restated),
        }


@dataclass(frozen=True)
class FaultSpec:
    spikes: tuple[Spike, ...] = ()
    missing_logs: tuple[tuple[str, dt.date], ...] = ()
    invoice_mismatch: tuple[tuple[str, Decimal], ...] = ()
    duplicate_rate: float = 0.0
    malformed_rate: float = 0.0
    billing: BillingFaults | None = None

    def describe(self) -> dict[str, Any]:
        extra = {"billing": self.billing.describe()} if self.billing else {}
        return {
            **extra,
            "spikes": [
                {"feature": s.feature, "date": s.day.isoformat(), "multiplier": s.multiplier}
                for s in self.spikes
            ],
            "missing_logs": [{"gateway": g, "date": d.isoformat()} for g, d in self.missing_logs],
            "invoice_mismatch": [
                {"provider": p, "amount": str(a)} for p, a in self.invoice_mismatch
            ],
            "duplicate_rate": self.duplicate_rate,
            "malformed_rate": self.malformed_rate,
        }


def _count(rate: float, n: int) -> int:
    if rate <= 0 or n == 0:
        return 0
    return min(n, max(1, round(rate * n)))


def corrupt(
    rng: np.random.Generator,
    gateway: str,
    rel: str,
    lines: list[str],
    keys: list[tuple[str, int]],
    rate: float,
    first_kind: int = 0,
) -> tuple[set[int], list[dict[str, Any]]]:
    """Corrupt lines in place; returns (0-based indices corrupted, manifest records).

    Kinds cycle from `first_kind` (the number of lines corrupted in earlier files), so that
    small files together still get every kind."""
    k = _count(rate, len(lines))
    if not k:
        return set(), []
    chosen = sorted(rng.choice(len(lines), size=k, replace=False).tolist())
    name = TOKEN_FIELD[gateway]
    pattern = re.compile(f'"{re.escape(name)}":([1-9][0-9]*)')
    records = []
    for j, i in enumerate(chosen):
        kind = MALFORMED_KINDS[(first_kind + j) % len(MALFORMED_KINDS)]
        line = lines[i]
        match = pattern.search(line)
        if kind != "truncated_json" and match is None:
            kind = "truncated_json"
        if kind == "truncated_json":
            lines[i] = line[: max(1, len(line) // 2)]
            fld = None
        elif kind == "wrong_type":
            assert match is not None
            lines[i] = (
                line[: match.start()] + f'"{name}":"{match.group(1)} tokens"' + line[match.end() :]
            )
            fld = name
        else:
            assert match is not None
            lines[i] = line[: match.start()] + f'"{name}":-{match.group(1)}' + line[match.end() :]
            fld = name
        request_id, attempt = keys[i]
        records.append(
            {
                "file": rel,
                "line": i + 1,
                "kind": kind,
                "field": fld,
                "request_id": request_id,
                "attempt": attempt,
            }
        )
    return set(chosen), records


def duplicate(
    rng: np.random.Generator,
    rel: str,
    lines: list[str],
    keys: list[tuple[str, int]],
    rate: float,
    exclude: set[int],
) -> list[dict[str, Any]]:
    """Append byte-identical copies of some lines at the end of the file."""
    candidates = [i for i in range(len(lines)) if i not in exclude]
    k = _count(rate, len(candidates))
    if not k:
        return []
    picked = sorted(rng.choice(len(candidates), size=k, replace=False).tolist())
    n = len(lines)
    records = []
    for j, p in enumerate(picked):
        i = candidates[p]
        lines.append(lines[i])
        request_id, attempt = keys[i]
        records.append(
            {
                "file": rel,
                "line": n + j + 1,
                "original_line": i + 1,
                "request_id": request_id,
                "attempt": attempt,
            }
        )
    return records
