"""What every adapter shares: the source context, robust record readers, value coercion,
canonical assembly, and the rules the gateway adapters have in common (HTTP status codes,
hashed keys, secret scrubbing, staged intermediates, durations, cache-token semantics).
Billing adapters share theirs in `sources.billing_common`.

Readers never drop a record: a line that is not valid JSON (or not UTF-8) comes back as a
row with `_parse_error` set, so normalization can quarantine it with its line number. A file
that cannot be read at all is one InputError naming it.

Reader output columns: `_line` (1-based line of JSONL/CSV data, or record number in a JSON
document), `_record` (the verbatim record text), `_parse_error`, then the record's fields.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from transforms.canonical_reader import InputError
from transforms.expressions import flag_if, join_flags
from transforms.schema import CANONICAL_SCHEMA, TOKEN_COLUMNS
from transforms.timestamps import parse_utc

META_COLUMNS = ("_line", "_record", "_parse_error")
LINEAGE_COLUMNS = ("source", "source_kind", "source_file", "source_line")


@dataclass(frozen=True)
class SourceContext:
    name: str  # the source's name in sources.yaml; the kind on the command line
    kind: str
    file: str
    timezone: str = "UTC"  # zone of naive timestamps in this source
    partition_day: dt.date | None = None  # the day the file belongs to, if its name says


def _open_bytes(path: Path) -> bytes:
    if not path.is_file():
        raise InputError(f"{path}: cannot read file: no such file")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read file: {exc.strerror or exc}") from None


def _meta_frame(lines: list[int], records: list[str], errors: list[str | None]) -> pl.DataFrame:
    return pl.DataFrame(
        {"_line": lines, "_record": records, "_parse_error": errors},
        schema={"_line": pl.Int64, "_record": pl.String, "_parse_error": pl.String},
    )


def _frame_from_objects(texts: list[str]) -> pl.DataFrame:
    """Parsed fields of JSON object texts (each known to be a valid object)."""
    if not texts:
        return pl.DataFrame()
    payload = "\n".join(texts).encode()
    try:
        return pl.read_ndjson(io.BytesIO(payload), infer_schema_length=None)
    except pl.exceptions.PolarsError:
        # Conflicting nested shapes polars cannot unify: fall back to text leaves, written
        # as compact JSON, the form Polars gives a nested value read as text (the batch
        # reader's fallback), so both readers hand the adapter the same string.
        rows = [
            {
                k: (
                    v
                    if v is None or isinstance(v, str)
                    else json.dumps(v, separators=(",", ":"), ensure_ascii=False)
                )
                for k, v in json.loads(t).items()
            }
            for t in texts
        ]
        keys = list(dict.fromkeys(k for r in rows for k in r))
        return pl.DataFrame(rows, schema={k: pl.String for k in keys})


def _assemble(lines: list[int], records: list[str], errors: list[str | None]) -> pl.DataFrame:
    meta = _meta_frame(lines, records, errors)
    good = [r for r, e in zip(records, errors, strict=True) if e is None]
    fields = _frame_from_objects(good)
    if not fields.width:
        return meta
    if len(good) == len(records):
        return pl.concat([meta, fields], how="horizontal")
    idx = pl.Series("_idx", [i for i, e in enumerate(errors) if e is None], dtype=pl.UInt32)
    fields = fields.with_columns(idx)
    return (
        meta.with_row_index("_idx")
        .join(fields, on="_idx", how="left", maintain_order="left")
        .drop("_idx")
    )


def _parse_lines(raw: bytes | bytearray) -> tuple[list[int], list[str], list[str | None]]:
    lines: list[int] = []
    records: list[str] = []
    errors: list[str | None] = []
    for number, chunk in enumerate(raw.split(b"\n"), start=1):
        if not chunk.strip():
            continue
        try:
            text = chunk.decode("utf-8").rstrip("\r")
        except UnicodeDecodeError:
            lines.append(number)
            records.append(chunk.decode("utf-8", errors="replace"))
            errors.append("invalid_encoding")
            continue
        error: str | None = None
        try:
            value = json.loads(text)
            if not isinstance(value, dict):
                error = "not_a_json_object"
            else:
                # "\udc00" escapes decode to lone surrogates, which no column can hold.
                json.dumps(value, ensure_ascii=False).encode("utf-8")
        except (json.JSONDecodeError, RecursionError):
            error = "invalid_json"
        except UnicodeEncodeError:
            error = "invalid_encoding"
        lines.append(number)
        records.append(text)
        errors.append(error)
    return lines, records, errors


def read_json_lines(path: Path) -> pl.DataFrame:
    """JSONL: one object per line. Fast path through Polars; per-line parsing when needed."""
    raw = _open_bytes(path)
    try:
        text = raw.decode("utf-8")
        fields = (
            pl.read_ndjson(io.BytesIO(raw), infer_schema_length=None)
            if text.strip()
            else pl.DataFrame()
        )
    except (UnicodeDecodeError, pl.exceptions.PolarsError):
        return _assemble(*_parse_lines(raw))
    all_lines = text.split("\n")
    numbered = [(i + 1, line.rstrip("\r")) for i, line in enumerate(all_lines) if line.strip()]
    if fields.height != len(numbered) or any(
        not line.lstrip().startswith("{") for _, line in numbered
    ):
        return _assemble(*_parse_lines(raw))
    meta = _meta_frame(
        [n for n, _ in numbered], [line for _, line in numbered], [None] * len(numbered)
    )
    return pl.concat([meta, fields], how="horizontal") if fields.width else meta


def read_json_document(path: Path, records_key: str | None = None) -> pl.DataFrame:
    """A JSON document holding records: a list, or an object with a list under `records_key`.

    A document that is not valid JSON is read as JSONL instead (many exports are)."""
    raw = _open_bytes(path)
    try:
        # Strict decoding first: json.loads(bytes) would let encoded surrogates through.
        doc: Any = json.loads(raw.decode("utf-8"))
        json.dumps(doc, ensure_ascii=False).encode("utf-8")
    except (json.JSONDecodeError, UnicodeDecodeError, UnicodeEncodeError, RecursionError):
        return read_json_lines(path)
    if isinstance(doc, dict) and records_key is not None and isinstance(doc.get(records_key), list):
        doc = doc[records_key]
    if isinstance(doc, dict):
        doc = [doc]
    if not isinstance(doc, list):
        raise InputError(
            f"{path}: expected a JSON list of records or an object, got {type(doc).__name__}"
        )
    lines, records, errors = [], [], []
    for number, item in enumerate(doc, start=1):
        lines.append(number)
        records.append(json.dumps(item, separators=(",", ":")))
        errors.append(None if isinstance(item, dict) else "not_a_json_object")
    return _assemble(lines, records, errors)


def read_csv_records(path: Path) -> pl.DataFrame:
    """CSV with a header: every field as text; `_line` is the data line (header = line 1)."""
    _open_bytes(path)
    try:
        frame = pl.read_csv(path, infer_schema=False, encoding="utf8", truncate_ragged_lines=False)
    except (pl.exceptions.PolarsError, UnicodeDecodeError) as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{path}: cannot read file: {detail}") from None
    record = pl.struct(pl.all()).struct.json_encode() if frame.width else pl.lit("{}")
    return frame.select(
        (pl.int_range(pl.len(), dtype=pl.Int64) + 2).alias("_line"),
        record.alias("_record"),
        pl.lit(None, pl.String).alias("_parse_error"),
        pl.all(),
    )


def read_records(path: Path, records_key: str | None = None) -> pl.DataFrame:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return read_json_lines(path)
    if suffix == ".json":
        return read_json_document(path, records_key)
    if suffix == ".csv":
        return read_csv_records(path)
    if suffix == ".parquet":
        _open_bytes(path)
        try:
            frame = pl.read_parquet(path)
        except (pl.exceptions.PolarsError, OSError) as exc:
            raise InputError(f"{path}: cannot read file: {str(exc).splitlines()[0]}") from None
        return frame.select(
            (pl.int_range(pl.len(), dtype=pl.Int64) + 1).alias("_line"),
            pl.struct(pl.all()).struct.json_encode().alias("_record"),
            pl.lit(None, pl.String).alias("_parse_error"),
            pl.all(),
        )
    raise InputError(
        f"{path}: unknown file type '{path.suffix}' (use .jsonl, .json, .csv or .parquet)"
    )


# --------------------------------------------------------------------------- field access
def field(schema: pl.Schema, *path: str) -> pl.Expr:
    """A possibly nested field, whether stored as a Struct or as a JSON string; null if absent.
    A list or object where a scalar belongs comes back as JSON text (flagged by coercion)."""
    return value(schema, *path)


def present(schema: pl.Schema, *path: str) -> bool:
    if not path or path[0] not in schema:
        return False
    dtype: pl.DataType = schema[path[0]]
    for key in path[1:]:
        if isinstance(dtype, pl.Struct):
            fields = {f.name: f.dtype for f in dtype.fields}
            if key not in fields:
                return False
            dtype = fields[key]
        else:
            return dtype == pl.String
    return True


def list_text(schema: pl.Schema, name: str) -> pl.Expr:
    """A list column (or its JSON text) as one comma-joined string, for pattern matching."""
    if name not in schema:
        return pl.lit(None, pl.String)
    dtype = schema[name]
    if isinstance(dtype, pl.List):
        return pl.col(name).cast(pl.List(pl.String), strict=False).list.join(",")
    if isinstance(dtype, pl.Struct):  # an object where a list belongs: match on its JSON
        return pl.col(name).struct.json_encode()
    return pl.col(name).cast(pl.String, strict=False)


def as_text(expr: pl.Expr) -> pl.Expr:
    text = expr.cast(pl.String).str.strip_chars()
    return pl.when(text == "").then(None).otherwise(text)


MAX_COUNT = 2**62  # larger "counts" are broken values, and sums of them would overflow


def as_int(expr: pl.Expr, dtype: pl.DataType | None = None) -> pl.Expr:
    """Whole numbers from ints, integral floats or numeric text, exactly; null otherwise
    (and beyond +-2**62). `dtype`: the raw dtype when known, an integer one skips text."""
    if dtype is not None and dtype.is_integer():
        value = expr.cast(pl.Int64, strict=False)
    else:
        text = expr.cast(pl.String).str.strip_chars()
        as_float = text.cast(pl.Float64, strict=False)
        ok = as_float.is_finite() & (as_float == as_float.round(0)) & (as_float.abs() < MAX_COUNT)
        value = pl.coalesce(
            text.cast(pl.Int64, strict=False),  # exact, where a float would round (> 2**53)
            pl.when(ok).then(as_float).cast(pl.Int64, strict=False),
        )
    return pl.when((value > -MAX_COUNT) & (value < MAX_COUNT)).then(value)


def as_float(expr: pl.Expr, dtype: pl.DataType | None = None) -> pl.Expr:
    """Finite floats from numbers or numeric text; null otherwise."""
    if dtype is not None and dtype.is_numeric():
        value = expr.cast(pl.Float64)
    else:
        value = expr.cast(pl.String).str.strip_chars().cast(pl.Float64, strict=False)
    return pl.when(value.is_finite()).then(value)


def as_bool(expr: pl.Expr) -> pl.Expr:
    text = expr.cast(pl.String).str.strip_chars().str.to_lowercase()
    return (
        pl.when(text.is_in(["true", "t", "1", "yes", "y"]))
        .then(True)
        .when(text.is_in(["false", "f", "0", "no", "n"]))
        .then(False)
    )


def as_money(expr: pl.Expr, scale_divisor: int = 1) -> pl.Expr:
    """USD as exact Decimal from numbers or numeric text (via text: no binary float noise)."""
    from transforms.schema import MONEY

    text = expr.cast(pl.String).str.strip_chars()
    value = text.cast(pl.Decimal(38, 18), strict=False)
    if scale_divisor != 1:
        value = value / pl.lit(scale_divisor).cast(pl.Decimal(38, 0))
    return value.cast(MONEY, strict=False)


def as_utc(expr: pl.Expr, dtype: pl.DataType, zone: str) -> pl.Expr:
    return parse_utc(expr, dtype, zone)


def bad_value(raw: pl.Expr, parsed: pl.Expr, name: str) -> pl.Expr:
    """A flag when a value is present but could not be read as its type."""
    return flag_if(
        raw.is_not_null() & (as_text(raw.cast(pl.String)).is_not_null()) & parsed.is_null(),
        f"invalid_value:{name}",
    )


def lineage(ctx: SourceContext) -> list[pl.Expr]:
    return [
        pl.lit(ctx.name, pl.String).alias("source"),
        pl.lit(ctx.kind, pl.String).alias("source_kind"),
        pl.lit(ctx.file, pl.String).alias("source_file"),
        pl.col("_line").alias("source_line"),
    ]


def dtype_of(schema: pl.Schema, name: str) -> pl.DataType:
    return schema[name] if name in schema else pl.String()


def first_present(schema: pl.Schema, *paths: Sequence[str]) -> pl.Expr:
    exprs = [field(schema, *p) for p in paths if present(schema, *p)]
    return pl.coalesce(exprs) if exprs else pl.lit(None)


# --------------------------------------------------------------------------- canonical rows
def _compact_json_batch(texts: pl.Series) -> pl.Series:
    container = texts.str.starts_with("{") | texts.str.starts_with("[")
    if not container.any():
        return texts
    compact = texts.str.json_path_match("$")
    return (
        pl.DataFrame({"t": texts, "c": compact, "k": container})
        .select(pl.when(pl.col("k") & pl.col("c").is_not_null()).then("c").otherwise("t"))
        .to_series()
        .alias(texts.name)
    )


def compact_json(text: pl.Expr) -> pl.Expr:
    """`text`, with a value that is a JSON object or array rewritten as compact JSON. An
    object where a text field belongs reaches an adapter as JSON text in two spellings:
    verbatim (`{"a": 1}`, a column Polars inferred as text because other rows hold strings)
    or re-encoded (`{"a":1}`, a column inferred as a struct); one spelling keeps the result
    independent of the other rows of the file and of the reader. Batches without such a
    value (nearly all) are passed through untouched."""
    return text.map_batches(_compact_json_batch, return_dtype=pl.String, is_elementwise=True)


def coerce(expr: pl.Expr, dtype: pl.DataType, raw: pl.DataType | None = None) -> pl.Expr:
    """A raw value (of dtype `raw`, when known) as the canonical dtype; null when it cannot
    be read."""
    if dtype == pl.String:
        return compact_json(as_text(expr))
    if dtype == pl.Boolean:
        return as_bool(expr)
    if dtype.is_integer():
        return as_int(expr, raw).cast(dtype, strict=False)
    if dtype.is_float():
        return as_float(expr, raw)
    if dtype.is_decimal():
        return as_money(expr)
    raise TypeError(f"no coercion to {dtype}")


def _missing(column: str) -> pl.Expr:
    """missing_value:<column>, unless the value was there but unreadable (already flagged)."""
    already = pl.col("_issues").fill_null("").str.contains(f"invalid_[a-z]+:{column}(;|$)")
    return flag_if(pl.col(column).is_null() & ~already, f"missing_value:{column}")


def assemble(
    raw: pl.LazyFrame,
    ctx: SourceContext,
    values: dict[str, pl.Expr],
    timestamps: dict[str, tuple[pl.Expr, pl.DataType]],
    extra_issues: Sequence[pl.Expr] = (),
    post: Sequence[pl.Expr] = (),
) -> pl.LazyFrame:
    """Canonical columns from raw expressions, with every problem named in `row_issues`.

    values: canonical column -> raw expression (coerced here; an unreadable value is flagged
    `invalid_value:<column>`). timestamps: canonical column -> (raw expression, its dtype).
    Columns not given are null (or their default). Output: NORMALIZED columns but the model
    resolution, plus `row_issues` and `_record`. `post`: expressions over the canonical
    columns applied after coercion (source rules such as "0 and 0 tokens means no usage").
    """
    from transforms.schema import (
        CANONICAL_SCHEMA,
        COLUMN_DEFAULTS,
        MODALITIES,
        ROW_ISSUES,
        SERVICE_TIERS,
        STATUSES,
    )

    # Each value is computed once, in one select, with a cheap "raw value present" flag
    # beside it; the checks then read those columns back. (Writing the check as
    # `bad_value(raw, coerce(raw))` inside one row_issues expression computes every value
    # twice: Polars does not share it between the column and the check.)
    raw_values = {n: e for n, e in values.items() if n not in timestamps}
    raw_schema = raw.select(
        [e.alias(n) for n, e in raw_values.items() if CANONICAL_SCHEMA[n] != pl.String]
    ).collect_schema()
    stage: list[pl.Expr] = []
    checked: list[tuple[str, str]] = []  # (column, flag when present but unreadable)
    for name, dtype in CANONICAL_SCHEMA.items():
        if name in timestamps:
            raw_expr, raw_dtype = timestamps[name]
            stage.append(as_utc(raw_expr, raw_dtype, ctx.timezone).alias(name))
            stage.append(raw_expr.is_not_null().alias(f"__present_{name}"))
            checked.append((name, f"invalid_timestamp:{name}"))
        elif name in raw_values:
            raw_expr = raw_values[name]
            raw_type = raw_schema[name] if dtype != pl.String else pl.String()
            stage.append(coerce(raw_expr, dtype, raw_type).alias(name))
            if dtype != pl.String:
                text_like = raw_type in (pl.String, pl.Null) or isinstance(raw_type, NESTED)
                present = raw_expr.is_not_null()
                if text_like:  # blank text is an absent value, not an unreadable one
                    present = present & as_text(raw_expr.cast(pl.String)).is_not_null()
                stage.append(present.alias(f"__present_{name}"))
                checked.append((name, f"invalid_value:{name}"))
        else:
            stage.append(pl.lit(None, dtype).alias(name))
    extras = [e.alias(f"__extra_{i}") for i, e in enumerate(extra_issues)]
    issues = [flag_if(pl.col(f"__present_{n}") & pl.col(n).is_null(), f) for n, f in checked]
    defaults = [
        pl.col(n).fill_null(pl.lit(COLUMN_DEFAULTS[n], CANONICAL_SCHEMA[n]))
        for n in CANONICAL_SCHEMA
        if n in COLUMN_DEFAULTS
    ]
    required = ("request_id", "started_at", "provider", "model")
    checks = [
        *[_missing(c) for c in required],
        flag_if(~pl.col("status").is_in(STATUSES), "invalid_value:status"),
        flag_if(~pl.col("modality").is_in(MODALITIES), "invalid_value:modality"),
        flag_if(
            pl.col("service_tier").is_not_null() & ~pl.col("service_tier").is_in(SERVICE_TIERS),
            "invalid_value:service_tier",
        ),
    ]
    unreadable = pl.lit("unreadable_record:") + pl.col("_parse_error")
    return (
        raw.select(*stage, *lineage(ctx), pl.col("_record"), pl.col("_parse_error"), *extras)
        .with_columns(
            join_flags([*issues, *[pl.col(e.meta.output_name()) for e in extras]]).alias("_issues")
        )
        .select(
            *[pl.col(n).cast(d) for n, d in CANONICAL_SCHEMA.items()],
            *LINEAGE_COLUMNS,
            "_record",
            "_parse_error",
            "_issues",
        )
        .with_columns(*defaults)
        .with_columns(*post)
        # Every adapter: a key pasted into a text column never reaches the lake.
        .with_columns(*scrub_secrets())
        .with_columns(
            # An unreadable line has nothing else worth saying about it.
            pl.when(pl.col("_parse_error").is_not_null())
            .then(unreadable)
            .otherwise(join_flags([pl.col("_issues"), *checks]))
            .alias(ROW_ISSUES)
        )
        .drop("_issues", "_parse_error")
    )


def assemble_rows(
    raw: pl.LazyFrame,
    ctx: SourceContext,
    schema: pl.Schema,
    values: dict[str, pl.Expr],
    required: Sequence[str],
    extra_issues: Sequence[pl.Expr] = (),
    post: Sequence[pl.Expr] = (),
) -> pl.LazyFrame:
    """Like `assemble`, for billing records: rows of `schema` (provider usage, invoice lines).

    values: column -> raw expression, coerced to the schema's dtype (Date columns from ISO
    dates, datetimes or epoch seconds, in the source's zone); unreadable values are flagged
    `invalid_value:<column>`, nulls in `required` columns `missing_value:<column>`. Lineage
    columns are filled from the context. Output: schema columns + `row_issues` + `_record`.
    """
    from transforms.schema import LINEAGE_SCHEMA, ROW_ISSUES

    s = raw.collect_schema()
    columns: list[pl.Expr] = []
    issues: list[pl.Expr] = []
    lineage_values = {e.meta.output_name(): e for e in lineage(ctx)}
    for name, dtype in schema.items():
        if name in LINEAGE_SCHEMA and name not in values:
            expr = lineage_values[name]
        elif name in values:
            raw_expr = values[name]
            if dtype == pl.Date:
                expr = as_utc(raw_expr, _raw_dtype(s, raw_expr), ctx.timezone).dt.date()
            else:
                expr = coerce(raw_expr, dtype)
            if dtype != pl.String:
                issues.append(bad_value(raw_expr, expr, name))
        else:
            expr = pl.lit(None, dtype)
        columns.append(expr.cast(dtype).alias(name))
    checks = [_missing(c) for c in required]
    unreadable = pl.lit("unreadable_record:") + pl.col("_parse_error")
    return (
        raw.select(
            *columns,
            pl.col("_record"),
            pl.col("_parse_error"),
            join_flags([*issues, *extra_issues]).alias("_issues"),
        )
        .with_columns(*post)
        .with_columns(
            pl.when(pl.col("_parse_error").is_not_null())
            .then(unreadable)
            .otherwise(join_flags([pl.col("_issues"), *checks]))
            .alias(ROW_ISSUES)
        )
        .drop("_issues", "_parse_error")
    )


def _raw_dtype(schema: pl.Schema, expr: pl.Expr) -> pl.DataType:
    """The dtype of a plain column expression (String for anything derived)."""
    names = expr.meta.root_names()
    if len(names) == 1 and expr.meta.is_column() and names[0] in schema:
        return schema[names[0]]
    return pl.String()


NESTED = (pl.List, pl.Array, pl.Struct)


def value(schema: pl.Schema, *path: str) -> pl.Expr:
    """A possibly nested field as a scalar: through Structs or JSON text. A nested value where
    a scalar is expected (a list, an object) comes back as its JSON text, so coercion flags it
    instead of failing; an absent field is null."""
    if not path or path[0] not in schema:
        return pl.lit(None, pl.String)
    expr = pl.col(path[0])
    dtype: pl.DataType = schema[path[0]]
    for i, key in enumerate(path[1:], start=1):
        if isinstance(dtype, pl.Struct):
            fields = {f.name: f.dtype for f in dtype.fields}
            if key not in fields:
                return pl.lit(None, pl.String)
            expr, dtype = expr.struct.field(key), fields[key]
        elif dtype == pl.String:
            rest = path[i:]
            if any("'" in k for k in rest):
                return pl.lit(None, pl.String)
            return expr.str.json_path_match("$" + "".join(f"['{k}']" for k in rest))
        else:
            return pl.lit(None, pl.String)
    return scalar(expr, dtype)


def scalar(expr: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    """`expr` (of dtype `dtype`) as a scalar: a list or an object as its JSON text."""
    if isinstance(dtype, NESTED):
        encoded = pl.struct(expr.alias("v")).struct.json_encode()
        inner = encoded.str.strip_prefix('{"v":').str.strip_suffix("}")
        return pl.when(expr.is_null()).then(pl.lit(None, pl.String)).otherwise(inner)
    if dtype == pl.Null:
        return pl.lit(None, pl.String)
    return expr


def raw_dtype(schema: pl.Schema, name: str) -> pl.DataType:
    """The dtype `value(schema, name)` has: nested columns come back as JSON text."""
    dtype = dtype_of(schema, name)
    return pl.String() if isinstance(dtype, NESTED) or dtype == pl.Null else dtype


def first_value(schema: pl.Schema, *paths: tuple[str, ...]) -> pl.Expr:
    """The first non-empty value among several field paths."""
    return pl.coalesce([as_text(value(schema, *p)) for p in paths] or [pl.lit(None, pl.String)])


# --------------------------------------------------------------------------- gateway rules
# API keys of OpenAI (sk-, sk-proj-), Anthropic (sk-ant-), OpenRouter (sk-or-), Helicone
# (sk-helicone-, pk-helicone-) and the like.
KEY_PATTERN = r"\b(?:sk|pk|rk)-[A-Za-z0-9_\-]{16,}"
REDACTED = "[redacted-key]"
ZERO_UUID = "00000000-0000-0000-0000-000000000000"
# At most ~116 days in milliseconds: anything larger is not a latency.
MAX_DURATION_MS = 10_000_000_000


def http_status(code_raw: pl.Expr) -> pl.Expr:
    """Canonical status from an HTTP status code; null when there is none, and the
    (invalid) text `unreadable` when a code is present but is not a whole number.

    2xx success; 408 and 504 timeout; 499 (client closed the connection) cancelled; every
    other code error. 4xx is deliberately `error`, not `rejected`: a 400, 401 or 429 is a
    failed call exactly like a 500 as far as cost goes (nothing generated, nothing billed),
    the logs cannot tell a policy refusal from a client bug, and LiteLLM's `failure` (and
    the generated ground truth) call a 429 an error. `rejected` is left to sources that say
    explicitly that the gateway refused a request before calling the provider."""
    code = as_int(code_raw)
    present = as_text(code_raw.cast(pl.String)).is_not_null()
    return (
        pl.when(~present)
        .then(pl.lit(None, pl.String))
        .when(code.is_null())
        .then(pl.lit("unreadable"))
        .when((code >= 200) & (code < 300))
        .then(pl.lit("success"))
        .when(code.is_in([408, 504]))
        .then(pl.lit("timeout"))
        .when(code == 499)
        .then(pl.lit("cancelled"))
        .otherwise(pl.lit("error"))
    )


def _sha256_texts(texts: pl.Series) -> pl.Series:
    # Hashed once per distinct value, then looked up: a batch holds a few keys, many rows.
    distinct = texts.drop_nulls().unique().to_list()
    digests = ["sha256:" + hashlib.sha256(t.encode()).hexdigest() for t in distinct]
    return texts.replace_strict(distinct, digests, default=None, return_dtype=pl.String)


def hashed_key(expr: pl.Expr) -> pl.Expr:
    """An API key or key id as `sha256:<hex>`: kept when it already is a SHA-256 hash
    (`sha256:<64 hex>` or bare 64 hex), hashed otherwise. Never the raw key."""
    text = as_text(expr.cast(pl.String))
    lower = text.str.to_lowercase()
    return (
        pl.when(text.is_null())
        .then(pl.lit(None, pl.String))
        .when(lower.str.contains(r"^sha256:[0-9a-f]{64}$"))
        .then(lower)
        .when(lower.str.contains(r"^[0-9a-f]{64}$"))
        .then(pl.lit("sha256:") + lower)
        .otherwise(text.map_batches(_sha256_texts, return_dtype=pl.String))
    )


# Free-text canonical columns a secret could be pasted into (api_key_id is hashed anyway).
TEXT_COLUMNS = (
    "request_id",
    "trace_id",
    "provider",
    "model",
    "region",
    "feature",
    "team",
    "user",
    "image_size",
    "image_quality",
    "video_resolution",
)


def scrub_secrets() -> list[pl.Expr]:
    """`post` expressions: a key-like secret pasted into a free-text column, or anywhere in
    the verbatim record that quarantine keeps, is redacted."""
    return [redact_keys(pl.col(c)) for c in (*TEXT_COLUMNS, "_record")]


def _redact_batch(texts: pl.Series) -> pl.Series:
    if not texts.str.contains(KEY_PATTERN).any():
        return texts
    return texts.str.replace_all(KEY_PATTERN, REDACTED)


def redact_keys(text: pl.Expr) -> pl.Expr:
    """`text` with every key-like secret replaced by REDACTED. Rewriting every string costs
    five times searching them, and a key pasted into a log is rare: a batch of rows is
    rewritten only when the search finds one."""
    return text.map_batches(_redact_batch, return_dtype=pl.String, is_elementwise=True)


def staged(lf: pl.LazyFrame, *stages: dict[str, pl.Expr]) -> pl.LazyFrame:
    """Intermediate values as columns, one stage after the other. Referring to a column
    instead of repeating an expression keeps the plan small: coercion uses its input
    several times, and nesting expressions multiplies that into a plan Polars takes
    seconds to optimize."""
    for stage in stages:
        lf = lf.with_columns(**stage)
    return lf


def assemble_staged(
    lf: pl.LazyFrame,
    ctx: SourceContext,
    values: dict[str, pl.Expr],
    timestamps: dict[str, tuple[pl.Expr, pl.DataType]],
    extra_issues: list[pl.Expr],
) -> pl.LazyFrame:
    """`sources.base.assemble` over staged columns, with the gateway rules every adapter
    here shares: a text column whose raw value is a list or an object (which `value` hands
    over as JSON text) is `invalid_value:<column>`, 0 and 0 tokens is usage missing, and
    key-like secrets are redacted."""
    container = r"^\s*(?:\[.*\]|\{.*\})\s*$"
    lf = lf.with_columns(
        **{f"_v_{k}": e for k, e in values.items()},
        **{f"_t_{k}": e for k, (e, _) in timestamps.items()},
    )
    containers = [
        flag_if(pl.col(f"_v_{k}").cast(pl.String).str.contains(container), f"invalid_value:{k}")
        for k in values
        if k in TEXT_COLUMNS and CANONICAL_SCHEMA[k] == pl.String
    ]
    lf = lf.with_columns(join_flags([*extra_issues, *containers]).alias("_x_issues"))
    return assemble(
        lf,
        ctx,
        {k: pl.col(f"_v_{k}") for k in values},
        {k: (pl.col(f"_t_{k}"), dtype) for k, (_, dtype) in timestamps.items()},
        extra_issues=[pl.col("_x_issues")],
        post=no_usage_is_null(),
    )


def no_usage_is_null() -> list[pl.Expr]:
    """`post` expressions: 0 prompt and 0 output tokens is a call that reported no usage
    (a stream without its usage chunk), never a free request: every token column null."""
    no_usage = (pl.col("input_tokens").fill_null(0) == 0) & (
        pl.col("output_tokens").fill_null(0) == 0
    )
    return [pl.when(~no_usage).then(pl.col(c)).alias(c) for c in TOKEN_COLUMNS]


def plus_ms(start: pl.Expr, ms_raw: pl.Expr) -> pl.Expr:
    """A parsed UTC datetime plus a millisecond duration (int, float or text); null when the
    duration is unreadable, negative or absurd."""
    ms = as_float(ms_raw)
    ok = (ms >= 0) & (ms <= MAX_DURATION_MS)
    micros = pl.when(ok).then((ms * 1000).round(0)).cast(pl.Int64, strict=False)
    return start + pl.duration(microseconds=micros)


def bad_duration(ms_raw: pl.Expr, name: str) -> pl.Expr:
    """`invalid_value:<name>` when a duration is present but unreadable, negative or absurd."""
    ms = as_float(ms_raw)
    present = as_text(ms_raw.cast(pl.String)).is_not_null()
    return flag_if(
        present & ~((ms >= 0) & (ms <= MAX_DURATION_MS)).fill_null(False), f"invalid_value:{name}"
    )


def anthropic_usage(provider: pl.Expr, model: pl.Expr) -> pl.Expr:
    """True when a row's usage object is Anthropic's (input tokens exclude the cache):
    Anthropic itself, or a Claude model served by Bedrock or Vertex."""
    claude = model.str.to_lowercase().str.contains("claude").fill_null(False)
    return (provider == "anthropic") | (provider.is_in(["aws", "google"]) & claude)


def with_cache(prompt: pl.Expr, parts: list[pl.Expr], add: pl.Expr) -> pl.Expr:
    """`prompt` plus the `parts` it leaves out when `add` is true. Float64 (exact below
    2**53), so that absurd sums are caught by coercion rather than wrapping around; negative
    counts are never combined, so they are flagged as logged."""
    p = prompt.cast(pl.Float64)
    floats = [x.cast(pl.Float64).fill_null(0) for x in parts]
    sane = (p >= 0) & pl.all_horizontal([x >= 0 for x in floats])
    return pl.when(add.fill_null(False) & sane).then(p + pl.sum_horizontal(floats)).otherwise(p)
