"""SIGKILL `aispend run` at several points, run the range again: the lake and warehouse end
up identical to a clean run (no half partition, no duplicate rows, nothing missing).

Kill points are taken from what the run has written, not from the clock, so they land in
the same stage on a slow or a fast machine: right after the first day's normalized
partition appeared (mid-ingest step, before the checks), and right after the second (last)
day's roll-ups appeared (before its warehouse load and the invoice months). The killed runs
use a persistent Dagster instance (SQLite under DAGSTER_HOME), so the instance surviving a
kill is tested too.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from aispend_cli.run_cmd import configure_environment, run_pipeline
from datagen.build import generate
from datagen.faults import FaultSpec
from pipelines.demo_config import write_demo_sources
from pipelines.snapshot import lake_digest, warehouse_dump

ROOT = Path(__file__).resolve().parent.parent
AISPEND = Path(sys.executable).parent / "aispend"
START = dt.date(2025, 9, 29)
END = START + dt.timedelta(days=1)


def _env(data: Path, home: Path, config: Path) -> dict[str, str]:
    return {
        **os.environ,
        "DAGSTER_DISABLE_TELEMETRY": "1",
        "DAGSTER_HOME": str(home),
        "AISPEND_DATA_DIR": str(data),
        "AISPEND_CONFIG": str(config),
        "AISPEND_GX_MAX_ROWS": "0",  # GX is not what this tests; its import costs ~8 s a run
    }


def _command() -> list[str]:
    return [
        str(AISPEND),
        "run",
        "--from",
        START.isoformat(),
        "--to",
        END.isoformat(),
        "--no-progress",
    ]


def _kill_when(marker: Path, env: dict[str, str], timeout: float = 240) -> bool:
    """Start a run, SIGKILL it as soon as `marker` exists. False if it finished first."""
    proc = subprocess.Popen(
        _command(), cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + timeout
    try:
        while not marker.exists():
            if proc.poll() is not None:
                return False
            if time.monotonic() > deadline:
                raise AssertionError(f"{marker} never appeared")
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    return proc.returncode == -signal.SIGKILL


@pytest.mark.slow  # 4 processes importing Dagster; test_lake covers the swap cheaply
def test_killed_runs_are_repaired_by_running_again(tmp_path: Path) -> None:
    generated = tmp_path / "generated"
    generate(generated, 2, 80, 5, START, FaultSpec(duplicate_rate=0.02, malformed_rate=0.01))
    config = write_demo_sources(generated, tmp_path / "sources.yaml")

    clean = tmp_path / "clean"
    saved = {
        k: os.environ.get(k) for k in ("AISPEND_DATA_DIR", "AISPEND_CONFIG", "AISPEND_GX_MAX_ROWS")
    }
    configure_environment(config, clean)
    os.environ["AISPEND_GX_MAX_ROWS"] = "0"
    try:
        with dg.DagsterInstance.ephemeral() as instance:
            reference = run_pipeline(START, END, instance=instance)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    assert reference.ok
    expected_lake = lake_digest(clean)
    expected_rows = warehouse_dump(reference.warehouse_url)

    crashed, home = tmp_path / "crashed", tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = _env(crashed, home, config)
    lake = crashed / "lake"
    markers = [
        lake / "normalized_requests" / f"day={START}" / "part-0.parquet",
        lake / "usage_daily" / f"day={START + dt.timedelta(days=1)}" / "part-0.parquet",
    ]
    killed = 0
    for marker in markers:
        killed += _kill_when(marker, env)
        # Whatever the kill interrupted, no partition is half there.
        for folder in lake.rglob("day=*"):
            assert (folder / "part-0.parquet").is_file(), folder
    assert killed >= 1, "every run finished before its kill point: nothing was tested"

    final = subprocess.run(
        _command(), cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert final.returncode == 0, final.stdout + final.stderr
    assert lake_digest(crashed) == expected_lake
    assert warehouse_dump(f"sqlite:///{crashed / 'warehouse.sqlite'}") == expected_rows
