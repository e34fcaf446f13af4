"""The `aispend` console script as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest

ROOT = Path(__file__).resolve().parent.parent
AISPEND = Path(sys.executable).parent / "aispend"
SAMPLE = ROOT / "docs" / "examples" / "sample_requests.jsonl"


def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(AISPEND), *args], capture_output=True, text=True, cwd=cwd, timeout=300
    )


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["reprice"],
        ["demo"],
        ["catalog"],
        ["catalog", "validate"],
        ["catalog", "show"],
        ["catalog", "diff"],
    ],
)
def test_every_command_has_help(command: list[str]) -> None:
    result = run(*command, "--help")
    assert result.returncode == 0, result.stderr
    assert "Usage:" in result.stdout


def test_reprice_writes_parquet_and_prints_an_exact_summary(tmp_path: Path) -> None:
    out = tmp_path / "priced.parquet"
    result = run("reprice", str(SAMPLE), "--out", str(out), "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    frame = pl.read_parquet(out)
    lines = SAMPLE.read_text().splitlines()
    assert summary["rows"] == frame.height == len(lines)
    assert summary["priced"] + summary["unpriced"] == summary["rows"]
    assert sum(summary["unpriced_by_reason"].values()) == summary["unpriced"]
    assert summary["unpriced_by_reason"]["unknown_model"] >= 1
    assert Decimal(summary["cost_usd"]) == frame["cost_usd"].sum()
    assert Decimal(summary["cost_usd_cents"]) == Decimal(summary["cost_usd"]).quantize(
        Decimal("0.01")
    )


def test_reprice_to_csv_and_at_a_date(tmp_path: Path) -> None:
    out = tmp_path / "priced.csv"
    now = run("reprice", str(SAMPLE), "--out", str(out), "--json")
    later = run(
        "reprice", str(SAMPLE), "--out", str(tmp_path / "later.csv"), "--at", "2026-11-01", "--json"
    )
    assert now.returncode == 0 and later.returncode == 0, now.stderr + later.stderr
    assert out.read_text().splitlines()[0].startswith("request_id,")
    # o3 got 80% cheaper on 2025-06-10: the sample (June 2025) costs less at late-2026 prices.
    assert Decimal(json.loads(later.stdout)["list_cost_usd"]) != Decimal(
        json.loads(now.stdout)["list_cost_usd"]
    )


@pytest.mark.parametrize(
    ("content", "name", "expected"),
    [
        (
            "request_id,started_at,provider,model,input_tokens\nr1,2026-01-01,openai,gpt-4o,lots\n",
            "bad.csv",
            "bad.csv: line 2: field 'input_tokens': expected a whole number, got 'lots'",
        ),
        (
            "request_id,provider,model\nr1,openai,gpt-4o\n",
            "nocol.csv",
            "nocol.csv: line 1: field 'started_at': required column is missing",
        ),
    ],
)
def test_bad_input_is_one_line_non_zero_and_no_output(
    tmp_path: Path, content: str, name: str, expected: str
) -> None:
    src = tmp_path / name
    src.write_text(content)
    out = tmp_path / "never.parquet"
    result = run("reprice", str(src), "--out", str(out))
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists()
    assert list(tmp_path.iterdir()) == [src]


def test_unknown_output_type_and_bad_date_are_user_errors(tmp_path: Path) -> None:
    result = run("reprice", str(SAMPLE), "--out", str(tmp_path / "x.xlsx"))
    assert result.returncode == 2 and "unknown output type" in result.stderr
    result = run("reprice", str(SAMPLE), "--out", str(tmp_path / "x.parquet"), "--at", "tomorrow")
    assert result.returncode == 2 and "expected a date" in result.stderr
    assert "Traceback" not in result.stderr


def test_demo_prints_the_summary(tmp_path: Path) -> None:
    result = run("demo", "--out", str(tmp_path / "demo.parquet"))
    assert result.returncode == 0, result.stderr
    assert "priced" in result.stdout and "cost USD" in result.stdout


def test_catalog_show_and_diff() -> None:
    show = run(
        "catalog", "show", "--provider", "openai", "--model", "o3", "--at", "2025-07-01", "--json"
    )
    assert show.returncode == 0, show.stderr
    assert show.stdout.strip().startswith("[")
    diff = run("catalog", "diff", "--from", "2025-06-01", "--to", "2025-07-01", "--json")
    assert diff.returncode == 0, diff.stderr
    changes = json.loads(diff.stdout)
    assert any("o3" in json.dumps(c) for c in changes)


def test_catalog_validate_reports_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text(
        "prices:\n  - provider: acme\n    model: m1\n    input_mtok: -1\n"
        "  - provider: acme\n    model: m2\n    bananas_mtok: 2\n"
    )
    result = run("catalog", "validate", "--catalog", str(tmp_path))
    assert result.returncode == 2
    assert f"{tmp_path / 'bad.yaml'}:2: input_mtok: negative price -1" in result.stderr
    assert f"{tmp_path / 'bad.yaml'}:5: unknown unit 'bananas_mtok'" in result.stderr
    ok = run("catalog", "validate")
    assert ok.returncode == 0, ok.stderr
