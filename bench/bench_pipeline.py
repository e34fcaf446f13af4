"""End-to-end pipeline benchmark: one day of N requests, raw file -> lake -> warehouse.

    python -m bench.bench_pipeline                    # 10M requests, canonical Parquet
    python -m bench.bench_pipeline --rows 1000000     # quicker
    python -m bench.bench_pipeline --source litellm --rows 1000000   # LiteLLM JSONL export

Two measurements, each in its own process, on fresh output directories:

* `aispend run`: the real command (`aispend run --from D --to D --no-progress`), Dagster
  in-process executor, ephemeral instance: ingest + Great Expectations + accounting checks,
  repricing, the four roll-ups, the warehouse load (SQLite), the daily report and the
  invoice month (no invoices here) with its reconciliation.
* `plain`: the same functions called directly, no Dagster (`--worker plain`): what the
  pipeline costs without the orchestrator. Dagster's overhead = the difference. Like the
  assets, it streams the ingest into the lake (`stream_requests`), samples GX from the lake
  and streams the repricing into the lake (`lake.sink_partition`).

Reported: wall seconds (process start to exit, imports included), CPU seconds, peak RSS
(`VmHWM` of the process, polled), per-phase seconds of the plain run, and the machine load
before each run (the machine is shared: compare CPU seconds when wall times look odd).
Targets (issue 4): 10M requests in at most 60 s wall and 4 GB peak memory on 2 cores.
Results: `bench/results/pipeline_<source>_<rows>.json` and `pipeline_latest.json`.

Raw data: `bench.gen_canonical` (canonical Parquet, day 2025-10-01) or `bench.gen_litellm`
(LiteLLM JSONL, day 2025-06-01), generated once into bench/results and reused.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DAYS = {"canonical": dt.date(2025, 10, 1), "litellm": dt.date(2025, 6, 1)}
TARGET_WALL_S = 60.0
TARGET_RSS_MB = 4096.0


def _raw_file(source: str, rows: int) -> Path:
    """Generate the raw file once (deterministic), reuse it afterwards."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    if source == "canonical":
        path = RESULTS / f"canonical_{rows}_s0_d1.parquet"
        args = ["bench.gen_canonical", "--rows", str(rows), "--out", str(path), "--days", "1"]
    else:
        path = RESULTS / f"litellm_{rows}_s0_bad0.jsonl"
        args = ["bench.gen_litellm", "--rows", str(rows), "--out", str(path)]
    if not path.exists():
        subprocess.run([sys.executable, "-m", *args], cwd=ROOT, check=True)
    return path


def _workdir(source: str, rows: int, raw: Path) -> tuple[Path, Path]:
    """A fresh data dir and a sources.yaml whose {date} pattern names the raw file."""
    work = RESULTS / f"pipeline_{source}_{rows}"
    shutil.rmtree(work, ignore_errors=True)
    day = DAYS[source]
    logs = work / "raw"
    logs.mkdir(parents=True)
    link = logs / f"requests-{day.isoformat()}{raw.suffix}"
    os.symlink(raw, link)
    kind = "canonical" if source == "canonical" else "litellm"
    config = work / "sources.yaml"
    config.write_text(
        "sources:\n"
        f"  - name: bench-{kind}\n"
        f"    kind: {kind}\n"
        f"    location: raw/requests-{{date:%Y-%m-%d}}{raw.suffix}\n"
    )
    return work, config


def _load() -> float:
    return os.getloadavg()[0]


def _measure(cmd: list[str], env: dict[str, str]) -> dict[str, object]:
    """Run a command, polling its peak RSS (VmHWM) until it exits."""
    start = time.perf_counter()
    before = os.times()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    peak_kb = 0
    status = Path(f"/proc/{proc.pid}/status")
    while proc.poll() is None:
        try:
            for line in status.read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak_kb = max(peak_kb, int(line.split()[1]))
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    stdout, stderr = proc.communicate()
    wall = time.perf_counter() - start
    after = os.times()
    cpu = (after.children_user - before.children_user) + (
        after.children_system - before.children_system
    )
    return {
        "returncode": proc.returncode,
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "peak_rss_mb": round(peak_kb / 1024, 1),
        "stdout": stdout.decode(errors="replace")[-4000:],
        "stderr": stderr.decode(errors="replace")[-4000:],
    }


# --------------------------------------------------------------------------- plain worker
def plain_worker(config: Path, data_dir: Path, day: dt.date) -> dict[str, float]:
    """The asset bodies' work, in order, without Dagster (same functions, same lake)."""
    phases: dict[str, float] = {}
    peaks: dict[str, float] = {}
    mark = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal mark
        now = time.perf_counter()
        phases[name] = round(now - mark, 2)
        peaks[name] = round(_peak_rss_mb())  # high-water mark after the phase
        mark = now

    import polars as pl

    import lake
    from pipelines.assets import daily_tables
    from pipelines.ingest_day import ingest_invoices, ingest_provider_usage, stream_requests
    from pipelines.resources import _engine, _load_catalog, default_warehouse_url
    from sources.config import load_sources
    from transforms.quality import validate_requests
    from transforms.reprice import reprice
    from transforms.usage_rollups import (
        latency_by_feature,
        latency_by_model,
        peaks_by_model,
        usage_daily,
    )

    lap("imports")
    base = str(data_dir)
    sources = load_sources(config)
    result = stream_requests(sources, day, base)
    for name, frame in (
        ("quarantine", result.quarantine),
        ("duplicates", result.duplicates),
        ("ingest_counts", result.counts),
    ):
        lake.write_partition(base, name, day, frame)
    assert not result.accounting_problems(), result.accounting_problems()
    lap("ingest")
    from pipelines.quality_checks import sample_rows
    from pipelines.resources import DEFAULT_GX_MAX_ROWS

    rows = result.scan_rows(base, day)
    sample = sample_rows(rows, result.row_count, DEFAULT_GX_MAX_ROWS)
    lap("gx_sample")
    validate_requests(sample, partition_day=day)
    rows.select(pl.struct("request_id", "attempt").is_duplicated().sum()).collect()
    del rows, sample, result
    lap("great_expectations")
    usage = ingest_provider_usage(sources, day)
    lake.write_partition(base, "provider_usage", day, usage.rows)
    lake.write_partition(base, "provider_usage_quarantine", day, usage.quarantine)
    lake.write_partition(base, "provider_usage_counts", day, usage.counts)
    ingest_invoices(sources, day.replace(day=1))
    lap("billing")
    catalog = _load_catalog("")
    lake.sink_partition(
        base,
        "priced_requests",
        day,
        reprice(lake.scan_partition(base, "normalized_requests", day), catalog),
    )
    lap("reprice")
    scan = lake.scan_partition(base, "priced_requests", day)
    if "row_issues" not in scan.collect_schema().names():
        scan = scan.with_columns(pl.lit(None, pl.String).alias("row_issues"))
    frames = pl.collect_all(
        [usage_daily(scan), latency_by_model(scan), latency_by_feature(scan), peaks_by_model(scan)]
    )
    for name, frame in zip(
        ("usage_daily", "latency_by_model", "latency_by_feature", "peaks_by_model"),
        frames,
        strict=True,
    ):
        lake.write_partition(base, name, day, frame)
    lap("rollups")
    from warehouse.load import replace_partition

    engine = _engine(default_warehouse_url(base))
    for table, frame in daily_tables(base, day).items():
        replace_partition(engine, table, day, frame)
    lap("warehouse")
    from pipelines.monthly import reconcile_month
    from reports.from_lake import run_report

    run_report(day, base, None)
    reconcile_month(base, day.replace(day=1), engine)
    lap("report_and_reconciliation")
    return {**phases, **{f"peak_mb_after_{k}": v for k, v in peaks.items()}}


def _peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


# --------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--source", choices=sorted(DAYS), default="canonical")
    parser.add_argument("--skip-plain", action="store_true", help="only time `aispend run`")
    parser.add_argument("--worker", choices=["plain"], help=argparse.SUPPRESS)
    parser.add_argument("--config", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--day", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker == "plain":
        phases = plain_worker(args.config, args.data_dir, dt.date.fromisoformat(args.day))
        print(json.dumps({"phases": phases, "peak_rss_mb": round(_peak_rss_mb(), 1)}))
        return 0

    raw = _raw_file(args.source, args.rows)
    day = DAYS[args.source]
    env = {
        **os.environ,
        "DAGSTER_DISABLE_TELEMETRY": "1",
        "GX_ANALYTICS_ENABLED": "false",
        "AISPEND_START_DATE": "2025-01-01",
    }
    env.pop("DAGSTER_HOME", None)
    report: dict[str, object] = {
        "rows": args.rows,
        "source": args.source,
        "raw_file": str(raw),
        "raw_mb": round(raw.stat().st_size / 1e6, 1),
        "day": day.isoformat(),
        "cpus": os.cpu_count(),
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "targets": {"wall_s": TARGET_WALL_S, "peak_rss_mb": TARGET_RSS_MB},
    }

    work, config = _workdir(args.source, args.rows, raw)
    aispend = str(Path(sys.executable).parent / "aispend")
    report["load_before_run"] = round(_load(), 2)
    run = _measure(
        [
            aispend,
            "run",
            "--from",
            day.isoformat(),
            "--to",
            day.isoformat(),
            "--config",
            str(config),
            "--data-dir",
            str(work / "data"),
            "--no-progress",
        ],
        env,
    )
    report["aispend_run"] = run
    print(
        f"aispend run: exit {run['returncode']}, {run['wall_s']} s wall, {run['cpu_s']} s CPU, "
        f"peak {run['peak_rss_mb']} MB",
        flush=True,
    )
    if run["returncode"] != 0:
        print(run["stdout"], run["stderr"], sep="\n", file=sys.stderr)

    if not args.skip_plain:
        work, config = _workdir(args.source, args.rows, raw)
        report["load_before_plain"] = round(_load(), 2)
        plain = _measure(
            [
                sys.executable,
                "-m",
                "bench.bench_pipeline",
                "--worker",
                "plain",
                "--config",
                str(config),
                "--data-dir",
                str(work / "data"),
                "--day",
                day.isoformat(),
            ],
            env,
        )
        try:
            plain["detail"] = json.loads(str(plain["stdout"]).strip().splitlines()[-1])
        except (ValueError, IndexError):
            print(plain["stderr"], file=sys.stderr)
        report["plain"] = plain
        overhead = float(run["wall_s"]) - float(plain["wall_s"])  # type: ignore[arg-type]
        cpu_overhead = float(run["cpu_s"]) - float(plain["cpu_s"])  # type: ignore[arg-type]
        report["dagster_overhead_s"] = round(overhead, 2)
        # On a shared machine wall time swings with other load; CPU seconds do not.
        report["dagster_overhead_cpu_s"] = round(cpu_overhead, 2)
        detail: dict[str, Any] = plain.get("detail") or {}  # type: ignore[assignment]
        print(
            f"plain:       exit {plain['returncode']}, {plain['wall_s']} s wall, "
            f"{plain['cpu_s']} s CPU, peak {plain['peak_rss_mb']} MB; "
            f"phases {detail.get('phases')}",
            flush=True,
        )
        print(f"Dagster overhead: {overhead:.1f} s wall, {cpu_overhead:.1f} s CPU", flush=True)

    out = RESULTS / f"pipeline_{args.source}_{args.rows}.json"
    out.write_text(json.dumps(report, indent=2))
    (RESULTS / "pipeline_latest.json").write_text(json.dumps(report, indent=2))
    ok = (
        run["returncode"] == 0
        and float(run["wall_s"]) <= TARGET_WALL_S  # type: ignore[arg-type]
        and float(run["peak_rss_mb"]) <= TARGET_RSS_MB  # type: ignore[arg-type]
    )
    print(
        f"targets {'met' if ok else 'NOT met'} ({TARGET_WALL_S:.0f} s, {TARGET_RSS_MB:.0f} MB); "
        f"report: {out}"
    )
    return 0 if run["returncode"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
