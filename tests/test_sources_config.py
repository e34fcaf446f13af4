"""sources.yaml: loading, one-line errors with line numbers, date patterns, fsspec, secrets."""

from __future__ import annotations

import datetime as dt
import json
import textwrap
import uuid
from pathlib import Path

import fsspec
import polars as pl
import pytest

from sources.config import (
    ConfigError,
    ConfigErrors,
    SourcesConfig,
    load_sources,
    parse_sources,
)
from sources.registry import KINDS
from transforms.canonical_reader import InputError

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "docs" / "examples" / "sources.yaml"
DAY = dt.date(2025, 6, 1)


def write(tmp_path: Path, text: str, name: str = "sources.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def errors_of(tmp_path: Path, text: str) -> list[str]:
    """Every error message of a config, as `line: message` (the path stripped)."""
    path = write(tmp_path, text)
    with pytest.raises((ConfigError, ConfigErrors)) as info:
        load_sources(path)
    exc = info.value
    found = exc.errors if isinstance(exc, ConfigErrors) else [exc]
    for e in found:
        assert "\n" not in str(e)
        assert str(e).startswith(f"{path}:")
    return [str(e)[len(str(path)) + 1 :] for e in found]


# ------------------------------------------------------------------------------- valid
def test_valid_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(
        tmp_path,
        """
        sources:
          - name: litellm-prod
            kind: litellm
            location: logs/litellm/{date:%Y-%m-%d}.jsonl
            timezone: Europe/Paris
            trailing_days: 2
            description: spend logs exported nightly
          - name: litellm-db
            kind: litellm
            credentials:
              url_env: LITELLM_DATABASE_URL
            options:
              table: LiteLLM_SpendLogs
              schema: public
          - name: openai-usage
            kind: openai_usage
            location: s3://acme-finops/openai/usage/{date:%Y/%m/%d}/*.json
            credentials: {api_key_env: OPENAI_ADMIN_KEY}
            options: {bucket_width: 1d, group_by: [model, project_id]}
        """,
    )
    config = load_sources(path)
    assert isinstance(config, SourcesConfig)
    assert [s.name for s in config] == ["litellm-prod", "litellm-db", "openai-usage"]
    files, db, usage = config.sources
    assert files.location == str(tmp_path / "logs/litellm/{date:%Y-%m-%d}.jsonl")
    assert (files.timezone, files.trailing_days, files.produces) == ("Europe/Paris", 2, "requests")
    assert files.origin == f"{path}:2"
    assert files.has_date_pattern and not files.is_database
    assert db.is_database and db.location is None
    assert db.credentials == {"url_env": "LITELLM_DATABASE_URL"}
    assert db.options == {"table": "LiteLLM_SpendLogs", "schema": "public"}
    assert (db.timezone, db.trailing_days) == ("UTC", 0)
    assert usage.location == "s3://acme-finops/openai/usage/{date:%Y/%m/%d}/*.json"
    assert usage.options["group_by"] == ["model", "project_id"]
    assert usage.produces == "provider_usage"
    assert config.get("litellm-db") is db
    with pytest.raises(InputError, match="no source named 'nope'"):
        config.get("nope")

    # the secret is read from the environment, never stored
    monkeypatch.setenv("OPENAI_ADMIN_KEY", "sk-admin-from-env")
    assert usage.credential("api_key_env") == "sk-admin-from-env"
    monkeypatch.delenv("OPENAI_ADMIN_KEY")
    with pytest.raises(InputError, match="OPENAI_ADMIN_KEY is not set"):
        usage.credential("api_key_env")


def test_path_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "sources:\n  - {name: a, kind: canonical, location: a.jsonl}\n")
    monkeypatch.setenv("AISPEND_CONFIG", str(path))
    assert load_sources().sources[0].location == str(tmp_path / "a.jsonl")
    monkeypatch.delenv("AISPEND_CONFIG")
    with pytest.raises(InputError, match="set AISPEND_CONFIG"):
        load_sources()


def test_trailing_window() -> None:
    config = parse_sources(
        "sources:\n  - {name: a, kind: canonical, location: '/x/{date}.jsonl', trailing_days: 2}\n",
        "s.yaml",
    )
    assert config.sources[0].days(DAY) == [dt.date(2025, 5, 30), dt.date(2025, 5, 31), DAY]


# ------------------------------------------------------------------------------- errors
def test_unknown_kind_and_field(tmp_path: Path) -> None:
    assert errors_of(
        tmp_path,
        """
        sources:
          - name: a
            kind: litellm
            location: a.jsonl
          - name: b
            kind: portkey
            location: b.jsonl
            locaton: typo.jsonl
        """,
    ) == [
        f"6: sources[1].kind: unknown kind 'portkey' (known: {', '.join(sorted(KINDS))})",
        "8: sources[1].locaton: unknown field (known: name, kind, location, timezone, "
        "credentials, trailing_days, options, description)",
    ]


def test_one_error_is_a_config_error(tmp_path: Path) -> None:
    path = write(tmp_path, "sources:\n  - name: a\n    kind: litellm\n")
    with pytest.raises(ConfigError) as info:
        load_sources(path)
    assert str(info.value) == (
        f"{path}:2: sources[0]: missing 'location' (or credentials.url_env for a LiteLLM database)"
    )
    assert (info.value.line, info.value.path) == (2, str(path))


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("sources: [\n", "invalid YAML"),
        ("- a\n- b\n", "1: expected a mapping with a 'sources' list"),
        ("sources: []\nother: 1\n", "2: unknown top-level key 'other' (use sources)"),
        ("sources: {a: 1}\n", "1: 'sources' must be a list"),
        ("sources:\n  - just-a-string\n", "2: sources[0]: expected a mapping"),
        (
            "sources:\n  - kind: litellm\n    location: a.jsonl\n",
            "2: sources[0]: missing required field 'name'",
        ),
        (
            "sources:\n  - name: a\n    location: a.jsonl\n",
            "2: sources[0]: missing required field 'kind'",
        ),
        (
            "sources:\n  - name: has space\n    kind: litellm\n    location: a.jsonl\n",
            "2: sources[0].name: expected letters, digits",
        ),
        (
            "sources:\n  - name: a\n    kind: litellm\n    location: a.jsonl\n"
            "    timezone: Mars/Olympus\n",
            "5: sources[0].timezone: unknown time zone 'Mars/Olympus'",
        ),
        (
            "sources:\n  - name: a\n    kind: litellm\n    location: a.jsonl\n"
            "    trailing_days: three\n",
            "5: sources[0].trailing_days: expected a whole number of days, got 'three'",
        ),
        (
            "sources:\n  - name: a\n    kind: litellm\n    location: a.jsonl\n"
            "    trailing_days: -1\n",
            "5: sources[0].trailing_days: expected 0 to 366, got -1",
        ),
        (
            "sources:\n  - name: a\n    kind: litellm\n    location: a.jsonl\n    options: [1]\n",
            "5: sources[0].options: expected a mapping",
        ),
        (
            "sources:\n  - name: a\n    kind: litellm\n    location: logs/{day}.jsonl\n",
            "4: sources[0].location: unknown placeholder {day} (use {date:%Y-%m-%d})",
        ),
        (
            "sources:\n  - name: a\n    kind: litellm\n    location: logs/{date:YYYY}.jsonl\n",
            "4: sources[0].location: date pattern {date:YYYY} has no strftime code",
        ),
        (
            "sources:\n  - name: a\n    kind: litellm\n    location: 'logs/{date.jsonl'\n",
            "4: sources[0].location: bad date pattern",
        ),
        (
            "sources:\n  - name: a\n    kind: litellm\n    location: nope://bucket/a.jsonl\n",
            "4: sources[0].location: unknown filesystem protocol 'nope'",
        ),
        (
            "sources:\n  - name: a\n    kind: litellm\n    location: logs/{date}.txt\n",
            "4: sources[0].location: file type '.txt' cannot be read",
        ),
        (
            "sources:\n  - name: a\n    kind: helicone\n    credentials: {url_env: DB_URL}\n",
            "4: sources[0].credentials: kind helicone cannot read a database: give a location",
        ),
        (
            "sources:\n  - name: a\n    kind: litellm\n    location: a.jsonl\n"
            "    credentials: {url_env: DB_URL}\n",
            "4: sources[0].location: give either location (files) or credentials.url_env",
        ),
        (
            "sources:\n  - name: a\n    kind: litellm\n    location: a.jsonl\n    name: b\n",
            "5: sources[0].name: given twice",
        ),
        (
            "sources:\n  - {name: a, kind: litellm, location: a.jsonl}\n"
            "  - {name: a, kind: helicone, location: b.jsonl}\n",
            "3: sources[1].name: 'a' already used on line 2",
        ),
    ],
)
def test_error_kinds(tmp_path: Path, body: str, expected: str) -> None:
    found = errors_of(tmp_path, body)
    assert len(found) == 1, found
    assert found[0].startswith(expected) or expected in found[0], found


def test_every_error_at_once_sorted_by_line(tmp_path: Path) -> None:
    found = errors_of(
        tmp_path,
        """
        sources:
          - name: a
            kind: nope
            location: a.jsonl
          - name: b
            kind: litellm
            location: b.jsonl
            trailing_days: x
        """,
    )
    assert [f.split(":")[0] for f in found] == ["3", "8"]


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"missing\.yaml: cannot read file"):
        load_sources(tmp_path / "missing.yaml")


# ------------------------------------------------------------------------------- secrets
@pytest.mark.parametrize(
    ("credentials_or_option", "line_and_message"),
    [
        (
            "credentials:\n      api_key_env: sk-proj-Abc123def456ghi789",
            "6: sources[0].credentials.api_key_env: looks like a literal secret (an API key",
        ),
        (
            "credentials:\n      api_key: OPENAI_ADMIN_KEY",
            "6: sources[0].credentials.api_key: only environment variable names go here: "
            "write api_key_env: VARIABLE_NAME",
        ),
        (
            "credentials:\n      url_env: postgresql://litellm:hunter2@db:5432/litellm",
            "6: sources[0].credentials.url_env: looks like a literal secret (a URL with",
        ),
        (
            "credentials:\n      token_env: not a variable",
            "6: sources[0].credentials.token_env: expected an environment variable name",
        ),
        (
            "options:\n      database_url: postgresql+psycopg://u:hunter2@db/litellm",
            "6: sources[0].options.database_url: looks like a literal secret (a URL with",
        ),
        (
            "options:\n      password: hunter2",
            "6: sources[0].options.password: a secret cannot be written here",
        ),
        (
            "options:\n      headers:\n        - Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjMifQ.s",
            "7: sources[0].options.headers[0]: looks like a literal secret (a JWT)",
        ),
        (
            "options:\n      nested: {aws: AKIAIOSFODNN7EXAMPLE}",
            "6: sources[0].options.nested.aws: looks like a literal secret (an AWS access key id)",
        ),
    ],
)
def test_secrets_refused(tmp_path: Path, credentials_or_option: str, line_and_message: str) -> None:
    text = (
        "sources:\n  - name: a\n    kind: openai_usage\n    location: pages/{date}.json\n    "
        + credentials_or_option
        + "\n"
    )
    found = errors_of(tmp_path, text)
    assert len(found) == 1, found
    assert found[0].startswith(line_and_message), found
    # the secret itself is never repeated
    for secret in ("hunter2", "Abc123def456", "eyJhbGci", "AKIAIOSFODNN7EXAMPLE"):
        assert secret not in found[0]


@pytest.mark.parametrize(
    "location",
    [
        "s3://AKIAIOSFODNN7EXAMPLE:wJalrXUtnFEMI@bucket/logs/{date}.jsonl",
        "https://acct.blob.core.windows.net/logs/{date}.jsonl?sv=2024&sig=abcdef",
        "sftp://ops:hunter2@host/logs/{date}.jsonl",
    ],
)
def test_location_with_credentials_refused(tmp_path: Path, location: str) -> None:
    found = errors_of(
        tmp_path, f"sources:\n  - name: a\n    kind: litellm\n    location: '{location}'\n"
    )
    assert len(found) == 1 and found[0].startswith("4: sources[0].location: looks like it carries")
    assert "hunter2" not in found[0] and "wJalr" not in found[0] and "abcdef" not in found[0]


# ------------------------------------------------------------------------------- files
def test_date_pattern_expansion_local(tmp_path: Path) -> None:
    logs = tmp_path / "logs" / "litellm"
    logs.mkdir(parents=True)
    for name in ("2025-06-01.jsonl", "2025-06-02.jsonl"):
        (logs / name).write_text("{}\n")
    nested = tmp_path / "usage" / "2025" / "06" / "01"
    nested.mkdir(parents=True)
    for name in ("page-2.json", "page-1.json", "notes.txt"):
        (nested / name).write_text("{}\n")
    (nested / "sub.json").mkdir()  # a directory matching the glob is not a file
    path = write(
        tmp_path,
        f"""
        sources:
          - name: plain
            kind: litellm
            location: logs/litellm/{{date:%Y-%m-%d}}.jsonl
          - name: pages
            kind: openai_usage
            location: usage/{{date:%Y}}/{{date:%m}}/{{date:%d}}/*.json
          - name: url
            kind: litellm
            location: file://{tmp_path}/logs/litellm/{{date:%Y-%m-%d}}.jsonl
          - name: iso
            kind: litellm
            location: {tmp_path}/logs/litellm/{{date}}.jsonl
        """,
    )
    config = load_sources(path)
    assert config.files_for("plain", DAY) == [str(logs / "2025-06-01.jsonl")]
    assert config.files_for("plain", dt.date(2025, 6, 3)) == []  # no file that day
    assert config.files_for("pages", DAY) == [
        str(nested / "page-1.json"),
        str(nested / "page-2.json"),
    ]
    assert config.files_for(config.get("url"), dt.date(2025, 6, 2)) == [
        str(logs / "2025-06-02.jsonl")
    ]
    assert config.files_for("iso", DAY) == [str(logs / "2025-06-01.jsonl")]


def test_memory_filesystem(tmp_path: Path) -> None:
    root = f"aispend-test-{uuid.uuid4().hex[:8]}"
    fs = fsspec.filesystem("memory")
    fs.pipe(f"/{root}/litellm/2025-06-01/a.jsonl", b'{"request_id":"a"}\n')
    fs.pipe(f"/{root}/litellm/2025-06-01/b.jsonl", b'{"request_id":"b"}\n')
    fs.pipe(f"/{root}/litellm/2025-06-02/c.jsonl", b'{"request_id":"c"}\n')
    fs.pipe(
        f"/{root}/sources.yaml",
        b"sources:\n"
        b"  - name: mem\n"
        b"    kind: litellm\n"
        b"    location: litellm/{date:%Y-%m-%d}/*.jsonl\n",
    )
    try:
        config = load_sources(f"memory://{root}/sources.yaml")  # the config itself via fsspec
        assert config.sources[0].location == f"memory://{root}/litellm/{{date:%Y-%m-%d}}/*.jsonl"
        files = config.files_for("mem", DAY)
        assert files == [
            f"memory:///{root}/litellm/2025-06-01/a.jsonl",
            f"memory:///{root}/litellm/2025-06-01/b.jsonl",
        ]
        with config.open(files[1]) as handle:
            assert handle.read() == b'{"request_id":"b"}\n'
        copy = config.local_path(files[1], tmp_path / "fetched")
        assert copy.name == "b.jsonl" and copy.is_relative_to(tmp_path / "fetched")
        other = config.local_path(files[0], tmp_path / "fetched")
        assert other.name == "a.jsonl" and other.parent != copy.parent  # one folder per URL
        assert copy.read_bytes() == b'{"request_id":"b"}\n'
        assert config.local_path(str(copy), tmp_path) == copy  # local: as it is
        assert config.files_for("mem", dt.date(2025, 6, 3)) == []
    finally:
        fs.rm(f"/{root}", recursive=True)


def test_database_source_has_no_files() -> None:
    config = parse_sources(
        "sources:\n  - {name: db, kind: litellm, credentials: {url_env: LITELLM_DATABASE_URL}}\n",
        "s.yaml",
    )
    with pytest.raises(InputError, match="reads a database, not files"):
        config.files_for("db", DAY)


# ------------------------------------------------------------------------------- the example
def test_documented_example_is_valid() -> None:
    config = load_sources(EXAMPLE)
    kinds = {s.kind for s in config}
    assert kinds == set(KINDS), f"example lacks kinds: {sorted(set(KINDS) - kinds)}"
    assert any(s.is_database for s in config)
    # every source in the docs has a section in docs/sources.md
    doc = (REPO / "docs" / "sources.md").read_text(encoding="utf-8")
    for kind in KINDS:
        assert f"kind: {kind}\n" in doc, kind


def test_config_drives_ingest(tmp_path: Path) -> None:
    """The documented loop: a day's files from the config, ingested under the source's name,
    timezone and partition day."""
    from sources.ingest import ingest_file

    logs = tmp_path / "litellm"
    logs.mkdir()
    record = (
        '{{"request_id":"r{n}","startTime":"2025-06-01 09:00:0{n}","model":"gpt-4o",'
        '"custom_llm_provider":"openai","prompt_tokens":10,"completion_tokens":2}}'
    )
    (logs / "2025-06-01.jsonl").write_text(
        "\n".join(record.format(n=n) for n in range(3)) + "\n", encoding="utf-8"
    )
    path = write(
        tmp_path,
        """
        sources:
          - name: litellm-berlin
            kind: litellm
            location: litellm/{date:%Y-%m-%d}.jsonl
            timezone: Europe/Berlin
            trailing_days: 1
        """,
    )
    config = load_sources(path)
    source = config.get("litellm-berlin")
    results = [
        ingest_file(
            source.kind,
            Path(file),
            name=source.name,
            timezone=source.timezone,
            partition_day=day,
        )
        for day in source.days(DAY)
        for file in config.files_for(source, day)
    ]
    assert len(results) == 1  # 2025-05-31 has no file
    normalized = results[0].frames["normalized"]
    assert normalized["source"].unique().to_list() == ["litellm-berlin"]
    # naive 09:00 in Berlin (CEST) is 07:00 UTC
    assert normalized["started_at"].min() == dt.datetime(2025, 6, 1, 7, 0, tzinfo=dt.UTC)
    assert normalized.height == 3


# ------------------------------------------------------------------------------- command line
def cli(*args: str):  # type: ignore[no-untyped-def]
    from typer.testing import CliRunner

    from aispend_cli.main import app

    return CliRunner().invoke(app, list(args))


@pytest.mark.parametrize(
    ("body", "count"),
    [
        (
            """
            sources:
              - name: a
                kind: nope
                location: a.jsonl
              - name: b
                kind: litellm
                location: b.jsonl
                trailing_days: x
            """,
            2,
        ),
        ("sources: [\n  {name: a,\n", 1),  # invalid YAML: the parser's message spans lines
    ],
)
def test_cli_prints_each_config_error_on_one_line(tmp_path: Path, body: str, count: int) -> None:
    path = write(tmp_path, body)
    data = tmp_path / "x.jsonl"
    data.write_text("{}\n", encoding="utf-8")
    out = tmp_path / "out"
    result = cli(
        "ingest", "--config", str(path), "--source", "a", "--input", str(data), "--out", str(out)
    )
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == count, lines
    for line in lines:
        assert line.startswith(f"error: {path}:"), line
    assert "Traceback" not in result.output
    assert not out.exists()  # nothing written


def test_cli_ingest_through_config_uses_the_source(tmp_path: Path) -> None:
    (tmp_path / "d.jsonl").write_text(
        '{"request_id":"r1","startTime":"2025-06-01 09:00:00","model":"gpt-4o",'
        '"custom_llm_provider":"openai","prompt_tokens":10,"completion_tokens":2}\n',
        encoding="utf-8",
    )
    path = write(
        tmp_path,
        """
        sources:
          - name: gw-berlin
            kind: litellm
            location: d.jsonl
            timezone: Europe/Berlin
        """,
    )
    out = tmp_path / "out"
    args = ["ingest", "--config", str(path), "--input", str(tmp_path / "d.jsonl")]
    result = cli(*args, "--source", "gw-berlin", "--out", str(out), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["normalized"] == 1
    row = pl.read_parquet(out / "normalized.parquet").row(0, named=True)
    assert row["source"] == "gw-berlin"
    assert row["started_at"] == dt.datetime(2025, 6, 1, 7, 0, tzinfo=dt.UTC)
    missing = cli(*args, "--source", "nope", "--out", str(tmp_path / "o2"))
    assert missing.exit_code == 2
    assert missing.stderr.strip().splitlines() == [
        f"error: {path}: no source named 'nope' (sources: gw-berlin)"
    ]
