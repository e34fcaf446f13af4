"""Run one adapter over one file: read, map to canonical, split, count, write atomically."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from sources.base import SourceContext
from sources.registry import KINDS
from transforms.canonical_reader import InputError
from transforms.normalize import split_requests
from transforms.schema import INVOICE_LINE_SCHEMA, PROVIDER_USAGE_SCHEMA
from transforms.split import accounting_problems, split_rows


@dataclass
class IngestResult:
    kind: str
    produces: str
    records_read: int
    frames: dict[str, pl.DataFrame] = field(default_factory=dict)

    @property
    def counts(self) -> pl.DataFrame:
        return self.frames["counts"]

    def problems(self) -> list[str]:
        return accounting_problems(self.counts, self.records_read)

    def summary(self) -> dict[str, object]:
        totals = self.counts.select(pl.exclude("source", "day")).sum().row(0, named=True)
        reasons = (
            self.frames["quarantine"]
            .group_by("reason")
            .len()
            .sort(["len", "reason"], descending=[True, False])
        )
        return {
            "kind": self.kind,
            "produces": self.produces,
            "records_read": self.records_read,
            **{k: int(v or 0) for k, v in totals.items()},
            "quarantined_by_reason": dict(reasons.iter_rows()),
            "per_day": [
                {**r, "day": None if r["day"] is None else r["day"].isoformat()}
                for r in self.counts.iter_rows(named=True)
            ],
            "accounting_ok": not self.problems(),
        }


def ingest_file(
    kind: str,
    path: Path,
    *,
    name: str | None = None,
    timezone: str = "UTC",
    partition_day: dt.date | None = None,
) -> IngestResult:
    if kind not in KINDS:
        raise InputError(f"unknown source kind '{kind}' (known: {', '.join(sorted(KINDS))})")
    spec = KINDS[kind]
    module = spec.load()
    ctx = SourceContext(
        name=name or kind, kind=kind, file=str(path), timezone=timezone, partition_day=partition_day
    )
    raw = module.read(path)
    result = IngestResult(kind=kind, produces=spec.produces, records_read=raw.height)
    if spec.produces == "requests":
        # Collected once: the split reads it three ways, and planning dominates small files.
        canonical = module.to_canonical(raw.lazy(), ctx).collect()
        out = split_requests(canonical.lazy(), partition_day)
        names = ("normalized", "duplicates", "quarantine", "counts")
        collected = pl.collect_all([out.normalized, out.duplicates, out.quarantine, out.counts])
    else:
        adapter = module.to_usage if spec.produces == "provider_usage" else module.to_invoice_lines
        schema, day = (
            (PROVIDER_USAGE_SCHEMA, "date")
            if spec.produces == "provider_usage"
            else (INVOICE_LINE_SCHEMA, "billing_period_start")
        )
        frame = adapter(raw.lazy(), ctx)
        split = split_rows(frame, schema, day, partition_day)
        names = (spec.produces, "quarantine", "counts")
        collected = pl.collect_all([split.kept, split.quarantine, split.counts])
    result.frames = dict(zip(names, collected, strict=True))
    return result


def write_outputs(result: IngestResult, out_dir: Path) -> dict[str, str]:
    """Write every frame as Parquet into out_dir, all or nothing: files are written into a
    sibling temporary directory and moved in only when all of them succeeded."""
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".ingest-", dir=out_dir))
    written: dict[str, str] = {}
    try:
        for name, frame in result.frames.items():
            frame.write_parquet(staging / f"{name}.parquet")
        for name in result.frames:
            target = out_dir / f"{name}.parquet"
            os.replace(staging / f"{name}.parquet", target)
            written[name] = str(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return written
