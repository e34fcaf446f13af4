"""Read canonical request files (JSONL, CSV, Parquet) into the canonical schema.

File-level problems are fatal and reported as one line naming the file, row and field:
unreadable file, unknown format, missing required column, a value of the wrong type.
Row-level problems are not fatal: the row is kept and carries its reasons in `row_issues`
(unparseable timestamp, missing required value, unknown status), so nothing is dropped.

Timestamps: RFC 3339 with offset or Z, naive ISO strings (taken as UTC), epoch seconds,
milliseconds or microseconds (by magnitude), or Parquet datetimes (naive = UTC).
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from transforms.expressions import flag_if, join_flags
from transforms.schema import (
    CANONICAL_SCHEMA,
    COLUMN_DEFAULTS,
    MODALITIES,
    REQUIRED_COLUMNS,
    ROW_ISSUES,
    SERVICE_TIERS,
    STATUSES,
    UTC_DATETIME,
)
from transforms.timestamps import parse_utc

FORMATS = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".csv": "csv",
    ".parquet": "parquet",
}
TIMESTAMP_COLUMNS = ("started_at", "first_token_at", "ended_at")
TRUE_WORDS = ("true", "t", "1", "yes", "y")
FALSE_WORDS = ("false", "f", "0", "no", "n", "")


class InputError(Exception):
    """A user mistake in an input file: one line, no traceback."""


def file_format(path: Path) -> str:
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InputError(
            f"{path}: unknown file type '{path.suffix}' (use .jsonl, .csv or .parquet)"
        )
    return fmt


def _row_label(fmt: str, index: int) -> str:
    # JSONL rows are lines; CSV adds the header line; Parquet rows are counted from 1.
    return (
        f"line {index + 1}"
        if fmt == "jsonl"
        else f"line {index + 2}"
        if fmt == "csv"
        else f"row {index + 1}"
    )


def _read_raw(path: Path, fmt: str) -> pl.LazyFrame:
    if not path.is_file():
        raise InputError(f"{path}: cannot read file: no such file")
    try:
        if fmt == "parquet":
            lf = pl.scan_parquet(path)
            lf.collect_schema()
            return lf
        if fmt == "csv":
            return pl.read_csv(path, infer_schema=False, encoding="utf8").lazy()
        columns = _jsonl_columns(path)
        return pl.read_ndjson(path, schema={c: pl.String for c in columns}).lazy()
    except InputError:
        raise
    except (pl.exceptions.PolarsError, OSError, UnicodeDecodeError, ValueError) as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{path}: cannot read file: {detail}") from None


def _jsonl_columns(path: Path) -> list[str]:
    """Every key used in the file, in first-seen order; pinpoints the first malformed line."""
    seen: dict[str, None] = {}
    with path.open("rb") as fh:
        for number, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise InputError(
                    f"{path}: line {number}: not valid JSON ({exc.__class__.__name__})"
                ) from None
            if not isinstance(record, dict):
                raise InputError(f"{path}: line {number}: expected a JSON object")
            for key in record:
                seen.setdefault(key, None)
    return list(seen)


def _parse_timestamp(name: str, dtype: pl.DataType) -> pl.Expr:
    return parse_utc(pl.col(name), dtype)


def _coerce(name: str, source: pl.DataType, target: pl.DataType) -> pl.Expr:
    col = pl.col(name)
    if source == target:
        return col
    if target == pl.Boolean and source == pl.String:
        lowered = col.str.strip_chars().str.to_lowercase()
        return (
            pl.when(lowered.is_in(TRUE_WORDS))
            .then(True)
            .when(lowered.is_in(FALSE_WORDS))
            .then(False)
        )
    if target.is_integer() and source == pl.String:
        as_float = col.str.strip_chars().cast(pl.Float64, strict=False)
        return pl.when(as_float == as_float.round(0)).then(as_float).cast(target, strict=False)
    if target.is_integer() and source.is_float():
        return pl.when(col == col.round(0)).then(col).cast(target, strict=False)
    if target.is_decimal():
        return col.cast(pl.String).str.strip_chars().cast(target, strict=False)
    if target == pl.String:
        text = col.cast(pl.String)
        return pl.when(text.str.strip_chars() == "").then(None).otherwise(text)
    return col.cast(target, strict=False)


def _check_types(lf: pl.LazyFrame, path: Path, fmt: str, coerced: dict[str, pl.Expr]) -> None:
    """A value present in the file that does not fit its column's type is fatal."""
    schema = lf.collect_schema()
    names = [n for n in coerced if schema[n] != CANONICAL_SCHEMA[n]]
    if not names:
        return
    bad = pl.any_horizontal([pl.col(n).is_not_null() & coerced[n].is_null() for n in names])
    hits = lf.with_row_index("_row").filter(bad).head(1).collect()
    if not hits.height:
        return
    for name in names:
        one = hits.select(pl.col(name).is_not_null() & coerced[name].is_null()).item()
        if one:
            raise InputError(
                f"{path}: {_row_label(fmt, hits['_row'][0])}: field '{name}': "
                f"expected {_type_word(CANONICAL_SCHEMA[name])}, got {hits[name][0]!r}"
            )


def _type_word(dtype: pl.DataType) -> str:
    if dtype.is_integer():
        return "a whole number"
    if dtype.is_numeric():
        return "a number"
    if dtype == pl.Boolean:
        return "true or false"
    return str(dtype)


def _row_issues() -> pl.Expr:
    issues = [
        flag_if(pl.col(c).is_null(), f"missing_value:{c}")
        for c in ("request_id", "provider", "model")
    ]
    issues += [
        flag_if(pl.col(f"_raw_{c}").is_not_null() & pl.col(c).is_null(), f"invalid_timestamp:{c}")
        for c in TIMESTAMP_COLUMNS
    ]
    issues.append(flag_if(pl.col("_raw_started_at").is_null(), "missing_value:started_at"))
    issues.append(flag_if(~pl.col("status").is_in(STATUSES), "invalid_value:status"))
    issues.append(flag_if(~pl.col("modality").is_in(MODALITIES), "invalid_value:modality"))
    issues.append(
        flag_if(
            pl.col("service_tier").is_not_null() & ~pl.col("service_tier").is_in(SERVICE_TIERS),
            "invalid_value:service_tier",
        )
    )
    return join_flags(issues)


def read_canonical(path: str | Path) -> pl.LazyFrame:
    """Canonical requests from a file, validated; raises InputError on file-level problems."""
    path = Path(path)
    fmt = file_format(path)
    raw = _read_raw(path, fmt)
    schema = raw.collect_schema()
    for name in REQUIRED_COLUMNS:
        if name not in schema:
            raise InputError(
                f"{path}: {_row_label(fmt, -1) if fmt != 'parquet' else 'schema'}: "
                f"field '{name}': required column is missing"
            )
    present = [n for n in CANONICAL_SCHEMA if n in schema]
    coerced = {
        n: _coerce(n, schema[n], CANONICAL_SCHEMA[n]) for n in present if n not in TIMESTAMP_COLUMNS
    }
    _check_types(raw, path, fmt, coerced)

    columns: list[pl.Expr] = []
    for name, dtype in CANONICAL_SCHEMA.items():
        if name in TIMESTAMP_COLUMNS:
            expr = (
                _parse_timestamp(name, schema[name])
                if name in schema
                else pl.lit(None, UTC_DATETIME)
            )
        elif name in coerced:
            expr = coerced[name]
        else:
            expr = pl.lit(None, dtype)
        if name in COLUMN_DEFAULTS:
            expr = expr.fill_null(pl.lit(COLUMN_DEFAULTS[name], dtype))
        columns.append(expr.cast(dtype).alias(name))
    raw_ts = [
        (pl.col(c) if c in schema else pl.lit(None, pl.String)).alias(f"_raw_{c}")
        for c in TIMESTAMP_COLUMNS
    ]
    canonical = raw.select(*columns, *raw_ts)
    canonical = canonical.with_columns(
        pl.col("provider").str.strip_chars().str.to_lowercase(),
        pl.col("status").str.strip_chars().str.to_lowercase(),
        pl.col("modality").str.strip_chars().str.to_lowercase(),
        pl.col("service_tier").str.strip_chars().str.to_lowercase(),
    )
    return canonical.with_columns(_row_issues().alias(ROW_ISSUES)).drop(
        [f"_raw_{c}" for c in TIMESTAMP_COLUMNS]
    )
