"""The vectorized JSONL reader (sources.jsonl_fast): batches, line numbers, bad lines.

Whatever a batch holds, every non-blank line comes back once with its physical line
number; lines that cannot be read carry the same reason the per-line reader gives; only
the batches that need it leave the fast path. Equivalence with the reference reader on
fuzzed files is in test_sources_fuzz.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from sources import litellm
from sources.base import read_json_lines
from sources.ingest import ingest_file
from sources.jsonl_fast import read_jsonl_batches
from transforms.canonical_reader import InputError


def spend_log(n: int, **changes: object) -> dict[str, object]:
    row: dict[str, object] = {
        "request_id": f"req-{n}",
        "call_type": "acompletion",
        "api_key": "88dc28d0f030c55ed4ab77ed8faf098196cb1c05df778539800c9f1243fe6b4b",
        "spend": 0.0125,
        "prompt_tokens": 1000 + n,
        "completion_tokens": 200,
        "startTime": "2025-06-01T10:15:02.113Z",
        "endTime": "2025-06-01T10:15:04.870Z",
        "model": "gpt-4o-2024-08-06",
        "custom_llm_provider": "openai",
        "metadata": {
            "spend_logs_metadata": {"feature": "search"},
            "additional_usage_values": {"prompt_tokens_details": {"cached_tokens": 512}},
        },
        "request_tags": ["feature:search"],
        "cache_hit": "False",
        "status": "success",
    }
    row.update(changes)
    return row


def line(n: int, **changes: object) -> bytes:
    return json.dumps(spend_log(n, **changes)).encode()


def frames(path: Path, batch_bytes: int) -> list[tuple[pl.DataFrame, bool]]:
    return [(b.frame, b.fast) for b in read_jsonl_batches(path, litellm.FIELDS, batch_bytes)]


def test_clean_file_in_batches_keeps_every_line_number(tmp_path: Path) -> None:
    path = tmp_path / "logs.jsonl"
    lines = [line(n) for n in range(200)]
    path.write_bytes(b"\n".join(lines[:100]) + b"\n\n  \r\n" + b"\r\n".join(lines[100:]) + b"\n")
    batches = frames(path, 4096)
    assert len(batches) > 5
    assert all(fast for _, fast in batches)
    frame = pl.concat([f for f, _ in batches], how="vertical_relaxed")
    # two blank lines after line 100 are skipped but counted
    assert frame["_line"].to_list() == [*range(1, 101), *range(103, 203)]
    assert frame["request_id"].to_list() == [f"req-{n}" for n in range(200)]
    assert frame["_parse_error"].null_count() == frame.height
    assert frame["_record"].null_count() == frame.height  # kept only where quarantined


def test_bad_lines_keep_their_reason_and_the_rest_stays_fast(tmp_path: Path) -> None:
    good = [line(n) for n in range(50)]
    bad = {
        7: b'{"request_id": "trunc',  # a crashed writer
        12: b"[1, 2]",
        20: b"null",
        31: b'{"request_id": "x\xff"}',  # not UTF-8
        40: b'  {"request_id": "lead", "model": "m"}',  # valid, led by spaces
        45: b'{"request_id": "s", "startTime": "\\udc00"}',  # lone surrogate
    }
    lines = [bad.get(i, ln) for i, ln in enumerate(good, start=1)]
    path = tmp_path / "dirty.jsonl"
    path.write_bytes(b"\n".join(lines))
    reference = read_json_lines(path)
    for batch_bytes in (1 << 20, 3000):
        batches = frames(path, batch_bytes)
        frame = pl.concat([f for f, _ in batches], how="diagonal_relaxed")
        assert frame["_line"].to_list() == list(range(1, 51))
        errors = dict(zip(frame["_line"], frame["_parse_error"], strict=True))
        expected = dict(zip(reference["_line"], reference["_parse_error"], strict=True))
        assert errors == expected
        assert {k for k, v in errors.items() if v} == {7, 12, 20, 31, 45}
        assert errors[31] == "invalid_encoding" and errors[12] == "not_a_json_object"
        # Only the batch with the undecodable line leaves the fast path.
        if batch_bytes == 3000:
            assert sum(fast for _, fast in batches) >= len(batches) - 2


def test_quarantined_rows_keep_the_verbatim_line(tmp_path: Path) -> None:
    lines = [line(n) for n in range(30)]
    lines[4] = line(4, prompt_tokens=-5)  # inconsistent usage: quarantined by the split
    lines[9] = line(9, startTime="not a time")  # row issue
    lines[14] = b'{"request_id": '  # unreadable
    path = tmp_path / "q.jsonl"
    path.write_bytes(b"\r\n".join(lines) + b"\r\n")
    fast = ingest_file("litellm", path, batch_bytes=2000)
    reference = ingest_file("litellm", path, fast=False)
    quarantine = fast.frames["quarantine"]
    assert quarantine.sort("source_line").equals(reference.frames["quarantine"].sort("source_line"))
    records = dict(zip(quarantine["source_line"], quarantine["record"], strict=True))
    assert records == {5: lines[4].decode(), 10: lines[9].decode(), 15: lines[14].decode()}
    assert fast.problems() == []
    assert fast.frames["normalized"].height == 27


def test_a_line_longer_than_a_batch_is_read_whole(tmp_path: Path) -> None:
    long = line(1, user="u" * 10_000)
    path = tmp_path / "long.jsonl"
    path.write_bytes(line(0) + b"\n" + long + b"\n" + line(2))
    frame = pl.concat([f for f, _ in frames(path, 512)], how="vertical_relaxed")
    assert frame["_line"].to_list() == [1, 2, 3]
    assert frame["user"].to_list()[1] == "u" * 10_000


@pytest.mark.parametrize(
    "changes",
    [
        {"prompt_tokens": "1200"},  # a count as text
        {"spend": "0.5"},
        {"metadata": json.dumps({"spend_logs_metadata": {"feature": "x"}})},  # JSON text
        {"request_tags": "feature:chat"},
        {"prompt_tokens": 1.0},
        {"prompt_tokens": 2**70},
        {"spend": 1e-05},
    ],
)
def test_other_value_types_read_like_the_reference(tmp_path: Path, changes: dict) -> None:
    path = tmp_path / "types.jsonl"
    path.write_bytes(b"\n".join([line(0), line(1, **changes), line(2)]))
    fast = ingest_file("litellm", path)
    reference = ingest_file("litellm", path, fast=False)
    for name, frame in reference.frames.items():
        assert fast.frames[name].equals(frame), name


def test_unreadable_file_is_one_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        list(read_jsonl_batches(tmp_path / "missing.jsonl", litellm.FIELDS))
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    assert ingest_file("litellm", empty).records_read == 0
