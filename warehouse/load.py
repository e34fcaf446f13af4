"""Load and read warehouse tables: partition replace in one transaction, typed reads.

`replace_partition(engine, table, partition, frame)` (partition column and grain from the
table's spec: `day`, `date` for provider_usage_daily, the billing month of
`billing_period_start` for invoice_lines) or `replace_partition(engine, table, column, value,
frame)` (rows where `column = value`; also works for tables other revisions created). In ONE
transaction it deletes the partition's rows, inserts the frame and records the load in
`partition_loads` (rows and a SHA-256 of the content, no timestamp), so a rerun writes
byte-identical content and a failure anywhere rolls everything back: the previous content
stays. Every row of the frame must belong to the partition (a row outside it would survive the
next replace and be counted twice), and the frame must carry every column of the table with a
dtype that converts exactly; extra columns (lineage) are left out.

Inserts go straight to the driver's executemany in batches, values converted in Polars first:
on SQLite dates and datetimes become SQLAlchemy's text forms and decimals the canonical text
of `warehouse.money`; on PostgreSQL Python `Decimal`, `date` and aware `datetime` pass through.
Decimals never go through float.

`read_table(engine, table, where=...)` returns a DataFrame with the table's Polars schema
(Decimal(38, 18) money, UTC datetimes), ordered by the table's grain, nulls last.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, overload

import polars as pl
import sqlalchemy as sa

from warehouse.db import writer
from warehouse.tables import SPECS, TABLES, TableSpec, partition_loads

PartitionValue = dt.date | dt.datetime | str | int
BATCH_ROWS = 20_000


class PartitionError(ValueError):
    """The frame does not fit the table or the partition (nothing was written)."""


# ----------------------------------------------------------------------------- partitions
def _as_date(value: PartitionValue, what: str) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        text = value.strip()
        try:
            return dt.date.fromisoformat(f"{text}-01" if len(text) == 7 else text)
        except ValueError:
            pass
    raise PartitionError(f"{what}: not a date: {value!r}")


def _month_after(first: dt.date) -> dt.date:
    return dt.date(first.year + first.month // 12, first.month % 12 + 1, 1)


class _Partition:
    """Where a partition lies: column, [low, high) for dates or one value, and its key."""

    def __init__(
        self, table: str, column: str, dtype: pl.DataType | None, grain: str, value: Any
    ) -> None:
        self.column = column
        self.high: Any = None
        if grain == "month":
            self.low: Any = _as_date(value, table).replace(day=1)
            self.high = _month_after(self.low)
            self.key = f"{column}:month={self.low:%Y-%m}"
        elif grain == "day" or isinstance(dtype, pl.Date):
            self.low = _as_date(value, table)
            self.key = f"{column}={self.low.isoformat()}"
        else:
            self.low = value
            text = value.isoformat() if isinstance(value, dt.date) else str(value)
            self.key = f"{column}={text}"

    def polars_filter(self) -> pl.Expr:
        column = pl.col(self.column)
        if self.high is None:
            return column.eq_missing(pl.lit(self.low))
        return (column >= pl.lit(self.low)) & (column < pl.lit(self.high))

    def sql_filter(self, table: sa.Table) -> sa.ColumnElement[bool]:
        column = table.c[self.column]
        if self.high is None:
            return sa.and_(column == self.low)
        return sa.and_(column >= self.low, column < self.high)


# ----------------------------------------------------------------------------- frames
_WIDENS_TO: dict[type[pl.DataType], tuple[type[pl.DataType], ...]] = {
    pl.Int64: (pl.Int8, pl.Int16, pl.Int32, pl.UInt8, pl.UInt16, pl.UInt32),
    pl.Int32: (pl.Int8, pl.Int16, pl.UInt8, pl.UInt16),
    pl.Float64: (pl.Float32,),
}
_TIME_UNIT_RANK = {"ms": 0, "us": 1, "ns": 2}


def _converts_exactly(have: pl.DataType, want: pl.DataType) -> bool:
    if isinstance(have, pl.Null):
        return True
    for wide, narrow in _WIDENS_TO.items():
        if isinstance(want, wide):
            return isinstance(have, narrow)
    if isinstance(have, pl.Decimal) and isinstance(want, pl.Decimal):
        have_int = (have.precision or 38) - have.scale
        return have.scale <= want.scale and have_int <= (want.precision or 38) - want.scale
    if isinstance(have, pl.Datetime) and isinstance(want, pl.Datetime):
        finer = _TIME_UNIT_RANK[have.time_unit] > _TIME_UNIT_RANK[want.time_unit]
        return have.time_zone in (None, "UTC") and not finer
    return False


def conform(frame: pl.DataFrame, schema: pl.Schema, table: str) -> pl.DataFrame:
    """The frame's columns of `schema`, in its order and dtypes; PartitionError naming the
    table and column when one is missing or would not convert exactly."""
    problems = []
    columns = []
    for name, want in schema.items():
        if name not in frame.columns:
            problems.append(f"missing column {name}")
            continue
        have = frame.schema[name]
        if have == want:
            columns.append(pl.col(name))
        elif _converts_exactly(have, want):
            column = pl.col(name)
            if isinstance(have, pl.Datetime) and have.time_zone is None:
                column = column.dt.replace_time_zone("UTC")  # naive = UTC, as in the lake
            columns.append(column.cast(want))
        else:
            problems.append(f"column {name} is {have}, expected {want}")
    if problems:
        raise PartitionError(f"{table}: " + "; ".join(problems))
    return frame.select(columns)


def content_sha256(frame: pl.DataFrame) -> str:
    """SHA-256 of the frame's content, independent of row order (the table is a set)."""
    if frame.width == 0:
        return hashlib.sha256(b"").hexdigest()
    lines = (
        frame.select(
            pl.concat_str(
                [pl.col(c).cast(pl.String).fill_null("\\N") for c in frame.columns],
                separator="\x1f",
            ).alias("line")
        )
        .get_column("line")
        .sort()
    )
    digest = hashlib.sha256("\x1f".join(frame.columns).encode())
    for line in lines:
        digest.update(b"\n")
        digest.update(line.encode())
    return digest.hexdigest()


def _driver_values(frame: pl.DataFrame, dialect: str) -> pl.DataFrame:
    """Columns the DBAPI driver takes as they are (see the module docstring)."""
    if dialect != "sqlite":
        return frame
    converted = []
    for name, dtype in frame.schema.items():
        column = pl.col(name)
        if isinstance(dtype, pl.Decimal | pl.Date):
            # Polars prints decimals with exactly `scale` digits, like warehouse.money
            column = column.cast(pl.String)
        elif isinstance(dtype, pl.Datetime):
            column = column.dt.convert_time_zone("UTC").dt.strftime("%Y-%m-%d %H:%M:%S%.6f")
        converted.append(column)
    return frame.select(converted)


def _batches(frame: pl.DataFrame, size: int) -> Iterator[list[tuple[Any, ...]]]:
    for start in range(0, frame.height, size):
        yield frame.slice(start, size).rows()


def _insert(connection: sa.Connection, table: sa.Table, frame: pl.DataFrame) -> None:
    if frame.height == 0:
        return
    dialect = connection.dialect
    quote = dialect.identifier_preparer.quote
    marker = {"qmark": "?", "format": "%s", "pyformat": "%s"}.get(dialect.paramstyle)
    values = _driver_values(frame, dialect.name)
    if marker is None:  # a driver with another paramstyle: SQLAlchemy converts each value
        for batch in _batches(frame, BATCH_ROWS):
            connection.execute(
                table.insert(), [dict(zip(frame.columns, r, strict=True)) for r in batch]
            )
        return
    target = (
        quote(table.name) if table.schema is None else f"{quote(table.schema)}.{quote(table.name)}"
    )
    sql = (
        f"INSERT INTO {target} ({', '.join(quote(c) for c in frame.columns)}) "
        f"VALUES ({', '.join([marker] * frame.width)})"
    )
    for batch in _batches(values, BATCH_ROWS):
        connection.exec_driver_sql(sql, batch)


# ----------------------------------------------------------------------------- replace
def _target(
    connection: sa.Connection, table: str, column: str | None
) -> tuple[sa.Table, TableSpec | None]:
    if table in TABLES:
        return TABLES[table], SPECS[table]
    if column is None:
        raise PartitionError(
            f"{table}: not a core table; name the partition column: "
            "replace_partition(engine, table, column, value, frame)"
        )
    try:
        return sa.Table(table, sa.MetaData(), autoload_with=connection), None
    except sa.exc.NoSuchTableError:
        raise PartitionError(f"no warehouse table {table}") from None


@overload
def replace_partition(
    engine: sa.Engine, table: str, partition: PartitionValue, frame: pl.DataFrame, /
) -> int: ...


@overload
def replace_partition(
    engine: sa.Engine,
    table: str,
    partition_column: str,
    partition_value: PartitionValue,
    frame: pl.DataFrame,
    /,
) -> int: ...


def replace_partition(engine: sa.Engine, table: str, *args: Any) -> int:
    """Replace one partition of `table` with `frame` in one transaction; returns the rows
    inserted. See the module docstring for the two call forms and the checks."""
    if len(args) == 2:
        column, (value, frame) = None, args
    elif len(args) == 3:
        column, value, frame = args
    else:
        raise TypeError("replace_partition(engine, table, [column,] value, frame)")
    if not isinstance(frame, pl.DataFrame):
        raise TypeError(f"frame must be a polars DataFrame, not {type(frame).__name__}")
    with writer(engine.connect()) as connection, connection.begin():
        target, spec = _target(connection, table, column)
        if spec is not None:
            rows = conform(frame, spec.schema, table)
            grain = spec.grain if column in (None, spec.partition_column) else "value"
            column = column or spec.partition_column
            dtype: pl.DataType | None = spec.schema.get(column)
        else:
            assert column is not None
            extra = [c for c in frame.columns if c not in target.c]
            if extra:
                raise PartitionError(f"{table}: no column(s) {extra}")
            rows, grain, dtype = frame, "value", frame.schema.get(column)
        if column not in rows.columns:
            raise PartitionError(f"{table}: the frame has no partition column {column}")
        partition = _Partition(table, column, dtype, grain, value)
        outside = rows.with_row_index("_row").filter(~partition.polars_filter().fill_null(False))
        if outside.height:
            first = outside.row(0, named=True)
            raise PartitionError(
                f"{table}: {outside.height} row(s) outside partition {partition.key}, "
                f"first at row {first['_row']}: {column}={first[column]!r}"
            )
        connection.execute(sa.delete(target).where(partition.sql_filter(target)))
        _insert(connection, target, rows)
        log = partition_loads
        connection.execute(
            sa.delete(log).where(log.c.table_name == table, log.c.partition_key == partition.key)
        )
        connection.execute(
            sa.insert(log).values(
                table_name=table,
                partition_key=partition.key,
                rows=rows.height,
                content_sha256=content_sha256(rows),
            )
        )
    return rows.height


# ----------------------------------------------------------------------------- read
def read_table(
    engine: sa.Engine,
    table: str,
    where: Mapping[str, Any] | None = None,
    columns: Sequence[str] | None = None,
) -> pl.DataFrame:
    """Rows of `table` (optionally `where` column = value, or IN a list/tuple/set), typed
    with the table's Polars schema for core tables, ordered by its grain, nulls last."""
    with engine.connect() as connection:
        target, spec = _target(connection, table, "")
        names = list(columns) if columns is not None else [c.name for c in target.columns]
        unknown = [c for c in [*names, *(where or {})] if c not in target.c]
        if unknown:
            raise PartitionError(f"{table}: no column(s) {unknown}")
        query = sa.select(*[target.c[c] for c in names])
        for name, value in (where or {}).items():
            if isinstance(value, list | tuple | set | frozenset):
                query = query.where(target.c[name].in_(list(value)))
            elif value is None:
                query = query.where(target.c[name].is_(None))
            else:
                query = query.where(target.c[name] == value)
        order = spec.order_by if spec is not None and spec.order_by else ()
        query = query.order_by(*[target.c[c].asc().nulls_last() for c in order])
        result = connection.execute(query).all()
    if spec is None:
        return pl.DataFrame([tuple(r) for r in result], schema=names, orient="row")
    schema = pl.Schema({c: spec.schema[c] for c in names})
    return pl.DataFrame([tuple(r) for r in result], schema=schema, orient="row")
