"""Dagster definitions load, and the daily repricing asset materializes a partition."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg

from pipelines.assets import priced_requests
from pipelines.definitions import defs
from pipelines.resources import PricingCatalogResource, RequestFilesResource

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "docs" / "examples" / "sample_requests.jsonl"


def test_definitions_load_with_one_daily_partitions_object() -> None:
    loaded = defs()
    spec = loaded.resolve_assets_def("priced_requests")
    assert isinstance(spec.partitions_def, dg.DailyPartitionsDefinition)
    assert spec.partitions_def.timezone == "UTC"


def test_definitions_validate_from_the_cli() -> None:
    exe = Path(sys.executable).parent / "dagster"
    result = subprocess.run(
        [str(exe), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={"DAGSTER_DISABLE_TELEMETRY": "1", "PATH": str(exe.parent), "HOME": str(ROOT)},
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_priced_requests_materializes_one_day(tmp_path: Path) -> None:
    day = "2025-06-10"
    target = tmp_path / f"requests-{day}.jsonl"
    shutil.copy(SAMPLE, target)
    result = dg.materialize(
        [priced_requests],
        partition_key=day,
        resources={
            "pricing_catalog": PricingCatalogResource(),
            "request_files": RequestFilesResource(pattern=str(tmp_path / "requests-{day}.jsonl")),
        },
    )
    assert result.success
    metadata = result.asset_materializations_for_node("priced_requests")[0].metadata
    expected = sum(
        1
        for line in SAMPLE.read_text().splitlines()
        if json.loads(line)["started_at"].startswith(day)
    )
    assert metadata["rows"].value == expected
    assert metadata["priced"].value + metadata["unpriced"].value == expected
    assert metadata["unpriced"].value >= 1  # the sample's unknown model on that day
