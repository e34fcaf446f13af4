"""The warehouse tables of revision 0001_core, declared once from their Polars schemas.

Each table is a `TableSpec`: the Polars schema of the frames loaded into it (the same
schemas the roll-ups and ingest validate against), how it is partitioned (the column a
partition replace deletes by, and whether a partition is a day or a month of it), its
primary key when every key column is always set, and indexes for BI queries (all lead with
the partition column). The SQLAlchemy Core `Table` is derived from the spec, so the column
list can never drift from the frames; the Alembic migration freezes the same DDL and a test
checks that a migrated database matches `METADATA` exactly.

Column types: String -> TEXT, Int64 -> BIGINT, Int32 -> INTEGER, Float64 -> DOUBLE (REAL on
SQLite), Boolean -> BOOLEAN, Date -> DATE, Datetime(UTC) -> `UtcDateTime`, Decimal(p, s) ->
`ExactDecimal(p, s)` (NUMERIC on PostgreSQL, canonical decimal text on SQLite). No table has a
wall-clock column: reloading a partition writes byte-identical content.

Roll-up grains have nullable keys (an unknown model_key, a request without a feature are their
own group), and NULLs cannot be in a primary key, so those tables carry indexes; the roll-up
itself guarantees one row per grain.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import polars as pl
import sqlalchemy as sa

from transforms.schema import (
    INGEST_COUNTS_SCHEMA,
    INVOICE_LINE_SCHEMA,
    LINEAGE_SCHEMA,
    PROVIDER_USAGE_SCHEMA,
    schema_of,
)
from transforms.usage_rollups import (
    LATENCY_BY_FEATURE_SCHEMA,
    LATENCY_BY_MODEL_SCHEMA,
    PEAKS_SCHEMA,
    USAGE_DAILY_KEYS,
    USAGE_DAILY_SCHEMA,
)
from warehouse.money import ExactDecimal, UtcDateTime

METADATA = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "pk": "pk_%(table_name)s",
    }
)

Grain = Literal["day", "month", "value"]


@dataclass(frozen=True)
class TableSpec:
    name: str
    schema: pl.Schema
    partition_column: str
    grain: Grain = "day"
    primary_key: tuple[str, ...] = ()
    indexes: tuple[tuple[str, ...], ...] = ()
    # read_table's default order: the grain, nulls last, so reads are deterministic
    order_by: tuple[str, ...] = field(default=())


def sql_type(dtype: pl.DataType) -> sa.types.TypeEngine[Any]:
    """The column type that stores a Polars dtype exactly."""
    if isinstance(dtype, pl.Decimal):
        return ExactDecimal(dtype.precision or 38, dtype.scale)
    if isinstance(dtype, pl.Datetime):
        if dtype.time_zone not in (None, "UTC"):
            raise ValueError(f"datetimes are stored in UTC, not {dtype.time_zone}")
        return UtcDateTime()
    simple: dict[type[pl.DataType], sa.types.TypeEngine[Any]] = {
        pl.String: sa.Text(),
        pl.Int64: sa.BigInteger(),
        pl.UInt32: sa.BigInteger(),
        pl.Int32: sa.Integer(),
        pl.Float64: sa.Double(),
        pl.Boolean: sa.Boolean(),
        pl.Date: sa.Date(),
    }
    for kind, column_type in simple.items():
        if isinstance(dtype, kind):
            return column_type
    raise ValueError(f"no warehouse column type for {dtype}")


def _table(spec: TableSpec) -> sa.Table:
    columns = [
        sa.Column(name, sql_type(dtype), nullable=name not in spec.primary_key)
        for name, dtype in spec.schema.items()
    ]
    constraints: list[Any] = []
    if spec.primary_key:
        constraints.append(sa.PrimaryKeyConstraint(*spec.primary_key))
    table = sa.Table(spec.name, METADATA, *columns, *constraints)
    for columns_of_index in spec.indexes:
        sa.Index(None, *[table.c[c] for c in columns_of_index])
    return table


SPECS: dict[str, TableSpec] = {}
TABLES: dict[str, sa.Table] = {}


def define_table(spec: TableSpec) -> sa.Table:
    """Register a table (0001_core's below; later revisions may add theirs the same way)."""
    if spec.name in SPECS:
        raise ValueError(f"table {spec.name} is already defined")
    missing = {spec.partition_column, *spec.primary_key, *spec.order_by} - set(spec.schema)
    if missing:
        raise ValueError(f"{spec.name}: no column(s) {sorted(missing)}")
    SPECS[spec.name] = spec
    TABLES[spec.name] = _table(spec)
    return TABLES[spec.name]


def _rollup(name: str, schema: pl.Schema, keys: Sequence[str], *extra_index: str) -> TableSpec:
    return TableSpec(
        name=name,
        schema=schema,
        partition_column="day",
        indexes=(tuple(keys), *[("day", c) for c in extra_index]),
        order_by=tuple(keys),
    )


QUARANTINE_SUMMARY_SCHEMA = schema_of(
    {
        "day": pl.Date,
        "source": pl.String,
        "source_kind": pl.String,
        "reason": pl.String,
        "rows": pl.Int64,
    }
)
PROVIDER_USAGE_DAILY_SCHEMA = schema_of(
    {k: v for k, v in PROVIDER_USAGE_SCHEMA.items() if k not in LINEAGE_SCHEMA}
)
INVOICE_LINES_SCHEMA = schema_of({**INVOICE_LINE_SCHEMA, "source_file": pl.String})
PARTITION_LOADS_SCHEMA = schema_of(
    {
        "table_name": pl.String,
        "partition_key": pl.String,
        "rows": pl.Int64,
        "content_sha256": pl.String,
    }
)

usage_daily = define_table(
    TableSpec(
        name="usage_daily",
        schema=USAGE_DAILY_SCHEMA,
        partition_column="day",
        indexes=(("day", "provider", "model_key"), ("day", "feature"), ("day", "team")),
        order_by=USAGE_DAILY_KEYS,
    )
)
latency_by_model = define_table(
    _rollup("latency_by_model", LATENCY_BY_MODEL_SCHEMA, ("day", "provider", "model_key"))
)
latency_by_feature = define_table(
    _rollup("latency_by_feature", LATENCY_BY_FEATURE_SCHEMA, ("day", "feature"))
)
peaks_by_model = define_table(
    _rollup("peaks_by_model", PEAKS_SCHEMA, ("day", "provider", "model_key"))
)
ingest_counts = define_table(
    TableSpec(
        name="ingest_counts",
        schema=INGEST_COUNTS_SCHEMA,
        partition_column="day",
        primary_key=("day", "source"),
        order_by=("day", "source"),
    )
)
quarantine_summary = define_table(
    TableSpec(
        name="quarantine_summary",
        schema=QUARANTINE_SUMMARY_SCHEMA,
        partition_column="day",
        indexes=(("day", "source"),),
        order_by=("day", "source", "source_kind", "reason"),
    )
)
provider_usage_daily = define_table(
    TableSpec(
        name="provider_usage_daily",
        schema=PROVIDER_USAGE_DAILY_SCHEMA,
        partition_column="date",
        indexes=(("date", "provider", "model_canonical"),),
        order_by=tuple(PROVIDER_USAGE_DAILY_SCHEMA.names()),
    )
)
invoice_lines = define_table(
    TableSpec(
        name="invoice_lines",
        schema=INVOICE_LINES_SCHEMA,
        partition_column="billing_period_start",
        grain="month",
        indexes=(("billing_period_start", "provider"), ("invoice_id",)),
        order_by=("billing_period_start", "provider", "invoice_id", "line_id", "source_file"),
    )
)
partition_loads = define_table(
    TableSpec(
        name="partition_loads",
        schema=PARTITION_LOADS_SCHEMA,
        partition_column="table_name",
        grain="value",
        primary_key=("table_name", "partition_key"),
        order_by=("table_name", "partition_key"),
    )
)
