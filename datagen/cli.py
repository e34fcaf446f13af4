"""Command-line entry: `aispend generate ...` arguments -> generate().

`generate_from_args` takes the already-split CLI values (strings as typed) and returns the
manifest dict; `main(argv)` parses argv itself for `python -m datagen`.

    --spike feature:day:multiplier   day = YYYY-MM-DD or a 0-based offset from --start
    --missing-logs gateway:day       gateway = litellm|helicone|openrouter|cloudflare|otel
    --invoice-mismatch provider:amount   USD, e.g. anthropic:12.34 (may be negative)
    --duplicates RATE / --malformed RATE  fraction of every gateway file's lines
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from datagen.build import DEFAULT_START, generate
from datagen.faults import FaultSpec
from datagen.traffic import Spike

USAGE = (
    "usage: generate --days N --requests-per-day M --seed S --out DIR [--start DATE]\n"
    "       [--spike feature:day:multiplier]... [--missing-logs gateway:day]...\n"
    "       [--invoice-mismatch provider:amount]... [--duplicates RATE] [--malformed RATE]"
)


class UsageError(ValueError):
    """A bad command-line value; the message names the option and the value."""


def _day(text: str, start: dt.date, option: str) -> dt.date:
    text = text.strip()
    if text.isdigit():
        return start + dt.timedelta(int(text))
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise UsageError(f"{option}: {text!r} is not a date (YYYY-MM-DD) or a day offset") from None


def _parts(text: str, n: int, option: str, shape: str) -> list[str]:
    parts = text.split(":")
    if len(parts) != n or not all(p.strip() for p in parts):
        raise UsageError(f"{option}: expected {shape}, got {text!r}")
    return [p.strip() for p in parts]


def _rate(value: float | str | None, option: str) -> float:
    if value is None:
        return 0.0
    try:
        rate = float(value)
    except ValueError:
        raise UsageError(f"{option}: {value!r} is not a number") from None
    if not 0 <= rate < 1:
        raise UsageError(f"{option}: rate must be in [0, 1), got {value}")
    return rate


def fault_spec(
    start: dt.date,
    spikes: Sequence[str] = (),
    missing: Sequence[str] = (),
    mismatch: Sequence[str] = (),
    duplicates: float | str | None = None,
    malformed: float | str | None = None,
) -> FaultSpec:
    spike_list = []
    for text in spikes:
        feature, day, mult = _parts(text, 3, "--spike", "feature:day:multiplier")
        try:
            multiplier = float(mult)
        except ValueError:
            raise UsageError(f"--spike: multiplier {mult!r} is not a number") from None
        spike_list.append(Spike(feature, _day(day, start, "--spike"), multiplier))
    missing_list = []
    for text in missing:
        gateway, day = _parts(text, 2, "--missing-logs", "gateway:day")
        missing_list.append((gateway, _day(day, start, "--missing-logs")))
    mismatch_list = []
    for text in mismatch:
        provider, amount = _parts(text, 2, "--invoice-mismatch", "provider:amount")
        try:
            mismatch_list.append((provider, Decimal(amount)))
        except InvalidOperation:
            raise UsageError(f"--invoice-mismatch: amount {amount!r} is not a number") from None
    return FaultSpec(
        spikes=tuple(spike_list),
        missing_logs=tuple(missing_list),
        invoice_mismatch=tuple(mismatch_list),
        duplicate_rate=_rate(duplicates, "--duplicates"),
        malformed_rate=_rate(malformed, "--malformed"),
    )


def generate_from_args(
    days: int,
    requests_per_day: int,
    seed: int,
    out: str | Path,
    start: str | dt.date | None = None,
    spikes: Sequence[str] = (),
    missing: Sequence[str] = (),
    mismatch: Sequence[str] = (),
    duplicates: float | str | None = None,
    malformed: float | str | None = None,
) -> dict[str, Any]:
    """The `aispend generate` command: returns the manifest dict (also in out/manifest.json).

    Raises UsageError (a ValueError) for a bad value, naming the option."""
    if start is None:
        start_day = DEFAULT_START
    elif isinstance(start, dt.date):
        start_day = start
    else:
        try:
            start_day = dt.date.fromisoformat(start)
        except ValueError:
            raise UsageError(f"--start: {start!r} is not a date (YYYY-MM-DD)") from None
    spec = fault_spec(start_day, spikes, missing, mismatch, duplicates, malformed)
    try:
        manifest = generate(Path(out), days, requests_per_day, seed, start_day, spec)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return manifest.data


def _parse(argv: Sequence[str]) -> dict[str, Any]:
    single = {
        "--days": "days",
        "--requests-per-day": "requests_per_day",
        "--seed": "seed",
        "--out": "out",
        "--start": "start",
        "--duplicates": "duplicates",
        "--malformed": "malformed",
    }
    multi = {"--spike": "spikes", "--missing-logs": "missing", "--invoice-mismatch": "mismatch"}
    args: dict[str, Any] = {v: [] for v in multi.values()}
    items = list(argv)
    i = 0
    while i < len(items):
        opt, _, inline = items[i].partition("=")
        if opt not in single and opt not in multi:
            raise UsageError(f"unknown option {items[i]!r}")
        if inline:
            value = inline
        else:
            if i + 1 >= len(items):
                raise UsageError(f"{opt}: missing value")
            i += 1
            value = items[i]
        if opt in multi:
            args[multi[opt]].append(value)
        else:
            args[single[opt]] = value
        i += 1
    for req in ("days", "requests_per_day", "seed", "out"):
        if req not in args:
            raise UsageError(f"--{req.replace('_', '-')} is required")
    for name in ("days", "requests_per_day", "seed"):
        try:
            args[name] = int(args[name])
        except ValueError:
            raise UsageError(
                f"--{name.replace('_', '-')}: {args[name]!r} is not an integer"
            ) from None
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m datagen --days 35 ...`: writes the dataset, prints a one-line summary."""
    try:
        args = _parse(sys.argv[1:] if argv is None else argv)
        manifest = generate_from_args(**args)
    except UsageError as exc:
        print(f"error: {exc}\n{USAGE}", file=sys.stderr)
        return 2
    summary = {
        "out": str(args["out"]),
        "attempts": manifest["counts"]["attempts"],
        "files": len(manifest["files"]),
        "cost_usd": manifest["totals"]["cost_usd"],
    }
    print(json.dumps(summary))
    return 0
