"""sources.litellm_db against a real LiteLLM_SpendLogs table in PostgreSQL.

The table is created with the DDL Prisma generates for LiteLLM's `LiteLLM_SpendLogs` model
(quoted mixed-case columns, timestamp(3), jsonb), in a schema of its own that is dropped
afterwards. Server: AISPEND_TEST_DATABASE_URL, default the local `test` database.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import sqlalchemy as sa

from sources import litellm
from sources.base import SourceContext
from sources.litellm_db import (
    describe,
    ingest_spend_logs,
    masked,
    read_spend_logs,
)
from transforms.canonical_reader import InputError
from transforms.normalize import split_requests

pytestmark = pytest.mark.postgres

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
TEST_URL = os.environ.get("AISPEND_TEST_DATABASE_URL", DEFAULT_URL)
INJECTION = 'x\'); drop table "LiteLLM_SpendLogs"; --'

# What `prisma migrate` creates for model LiteLLM_SpendLogs (schema.prisma @ 029f645).
DDL = """
CREATE TABLE {schema}."LiteLLM_SpendLogs" (
    "request_id" TEXT NOT NULL,
    "call_type" TEXT NOT NULL,
    "api_key" TEXT NOT NULL DEFAULT '',
    "spend" DOUBLE PRECISION NOT NULL DEFAULT 0.0,
    "total_tokens" INTEGER NOT NULL DEFAULT 0,
    "prompt_tokens" INTEGER NOT NULL DEFAULT 0,
    "completion_tokens" INTEGER NOT NULL DEFAULT 0,
    "startTime" TIMESTAMP(3) NOT NULL,
    "endTime" TIMESTAMP(3) NOT NULL,
    "request_duration_ms" INTEGER,
    "completionStartTime" TIMESTAMP(3),
    "model" TEXT NOT NULL DEFAULT '',
    "model_id" TEXT DEFAULT '',
    "model_group" TEXT DEFAULT '',
    "custom_llm_provider" TEXT DEFAULT '',
    "api_base" TEXT DEFAULT '',
    "user" TEXT DEFAULT '',
    "metadata" JSONB DEFAULT '{{}}',
    "cache_hit" TEXT DEFAULT '',
    "cache_key" TEXT DEFAULT '',
    "request_tags" JSONB DEFAULT '[]',
    "team_id" TEXT,
    "organization_id" TEXT,
    "end_user" TEXT,
    "requester_ip_address" TEXT,
    "messages" JSONB DEFAULT '{{}}',
    "response" JSONB DEFAULT '{{}}',
    "session_id" TEXT,
    "status" TEXT,
    "mcp_namespaced_tool_name" TEXT,
    "agent_id" TEXT,
    "proxy_server_request" JSONB DEFAULT '{{}}',
    CONSTRAINT "LiteLLM_SpendLogs_pkey" PRIMARY KEY ("request_id")
);
CREATE INDEX ON {schema}."LiteLLM_SpendLogs" ("startTime");
CREATE INDEX ON {schema}."LiteLLM_SpendLogs" ("startTime", "request_id");
"""

DAY = dt.datetime(2025, 6, 1)
WINDOW = (DAY, DAY + dt.timedelta(days=1))
KEY_HASH = "88dc28d0f030c55ed4ab77ed8faf098196cb1c05df778539800c9f1243fe6b4b"


def ts(hms: str, day: dt.datetime = DAY) -> dt.datetime:
    return dt.datetime.combine(day.date(), dt.time.fromisoformat(hms))


def row(request_id: str, start: dt.datetime, **values: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "request_id": request_id,
        "call_type": "acompletion",
        "api_key": KEY_HASH,
        "spend": 0.0,
        "total_tokens": 0,
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "startTime": start,
        "endTime": start + dt.timedelta(seconds=2, milliseconds=757),
        "request_duration_ms": 2757,
        "completionStartTime": None,
        "model": "gpt-4o-2024-08-06",
        "model_id": "a1f3",
        "model_group": "gpt-4o",
        "custom_llm_provider": "openai",
        "api_base": "https://api.openai.com/v1",
        "user": "",
        "metadata": {},
        "cache_hit": "False",
        "cache_key": "",
        "request_tags": [],
        "team_id": None,
        "organization_id": None,
        "end_user": None,
        "requester_ip_address": None,
        "messages": {},
        "response": {},
        "session_id": None,
        "status": "success",
        "mcp_namespaced_tool_name": None,
        "agent_id": None,
        "proxy_server_request": {},
    }
    base.update(values)
    base["total_tokens"] = base["prompt_tokens"] + base["completion_tokens"]
    return base


ROWS = [
    # OpenAI semantics: prompt_tokens includes the 1024 cached ones.
    row(
        "chatcmpl-BvR2x9Qm1KJ0aZ6fJ3bq7LxT0pQe",
        ts("10:15:02.113"),
        spend=0.004945,
        prompt_tokens=1250,
        completion_tokens=310,
        completionStartTime=ts("10:15:02.601"),
        user="u_123",
        metadata={
            "user_api_key_alias": "search-svc",
            "user_api_key_team_id": "team_search",
            "spend_logs_metadata": {"feature": "search.rerank"},
            "additional_usage_values": {
                "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 0},
            },
            "status": "success",
        },
        request_tags=["feature:search", "env:prod"],
        team_id="team_search",
        end_user="cust_42",
        messages=[{"role": "user", "content": "a prompt nobody downstream should see"}],
    ),
    # Anthropic through LiteLLM: cache split in Anthropic-style keys, 1h writes, a reasoning
    # model; feature only in the tags, team only as the key's team alias.
    row(
        "msg_01XFDUDYJgAACzvnptvVoYEL",
        ts("11:00:00.000"),
        model="claude-sonnet-4-20250514",
        model_group="claude-sonnet-4",
        custom_llm_provider="anthropic",
        api_base="https://api.anthropic.com/v1/messages",
        spend=0.0123,
        prompt_tokens=2010,
        completion_tokens=420,
        metadata={
            "user_api_key_team_alias": "writers",
            "additional_usage_values": {
                "cache_read_input_tokens": 1800,
                "cache_creation_input_tokens": 100,
                "cache_creation": {"ephemeral_1h_input_tokens": 40},
                "completion_tokens_details": {"reasoning_tokens": 120},
            },
        },
        request_tags=["env:prod", "feature:summarize"],
        end_user='Zoë "quoted" O\'Brien',
        session_id="sess-7",
    ),
    # Embeddings: no completion tokens.
    row(
        "emb-0001",
        ts("11:30:00.250"),
        call_type="aembedding",
        model="text-embedding-3-small",
        model_group="text-embedding-3-small",
        prompt_tokens=12,
        spend=0.00000024,
    ),
    # A failed call: status "failure", 0 and 0 tokens = usage missing.
    row("fail-0001", ts("12:00:00.000"), status="failure", metadata=None, request_tags=None),
    # A gateway cache hit (cache_hit is the STRING "True").
    row("hit-0001", ts("12:30:00.000"), cache_hit="True", prompt_tokens=50, completion_tokens=5),
    # A model string that looks like SQL: must come back verbatim, harmlessly.
    row(
        "inject-0001",
        ts("13:00:00.000"),
        model=INJECTION,
        model_group=INJECTION,
        prompt_tokens=10,
        completion_tokens=2,
    ),
    # No model at all: quarantined as missing_value:model.
    row("nomodel-0001", ts("14:00:00.000"), model="", model_group="", prompt_tokens=5),
    # Exactly at the window start: in. Same start as the next one: ordered by request_id.
    row("edge-b", ts("00:00:00.000"), prompt_tokens=1, completion_tokens=1),
    row("edge-a", ts("00:00:00.000"), prompt_tokens=1, completion_tokens=1),
    # Last millisecond of the day: in.
    row("edge-late", ts("23:59:59.999"), prompt_tokens=3, completion_tokens=1),
    # Outside the window: a millisecond before, exactly at the end, a week later.
    row("before-0001", DAY - dt.timedelta(milliseconds=1), prompt_tokens=7, completion_tokens=1),
    row("atend-0001", WINDOW[1], prompt_tokens=7, completion_tokens=1),
    row("later-0001", DAY + dt.timedelta(days=7), prompt_tokens=7, completion_tokens=1),
]
IN_WINDOW = [r for r in ROWS if WINDOW[0] <= r["startTime"] < WINDOW[1]]
EXPECTED_ORDER = [
    r["request_id"] for r in sorted(IN_WINDOW, key=lambda r: (r["startTime"], r["request_id"]))
]


@pytest.fixture(scope="module")
def engine() -> Iterator[sa.Engine]:
    eng = sa.create_engine(TEST_URL)
    try:
        with eng.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.OperationalError as exc:
        pytest.fail(f"PostgreSQL not reachable at {masked(TEST_URL)}: {str(exc.orig).strip()}")
    yield eng
    eng.dispose()


@pytest.fixture(scope="module")
def db_schema(engine: sa.Engine) -> Iterator[str]:
    """A schema of its own holding LiteLLM_SpendLogs with ROWS; dropped afterwards."""
    name = f"aispend_test_{uuid.uuid4().hex[:12]}"
    quoted = engine.dialect.identifier_preparer.quote_identifier(name)
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {quoted}"))
        for statement in DDL.format(schema=quoted).split(";"):
            if statement.strip():
                conn.execute(sa.text(statement))
        table = sa.Table("LiteLLM_SpendLogs", sa.MetaData(), schema=name, autoload_with=conn)
        conn.execute(table.insert(), ROWS)
        # fail-0001: metadata is JSON null (how SQLAlchemy stores None), request_tags SQL NULL.
        conn.execute(
            table.update().where(table.c.request_id == "fail-0001").values(request_tags=sa.null())
        )
    try:
        yield name
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA {quoted} CASCADE"))


@pytest.fixture(scope="module")
def raw(db_schema: str) -> pl.DataFrame:
    return read_spend_logs(TEST_URL, *WINDOW, schema=db_schema)


def canonical(raw_frame: pl.DataFrame, file: str) -> pl.DataFrame:
    ctx = SourceContext(name="litellm-prod", kind="litellm", file=file)
    return litellm.to_canonical(raw_frame.lazy(), ctx).collect()


# ------------------------------------------------------------------------------- raw frame
def test_only_the_window_comes_back_in_order(raw: pl.DataFrame) -> None:
    assert raw["request_id"].to_list() == EXPECTED_ORDER
    assert raw.height == len(IN_WINDOW) == 10
    assert raw["_line"].to_list() == list(range(1, 11))
    assert raw["_parse_error"].null_count() == raw.height


def test_frame_shape_matches_the_file_reader(raw: pl.DataFrame) -> None:
    assert raw.columns[:3] == ["_line", "_record", "_parse_error"]
    s = raw.schema
    assert s["_line"] == pl.Int64 and s["_record"] == pl.String
    assert s["startTime"] == pl.Datetime("us") and s["completionStartTime"] == pl.Datetime("us")
    assert s["spend"] == pl.Float64 and s["prompt_tokens"] == pl.Int64
    assert s["metadata"] == pl.String and s["request_tags"] == pl.String
    # prompt and response bodies are not read by default
    assert not {"messages", "response", "proxy_server_request"} & set(raw.columns)
    first = raw.row(0, named=True)
    assert first["request_id"] == "edge-a"


def test_json_columns_and_record_are_json(raw: pl.DataFrame) -> None:
    by_id = {r["request_id"]: r for r in raw.iter_rows(named=True)}
    source = {r["request_id"]: r for r in IN_WINDOW}
    for request_id, got in by_id.items():
        want = source[request_id]
        record = json.loads(got["_record"])
        assert list(record) == [c for c in raw.columns if not c.startswith("_")]
        assert record["metadata"] == want["metadata"]
        assert record["request_tags"] == want["request_tags"]
        assert record["model"] == want["model"]
        assert record["end_user"] == want["end_user"]
        assert record["startTime"] == want["startTime"].isoformat(timespec="milliseconds")
        assert json.loads(got["metadata"]) == want["metadata"]
    failed = by_id["fail-0001"]
    assert (failed["metadata"], failed["request_tags"]) == ("null", None)  # JSON null, SQL NULL


def test_sql_looking_values_are_data(raw: pl.DataFrame, engine: sa.Engine, db_schema: str) -> None:
    got = raw.filter(pl.col("request_id") == "inject-0001").row(0, named=True)
    assert got["model"] == INJECTION
    assert json.loads(got["_record"])["model_group"] == INJECTION
    with engine.connect() as conn:
        table = sa.Table("LiteLLM_SpendLogs", sa.MetaData(), schema=db_schema, autoload_with=conn)
        assert conn.execute(sa.select(sa.func.count()).select_from(table)).scalar() == len(ROWS)


def test_aware_window_bounds(db_schema: str) -> None:
    paris = dt.timezone(dt.timedelta(hours=2))
    start = dt.datetime(2025, 6, 1, 12, 0, tzinfo=paris)  # 10:00 UTC
    end = dt.datetime(2025, 6, 1, 14, 0, tzinfo=paris)  # 12:00 UTC
    got = read_spend_logs(TEST_URL, start, end, schema=db_schema)
    assert got["request_id"].to_list() == [
        "chatcmpl-BvR2x9Qm1KJ0aZ6fJ3bq7LxT0pQe",
        "msg_01XFDUDYJgAACzvnptvVoYEL",
        "emb-0001",
    ]


def test_empty_window_keeps_the_columns(db_schema: str, raw: pl.DataFrame) -> None:
    got = read_spend_logs(
        TEST_URL, dt.datetime(2030, 1, 1), dt.datetime(2030, 1, 2), schema=db_schema
    )
    assert got.height == 0
    assert got.schema == raw.schema
    assert canonical(got, "db").height == 0


def test_prompt_columns_on_request(db_schema: str) -> None:
    got = read_spend_logs(TEST_URL, *WINDOW, schema=db_schema, exclude_columns=(), chunk_rows=3)
    assert {"messages", "response", "proxy_server_request"} <= set(got.columns)
    first = got.filter(pl.col("request_id") == "chatcmpl-BvR2x9Qm1KJ0aZ6fJ3bq7LxT0pQe")
    assert json.loads(first["messages"].item())[0]["role"] == "user"
    # chunked reading (3 rows a chunk) gives the same rows in the same order
    assert got["request_id"].to_list() == EXPECTED_ORDER


# ------------------------------------------------------------------------------- canonical
def test_canonical_mapping(raw: pl.DataFrame, db_schema: str) -> None:
    out = canonical(raw, describe(TEST_URL, schema=db_schema))
    rows = {r["request_id"]: r for r in out.iter_rows(named=True)}
    utc = dt.UTC

    openai = rows["chatcmpl-BvR2x9Qm1KJ0aZ6fJ3bq7LxT0pQe"]
    assert openai["started_at"] == dt.datetime(2025, 6, 1, 10, 15, 2, 113000, tzinfo=utc)
    assert openai["first_token_at"] == dt.datetime(2025, 6, 1, 10, 15, 2, 601000, tzinfo=utc)
    assert openai["ended_at"] == dt.datetime(2025, 6, 1, 10, 15, 4, 870000, tzinfo=utc)
    assert (openai["provider"], openai["model"]) == ("openai", "gpt-4o-2024-08-06")
    assert (openai["input_tokens"], openai["cache_read_tokens"]) == (1250, 1024)
    assert (openai["output_tokens"], openai["reasoning_tokens"]) == (310, 0)
    assert openai["cache_write_tokens"] is None
    assert openai["feature"] == "search.rerank"  # spend_logs_metadata before tags
    assert openai["team"] == "team_search"
    assert openai["user"] == "cust_42"  # end_user before user
    assert openai["api_key_id"] == f"sha256:{KEY_HASH}"
    assert openai["gateway_cost_usd"] == Decimal("0.004945")
    assert openai["gateway_cache_hit"] is False
    assert (openai["status"], openai["modality"], openai["gateway"]) == (
        "success",
        "text",
        "litellm",
    )
    assert openai["source_file"] == describe(TEST_URL, schema=db_schema)
    assert openai["source_file"].endswith(f"#{db_schema}.LiteLLM_SpendLogs")
    assert openai["row_issues"] is None

    claude = rows["msg_01XFDUDYJgAACzvnptvVoYEL"]
    assert (claude["provider"], claude["model"]) == ("anthropic", "claude-sonnet-4-20250514")
    assert claude["input_tokens"] == 2010
    assert (claude["cache_read_tokens"], claude["cache_write_tokens"]) == (1800, 100)
    assert claude["cache_write_1h_tokens"] == 40
    assert (claude["output_tokens"], claude["reasoning_tokens"]) == (420, 120)
    assert claude["feature"] == "summarize"
    assert claude["team"] == "writers"
    assert claude["trace_id"] == "sess-7"
    assert claude["user"] == 'Zoë "quoted" O\'Brien'

    emb = rows["emb-0001"]
    assert (emb["modality"], emb["input_tokens"], emb["output_tokens"]) == ("embedding", 12, 0)
    assert emb["gateway_cost_usd"] == Decimal("0.00000024")

    fail = rows["fail-0001"]
    assert fail["status"] == "error"
    assert fail["input_tokens"] is None and fail["output_tokens"] is None  # usage missing
    assert fail["feature"] is None and fail["team"] is None

    assert rows["hit-0001"]["gateway_cache_hit"] is True
    assert rows["inject-0001"]["model"] == INJECTION
    assert rows["nomodel-0001"]["row_issues"] == "missing_value:model"
    assert out["source_line"].to_list() == list(range(1, 11))


def test_decoded_metadata_maps_the_same(raw: pl.DataFrame, db_schema: str) -> None:
    decoded = read_spend_logs(TEST_URL, *WINDOW, schema=db_schema, decode_json=True)
    assert isinstance(decoded.schema["metadata"], pl.Struct)
    assert decoded.schema["request_tags"] == pl.String  # arrays stay JSON text
    assert decoded["_record"].equals(raw["_record"])
    failed = decoded.filter(pl.col("request_id") == "fail-0001")
    assert failed["metadata"].item() is None  # JSON null stays null
    assert canonical(decoded, "db").equals(canonical(raw, "db"))


def test_split_counts(raw: pl.DataFrame) -> None:
    out = split_requests(canonical(raw, "db").lazy())
    normalized, duplicates, quarantine, counts = pl.collect_all(
        [out.normalized, out.duplicates, out.quarantine, out.counts]
    )
    assert normalized.height == 9
    assert duplicates.height == 0
    assert quarantine["reason"].to_list() == ["missing_value:model"]
    assert json.loads(quarantine["record"].item())["request_id"] == "nomodel-0001"
    assert counts.to_dicts() == [
        {
            "source": "litellm-prod",
            "day": dt.date(2025, 6, 1),
            "rows_read": 10,
            "normalized": 9,
            "duplicates": 0,
            "quarantined": 1,
        }
    ]
    assert set(normalized["request_id"]) == set(EXPECTED_ORDER) - {"nomodel-0001"}


def test_same_canonical_rows_as_an_export_file(raw: pl.DataFrame, tmp_path: Path) -> None:
    """The table read from the database and the same rows exported as JSONL (ISO timestamps
    with Z, nested JSON) map to identical canonical rows."""

    def exported(r: dict[str, Any]) -> dict[str, Any]:
        out = {
            k: v for k, v in r.items() if k not in ("messages", "response", "proxy_server_request")
        }
        for k in ("startTime", "endTime", "completionStartTime"):
            if out[k] is not None:
                out[k] = out[k].isoformat(timespec="milliseconds") + "Z"
        return out

    path = tmp_path / "spend_logs.jsonl"
    ordered = sorted(IN_WINDOW, key=lambda r: (r["startTime"], r["request_id"]))
    path.write_text("\n".join(json.dumps(exported(r)) for r in ordered) + "\n", encoding="utf-8")
    from_file = canonical(litellm.read(path), "file").drop("source_file", "_record")
    from_db = canonical(raw, "file").drop("source_file", "_record")
    assert from_db.equals(from_file)


def test_ingest_spend_logs(db_schema: str) -> None:
    result = ingest_spend_logs(TEST_URL, *WINDOW, name="litellm-prod", schema=db_schema)
    assert result.records_read == 10
    assert not result.problems()
    summary = result.summary()
    assert (summary["normalized"], summary["quarantined"]) == (9, 1)


# ------------------------------------------------------------------------------- errors
def test_missing_table(db_schema: str) -> None:
    with pytest.raises(InputError, match=r"table .*\.nope: no such table"):
        read_spend_logs(TEST_URL, *WINDOW, table="nope", schema=db_schema)


def test_password_never_in_messages() -> None:
    url = "postgresql+psycopg://litellm:hunter2-s3cret@127.0.0.1:1/litellm"
    assert masked(url) == "postgresql+psycopg://litellm:***@127.0.0.1:1/litellm"
    assert "hunter2" not in describe(url)
    with pytest.raises(InputError) as info:
        read_spend_logs(url, *WINDOW)
    message = str(info.value)
    assert "hunter2" not in message
    assert message.startswith("postgresql+psycopg://litellm:***@127.0.0.1:1/litellm")
    assert "\n" not in message


def test_bad_inputs() -> None:
    with pytest.raises(InputError, match="not a valid SQLAlchemy database URL"):
        read_spend_logs("not a url: secret", *WINDOW)
    with pytest.raises(InputError, match="empty window"):
        read_spend_logs(TEST_URL, WINDOW[1], WINDOW[0])
