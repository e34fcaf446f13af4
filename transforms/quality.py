"""Data quality suites for normalized requests and provider usage, run with Great Expectations.

Two suites, each a plain GX `ExpectationSuite` built by a function:

  requests_suite        normalized requests (NORMALIZED_SCHEMA), one partition day or any range
  provider_usage_suite  provider usage / billing export rows (PROVIDER_USAGE_SCHEMA)

`validate_requests` / `validate_provider_usage` take a Polars frame, add the two derived
columns the suites need, hand only the referenced columns to GX as a numpy-backed pandas frame
(see `_to_pandas` for why not Arrow-backed) and return a `QualityReport` of plain Python
values. `validate_path` does the same for a Parquet file or a directory of Parquet files; it
backs `aispend validate` (exit 0 passed, 1 failed, 2 QualityInputError).

Derived columns, computed in Polars before GX sees the frame:

  cache_read_write_tokens  cache_read_tokens + cache_write_tokens (a null part counts as 0).
                           GX has no "A >= B + C" expectation, so the sum is computed here and
                           `expect_column_pair_values_A_to_be_greater_than_B(or_equal=True)`
                           compares input_tokens with it. The two other subset rules compare
                           source columns directly. A row whose total or part is null is
                           skipped: a missing count is `usage_missing`, not a violation.
  unknown_model            the logged model string on rows whose model is unknown, else null.
                           Unknown means, from the first column the frame has:
                             model_known  false or null (the caller's verdict);
                             match_kind   unknown_model / unknown_provider / null (repriced);
                             model_canonical  null (resolution failed). Resolution is string
                                          cleanup, so this alone rarely fires: a caller with a
                                          catalog should pass model_known or match_kind.
                           `expect_column_values_to_be_null(mostly=1 - max_unknown_model_share)`
                           then passes while the unknown share is at most the threshold, counts
                           the unknown rows and shows which model strings they were.

GX is imported lazily (5-10 s) and runs on a fresh ephemeral context per call: no files, no
progress bars, no network. Decimal money columns become floats only for the one expectation
that needs a number (credits_usd <= 0).
"""

from __future__ import annotations

import datetime as dt
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from transforms.canonical_reader import InputError
from transforms.schema import (
    COLUMN_DEFAULTS,
    MODALITIES,
    REQUIRED_COLUMNS,
    SERVICE_TIERS,
    STATUSES,
    TOKEN_COLUMNS,
)

if TYPE_CHECKING:
    from great_expectations import ExpectationSuite

REQUESTS = "requests"
PROVIDER_USAGE = "provider_usage"
KINDS = (REQUESTS, PROVIDER_USAGE)

# Derived columns (see the module docstring).
CACHE_READ_WRITE = "cache_read_write_tokens"
UNKNOWN_MODEL = "unknown_model"
MODEL_KNOWN = "model_known"
MATCH_KIND = "match_kind"  # from transforms.reprice
UNKNOWN_MATCH_KINDS = ("unknown_model", "unknown_provider")

# Never null in a normalized request: what the reader requires, what it fills with a
# default, and where the row came from.
REQUIRED_REQUEST_COLUMNS: tuple[str, ...] = (
    *REQUIRED_COLUMNS,
    *(c for c in COLUMN_DEFAULTS if c not in REQUIRED_COLUMNS),
    "source",
    "source_kind",
)
REQUIRED_USAGE_COLUMNS: tuple[str, ...] = ("date", "provider", "source", "source_kind")
REQUEST_COUNT_COLUMNS: tuple[str, ...] = (
    *TOKEN_COLUMNS,
    "image_count",
    "video_seconds",
    "audio_seconds",
)
USAGE_COUNT_COLUMNS: tuple[str, ...] = (*TOKEN_COLUMNS, "requests")
# (total, part, check name): part <= total on every row where both are known.
SUBSET_RULES: tuple[tuple[str, str, str], ...] = (
    ("input_tokens", CACHE_READ_WRITE, "cache_within_input"),
    ("cache_write_tokens", "cache_write_1h_tokens", "cache_1h_within_cache_write"),
    ("output_tokens", "reasoning_tokens", "reasoning_within_output"),
)
CURRENCY_PATTERN = r"^[A-Z]{3}$"

# How many distinct unexpected values a result keeps, and how many rows GX collects them from.
EXAMPLES = 5
_GX_PARTIAL = 20
# BASIC has counts and the first unexpected values; SUMMARY adds value counts and row
# indexes we do not report, for about half as much again in GX overhead per run.
_RESULT_FORMAT = "BASIC"

_CHECK = "check"  # expectation meta key holding the check's stable name
_ID_COLUMNS = frozenset({"request_id"})  # one value per row: not worth a categorical


class QualityInputError(InputError):
    """A user mistake in what to validate (missing path, not Parquet, missing columns):
    one line naming the path, exit code 2 on the command line."""


# --------------------------------------------------------------------------- results
@dataclass(frozen=True)
class ExpectationOutcome:
    """One expectation's result, in plain Python values."""

    check: str  # stable name in the suite, e.g. "not_null:request_id", "cache_within_input"
    expectation: str  # GX type, e.g. "expect_column_values_to_not_be_null"
    columns: tuple[str, ...]
    description: str
    success: bool
    unexpected_count: int | None  # rows breaking it; None for aggregate expectations
    unexpected_percent: float | None
    unexpected_examples: tuple[Any, ...]  # up to EXAMPLES distinct values (dict per row pair)
    observed_value: Any = None  # aggregate expectations only
    error: str | None = None  # GX raised instead of evaluating

    def to_dict(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "expectation": self.expectation,
            "columns": list(self.columns),
            "description": self.description,
            "success": self.success,
            "unexpected_count": self.unexpected_count,
            "unexpected_percent": self.unexpected_percent,
            "unexpected_examples": [_json_safe(v) for v in self.unexpected_examples],
            "observed_value": _json_safe(self.observed_value),
            "error": self.error,
        }

    def line(self) -> str:
        status = "ok  " if self.success else "FAIL"
        text = f"{status} {self.check}: {self.description}"
        if self.error is not None:
            return f"{text} -- error: {_first_line(self.error)}"
        if self.unexpected_count:
            pct = f" ({self.unexpected_percent:.4g}%)" if self.unexpected_percent else ""
            rows = "row" if self.unexpected_count == 1 else "rows"
            text += f" -- {self.unexpected_count:,} {rows}{pct}"
            if self.unexpected_examples:
                examples = ", ".join(repr(_json_safe(v)) for v in self.unexpected_examples)
                text += f", e.g. {examples}"
        elif self.observed_value is not None:
            text += f" -- observed {self.observed_value!r}"
        return text


@dataclass(frozen=True)
class QualityReport:
    kind: str  # "requests" or "provider_usage"
    success: bool
    row_count: int
    results: tuple[ExpectationOutcome, ...]
    source: str | None = None  # the validated path, when read from one
    partition: Mapping[str, str] = field(default_factory=dict)  # {"day": ...} / {"month": ...}

    @property
    def failures(self) -> tuple[ExpectationOutcome, ...]:
        return tuple(r for r in self.results if not r.success)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: dates and datetimes as ISO strings, Decimals as strings."""
        return {
            "kind": self.kind,
            "source": self.source,
            "partition": dict(self.partition),
            "success": self.success,
            "row_count": self.row_count,
            "expectations": len(self.results),
            "failed": len(self.failures),
            "results": [r.to_dict() for r in self.results],
        }

    def lines(self) -> list[str]:
        """A summary line, then one line per failed expectation."""
        what = f"{self.kind} {self.source}" if self.source else self.kind
        scope = "".join(f" {k}={v}" for k, v in self.partition.items())
        verdict = "passed" if self.success else f"{len(self.failures)} failed"
        head = (
            f"{what}{scope}: {self.row_count:,} rows, {len(self.results)} expectations, {verdict}"
        )
        return [head, *(r.line() for r in self.failures)]


# --------------------------------------------------------------------------- suites
def requests_suite(
    partition_day: dt.date | None = None, max_unknown_model_share: float = 0.02
) -> ExpectationSuite:
    """Expectations for normalized requests (NORMALIZED_SCHEMA plus the derived columns).

    With `partition_day`, every `started_at` must fall in [day, day + 1) UTC.
    """
    if not 0.0 <= max_unknown_model_share <= 1.0:
        raise ValueError(
            f"max_unknown_model_share must be in [0, 1], got {max_unknown_model_share}"
        )
    gx, gxe = _gx()
    expectations: list[Any] = [_not_null(gxe, c) for c in REQUIRED_REQUEST_COLUMNS]
    expectations.append(
        gxe.ExpectColumnValuesToBeBetween(
            column="attempt",
            min_value=1,
            meta={_CHECK: "attempt_from_1"},
            description="attempt >= 1",
        )
    )
    expectations += [_non_negative(gxe, c) for c in REQUEST_COUNT_COLUMNS]
    expectations += [_subset(gxe, total, part, name) for total, part, name in SUBSET_RULES]
    if partition_day is not None:
        start = dt.datetime.combine(partition_day, dt.time(), tzinfo=dt.UTC)
        expectations.append(
            gxe.ExpectColumnValuesToBeBetween(
                column="started_at",
                min_value=start,
                max_value=start + dt.timedelta(days=1),
                strict_max=True,
                meta={_CHECK: "started_in_partition"},
                description=f"started_at within {partition_day} UTC",
            )
        )
    expectations += [
        _in_set(gxe, "status", STATUSES),
        _in_set(gxe, "modality", MODALITIES),
        _in_set(gxe, "service_tier", SERVICE_TIERS),
        gxe.ExpectCompoundColumnsToBeUnique(
            column_list=["request_id", "attempt"],
            meta={_CHECK: "unique_request_attempt"},
            description="request_id + attempt unique (every row of a duplicate counts)",
        ),
        gxe.ExpectColumnValuesToBeNull(
            column=UNKNOWN_MODEL,
            mostly=1.0 - max_unknown_model_share,
            meta={_CHECK: "unknown_model_share"},
            description=f"unknown models on at most {max_unknown_model_share:.2%} of rows",
        ),
    ]
    suite: ExpectationSuite = gx.ExpectationSuite(
        name="aispend.requests", expectations=expectations
    )
    return suite


def provider_usage_suite(
    partition_day: dt.date | None = None, partition_month: dt.date | None = None
) -> ExpectationSuite:
    """Expectations for provider usage rows (PROVIDER_USAGE_SCHEMA plus cache_read_write_tokens).

    `partition_day`: every `date` equals that day. `partition_month` (any day of the month):
    every `date` falls in that calendar month. At most one of the two.
    """
    window = _usage_window(partition_day, partition_month)
    gx, gxe = _gx()
    expectations: list[Any] = [_not_null(gxe, c) for c in REQUIRED_USAGE_COLUMNS]
    expectations += [_non_negative(gxe, c) for c in USAGE_COUNT_COLUMNS]
    expectations += [_subset(gxe, total, part, name) for total, part, name in SUBSET_RULES]
    if window is not None:
        first, last = window
        expectations.append(
            gxe.ExpectColumnValuesToBeBetween(
                column="date",
                min_value=first,
                max_value=last,
                meta={_CHECK: "date_in_partition"},
                description=f"date within {first} .. {last}",
            )
        )
    expectations += [
        _in_set(gxe, "service_tier", SERVICE_TIERS),
        gxe.ExpectColumnValuesToMatchRegex(
            column="currency",
            regex=CURRENCY_PATTERN,
            meta={_CHECK: "currency_iso_upper"},
            description="currency is an upper-case ISO 4217 code",
        ),
        gxe.ExpectColumnValuesToBeBetween(
            column="credits_usd",
            max_value=0,
            meta={_CHECK: "credits_not_positive"},
            description="credits_usd <= 0 (credits reduce the bill)",
        ),
    ]
    suite: ExpectationSuite = gx.ExpectationSuite(
        name="aispend.provider_usage", expectations=expectations
    )
    return suite


def _not_null(gxe: Any, column: str) -> Any:
    return gxe.ExpectColumnValuesToNotBeNull(
        column=column, meta={_CHECK: f"not_null:{column}"}, description=f"{column} is never null"
    )


def _non_negative(gxe: Any, column: str) -> Any:
    return gxe.ExpectColumnValuesToBeBetween(
        column=column,
        min_value=0,
        meta={_CHECK: f"non_negative:{column}"},
        description=f"{column} >= 0",
    )


def _subset(gxe: Any, total: str, part: str, name: str) -> Any:
    shown = "cache_read_tokens + cache_write_tokens" if part == CACHE_READ_WRITE else part
    return gxe.ExpectColumnPairValuesAToBeGreaterThanB(
        column_A=total,
        column_B=part,
        or_equal=True,
        ignore_row_if="either_value_is_missing",
        meta={_CHECK: name},
        description=f"{shown} <= {total}",
    )


def _in_set(gxe: Any, column: str, values: Sequence[str]) -> Any:
    return gxe.ExpectColumnValuesToBeInSet(
        column=column,
        value_set=list(values),
        meta={_CHECK: f"known_value:{column}"},
        description=f"{column} in {{{', '.join(values)}}}",
    )


def _usage_window(
    partition_day: dt.date | None, partition_month: dt.date | None
) -> tuple[dt.date, dt.date] | None:
    if partition_day is not None and partition_month is not None:
        raise ValueError("give partition_day or partition_month, not both")
    if partition_day is not None:
        return partition_day, partition_day
    if partition_month is not None:
        first = partition_month.replace(day=1)
        next_month = (first + dt.timedelta(days=32)).replace(day=1)
        return first, next_month - dt.timedelta(days=1)
    return None


# --------------------------------------------------------------------------- validation
def validate_requests(
    frame: pl.DataFrame,
    partition_day: dt.date | None = None,
    max_unknown_model_share: float = 0.02,
    *,
    source: str | None = None,
) -> QualityReport:
    """Run `requests_suite` on normalized requests."""
    suite = requests_suite(partition_day, max_unknown_model_share)
    _require_columns(frame.columns, _request_input_columns(suite, frame.columns), source)
    prepared = frame.with_columns(
        pl.sum_horizontal("cache_read_tokens", "cache_write_tokens").alias(CACHE_READ_WRITE),
        pl.when(_model_known(frame))
        .then(pl.lit(None, pl.String))
        .otherwise(pl.col("model").fill_null("(null)"))
        .alias(UNKNOWN_MODEL),
    )
    partition = {"day": partition_day.isoformat()} if partition_day else {}
    return _run(REQUESTS, suite, prepared, source, partition)


def validate_provider_usage(
    frame: pl.DataFrame,
    partition_day: dt.date | None = None,
    partition_month: dt.date | None = None,
    *,
    source: str | None = None,
) -> QualityReport:
    """Run `provider_usage_suite` on provider usage rows."""
    suite = provider_usage_suite(partition_day, partition_month)
    needed = [c for c in _suite_columns(suite) if c != CACHE_READ_WRITE]
    _require_columns(frame.columns, needed, source)
    prepared = frame.with_columns(
        pl.sum_horizontal("cache_read_tokens", "cache_write_tokens").alias(CACHE_READ_WRITE),
        pl.col("credits_usd").cast(pl.Float64),
    )
    partition: dict[str, str] = {}
    if partition_day is not None:
        partition["day"] = partition_day.isoformat()
    elif partition_month is not None:
        partition["month"] = partition_month.strftime("%Y-%m")
    return _run(PROVIDER_USAGE, suite, prepared, source, partition)


def detect_kind(columns: Iterable[str]) -> str:
    """'requests' or 'provider_usage', from a frame's column names."""
    names = set(columns)
    if {"request_id", "started_at"} <= names:
        return REQUESTS
    if {"date", "provider"} <= names:
        return PROVIDER_USAGE
    raise QualityInputError(
        "neither normalized requests (request_id, started_at) nor provider usage (date, provider)"
    )


def validate_path(
    path: Path,
    kind: str | None = None,
    *,
    partition_day: dt.date | None = None,
    partition_month: dt.date | None = None,
    max_unknown_model_share: float = 0.02,
) -> QualityReport:
    """Validate a Parquet file, or every *.parquet file under a directory, as one frame.

    `kind` is "requests" or "provider_usage"; None tells them apart by columns. Raises
    QualityInputError (one line naming the path) for a missing path, no Parquet files, an
    unreadable file, an unknown kind or missing columns.
    """
    if kind is not None and kind not in KINDS:
        raise QualityInputError(f"{path}: unknown kind {kind!r} (use {' or '.join(KINDS)})")
    files = _parquet_files(path)
    try:
        names = list(pl.read_parquet_schema(files[0]))
    except Exception as exc:  # polars raises several types for a bad file
        raise QualityInputError(
            f"{files[0]}: not a readable Parquet file ({_first_line(exc)})"
        ) from None
    try:
        resolved = kind or detect_kind(names)
    except QualityInputError as exc:
        raise QualityInputError(f"{path}: {exc}") from None
    try:  # bad options from the command line are user errors too
        if resolved == REQUESTS:
            if partition_month is not None:
                raise ValueError("requests take a partition day, not a month")
            suite = requests_suite(partition_day, max_unknown_model_share)
            wanted = _request_input_columns(suite, names)
        else:
            suite = provider_usage_suite(partition_day, partition_month)
            wanted = [c for c in _suite_columns(suite) if c != CACHE_READ_WRITE]
    except ValueError as exc:
        raise QualityInputError(f"{path}: {exc}") from None
    _require_columns(names, wanted, str(path))
    try:
        frame = pl.scan_parquet(files, hive_partitioning=False).select(wanted).collect()
    except Exception as exc:
        raise QualityInputError(f"{path}: cannot read Parquet ({_first_line(exc)})") from None
    if resolved == REQUESTS:
        return validate_requests(frame, partition_day, max_unknown_model_share, source=str(path))
    return validate_provider_usage(frame, partition_day, partition_month, source=str(path))


def _parquet_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.parquet") if p.is_file())
        if not files:
            raise QualityInputError(f"{path}: no .parquet files in this directory")
        return files
    raise QualityInputError(f"{path}: no such file or directory")


def _request_input_columns(suite: ExpectationSuite, names: Iterable[str]) -> list[str]:
    """Source columns the requests suite reads, plus those its derived columns come from."""
    model_col = _model_known_column(names)
    derived = {CACHE_READ_WRITE, UNKNOWN_MODEL}
    columns = [c for c in _suite_columns(suite) if c not in derived]
    for c in ("cache_read_tokens", "cache_write_tokens", "model", model_col):
        if c not in columns:
            columns.append(c)
    return columns


def _model_known_column(names: Iterable[str]) -> str:
    """Which column tells whether a row's model is known (see the module docstring)."""
    present = set(names)
    return next((c for c in (MODEL_KNOWN, MATCH_KIND) if c in present), "model_canonical")


def _model_known(frame: pl.DataFrame) -> pl.Expr:
    column = _model_known_column(frame.columns)
    if column == MODEL_KNOWN:
        return pl.col(MODEL_KNOWN).cast(pl.Boolean).fill_null(False)
    if column == MATCH_KIND:
        return pl.col(MATCH_KIND).is_in(UNKNOWN_MATCH_KINDS).not_().fill_null(False)
    return pl.col("model_canonical").is_not_null()


def _require_columns(have: Iterable[str], wanted: Iterable[str], where: str | None) -> None:
    names = set(have)
    missing = [c for c in wanted if c not in names]
    if missing:
        prefix = f"{where}: " if where else ""
        raise QualityInputError(f"{prefix}missing columns: {', '.join(missing)}")


def _suite_columns(suite: ExpectationSuite) -> list[str]:
    """Every column the suite's expectations reference, in first-use order."""
    columns: dict[str, None] = {}
    for expectation in suite.expectations:
        kwargs = expectation.configuration.kwargs
        for key in ("column", "column_A", "column_B"):
            if key in kwargs:
                columns[kwargs[key]] = None
        for c in kwargs.get("column_list", ()):
            columns[c] = None
    return list(columns)


def _run(
    kind: str,
    suite: ExpectationSuite,
    prepared: pl.DataFrame,
    source: str | None,
    partition: Mapping[str, str],
) -> QualityReport:
    gx, _ = _gx()
    from great_expectations.data_context.types.base import ProgressBarsConfig

    selected = prepared.select(_suite_columns(suite))
    int_columns = {c for c, dtype in selected.schema.items() if dtype.is_integer()}
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch_definition = (
        context.data_sources.add_pandas(name="aispend")
        .add_dataframe_asset(name=kind)
        .add_batch_definition_whole_dataframe("whole")
    )
    # A ValidationDefinition loads the batch once; Batch.validate would load (and GX would
    # fingerprint, i.e. hash every cell of) the frame a second time.
    definition = gx.ValidationDefinition(
        name=kind, data=batch_definition, suite=context.suites.add(suite)
    )
    validation = definition.run(
        batch_parameters={"dataframe": _to_pandas(selected)},
        result_format={"result_format": _RESULT_FORMAT, "partial_unexpected_count": _GX_PARTIAL},
    )
    order = {e.configuration.meta[_CHECK]: i for i, e in enumerate(suite.expectations)}
    outcomes = sorted(
        (_outcome(r, int_columns) for r in validation.results), key=lambda o: order[o.check]
    )
    return QualityReport(
        kind=kind,
        success=all(o.success for o in outcomes),
        row_count=prepared.height,
        results=tuple(outcomes),
        source=source,
        partition=dict(partition),
    )


def _to_pandas(frame: pl.DataFrame) -> Any:
    """Numpy-backed pandas, shaped for GX's fast paths.

    GX compares numbers with vectorized code only for int64/float64 columns (anything else,
    Arrow-backed or nullable dtypes included, goes row by row in Python: 20x slower), so
    narrower numbers are widened. Strings other than ids become pandas categoricals: GX
    fingerprints the whole frame by hashing it, and a categorical hashes its few categories.
    Naive datetimes are UTC, as everywhere in aispend, so they compare with the UTC bounds.
    """
    casts: list[pl.Expr] = []
    for name, dtype in frame.schema.items():
        if dtype.is_integer() and dtype != pl.Int64:
            casts.append(pl.col(name).cast(pl.Int64))
        elif dtype.is_float() and dtype != pl.Float64:
            casts.append(pl.col(name).cast(pl.Float64))
        elif dtype == pl.String and name not in _ID_COLUMNS:
            casts.append(pl.col(name).cast(pl.Categorical))
        elif isinstance(dtype, pl.Datetime) and dtype.time_zone is None:
            casts.append(pl.col(name).dt.replace_time_zone("UTC"))  # naive means UTC here
    # Dates stay datetime.date objects: GX compares them with the suite's date bounds.
    return frame.with_columns(casts).to_pandas(date_as_object=True)


def _outcome(result: Any, int_columns: set[str]) -> ExpectationOutcome:
    config = result.expectation_config
    kwargs = config.kwargs
    if "column_list" in kwargs:
        columns = tuple(kwargs["column_list"])
    elif "column_A" in kwargs:
        columns = (kwargs["column_A"], kwargs["column_B"])
    else:
        columns = (kwargs["column"],)
    error = _exception_message(result.exception_info or {})
    res = result.result or {}
    examples: list[Any] = []
    for value in res.get("partial_unexpected_list") or ():
        plain = _plain(value)
        if isinstance(plain, list) and len(columns) == len(plain):  # a column pair
            plain = dict(zip(columns, plain, strict=True))
        # an integer column with nulls reaches pandas as float64: give its values back as ints
        if isinstance(plain, dict):
            plain = {k: _as_int(v) if k in int_columns else v for k, v in plain.items()}
        elif columns[0] in int_columns:
            plain = _as_int(plain)
        if plain not in examples:
            examples.append(plain)
        if len(examples) == EXAMPLES:
            break
    count = res.get("unexpected_count")
    percent = res.get("unexpected_percent")
    return ExpectationOutcome(
        check=str(config.meta[_CHECK]),
        expectation=str(config.type),
        columns=columns,
        description=str(config.description or config.type),
        success=bool(result.success),
        unexpected_count=None if count is None else int(count),
        unexpected_percent=None if percent is None else float(percent),
        unexpected_examples=tuple(examples),
        observed_value=_plain(res.get("observed_value")),
        error=error,
    )


def _exception_message(info: Mapping[str, Any]) -> str | None:
    """GX reports an exception flat, or nested per metric that failed to compute."""
    if "raised_exception" in info:
        return str(info.get("exception_message")) if info["raised_exception"] else None
    for nested in info.values():
        if isinstance(nested, Mapping) and nested.get("raised_exception"):
            return str(nested.get("exception_message"))
    return None


def _plain(value: Any) -> Any:
    """pandas / numpy / Arrow scalars to plain Python values; missing values to None."""
    if value is None:
        return None
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if type(value).__name__ in ("NAType", "NaTType"):
        return None
    if hasattr(value, "to_pydatetime"):  # pandas Timestamp
        return value.to_pydatetime()
    if hasattr(value, "item") and not isinstance(value, str | bytes):  # numpy scalar
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _as_int(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _json_safe(value: Any) -> Any:
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    return value


def _first_line(exc: BaseException | str) -> str:
    text = str(exc).strip()
    if text:
        return text.splitlines()[0]
    return "" if isinstance(exc, str) else type(exc).__name__


def _gx() -> tuple[Any, Any]:
    """great_expectations and its expectations module, imported on first use (slow)."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    import great_expectations.expectations as gxe

    return gx, gxe
