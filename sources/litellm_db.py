"""LiteLLM spend logs read straight from the proxy's database (`LiteLLM_SpendLogs`).

The frame `read_spend_logs` returns has the shape `sources.litellm.read` gives for an export
file, so `sources.litellm.to_canonical` applies unchanged:

  _line          1-based row number in result order (ordered by "startTime", request_id)
  _record        the row as one JSON object (JSON columns spliced in as JSON, not as strings)
  _parse_error   always null: a database row is never unreadable
  then the table's columns in table order, typed from the reflected column types:
  text as String, integers as Int64, double precision as Float64, timestamp(3) as naive
  Datetime (LiteLLM writes UTC; a timestamptz column comes back as UTC), and every JSON
  column (`metadata`, `request_tags`, ...) as its JSON text (`decode_json=True`: JSON-object
  columns as Structs instead, which makes the mapping ~3x cheaper; `ingest_spend_logs` does).

The prompt and response bodies (`messages`, `response`, `proxy_server_request`) are left
out by default: they can hold user content (LiteLLM stores them when
`store_prompts_in_spend_logs` is on), nothing downstream reads them, and they would travel
into `_record` and the quarantine file.

SQL: built with SQLAlchemy Core on the reflected table (identifiers such as "startTime" are
quoted by SQLAlchemy; the window is bound parameters, never text). Rows are streamed with a
server-side cursor (`yield_per`) and turned into Polars columns chunk by chunk.
The password of the URL never appears in a message, a log line or lineage: URLs are
rendered with `URL.render_as_string(hide_password=True)`.
"""

from __future__ import annotations

import datetime as dt
import io
import logging
import os
from collections.abc import Iterable, Sequence
from typing import Any

import polars as pl
import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import NullPool

from sources import litellm
from sources.base import SourceContext
from sources.ingest import IngestResult
from sources.registry import KINDS
from transforms.canonical_reader import InputError
from transforms.normalize import split_requests

log = logging.getLogger(__name__)

KIND = "litellm"
DEFAULT_TABLE = "LiteLLM_SpendLogs"
# Prompt and response bodies: user content, large, and never read by the adapter.
PROMPT_COLUMNS = ("messages", "response", "proxy_server_request")
REQUIRED_COLUMNS = ("request_id", "startTime")
CHUNK_ROWS = 50_000


# --------------------------------------------------------------------------- URLs, safely
def database_url(url: str | None = None, url_env: str | None = None) -> str:
    """The database URL: given directly, else read from the environment variable `url_env`
    (the name comes from sources.yaml `credentials.url_env`)."""
    if url:
        return url
    if not url_env:
        raise InputError("litellm database: give a URL or the name of a variable holding one")
    value = os.environ.get(url_env, "").strip()
    if not value:
        raise InputError(f"litellm database: environment variable {url_env} is not set")
    return value


def _parse_url(url: str) -> URL:
    try:
        return make_url(url)
    except sa.exc.ArgumentError:
        # The message must not echo the string: it may hold a password.
        raise InputError("litellm database: not a valid SQLAlchemy database URL") from None


def masked(url: str | URL) -> str:
    """The URL with its password replaced by ***, for messages and lineage."""
    parsed = url if isinstance(url, URL) else _parse_url(url)
    return parsed.render_as_string(hide_password=True)


def describe(url: str | URL, table: str = DEFAULT_TABLE, schema: str | None = None) -> str:
    """Where the rows came from (lineage `source_file`): masked URL and qualified table."""
    return f"{masked(url)}#{_qualified(table, schema)}"


def _qualified(table: str, schema: str | None) -> str:
    return f"{schema}.{table}" if schema else table


def _scrub(message: str, url: URL) -> str:
    """First line of a driver message, with the password removed should a driver echo it."""
    line = (message.strip().splitlines() or [""])[0]
    if url.password:
        line = line.replace(str(url.password), "***")
    return line


# --------------------------------------------------------------------------- column types
def _column_plan(column: sa.Column[Any]) -> tuple[pl.DataType, bool, bool]:
    """(Polars dtype, select the column as text, is JSON) for a reflected column."""
    t = column.type
    if isinstance(t, sa.JSON):  # postgresql JSON and JSONB are subclasses
        return pl.String(), True, True
    if isinstance(t, sa.DateTime):
        return pl.Datetime("us", "UTC" if t.timezone else None), False, False
    if isinstance(t, sa.Date):
        return pl.Date(), False, False
    if isinstance(t, sa.Boolean):
        return pl.Boolean(), False, False
    if isinstance(t, sa.Integer):
        return pl.Int64(), False, False
    if isinstance(t, sa.Float):
        return pl.Float64(), False, False
    if isinstance(t, sa.String) and not isinstance(t, sa.Enum):
        return pl.String(), False, False
    # NUMERIC (exact: kept as its text), UUID, enums, arrays, anything else: its text.
    return pl.String(), True, False


def _window_value(moment: dt.datetime, column: sa.Column[Any]) -> dt.datetime:
    """The bound value for "startTime" comparisons: UTC, naive for a naive column."""
    utc = moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)
    aware = isinstance(column.type, sa.DateTime) and column.type.timezone
    return utc if aware else utc.replace(tzinfo=None)


# --------------------------------------------------------------------------- the frame
def _chunk_frame(rows: Sequence[Sequence[Any]], schema: pl.Schema) -> pl.DataFrame:
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in schema]
    return pl.DataFrame(
        [
            pl.Series(name, values, dtype=dtype)
            for (name, dtype), values in zip(schema.items(), columns, strict=True)
        ]
    )


def _fraction_digits(column: sa.Column[Any]) -> int:
    """Digits of fractional seconds to print: 3 for LiteLLM's timestamp(3), else 6."""
    precision = getattr(column.type, "precision", None)
    return 3 if isinstance(precision, int) and precision <= 3 else 6


def _record_expr(schema: pl.Schema, json_columns: set[str], digits: dict[str, int]) -> pl.Expr:
    """Each row as a JSON object, columns in table order.

    Runs of ordinary columns are encoded by Polars (struct -> JSON, braces stripped); JSON
    columns are spliced in as their text (SQL NULL -> null). Timestamps as ISO 8601."""

    def value(name: str) -> pl.Expr:
        dtype = schema[name]
        if isinstance(dtype, pl.Datetime):
            fraction = f"%.{digits.get(name, 6)}f"
            fmt = "%Y-%m-%dT%H:%M:%S" + fraction + ("%:z" if dtype.time_zone else "")
            return pl.col(name).dt.to_string(fmt).alias(name)
        return pl.col(name)

    parts: list[pl.Expr] = []
    run: list[str] = []

    def flush() -> None:
        if run:
            encoded = pl.struct([value(n) for n in run]).struct.json_encode()
            parts.append(encoded.str.strip_prefix("{").str.strip_suffix("}"))
            run.clear()

    for name in schema:
        if name in json_columns:
            flush()
            key = pl.select(pl.struct(pl.lit(None).alias(name)).struct.json_encode()).item()
            prefix = key[1 : -len("null}")]  # '"name":' with the name JSON-escaped
            parts.append(pl.lit(prefix) + pl.col(name).fill_null("null"))
        else:
            run.append(name)
    flush()
    if not parts:
        return pl.lit("{}")
    return pl.lit("{") + pl.concat_str(parts, separator=",") + pl.lit("}")


def _assemble(
    chunks: Iterable[pl.DataFrame],
    schema: pl.Schema,
    json_columns: set[str],
    digits: dict[str, int],
) -> pl.DataFrame:
    frame = pl.concat([*chunks, pl.DataFrame(schema=schema)], how="vertical", rechunk=True)
    return frame.select(
        pl.int_range(1, pl.len() + 1, dtype=pl.Int64).alias("_line"),
        _record_expr(schema, json_columns, digits).alias("_record"),
        pl.lit(None, pl.String).alias("_parse_error"),
        pl.all(),
    )


def decode_objects(frame: pl.DataFrame, columns: Iterable[str]) -> pl.DataFrame:
    """JSON-object text columns as Structs, their schema read from every row.

    The adapter reads `metadata` through JSON paths; on text that is one parse of the whole
    object per path (about seven), on a Struct a field lookup: decoding once is ~3x cheaper
    for the whole mapping, with the same result. SQL NULL and JSON null stay null. A column
    holding anything but objects is left as text."""
    for name in columns:
        if name not in frame.columns or frame.schema[name] != pl.String:
            continue
        text = frame[name]
        missing = text.is_null() | (text == "null")
        lines = frame.select(pl.when(missing).then(pl.lit("{}")).otherwise(pl.col(name)))
        buffer = io.BytesIO()
        lines.write_csv(buffer, include_header=False, quote_style="never", separator="\x1f")
        try:
            decoded = pl.read_ndjson(io.BytesIO(buffer.getvalue()), infer_schema_length=None)
        except pl.exceptions.PolarsError:
            continue
        if decoded.height != frame.height or not decoded.width:
            continue
        struct = decoded.select(pl.struct(pl.all()).alias(name))[name]
        frame = frame.with_columns(pl.when(~missing).then(struct).alias(name))
    return frame


def read_spend_logs(
    url: str,
    start: dt.datetime,
    end: dt.datetime,
    table: str = DEFAULT_TABLE,
    schema: str | None = None,
    *,
    exclude_columns: Sequence[str] = PROMPT_COLUMNS,
    chunk_rows: int = CHUNK_ROWS,
    decode_json: bool = False,
) -> pl.DataFrame:
    """Rows of the LiteLLM spend-log table with "startTime" in [start, end), as the raw frame
    `sources.litellm.to_canonical` reads. Naive `start`/`end` are UTC.

    exclude_columns: columns not read (default: the prompt and response bodies).
    decode_json: JSON-object columns (`metadata`) as Structs instead of their JSON text
    (`_record` is the same either way); the mapping is then ~3x cheaper.
    """
    if end <= start:
        raise InputError(f"litellm database: empty window: end {end} is not after start {start}")
    parsed = _parse_url(url)
    where = f"{masked(parsed)} table {_qualified(table, schema)}"
    try:
        engine = sa.create_engine(parsed, poolclass=NullPool)
    except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError) as exc:
        raise InputError(
            f"{masked(parsed)}: cannot use this URL: {_scrub(str(exc), parsed)}"
        ) from None
    try:
        with engine.connect() as conn:
            try:
                reflected = sa.Table(table, sa.MetaData(), schema=schema, autoload_with=conn)
            except sa.exc.NoSuchTableError:
                raise InputError(f"{where}: no such table") from None
            missing = [c for c in REQUIRED_COLUMNS if c not in reflected.c]
            if missing:
                raise InputError(
                    f"{where}: not a LiteLLM spend-log table (no column {missing[0]!r})"
                )
            skip = set(exclude_columns)
            selected: list[Any] = []
            frame_schema: dict[str, pl.DataType] = {}
            json_columns: set[str] = set()
            digits: dict[str, int] = {}
            for column in reflected.columns:
                if column.name in skip:
                    continue
                dtype, as_text, is_json = _column_plan(column)
                selected.append(
                    (sa.cast(column, sa.Text) if as_text else column).label(column.name)
                )
                frame_schema[column.name] = dtype
                if is_json:
                    json_columns.add(column.name)
                if isinstance(dtype, pl.Datetime):
                    digits[column.name] = _fraction_digits(column)
            started = reflected.c["startTime"]
            stmt = (
                sa.select(*selected)
                .where(
                    started >= sa.bindparam("window_start", _window_value(start, started)),
                    started < sa.bindparam("window_end", _window_value(end, started)),
                )
                .order_by(started, reflected.c["request_id"])
            )
            log.info(
                "reading %s from %s for [%s, %s)",
                _qualified(table, schema),
                masked(parsed),
                start,
                end,
            )
            result = conn.execution_options(yield_per=chunk_rows).execute(stmt)
            out_schema = pl.Schema(frame_schema)
            chunks = [_chunk_frame(part, out_schema) for part in result.partitions()]
    except sa.exc.SQLAlchemyError as exc:
        detail = getattr(exc, "orig", None) or exc
        raise InputError(f"{where}: cannot read: {_scrub(str(detail), parsed)}") from None
    finally:
        engine.dispose()
    frame = _assemble(chunks, out_schema, json_columns, digits)
    if decode_json:
        frame = decode_objects(frame, sorted(json_columns))
    log.info("read %d rows from %s", frame.height, where)
    return frame


def ingest_spend_logs(
    url: str,
    start: dt.datetime,
    end: dt.datetime,
    *,
    name: str = KIND,
    table: str = DEFAULT_TABLE,
    schema: str | None = None,
    timezone: str = "UTC",
) -> IngestResult:
    """`sources.ingest.ingest_file` for the database: read the window, map to canonical,
    split into normalized / duplicates / quarantine / counts. Returns an IngestResult."""
    raw = read_spend_logs(url, start, end, table, schema, decode_json=True)
    ctx = SourceContext(name=name, kind=KIND, file=describe(url, table, schema), timezone=timezone)
    # Collected once: handing split_requests the lazy plan would evaluate the mapping again
    # for each of its four outputs.
    canonical = litellm.to_canonical(raw.lazy(), ctx).collect()
    out = split_requests(canonical.lazy())
    collected = pl.collect_all([out.normalized, out.duplicates, out.quarantine, out.counts])
    result = IngestResult(kind=KIND, produces=KINDS[KIND].produces, records_read=raw.height)
    result.frames = dict(
        zip(("normalized", "duplicates", "quarantine", "counts"), collected, strict=True)
    )
    return result
