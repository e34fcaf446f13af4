"""The warehouse on SQLite (a temp file) and on the real PostgreSQL (a schema of its own per
test, dropped afterwards): migrations, exact money, idempotent partition replace, rollback."""

from __future__ import annotations

import datetime as dt
import os
import threading
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from transforms.schema import INGEST_COUNTS_SCHEMA, MONEY
from transforms.usage_rollups import PEAKS_SCHEMA, USAGE_DAILY_KEYS, USAGE_DAILY_SCHEMA
from warehouse import make_engine
from warehouse.load import PartitionError, content_sha256, read_table, replace_partition
from warehouse.migrate import current_revision, head_revision, upgrade
from warehouse.money import Money, decimal_text
from warehouse.tables import INVOICE_LINES_SCHEMA, METADATA, SPECS

PG_URL = os.environ.get("AISPEND_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
DAY = dt.date(2025, 10, 15)
NEXT = DAY + dt.timedelta(days=1)
AMOUNTS = [
    Decimal("0.000000001"),
    Decimal("12345678901234.123456789012345678"),
    Decimal("-0.000000000000000001"),
    Decimal("99999999999999999999.999999999999999999"),
    Decimal("0"),
    None,
]


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[sa.Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'warehouse.sqlite'}")
    yield engine
    engine.dispose()


@pytest.fixture
def pg_engine() -> Iterator[sa.Engine]:
    schema = f"wh_test_{uuid.uuid4().hex[:12]}"
    admin = make_engine(PG_URL)
    with admin.begin() as connection:
        connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    engine = make_engine(f"{PG_URL}?options=-csearch_path%3D{schema}")
    try:
        yield engine
    finally:
        engine.dispose()
        with admin.begin() as connection:
            connection.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest) -> sa.Engine:
    """A migrated, empty warehouse on each backend."""
    name = "sqlite_engine" if request.param == "sqlite" else "pg_engine"
    engine: sa.Engine = request.getfixturevalue(name)
    upgrade(engine)
    return engine


def dump(engine: sa.Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every core table's raw stored values (driver types, no SQLAlchemy conversion)."""
    out = {}
    with engine.connect() as connection:
        for name in SPECS:
            rows = connection.exec_driver_sql(f'SELECT * FROM "{name}"').all()
            out[name] = sorted((tuple(r) for r in rows), key=repr)
    return out


def usage_frame(day: dt.date, rows: int, cost: Decimal = Decimal("0.1")) -> pl.DataFrame:
    """A usage_daily-shaped frame: `rows` groups of one day, costs exact."""
    keys = {
        "day": [day] * rows,
        "provider": ["openai"] * rows,
        "model_key": [f"openai/m{i % 97}" if i % 13 else None for i in range(rows)],
        "model": [f"m{i % 97}" for i in range(rows)],
        "feature": [f"f{i}" for i in range(rows)],
        "team": [None if i % 5 == 0 else "core" for i in range(rows)],
    }
    data: dict[str, Any] = dict(keys)
    for name, dtype in USAGE_DAILY_SCHEMA.items():
        if name in keys:
            continue
        if dtype == MONEY:
            data[name] = [None if i % 7 == 0 else cost * i for i in range(rows)]
        elif dtype == pl.Float64:
            data[name] = [i / 8 for i in range(rows)]
        else:
            data[name] = list(range(rows))
    return pl.DataFrame(data, schema=USAGE_DAILY_SCHEMA)


def peaks_frame(day: dt.date) -> pl.DataFrame:
    minute = dt.datetime.combine(day, dt.time(13, 7), tzinfo=dt.UTC)
    return pl.DataFrame(
        {
            "day": [day, day],
            "provider": ["openai", "openai"],
            "model_key": ["openai/gpt-4o", None],
            "peak_rpm": [120, 3],
            "peak_rpm_minute": [minute, minute + dt.timedelta(microseconds=7)],
            "peak_tpm": [99_000, 0],
            "peak_tpm_minute": [minute, None],
            "peak_concurrency": [14, None],
        },
        schema=PEAKS_SCHEMA,
    )


def ingest_frame(day: dt.date, sources: int) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "source": [f"s{i:06d}" for i in range(sources)],
            "day": [day] * sources,
            "rows_read": [10 * i for i in range(sources)],
            "normalized": [9 * i for i in range(sources)],
            "duplicates": [0] * sources,
            "quarantined": [i for i in range(sources)],
        },
        schema=INGEST_COUNTS_SCHEMA,
    )


def invoice_frame(first_day: dt.date) -> pl.DataFrame:
    end = dt.date(first_day.year + first_day.month // 12, first_day.month % 12 + 1, 1)
    return pl.DataFrame(
        {
            "invoice_id": ["INV-1", "INV-1", "INV-2"],
            "provider": ["openai", "openai", "anthropic"],
            "billing_period_start": [first_day, first_day, first_day + dt.timedelta(days=14)],
            "billing_period_end": [end, end, end],
            "line_id": ["1", "2", "1"],
            "description": ["gpt-4o output tokens", "Sales tax", "<b>credit</b> 'x'"],
            "charge_category": ["usage", "tax", "credit"],
            "model": ["gpt-4o", None, None],
            "quantity": [Decimal("1234567.123456789"), None, None],
            "unit": ["1M tokens", None, None],
            "unit_price_usd": [Decimal("10"), None, None],
            "amount_usd": [Decimal("12345.67"), Decimal("0.01"), Decimal("-5.000000000000000001")],
            "currency": ["USD"] * 3,
            "is_correction": [False, False, True],
            "corrects_invoice_id": [None, None, "INV-0"],
            "source_file": ["inv.csv"] * 3,
        },
        schema=INVOICE_LINES_SCHEMA,
    )


# ----------------------------------------------------------------------------- migrations
def test_migrations_from_empty_match_the_table_definitions(engine: sa.Engine) -> None:
    assert current_revision(engine) == head_revision()
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        diffs = compare_metadata(context, METADATA)
    # Tables of later revisions are in the database but not in METADATA: only ours count.
    ours = [d for d in diffs if not (d[0] == "remove_table" and d[1].name not in SPECS)]
    ours = [d for d in ours if not (d[0] == "remove_index" and d[1].table.name not in SPECS)]
    assert ours == []
    assert set(SPECS) <= set(sa.inspect(engine).get_table_names())


def test_upgrade_is_idempotent(engine: sa.Engine) -> None:
    replace_partition(engine, "usage_daily", DAY, usage_frame(DAY, 5))
    before = dump(engine)
    upgrade(engine)
    upgrade(engine)
    assert current_revision(engine) == head_revision()
    assert dump(engine) == before


def test_concurrent_upgrades_from_empty(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'w.sqlite'}"
    errors: list[BaseException] = []

    def run() -> None:
        try:
            upgrade(url)
        except BaseException as error:  # collected for the assertion below
            errors.append(error)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert current_revision(url) == head_revision()


# ----------------------------------------------------------------------------- money
def test_money_round_trips_exactly(engine: sa.Engine) -> None:
    frame = usage_frame(DAY, len(AMOUNTS)).with_columns(
        pl.Series("cost_usd", AMOUNTS, dtype=MONEY),
        pl.Series("feature", [f"f{i}" for i in range(len(AMOUNTS))]),
    )
    replace_partition(engine, "usage_daily", DAY, frame)
    back = read_table(engine, "usage_daily", where={"day": DAY})
    assert back.schema["cost_usd"] == MONEY
    assert back.sort("feature")["cost_usd"].to_list() == AMOUNTS
    # The same values through the SQLAlchemy type (Core insert/select, no Polars).
    scratch = sa.Table(
        f"money_{uuid.uuid4().hex[:8]}",
        sa.MetaData(),
        sa.Column("i", sa.Integer),
        sa.Column("v", Money()),
    )
    with engine.begin() as connection:
        scratch.create(connection)
        connection.execute(scratch.insert(), [{"i": i, "v": v} for i, v in enumerate(AMOUNTS)])
        values = connection.execute(sa.select(scratch.c.v).order_by(scratch.c.i)).scalars().all()
        total = connection.execute(
            sa.select(sa.func.count()).where(scratch.c.v == Decimal("0.000000001"))
        ).scalar_one()
        scratch.drop(connection)
    assert values == AMOUNTS
    assert total == 1  # equality on the stored form finds the value


def test_money_storage_per_backend(engine: sa.Engine) -> None:
    frame = usage_frame(DAY, 3).with_columns(
        pl.Series("cost_usd", [Decimal("0.1")] * 3, dtype=MONEY)
    )
    replace_partition(engine, "usage_daily", DAY, frame)
    with engine.connect() as connection:
        raw = connection.exec_driver_sql("SELECT cost_usd FROM usage_daily").scalars().all()
        total = connection.exec_driver_sql("SELECT SUM(cost_usd) FROM usage_daily").scalar_one()
    if engine.dialect.name == "sqlite":
        # canonical text: what both the Polars and the SQLAlchemy path write
        assert raw == ["0.100000000000000000"] * 3 == [decimal_text(Decimal("0.1"))] * 3
    else:
        assert raw == [Decimal("0.1")] * 3
        assert total == Decimal("0.3")  # NUMERIC sums exactly


def test_money_refuses_floats_and_lost_digits() -> None:
    with pytest.raises(TypeError):
        decimal_text(0.1)
    with pytest.raises(ValueError, match="18 decimals"):
        decimal_text(Decimal("0.0000000000000000001"))
    with pytest.raises(ValueError, match="integer digits"):
        decimal_text(Decimal("1e20"))
    assert decimal_text(Decimal("-0")) == decimal_text(0) == "0.000000000000000000"


# ----------------------------------------------------------------------------- replace
def test_replace_twice_gives_identical_content(engine: sa.Engine) -> None:
    month = dt.date(2025, 6, 1)

    def load() -> None:
        replace_partition(engine, "usage_daily", DAY, usage_frame(DAY, 300))
        replace_partition(engine, "usage_daily", NEXT, usage_frame(NEXT, 7))
        replace_partition(engine, "peaks_by_model", DAY, peaks_frame(DAY))
        replace_partition(engine, "ingest_counts", DAY, ingest_frame(DAY, 4))
        replace_partition(engine, "invoice_lines", month, invoice_frame(month))

    load()
    first = dump(engine)
    load()
    assert dump(engine) == first
    assert len(first["usage_daily"]) == 307
    loads = read_table(engine, "partition_loads")
    assert loads["partition_key"].to_list() == [
        "day=2025-10-15",
        "billing_period_start:month=2025-06",
        "day=2025-10-15",
        "day=2025-10-15",
        "day=2025-10-16",
    ]
    assert loads["table_name"].to_list() == [
        "ingest_counts",
        "invoice_lines",
        "peaks_by_model",
        "usage_daily",
        "usage_daily",
    ]
    assert loads["rows"].to_list() == [4, 3, 2, 300, 7]
    # Typed reads give back exactly what was loaded.
    assert read_table(engine, "peaks_by_model").equals(peaks_frame(DAY))
    invoices = read_table(engine, "invoice_lines")
    assert invoices.equals(invoice_frame(month).sort("billing_period_start", "invoice_id"))
    expected = usage_frame(DAY, 300).sort(list(USAGE_DAILY_KEYS), nulls_last=True)
    assert read_table(engine, "usage_daily", where={"day": DAY}).equals(expected)
    sha = loads.filter(pl.col("partition_key") == "day=2025-10-16")["content_sha256"][0]
    assert sha == content_sha256(usage_frame(NEXT, 7))


def test_replace_touches_only_its_partition(engine: sa.Engine) -> None:
    replace_partition(engine, "usage_daily", DAY, usage_frame(DAY, 10))
    replace_partition(engine, "usage_daily", NEXT, usage_frame(NEXT, 10))
    changed = usage_frame(DAY, 4, cost=Decimal("0.3"))
    assert replace_partition(engine, "usage_daily", DAY, changed) == 4
    assert read_table(engine, "usage_daily", where={"day": NEXT}).equals(
        usage_frame(NEXT, 10).sort(list(USAGE_DAILY_KEYS), nulls_last=True)
    )
    day = read_table(engine, "usage_daily", where={"day": DAY})
    assert day.height == 4
    assert day["cost_usd"].drop_nulls().sum() == Decimal("0.3") * (1 + 2 + 3)
    # An empty frame empties the partition and is logged with 0 rows.
    assert replace_partition(engine, "usage_daily", "2025-10-15", changed.clear()) == 0
    assert read_table(engine, "usage_daily", where={"day": DAY}).height == 0
    loads = read_table(engine, "partition_loads", where={"partition_key": "day=2025-10-15"})
    assert loads["rows"].to_list() == [0]


def test_failure_mid_load_rolls_back(engine: sa.Engine) -> None:
    replace_partition(engine, "ingest_counts", DAY, ingest_frame(DAY, 100))
    before = dump(engine)
    # 45,000 rows (three insert batches) with a duplicate primary key in the last batch.
    bad = ingest_frame(DAY, 45_000)
    bad = pl.concat([bad.slice(0, 44_000), bad.slice(5, 1), bad.slice(44_000)])
    with pytest.raises(sa.exc.IntegrityError):
        replace_partition(engine, "ingest_counts", DAY, bad)
    assert dump(engine) == before


def test_user_mistakes_write_nothing(engine: sa.Engine) -> None:
    replace_partition(engine, "usage_daily", DAY, usage_frame(DAY, 3))
    before = dump(engine)
    mixed = pl.concat([usage_frame(DAY, 3), usage_frame(NEXT, 2)])
    with pytest.raises(PartitionError, match=r"2 row\(s\) outside partition day=2025-10-15"):
        replace_partition(engine, "usage_daily", DAY, mixed)
    with pytest.raises(PartitionError, match="missing column cost_usd"):
        replace_partition(engine, "usage_daily", DAY, usage_frame(DAY, 3).drop("cost_usd"))
    as_float = usage_frame(DAY, 3).with_columns(pl.col("cost_usd").cast(pl.Float64))
    with pytest.raises(PartitionError, match="column cost_usd is Float64"):
        replace_partition(engine, "usage_daily", DAY, as_float)
    with pytest.raises(PartitionError, match="no warehouse table nope"):
        replace_partition(engine, "nope", "day", DAY, usage_frame(DAY, 1))
    assert dump(engine) == before


def test_frames_are_conformed_exactly(engine: sa.Engine) -> None:
    # Narrower ints, a narrower decimal and extra lineage columns are fine.
    frame = ingest_frame(DAY, 3).with_columns(
        pl.col("duplicates").cast(pl.Int32), pl.lit("x.jsonl").alias("source_file")
    )
    replace_partition(engine, "ingest_counts", "day", DAY, frame)
    assert read_table(engine, "ingest_counts").equals(ingest_frame(DAY, 3))
    narrow = usage_frame(DAY, 2).with_columns(pl.col("cost_usd").cast(pl.Decimal(20, 4)))
    replace_partition(engine, "usage_daily", DAY, narrow)
    costs = read_table(engine, "usage_daily").sort("feature")["cost_usd"].to_list()
    assert costs == [None, Decimal("0.1")]


# ----------------------------------------------------------------------------- engines
def test_make_engine_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AISPEND_WAREHOUSE_URL", raising=False)
    monkeypatch.setenv("AISPEND_DATA_DIR", str(tmp_path / "data"))
    engine = make_engine()
    assert engine.url.database == str(tmp_path / "data" / "warehouse.sqlite")
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1
    engine.dispose()
    assert make_engine("postgresql://u@127.0.0.1/db").dialect.driver == "psycopg"
    assert make_engine("postgres://u@127.0.0.1/db").dialect.driver == "psycopg"
    monkeypatch.setenv("AISPEND_WAREHOUSE_URL", f"sqlite:///{tmp_path / 'other.sqlite'}")
    assert make_engine().url.database == str(tmp_path / "other.sqlite")
    monkeypatch.delenv("AISPEND_WAREHOUSE_URL")
    monkeypatch.setenv("AISPEND_DATA_DIR", "s3://bucket/aispend")
    with pytest.raises(ValueError, match="AISPEND_WAREHOUSE_URL"):
        make_engine()


def test_bi_queries_from_the_docs(engine: sa.Engine) -> None:
    replace_partition(engine, "usage_daily", DAY, usage_frame(DAY, 20))
    replace_partition(engine, "peaks_by_model", DAY, peaks_frame(DAY))
    with engine.connect() as connection:
        spend = connection.execute(
            sa.text(
                "SELECT provider, model_key, SUM(requests) AS requests, SUM(cost_usd) AS cost_usd"
                " FROM usage_daily WHERE day BETWEEN :start AND :end"
                " GROUP BY provider, model_key ORDER BY provider, model_key"
            ),
            {"start": DAY, "end": DAY},
        ).all()
        peak = connection.execute(
            sa.text("SELECT MAX(peak_concurrency) FROM peaks_by_model WHERE day = :day"),
            {"day": DAY},
        ).scalar_one()
    assert sum(r.requests for r in spend) == sum(range(20))
    assert peak == 14
