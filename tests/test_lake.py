"""The lake: partition paths, atomic replace (local and fsspec), crash leftovers recovered."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
import uuid
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest

import lake
from lake.store import _OLD, _STAGING
from transforms.schema import MONEY

ROOT = Path(__file__).resolve().parent.parent


def _frame(n: int, tag: str) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "request_id": [f"{tag}-{i}" for i in range(n)],
            "cost_usd": [Decimal(i) / Decimal(7) for i in range(n)],
        },
        schema={"request_id": pl.String, "cost_usd": MONEY},
    )


def test_paths_follow_the_documented_layout(tmp_path: Path) -> None:
    day = lake.partition_file(tmp_path, "normalized_requests", dt.date(2025, 9, 5))
    assert str(day) == str(tmp_path / "lake/normalized_requests/day=2025-09-05/part-0.parquet")
    month = lake.partition_path(tmp_path, "invoice_lines", "2025-09-01", month=True)
    assert month.name == "month=2025-09"
    assert lake.partition_name("2025-10") == "month=2025-10"
    for bad in ("2025-13-01", "yesterday", "2025-9-5"):
        with pytest.raises((lake.LakeError, ValueError)):
            lake.partition_name(bad)
    with pytest.raises(lake.LakeError, match="dataset"):
        lake.dataset_path(tmp_path, "../escape")


def test_write_read_replace_is_exact_and_leaves_no_staging(tmp_path: Path) -> None:
    first, second = _frame(5, "a"), _frame(3, "b")
    lake.write_partition(tmp_path, "priced_requests", "2025-09-05", first)
    assert lake.read_partition(tmp_path, "priced_requests", "2025-09-05").equals(first)
    lake.write_partition(tmp_path, "priced_requests", "2025-09-05", second)
    back = lake.read_partition(tmp_path, "priced_requests", "2025-09-05")
    assert back.equals(second)  # Decimal(38,18) survives exactly
    assert back.schema["cost_usd"] == MONEY
    folder = tmp_path / "lake" / "priced_requests"
    assert sorted(p.name for p in folder.iterdir()) == ["day=2025-09-05"]
    assert lake.list_partitions(tmp_path, "priced_requests") == ["2025-09-05"]


def test_same_frame_gives_same_bytes(tmp_path: Path) -> None:
    frame = _frame(50, "x")
    path = lake.write_partition(tmp_path, "usage_daily", "2025-09-05", frame)
    before = Path(path).read_bytes()
    lake.write_partition(tmp_path, "usage_daily", "2025-09-05", frame)
    assert Path(path).read_bytes() == before


def test_scan_dataset_skips_missing_days_and_keeps_order(tmp_path: Path) -> None:
    lake.write_partition(tmp_path, "usage_daily", "2025-09-06", _frame(2, "six"))
    lake.write_partition(tmp_path, "usage_daily", "2025-09-05", _frame(1, "five"))
    days = [dt.date(2025, 9, 5), dt.date(2025, 9, 6), dt.date(2025, 9, 7)]
    scanned = lake.scan_dataset(tmp_path, "usage_daily", days)
    assert scanned is not None
    assert scanned.collect()["request_id"].to_list() == ["five-0", "six-0", "six-1"]
    assert lake.scan_dataset(tmp_path, "usage_daily", [dt.date(2025, 1, 1)]) is None
    with pytest.raises(lake.LakeError, match="not written yet"):
        lake.read_partition(tmp_path, "usage_daily", "2025-09-07")


def test_fsspec_memory_filesystem() -> None:
    base = f"memory://aispend-{uuid.uuid4().hex[:8]}"
    lake.write_partition(base, "invoice_lines", "2025-09", _frame(4, "m"), month=True)
    lake.write_partition(base, "invoice_lines", "2025-09", _frame(2, "n"), month=True)
    back = lake.read_partition(base, "invoice_lines", "2025-09", month=True)
    assert back["request_id"].to_list() == ["n-0", "n-1"]
    assert lake.list_partitions(base, "invoice_lines") == ["2025-09"]
    scanned = lake.scan_dataset(base, "invoice_lines", ["2025-09"], month=True)
    assert scanned is not None and scanned.collect().height == 2


def test_crash_leftovers_never_replace_the_previous_partition(tmp_path: Path) -> None:
    old = _frame(3, "old")
    lake.write_partition(tmp_path, "normalized_requests", "2025-09-05", old)
    folder = tmp_path / "lake" / "normalized_requests"
    target = folder / "day=2025-09-05"
    # A writer killed while writing its staging file: half a Parquet file beside the target.
    staging = folder / f"{_STAGING}day=2025-09-05-deadbeef0000"
    staging.mkdir()
    (staging / lake.PART_FILE).write_bytes(b"PAR1 half a file")
    assert lake.read_partition(tmp_path, "normalized_requests", "2025-09-05").equals(old)
    # A writer killed between the two renames of the fallback swap: no target, old aside.
    aside = folder / f"{_OLD}day=2025-09-05-deadbeef0001"
    os.rename(target, aside)
    assert lake.read_partition(tmp_path, "normalized_requests", "2025-09-05").equals(old)
    assert target.is_dir() and not aside.exists()
    # The next write cleans the leftovers and replaces the partition.
    new = _frame(2, "new")
    lake.write_partition(tmp_path, "normalized_requests", "2025-09-05", new)
    assert lake.read_partition(tmp_path, "normalized_requests", "2025-09-05").equals(new)
    assert sorted(p.name for p in folder.iterdir()) == ["day=2025-09-05"]


WRITER = """
import sys, polars as pl, lake
base, tag = sys.argv[1], sys.argv[2]
frame = pl.DataFrame({"tag": [tag] * 3_000_000, "n": range(3_000_000)})
print("ready", flush=True)
while True:
    lake.write_partition(base, "priced_requests", "2025-09-05", frame)
"""


def test_sigkill_during_writes_leaves_a_whole_partition(tmp_path: Path) -> None:
    old = pl.DataFrame({"tag": ["old"], "n": [0]})
    lake.write_partition(tmp_path, "priced_requests", "2025-09-05", old)
    for delay in (0.05, 0.3, 0.7):
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(tmp_path), "new"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        back = lake.read_partition(tmp_path, "priced_requests", "2025-09-05")
        tags = back["tag"].unique().to_list()
        assert tags in (["old"], ["new"])
        assert back.height == (1 if tags == ["old"] else 3_000_000)
