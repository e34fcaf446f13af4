"""Reconciliation settings from a YAML file: tolerances, gateway accounts, model aliases,
exchange rates for invoices in other currencies.

    tolerance:
      default: {abs_usd: "0.01", rel: "0.001", tokens_abs: 0, tokens_rel: "0"}
      openai: {abs_usd: "0.05"}            # per provider; unset keys take the default's
    known_accounts:                        # accounts (projects, workspaces, keys) the
      openai: [proj_abc, proj_def]         # gateway uses; usage elsewhere is bypass
    model_aliases:                         # reported or logged name -> model group
      my-finetune-v2: gpt-4o-mini
    fx_rates:                              # invoice currency -> billing month -> USD per
      EUR: {"2025-09": "1.0870"}           # one unit (quote rates: exact decimal text)
      GBP: {"2025-09": "1.2710"}

Money and rates are read as decimal text (quote them, or write plain numbers: they go
through `str`, never float arithmetic). A mistake is one `InputError` naming the file and key.
"""

from __future__ import annotations

import re
from dataclasses import replace
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import yaml

from transforms.canonical_reader import InputError
from transforms.reconcile import ReconcileConfig, Tolerance

TOLERANCE_KEYS = ("abs_usd", "rel", "tokens_abs", "tokens_rel")
TOP_KEYS = {"tolerance", "known_accounts", "model_aliases", "fx_rates"}
CURRENCY = re.compile(r"^[A-Z]{3}$")
MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


def _decimal(path: Path, key: str, value: Any) -> Decimal:
    if isinstance(value, bool):
        raise InputError(f"{path}: {key}: expected a number, got {value!r}")
    try:
        result = Decimal(str(value))
    except InvalidOperation:
        raise InputError(f"{path}: {key}: expected a number, got {value!r}") from None
    if result < 0 or not result.is_finite():
        raise InputError(f"{path}: {key}: must be a finite number >= 0, got {value!r}")
    return result


def _tolerance(path: Path, key: str, raw: Any, base: Tolerance) -> Tolerance:
    if not isinstance(raw, dict):
        raise InputError(f"{path}: {key}: expected a mapping of {', '.join(TOLERANCE_KEYS)}")
    unknown = sorted(set(raw) - set(TOLERANCE_KEYS))
    if unknown:
        raise InputError(f"{path}: {key}.{unknown[0]}: unknown key (one of {TOLERANCE_KEYS})")
    values: dict[str, Any] = {}
    for k, v in raw.items():
        d = _decimal(path, f"{key}.{k}", v)
        if k == "tokens_abs":
            if d != d.to_integral():
                raise InputError(f"{path}: {key}.{k}: expected a whole number, got {v!r}")
            values[k] = int(d)
        else:
            values[k] = d
    return replace(base, **values)


def _fx_rates(path: Path, raw: Any) -> dict[str, dict[str, Decimal]]:
    """currency -> {YYYY-MM: USD per unit}; a rate must be > 0 (a zero rate would price a
    whole invoice at $0)."""
    if not isinstance(raw, dict):
        raise InputError(f"{path}: fx_rates: expected currency: {{YYYY-MM: rate}}")
    out: dict[str, dict[str, Decimal]] = {}
    for cur, months in raw.items():
        code = str(cur).upper()
        if not CURRENCY.match(code) or code == "USD":
            raise InputError(f"{path}: fx_rates.{cur}: expected a 3-letter currency other than USD")
        if not isinstance(months, dict) or not months:
            raise InputError(f"{path}: fx_rates.{cur}: expected a mapping of YYYY-MM: rate")
        for month, value in months.items():
            key = f"fx_rates.{cur}.{month}"
            # YAML reads an unquoted 2025-09 as text, but 2025-9 or a date as something else.
            if not MONTH.match(str(month)):
                raise InputError(f"{path}: {key}: expected a month YYYY-MM (quote it)")
            rate = _decimal(path, key, value)
            if rate == 0:
                raise InputError(f"{path}: {key}: a rate must be > 0")
            if rate.as_tuple().exponent < -10:  # type: ignore[operator]
                raise InputError(f"{path}: {key}: at most 10 decimals, got {value!r}")
            out.setdefault(code, {})[str(month)] = rate
    return out


def load_config(path: Path) -> ReconcileConfig:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise InputError(f"{path}:{where} not valid YAML") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a mapping at the top level")
    unknown = sorted(set(data) - TOP_KEYS)
    if unknown:
        raise InputError(f"{path}: {unknown[0]}: unknown key")
    tol = data.get("tolerance") or {}
    if not isinstance(tol, dict):
        raise InputError(f"{path}: tolerance: expected a mapping")
    default = _tolerance(path, "tolerance.default", tol.get("default", {}), Tolerance())
    per_provider = {
        str(p): _tolerance(path, f"tolerance.{p}", raw, default)
        for p, raw in tol.items()
        if p != "default"
    }
    accounts_raw = data.get("known_accounts") or {}
    if not isinstance(accounts_raw, dict) or not all(
        isinstance(v, list) for v in accounts_raw.values()
    ):
        raise InputError(f"{path}: known_accounts: expected provider: [account ids]")
    aliases = data.get("model_aliases") or {}
    if not isinstance(aliases, dict):
        raise InputError(f"{path}: model_aliases: expected a mapping of name: group")
    return ReconcileConfig(
        default=default,
        tolerances=per_provider,
        known_accounts={str(p): frozenset(map(str, v)) for p, v in accounts_raw.items()},
        model_aliases={str(k): str(v) for k, v in aliases.items()},
        fx_rates=_fx_rates(path, data.get("fx_rates") or {}),
    )
