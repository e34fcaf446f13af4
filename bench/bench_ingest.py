"""Benchmark: ingest N LiteLLM spend-log rows (JSONL) to Parquet, aispend against DuckDB.

    python -m bench.bench_ingest --rows 1000000
    python -m bench.bench_ingest --rows 1000000 --scenarios clean,dirty --engines aispend,duckdb

Input: `bench.gen_litellm` (generated once per rows/seed/bad-rate, then reused). Scenarios:
  clean   every line valid
  dirty   1 line in 10,000 truncated (a crashed writer): the reader must keep going

Engines, each in its own subprocess (peak RSS = the worker's own VmHWM, see bench_reprice
for why not rusage), all with 2 threads (POLARS_MAX_THREADS=2, DuckDB `SET threads=2`);
wall and CPU seconds (all threads) of the timed part are reported:
  aispend       sources.ingest.ingest_file("litellm", path) + write_outputs(result, dir): read,
                map to canonical, dedupe / quarantine / count, four Parquet files.
  duckdb        COPY (SELECT * FROM read_json_auto(path)) TO 'x.parquet': DuckDB reading the
                same file into Parquet, no mapping (`ignore_errors=true` when dirty). Its
                schema comes from the first 20,480 lines: keys first seen later are dropped.
  duckdb-full   the same with sample_size=-1: the schema from every line, as aispend does.
  proto         aispend's ingest restructured, same output (checked): `proto_ingest_file`.
  proto-duckdb  proto with the JSON parsed by DuckDB against the fields the LiteLLM adapter
                reads (`LITELLM_FIELDS`), `_record` still the full line.
  proto-arrow   proto with pyarrow's JSON reader.
  profile       the aispend path split into phases (read bytes, parse JSON, line bookkeeping,
                canonical, split, write), to see where the time goes.

Every proto engine's four outputs are compared with aispend's (or proto's), frame by frame.
Results: bench/results/ingest_latest.json. Target: aispend wall <= DuckDB wall.
"""

from __future__ import annotations

import argparse
import io
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
ENGINES = ("aispend", "duckdb", "duckdb-full", "proto", "proto-duckdb", "proto-arrow")
PROTO_PARSERS = {"proto": "polars", "proto-duckdb": "duckdb", "proto-arrow": "arrow"}
# The fields sources.litellm.to_canonical reads, as DuckDB types. Leaves are VARCHAR: a value
# of any JSON type comes back as its text, and the adapter coerces it as it does today.
_V = "VARCHAR"
LITELLM_FIELDS: dict[str, Any] = {
    **{
        name: _V
        for name in (
            "request_id", "call_type", "api_key", "spend", "prompt_tokens", "completion_tokens",
            "startTime", "endTime", "completionStartTime", "model", "model_group",
            "custom_llm_provider", "user", "cache_hit", "team_id", "end_user", "session_id",
            "status",
        )
    },
    "request_tags": [_V],
    "metadata": {
        "spend_logs_metadata": {"feature": _V},
        "user_api_key_team_alias": _V,
        "additional_usage_values": {
            "prompt_tokens_details": {"cached_tokens": _V},
            "cache_read_input_tokens": _V,
            "cache_creation_input_tokens": _V,
            "cache_creation": {"ephemeral_1h_input_tokens": _V},
            "completion_tokens_details": {"reasoning_tokens": _V},
        },
    },
}  # fmt: skip


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


def work_aispend(file: Path, out: Path, reader: str) -> dict[str, Any]:
    from sources.ingest import ingest_file, write_outputs

    c0 = time.process_time()
    t0 = time.perf_counter()
    if reader == "aispend":
        result = ingest_file("litellm", file)
    else:
        result = proto_ingest_file(file, PROTO_PARSERS[reader])
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
    """ingest_file + write_outputs for the JSONL fast path, phase by phase (same steps as
    sources.base.read_json_lines, sources.ingest.ingest_file and write_outputs)."""
    from sources import base, litellm
    from sources.base import SourceContext
    from transforms.normalize import split_requests

    phases: dict[str, float] = {}
    cpu_phases: dict[str, float] = {}
    t = time.perf_counter()
    c = time.process_time()

    def lap(name: str) -> None:
        nonlocal t, c
        now, cpu_now = time.perf_counter(), time.process_time()
        phases[name], cpu_phases[name] = now - t, cpu_now - c
        t, c = now, cpu_now

    raw = base._open_bytes(file)
    lap("read_bytes")
    text = raw.decode("utf-8")
    lap("decode_utf8")
    try:
        fields = pl.read_ndjson(io.BytesIO(raw), infer_schema_length=None)
    except pl.exceptions.PolarsError:
        fields = pl.DataFrame()  # a bad line: read_json_lines takes its slow path
    lap("read_ndjson")
    all_lines = text.split("\n")
    numbered = [(i + 1, line.rstrip("\r")) for i, line in enumerate(all_lines) if line.strip()]
    ok = fields.height == len(numbered) and all(
        line.lstrip().startswith("{") for _, line in numbered
    )
    lap("split_and_check_lines")
    fast_path = ok
    if ok:
        meta = base._meta_frame(
            [n for n, _ in numbered], [line for _, line in numbered], [None] * len(numbered)
        )
        frame = pl.concat([meta, fields], how="horizontal")
        lap("meta_frame_and_concat")
    else:
        fast_path = False
        frame = base._assemble(*base._parse_lines(raw))
        lap("slow_path_parse_lines_and_assemble")
    del raw, text, all_lines, numbered
    ctx = SourceContext(name="litellm", kind="litellm", file=str(file))
    canonical = litellm.to_canonical(frame.lazy(), ctx).collect()
    lap("to_canonical_collect")
    split = split_requests(canonical.lazy())
    frames = pl.collect_all([split.normalized, split.duplicates, split.quarantine, split.counts])
    lap("split_requests_collect")
    out.mkdir(parents=True, exist_ok=True)
    for name, f in zip(("normalized", "duplicates", "quarantine", "counts"), frames, strict=True):
        f.write_parquet(out / f"{name}.parquet")
    lap("write_parquet")
    return {
        "wall_s": sum(phases.values()),
        "cpu_s": sum(cpu_phases.values()),
        "phases_s": phases,
        "phases_cpu_s": cpu_phases,
        "fast_path": fast_path,
        "rows": frame.height,
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
    if args.engine in ("aispend", *PROTO_PARSERS):
        result = work_aispend(args.file, args.out, args.engine)
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
# Prototype: the reader with less Python per line. Not used by aispend itself.
# --------------------------------------------------------------------------------------------


def proto_read_json_lines(path: Path, parser: str = "polars") -> pl.DataFrame:
    """What sources.base.read_json_lines returns, with the per-line work done by Polars.

    read_json_lines decodes the whole file to one Python str, splits it into a Python list
    of lines, builds (number, line) tuples, checks each line in a Python loop and builds
    `_line`/`_record` from Python lists; one bad line sends the whole file through
    `json.loads` line by line. Here Polars reads the lines itself (read_csv of the file as
    one text column: no quoting, a separator byte that cannot occur in JSON text), line
    numbers and checks are vectorized, and a file with bad lines is checked line by line
    by Polars (`str.json_path_match("$")` is null exactly when a line is not valid JSON),
    then only its good lines are parsed. Fields are parsed by `pl.read_ndjson` as before
    (parser="polars") or by pyarrow's JSON reader (parser="arrow"). Not UTF-8, or nested
    shapes Polars cannot unify: read_json_lines itself, so the result is always the same.
    """
    from sources import base

    raw = base._open_bytes(path)
    try:
        lines = pl.read_csv(
            io.BytesIO(raw),
            has_header=False,
            new_columns=["_record"],
            separator="\x1f",
            quote_char=None,
            schema={"_record": pl.String},
        )
    except (pl.exceptions.PolarsError, UnicodeDecodeError):
        return base.read_json_lines(path)
    meta = lines.with_row_index("_line", offset=1).with_columns(
        pl.col("_line").cast(pl.Int64), pl.col("_record").str.strip_suffix("\r")
    )
    blank = meta["_record"].is_null() | (meta["_record"].str.strip_chars() == "")
    if blank.any():
        meta = meta.filter(~blank)
    objects = meta["_record"].str.strip_chars_start().str.starts_with("{")

    if parser == "duckdb":
        return _duckdb_fields(path, meta, objects)

    def parse(payload: bytes) -> pl.DataFrame:
        if parser == "arrow":
            import pyarrow.json as pa_json

            parsed = pl.from_arrow(pa_json.read_json(io.BytesIO(payload)))
            assert isinstance(parsed, pl.DataFrame)
            return parsed
        return pl.read_ndjson(io.BytesIO(payload), infer_schema_length=None)

    fields: pl.DataFrame | None = None
    if objects.all():
        try:
            fields = parse(raw)
        except (pl.exceptions.PolarsError, OSError, ValueError):
            fields = None
    if fields is not None and fields.height == meta.height:
        meta = meta.select("_line", "_record", pl.lit(None, pl.String).alias("_parse_error"))
        return pl.concat([meta, fields], how="horizontal") if fields.width else meta

    # Some line is not a JSON object: find them all at once, parse the others.
    valid = meta["_record"].str.json_path_match("$").is_not_null()
    meta = meta.with_columns(
        pl.when(~valid)
        .then(pl.lit("invalid_json"))
        .when(~objects)
        .then(pl.lit("not_a_json_object"))
        .alias("_parse_error")
    ).with_row_index("_idx")
    good = meta.filter(pl.col("_parse_error").is_null())
    if good.height == 0:
        return meta.drop("_idx")
    buffer = io.BytesIO()
    good.select("_record").write_csv(
        buffer, include_header=False, quote_style="never", separator="\x1f"
    )
    try:
        fields = parse(buffer.getvalue())
    except (pl.exceptions.PolarsError, OSError, ValueError):
        return base.read_json_lines(path)
    if fields.height != good.height:
        return base.read_json_lines(path)
    if not fields.width:
        return meta.drop("_idx")
    fields = fields.with_columns(good["_idx"])
    return meta.join(fields, on="_idx", how="left", maintain_order="left").drop("_idx")


def _duckdb_type(spec: Any) -> str:
    if isinstance(spec, dict):
        return "STRUCT(" + ", ".join(f'"{k}" {_duckdb_type(v)}' for k, v in spec.items()) + ")"
    if isinstance(spec, list):
        return _duckdb_type(spec[0]) + "[]"
    return str(spec)


def _duckdb_fields(path: Path, meta: pl.DataFrame, objects: pl.Series) -> pl.DataFrame:
    """Fields parsed by DuckDB with the adapter's declared fields (no inference pass), rows
    in file order; a file with bad lines: the lines are checked (json_valid) and the good
    ones parsed (from_json) in one query over the lines Polars read."""
    import duckdb

    con = duckdb.connect()
    con.execute(f"SET threads = {THREADS}")
    fields: pl.DataFrame | None = None
    if objects.all():
        columns = (
            "{" + ", ".join(f"'{k}': '{_duckdb_type(v)}'" for k, v in LITELLM_FIELDS.items()) + "}"
        )
        query = (
            f"SELECT * FROM read_json('{path}', format = 'newline_delimited', columns = {columns})"
        )
        try:
            parsed = pl.from_arrow(con.sql(query).arrow())
            assert isinstance(parsed, pl.DataFrame)
            fields = parsed if parsed.height == meta.height else None
        except (duckdb.Error, OSError):  # a bad line (raised while fetching, as OSError)
            fields = None
    if fields is not None:
        meta = meta.select("_line", "_record", pl.lit(None, pl.String).alias("_parse_error"))
        return pl.concat([meta, fields], how="horizontal")
    lines = meta.select("_record").to_arrow()  # noqa: F841 - read by DuckDB by name
    structure = json.dumps(LITELLM_FIELDS).replace("'", "''")
    checked = con.sql(
        "SELECT json_valid(_record) AS _valid, CASE WHEN json_valid(_record) "
        f"AND starts_with(ltrim(_record), '{{') THEN from_json(_record, '{structure}') END AS f "
        "FROM lines"
    ).arrow()
    frame = pl.from_arrow(checked)
    assert isinstance(frame, pl.DataFrame)
    error = (
        pl.when(~pl.col("_valid"))
        .then(pl.lit("invalid_json"))
        .when(~objects)
        .then(pl.lit("not_a_json_object"))
    )
    return pl.concat(
        [meta.select("_line", "_record"), frame.with_columns(objects.alias("_object"))],
        how="horizontal",
    ).select(
        "_line",
        "_record",
        error.alias("_parse_error"),
        pl.col("f").struct.unnest(),
    )


def proto_assemble(
    raw: pl.LazyFrame,
    ctx: Any,
    values: dict[str, pl.Expr],
    timestamps: dict[str, tuple[pl.Expr, pl.DataType]],
    extra_issues: Any = (),
    post: Any = (),
) -> pl.LazyFrame:
    """sources.base.assemble with the same output, each value computed once.

    assemble computes every coerced value twice: once for its column and once inside its
    `invalid_value:` / `invalid_timestamp:` check (`bad_value(raw, coerce(raw))`), and the
    checks of all 30 columns are one `row_issues` expression, so Polars cannot share the
    work. Here the parsed values and a cheap "raw value present" flag are computed in one
    select, and the checks read those columns back."""
    from sources.base import _missing, as_text, as_utc, coerce, lineage
    from transforms.expressions import flag_if, join_flags
    from transforms.schema import (
        CANONICAL_SCHEMA,
        COLUMN_DEFAULTS,
        MODALITIES,
        ROW_ISSUES,
        SERVICE_TIERS,
        STATUSES,
    )

    raw_values = {n: e for n, e in values.items() if n not in timestamps}
    value_schema = raw.select(
        [e.alias(n) for n, e in raw_values.items() if CANONICAL_SCHEMA[n] != pl.String]
    ).collect_schema()
    stage1: list[pl.Expr] = []
    checks1: list[tuple[str, str]] = []  # (present column, flag)
    for name, dtype in CANONICAL_SCHEMA.items():
        if name in timestamps:
            raw_expr, raw_dtype = timestamps[name]
            stage1.append(as_utc(raw_expr, raw_dtype, ctx.timezone).alias(name))
            stage1.append(raw_expr.is_not_null().alias(f"__present_{name}"))
            checks1.append((name, f"invalid_timestamp:{name}"))
        elif name in raw_values:
            raw_expr = raw_values[name]
            stage1.append(coerce(raw_expr, dtype).alias(name))
            if dtype != pl.String:
                text_like = value_schema[name] in (pl.String, pl.Null) or isinstance(
                    value_schema[name], (pl.Struct, pl.List)
                )
                present = (
                    raw_expr.is_not_null() & as_text(raw_expr.cast(pl.String)).is_not_null()
                    if text_like
                    else raw_expr.is_not_null()
                )
                stage1.append(present.alias(f"__present_{name}"))
                checks1.append((name, f"invalid_value:{name}"))
        else:
            stage1.append(pl.lit(None, dtype).alias(name))
    extra = [e.alias(f"__extra_{i}") for i, e in enumerate(extra_issues)]
    issues = [flag_if(pl.col(f"__present_{n}") & pl.col(n).is_null(), flag) for n, flag in checks1]
    defaults = [
        pl.col(n).fill_null(pl.lit(COLUMN_DEFAULTS[n], CANONICAL_SCHEMA[n]))
        for n in CANONICAL_SCHEMA
        if n in COLUMN_DEFAULTS
    ]
    casts = [pl.col(n).cast(d) for n, d in CANONICAL_SCHEMA.items()]
    required = ("request_id", "started_at", "provider", "model")
    checks = [
        *[_missing(c) for c in required],
        flag_if(~pl.col("status").is_in(STATUSES), "invalid_value:status"),
        flag_if(~pl.col("modality").is_in(MODALITIES), "invalid_value:modality"),
        flag_if(
            pl.col("service_tier").is_not_null() & ~pl.col("service_tier").is_in(SERVICE_TIERS),
            "invalid_value:service_tier",
        ),
    ]
    unreadable = pl.lit("unreadable_record:") + pl.col("_parse_error")
    return (
        raw.select(*stage1, *lineage(ctx), pl.col("_record"), pl.col("_parse_error"), *extra)
        .with_columns(
            join_flags([*issues, *[pl.col(e.meta.output_name()) for e in extra]]).alias("_issues")
        )
        .with_columns(*defaults)
        .with_columns(*casts)
        .select(
            *CANONICAL_SCHEMA,
            "source",
            "source_kind",
            "source_file",
            "source_line",
            "_record",
            "_parse_error",
            "_issues",
        )
        .with_columns(*post)
        .with_columns(
            pl.when(pl.col("_parse_error").is_not_null())
            .then(unreadable)
            .otherwise(join_flags([pl.col("_issues"), *checks]))
            .alias(ROW_ISSUES)
        )
        .drop("_issues", "_parse_error")
    )


def proto_ingest_file(path: Path, parser: str = "polars") -> Any:
    """sources.ingest.ingest_file("litellm", path) with: the prototype reader, the
    prototype assemble, and the canonical frame collected ONCE before split_requests
    (ingest_file hands split_requests the lazy plan, and collect_all of its four outputs
    evaluates to_canonical several times over)."""
    from sources import litellm
    from sources.base import SourceContext
    from sources.ingest import IngestResult
    from transforms.normalize import split_requests

    litellm.assemble = proto_assemble  # type: ignore[attr-defined]
    ctx = SourceContext(name="litellm", kind="litellm", file=str(path))
    raw = proto_read_json_lines(path, parser)
    canonical = litellm.to_canonical(raw.lazy(), ctx).collect()
    del raw
    out = split_requests(canonical.lazy(), None)
    result = IngestResult(kind="litellm", produces="requests", records_read=canonical.height)
    collected = pl.collect_all([out.normalized, out.duplicates, out.quarantine, out.counts])
    result.frames = dict(
        zip(("normalized", "duplicates", "quarantine", "counts"), collected, strict=True)
    )
    return result


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
        default="aispend,duckdb,duckdb-full,proto,proto-duckdb",
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
        reference = "aispend" if "aispend" in engines else "proto"
        runs: dict[str, list[Run]] = {}
        for i in range(args.repeat):
            for engine in engines:
                keep = engine.startswith("proto") or engine == "aispend"
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
        for engine in PROTO_PARSERS:
            if engine == reference or engine not in runs or reference not in runs:
                continue
            if runs[engine][-1].ok and runs[reference][-1].ok:
                exact[engine] = same_outputs(
                    Path(runs[reference][-1].result["out_dir"]),
                    Path(runs[engine][-1].result["out_dir"]),
                )
                print(f"  {engine} outputs equal {reference}'s: {exact[engine]}", flush=True)
                all_ok &= all(v is True for v in exact[engine].values())
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
            "proto_outputs_equal": {"reference": reference, **exact},
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
