"""Small Polars expression helpers shared by the transforms."""

from __future__ import annotations

from collections.abc import Iterable

import polars as pl


def join_flags(exprs: Iterable[pl.Expr]) -> pl.Expr:
    """Semicolon-joined non-null strings, or null when every part is null."""
    parts = list(exprs)
    if not parts:
        return pl.lit(None, pl.String)
    joined = pl.concat_str(parts, separator=";", ignore_nulls=True)
    return pl.when(joined == "").then(None).otherwise(joined)


def first_non_null(exprs: Iterable[pl.Expr]) -> pl.Expr:
    return pl.coalesce(list(exprs))


def flag_if(condition: pl.Expr, flag: str) -> pl.Expr:
    return pl.when(condition).then(pl.lit(flag)).otherwise(None)


def seconds_of_day(ts: pl.Expr) -> pl.Expr:
    return (
        ts.dt.hour().cast(pl.Int32) * 3600
        + ts.dt.minute().cast(pl.Int32) * 60
        + ts.dt.second().cast(pl.Int32)
    )


def zero_if_null(name: str) -> pl.Expr:
    return pl.col(name).fill_null(0)


def exact_quantity(name: str, decimals: int = 3) -> pl.Expr:
    """A float quantity (seconds) as an exact Decimal rounded to `decimals` places, so binary
    float noise (0.1 -> 0.1000000000000000055) never reaches money arithmetic."""
    return pl.col(name).cast(pl.Decimal(38, decimals))


# API keys of OpenAI (sk-, sk-proj-), Anthropic (sk-ant-), OpenRouter (sk-or-), Helicone
# (sk-/pk-helicone-) and the like: masked wherever raw log text is kept.
SECRET_PATTERN = r"\b(?:sk|pk|rk)-[A-Za-z0-9_\-]{8,}"
REDACTED = "[redacted-key]"


def redact_secrets(text: pl.Expr) -> pl.Expr:
    return text.str.replace_all(SECRET_PATTERN, REDACTED)
