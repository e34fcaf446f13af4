"""Benchmark: ingest N LiteLLM spend-log rows (JSONL) to Parquet, aispend against DuckDB.

    python -m bench.bench_ingest --rows 1000000 --repeat 3
    python -m bench.bench_ingest --rows 1000000 --scenarios clean,dirty --engines aispend,duckdb

Input: `bench.gen_litellm` (generated once per rows/seed/bad-rate, then reused). Scenarios:
  clean   every line valid
  dirty   1 line in 10,000 truncated (a crashed writer): the reader must keep going

Engines, each in its own subprocess (peak RSS = the worker's own VmHWM, see bench_reprice
for why not rusage), all with 2 threads (POLARS_MAX_THREADS=2, DuckDB `SET threads=2`);
wall and CPU seconds (all threads) of the timed part are reported:
  aispend            sources.ingest.ingest_file("litellm", path) + write_outputs(result, dir):
                     the vectorized batch reader (sources.jsonl_fast), map to canonical per
                     batch, dedupe / quarantine / count, four Parquet files.
  aispend-reference  the same with fast=False: the per-file reader every adapter has (the
                     path the fast one must match; slow, and ~7 GB at 1M rows).
  duckdb             COPY (SELECT * FROM read_json_auto(path)) TO 'x.parquet': DuckDB reading
                     the same file into Parquet, no mapping (`ignore_errors=true` when dirty).
                     Its schema comes from the first 20,480 lines: later keys are dropped.
  duckdb-full        the same with sample_size=-1: the schema from every line.
  profile            the aispend path split into phases (read + parse, map, split, write).

When both aispend engines run, their four outputs are compared frame by frame (exit 1 if
they differ). Results: bench/results/ingest_latest.json. Target: aispend wall <= DuckDB wall.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parent.parent
THREADS = 2
TARGET_RATIO_VS_DUCKDB = 1.0
SCENARIOS = {"clean": 0.0, "dirty": 0.0001}
ENGINES = ("aispend", "aispend-reference", "duckdb", "duckdb-full")


def _vm_hwm_mb() -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


# --------------------------------------------------------------------------------------------
# Workers
# --------------------------------------------------------------------------------------------


def work_aispend(file: Path, out: Path, fast: bool) -> dict[str, Any]:
    from sources.ingest import ingest_file, write_outputs

    c0 = time.process_time()
    t0 = time.perf_counter()
    result = ingest_file("litellm", file, fast=fast)
    t1 = time.perf_counter()
    written = write_outputs(result, out)
    t2 = time.perf_counter()
    cpu = time.process_time() - c0
    summary = result.summary()
    return {
        "wall_s": t2 - t0,
        "cpu_s": cpu,
        "ingest_s": t1 - t0,
        "write_s": t2 - t1,
        "rows": result.records_read,
        "normalized": summary["normalized"],
        "duplicates": summary["duplicates"],
        "quarantined": summary["quarantined"],
        "accounting_ok": summary["accounting_ok"],
        "output_mb": sum(Path(p).stat().st_size for p in written.values()) / 1e6,
    }


def work_profile(file: Path, out: Path) -> dict[str, Any]:
    """The fast path phase by phase: reading and parsing batches alone, then reading and
    mapping them (sources.ingest._canonical_batches), the split, the Parquet files."""
    from sources import litellm
    from sources.base import SourceContext
    from sources.ingest import IngestResult, _canonical_batches, write_outputs
    from sources.jsonl_fast import BATCH_BYTES, read_jsonl_batches
    from transforms.normalize import split_requests

    phases: dict[str, float] = {}
    cpu_phases: dict[str, float] = {}

    def timed(name: str, step: Any) -> Any:
        c0, t0 = time.process_time(), time.perf_counter()
        value = step()
        phases[name], cpu_phases[name] = time.perf_counter() - t0, time.process_time() - c0
        return value

    rows = timed(
        "read_and_parse_only",
        lambda: sum(b.frame.height for b in read_jsonl_batches(file, litellm.FIELDS)),
    )
    ctx = SourceContext(name="litellm", kind="litellm", file=str(file))
    canonical = timed(
        "read_parse_and_map", lambda: _canonical_batches(litellm, file, ctx, BATCH_BYTES)
    )
    split = split_requests(canonical.lazy())
    frames = timed(
        "split_requests",
        lambda: pl.collect_all(
            [split.normalized, split.duplicates, split.quarantine, split.counts]
        ),
    )
    result = IngestResult("litellm", "requests", canonical.height)
    result.frames = dict(
        zip(("normalized", "duplicates", "quarantine", "counts"), frames, strict=True)
    )
    timed("write_parquet", lambda: write_outputs(result, out))
    return {
        "wall_s": sum(v for k, v in phases.items() if k != "read_and_parse_only"),
        "cpu_s": sum(v for k, v in cpu_phases.items() if k != "read_and_parse_only"),
        "phases_s": phases,
        "phases_cpu_s": cpu_phases,
        "rows": rows,
    }


def work_duckdb(file: Path, out: Path, dirty: bool, full: bool) -> dict[str, Any]:
    import duckdb

    out.mkdir(parents=True, exist_ok=True)
    target = out / "duckdb.parquet"
    con = duckdb.connect()
    con.execute(f"SET threads = {THREADS}")
    options = (", ignore_errors = true" if dirty else "") + (", sample_size = -1" if full else "")
    sql = f"COPY (SELECT * FROM read_json_auto('{file}'{options})) TO '{target}' (FORMAT parquet)"
    c0 = time.process_time()
    t0 = time.perf_counter()
    con.execute(sql)
    wall = time.perf_counter() - t0
    cpu = time.process_time() - c0
    rows = con.execute(f"SELECT count(*) FROM read_parquet('{target}')").fetchone()
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "rows": rows[0] if rows else None,
        "sql": sql,
        "version": duckdb.__version__,
        "output_mb": target.stat().st_size / 1e6,
    }


def worker_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("engine")
    parser.add_argument("--file", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--result", type=Path, required=True)
    parser.add_argument("--dirty", action="store_true")
    args = parser.parse_args(argv)
    if args.engine in ("aispend", "aispend-reference"):
        result = work_aispend(args.file, args.out, fast=args.engine == "aispend")
    elif args.engine == "profile":
        result = work_profile(args.file, args.out)
    elif args.engine == "duckdb":
        result = work_duckdb(args.file, args.out, args.dirty, full=False)
    elif args.engine == "duckdb-full":
        result = work_duckdb(args.file, args.out, args.dirty, full=True)
    else:
        raise SystemExit(f"unknown engine {args.engine}")
    result["peak_rss_mb"] = _vm_hwm_mb()
    result["cpu_s_total"] = time.process_time()  # whole worker, imports included
    args.result.write_text(json.dumps(result, indent=2, default=str), encoding="utf-8")
    return 0


# --------------------------------------------------------------------------------------------
# Parent
# --------------------------------------------------------------------------------------------


@dataclass
class Run:
    name: str
    ok: bool
    peak_rss_mb: float
    result: dict[str, Any] = field(default_factory=dict)
    error: str = ""

    @property
    def wall_s(self) -> float:
        return float(self.result.get("wall_s", float("nan")))


def run_worker(
    engine: str, file: Path, workdir: Path, dirty: bool, tag: str, keep: bool = False
) -> Run:
    """One worker process; its output directory is removed unless `keep`."""
    result_path = workdir / f"{tag}.json"
    out = workdir / f"out_{tag}"
    shutil.rmtree(out, ignore_errors=True)
    result_path.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "bench.bench_ingest", "--worker", engine]
    cmd += ["--file", str(file), "--out", str(out), "--result", str(result_path)]
    if dirty:
        cmd.append("--dirty")
    env = {**os.environ, "POLARS_MAX_THREADS": str(THREADS)}
    load = os.getloadavg()[0]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if not keep:
        shutil.rmtree(out, ignore_errors=True)
    if code != 0 or not result_path.exists():
        return Run(tag, False, usage.ru_maxrss / 1024, error=f"exit code {code}")
    result = json.loads(result_path.read_text(encoding="utf-8"))
    result["rusage_maxrss_mb"] = usage.ru_maxrss / 1024
    result["load_avg_1m_before"] = load
    result["out_dir"] = str(out)
    return Run(tag, True, result.get("peak_rss_mb") or usage.ru_maxrss / 1024, result)


def same_outputs(left: Path, right: Path) -> dict[str, Any]:
    """Frame by frame equality of two ingest output directories."""
    out: dict[str, Any] = {}
    for name in ("normalized", "duplicates", "quarantine", "counts"):
        a, b = left / f"{name}.parquet", right / f"{name}.parquet"
        if not (a.exists() and b.exists()):
            out[name] = "missing"
            continue
        out[name] = pl.read_parquet(a).equals(pl.read_parquet(b))
    return out


def ensure_input(rows: int, seed: int, bad_rate: float) -> Path:
    file = RESULTS / f"litellm_{rows}_s{seed}_bad{bad_rate:g}.jsonl"
    if not file.exists():
        gen = [sys.executable, "-m", "bench.gen_litellm", "--rows", str(rows), "--seed", str(seed)]
        gen += ["--bad-rate", str(bad_rate), "--out", str(file)]
        subprocess.run(gen, cwd=REPO, check=True)
    return file


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=1, help="runs per engine; fastest counts")
    parser.add_argument("--scenarios", default="clean", help="comma list: clean,dirty")
    parser.add_argument(
        "--engines",
        default="aispend,duckdb",
        help=f"comma list of {', '.join(ENGINES)}",
    )
    parser.add_argument("--no-profile", action="store_true", help="skip the phase profile")
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        return worker_main(argv[1:])
    args = parser.parse_args(argv)
    RESULTS.mkdir(parents=True, exist_ok=True)
    workdir = RESULTS / f"ingest_work_{args.rows}"
    workdir.mkdir(exist_ok=True)

    report: dict[str, Any] = {
        "rows": args.rows,
        "threads": THREADS,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "polars": pl.__version__,
            "platform": platform.platform(),
        },
        "scenarios": {},
    }
    all_ok = True
    for scenario in filter(None, args.scenarios.split(",")):
        bad_rate = SCENARIOS[scenario]
        dirty = bad_rate > 0
        file = ensure_input(args.rows, args.seed, bad_rate)
        size_mb = file.stat().st_size / 1e6
        print(f"\n[{scenario}] {args.rows:,} rows, {size_mb:,.0f} MB: {file}", flush=True)
        engines = [e for e in args.engines.split(",") if e]
        unknown = set(engines) - set(ENGINES)
        if unknown:
            parser.error(f"unknown engines {sorted(unknown)} (known: {', '.join(ENGINES)})")
        runs: dict[str, list[Run]] = {}
        for i in range(args.repeat):
            for engine in engines:
                keep = engine.startswith("aispend")
                r = run_worker(engine, file, workdir, dirty, f"{scenario}_{engine}", keep)
                runs.setdefault(engine, []).append(r)
                status = (
                    f"{r.wall_s:.2f} s, peak {r.peak_rss_mb:,.0f} MB"
                    if r.ok
                    else f"FAILED ({r.error})"
                )
                print(f"  {engine} #{i + 1}: {status}", flush=True)
        profile = None
        if not args.no_profile:
            p = run_worker("profile", file, workdir, dirty, f"{scenario}_profile")
            profile = p.result if p.ok else {"error": p.error}
            if p.ok:
                print("  profile (aispend phases):", flush=True)
                for name, seconds in p.result["phases_s"].items():
                    print(f"    {name:36s} {seconds:7.2f} s", flush=True)

        table: dict[str, Any] = {}
        for engine, rs in runs.items():
            ok = [r for r in rs if r.ok]
            if not ok:
                table[engine] = {"error": rs[0].error}
                all_ok = False
                continue
            best = min(ok, key=lambda r: r.wall_s)
            table[engine] = {
                "wall_s": best.wall_s,
                "rows_per_s": args.rows / best.wall_s,
                "peak_rss_mb": max(r.peak_rss_mb for r in ok),
                "runs_s": [round(r.wall_s, 3) for r in ok],
                **{k: v for k, v in best.result.items() if k not in ("wall_s", "peak_rss_mb")},
            }
        exact: dict[str, Any] = {}
        if {"aispend", "aispend-reference"} <= runs.keys():
            fast, slow = runs["aispend"][-1], runs["aispend-reference"][-1]
            if fast.ok and slow.ok:
                exact = same_outputs(Path(slow.result["out_dir"]), Path(fast.result["out_dir"]))
                print(f"  aispend outputs equal aispend-reference's: {exact}", flush=True)
                all_ok &= all(v is True for v in exact.values())
        for rs in runs.values():
            for r in rs:
                if "out_dir" in r.result:
                    shutil.rmtree(r.result["out_dir"], ignore_errors=True)
        duck = table.get("duckdb", {})
        ratios: dict[str, dict[str, float]] = {}
        for engine, t in table.items():
            if engine != "duckdb" and "wall_s" in t and "wall_s" in duck:
                ratios[engine] = {
                    "wall_over_duckdb": t["wall_s"] / duck["wall_s"],
                    "cpu_over_duckdb": t["cpu_s"] / duck["cpu_s"],
                }
        ratio = ratios.get("aispend", {}).get("wall_over_duckdb")
        report["scenarios"][scenario] = {
            "file": str(file),
            "file_mb": size_mb,
            "bad_rate": bad_rate,
            "engines": table,
            "profile": profile,
            "outputs_equal_reference": exact,
            "ratios": ratios,
            "aispend_over_duckdb": ratio,
            "target_met": ratio is not None and ratio <= TARGET_RATIO_VS_DUCKDB,
        }
        print(
            f"\n  {'engine':13s} {'wall s':>8s} {'cpu s':>8s} {'rows/s':>10s} {'peak MB':>8s}"
            f" {'wall/duckdb':>11s} {'cpu/duckdb':>10s}"
        )
        for engine, t in table.items():
            if "wall_s" in t:
                r = ratios.get(engine, {})
                print(
                    f"  {engine:13s} {t['wall_s']:8.2f} {t['cpu_s']:8.2f}"
                    f" {t['rows_per_s']:10,.0f} {t['peak_rss_mb']:8,.0f}"
                    f" {r.get('wall_over_duckdb', 1.0):11.2f} {r.get('cpu_over_duckdb', 1.0):10.2f}"
                )
        if ratio is not None:
            verdict = "met" if ratio <= TARGET_RATIO_VS_DUCKDB else "NOT met"
            print(f"  aispend / duckdb = {ratio:.2f} (target <= 1.0: {verdict})")

    out = RESULTS / "ingest_latest.json"
    out.write_text(json.dumps(report, indent=2, default=str), encoding="utf-8")
    print(f"\nresults: {out}", flush=True)
    return 0 if all_ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
