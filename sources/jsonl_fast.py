"""Vectorized, batched JSONL reading for adapters that declare the fields they read.

Output contract: the same frames `sources.base.read_json_lines` returns (`_line`, `_record`,
`_parse_error`, then fields), one per batch of lines, except that `_record` is null on lines
that decoded cleanly: the verbatim text of such a line is only needed if the line ends up
quarantined, and `JsonlBatch.records_of` fetches it then. A file of 1M 1.3 kB lines is
1.3 GB of text; carrying it through mapping is most of the old reader's memory and time.

How a batch is read (about `batch_bytes` of whole lines, so memory stays bounded):
1. Line boundaries come from numpy (`\\n` positions); the batch is checked as UTF-8 once (a
   byte scan when it is ASCII). Text columns are only built when a later step needs them,
   as an Arrow string array over the batch's bytes (no copy).
2. Lines that do not look like `{...}` (blank, whitespace around, arrays, garbage, a line
   truncated by a crashed writer) and, in a batch that is not valid UTF-8, every line, are
   checked one by one in Python exactly as `read_json_lines` does (blank lines skipped,
   `invalid_json`, `not_a_json_object`, `invalid_encoding`).
3. The other lines are parsed by pyarrow's JSON reader (the bad ones cut out of the buffer
   by a numpy mask) against the adapter's declared `pl.Struct` (`FIELDS`: only the fields
   the adapter reads, typed as the source writes them; other keys are skipped). pyarrow is
   strict: any value of another type, a duplicate key or a syntax error fails the batch
   instead of being read differently.
4. Otherwise (or after such a failure) Polars decodes the lines, `str.json_decode` against
   the same fields with every leaf as text (a number or bool comes back as its JSON text
   and the adapter coerces it, as it coerces inferred columns). If that fails too, the
   lines Polars sees as invalid JSON are checked in Python and the rest decoded again; if
   it still fails, or Python finds one of those lines readable after all, the whole batch
   goes through `read_json_lines`' own per-line path (`_parse_lines` + `_assemble`), which
   infers its schema. The adapters map every shape the same way (the tests compare the
   paths), so no line is ever lost or read differently, only more slowly.
Line numbers are 1-based physical lines of the file, blank lines counted, as before.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.json as pa_json

from sources.base import _assemble, _parse_lines
from transforms.canonical_reader import InputError

BATCH_BYTES = 64 * 1024 * 1024
# pyarrow parses a batch in blocks on its threads: 8 MB blocks parse 1.1x faster than the
# default 1 MB (fewer block boundaries to stitch), larger ones leave a thread idle.
_READ_OPTIONS = pa_json.ReadOptions(block_size=8 * 1024 * 1024)
_NEWLINE = ord("\n")
_BRACE = ord("{")
_CLOSE = ord("}")
_CR = ord("\r")


@dataclass
class JsonlBatch:
    """One batch of lines. `frame` is the reader's frame; the verbatim line of any of its
    rows is available from `records_of`: from `texts` (aligned with `frame`) when the batch
    built them, else sliced out of the batch's bytes (`chunk`, `starts`, `ends`)."""

    frame: pl.DataFrame
    fast: bool  # decoded against the declared fields (else the per-line path)
    texts: pl.Series | None = None
    chunk: bytes | bytearray = b""
    starts: np.ndarray | None = None
    ends: np.ndarray | None = None

    def records_of(self, rows: pl.Series) -> pl.Series:
        """Verbatim records (`\\r\\n` trimmed, as `read_json_lines` keeps them) of the row
        positions `rows`."""
        if self.texts is not None:
            picked = self.texts.gather(rows)
        else:
            assert self.starts is not None and self.ends is not None
            picked = pl.Series(
                [self.chunk[self.starts[i] : self.ends[i]].decode("utf-8") for i in rows.to_list()],
                dtype=pl.String,
            )
        return picked.str.strip_suffix("\n").str.strip_suffix("\r").alias("_record")


def _chunks(path: Path, batch_bytes: int) -> Iterator[tuple[int, bytearray]]:
    """(first line number, whole lines) of at most ~batch_bytes each. Each batch is read
    into a buffer of its own, the partial line at its end carried to the next one: the file
    is copied once, not three times (concatenating and slicing bytes cost 1.5 s per GB)."""
    if not path.is_file():
        raise InputError(f"{path}: cannot read file: no such file")
    try:
        handle = path.open("rb", buffering=0)
    except OSError as exc:
        raise InputError(f"{path}: cannot read file: {exc.strerror or exc}") from None
    line = 1
    carry = b""
    with handle:
        while True:
            buffer = bytearray(len(carry) + batch_bytes)
            buffer[: len(carry)] = carry
            filled = len(carry)
            try:
                while filled < len(buffer):  # a raw read may return less than asked
                    got = handle.readinto(memoryview(buffer)[filled:])
                    if not got:
                        break
                    filled += got
            except OSError as exc:
                raise InputError(f"{path}: cannot read file: {exc.strerror or exc}") from None
            if filled == len(carry):  # end of file
                if carry:
                    yield line, bytearray(carry)
                return
            cut = buffer.rfind(b"\n", 0, filled)
            if cut < 0:  # one line longer than a batch: keep reading
                carry = bytes(buffer[:filled])
                continue
            carry = bytes(buffer[cut + 1 : filled])
            del buffer[cut + 1 :]
            yield line, buffer
            line += buffer.count(b"\n")


def _check_line(raw: bytes) -> tuple[str | None, str | None]:
    """(record text, parse error) of one line, `read_json_lines`' rules; (None, None) for a
    blank line, which is skipped."""
    if not raw.strip():
        return None, None
    try:
        text = raw.decode("utf-8").rstrip("\r")
    except UnicodeDecodeError:
        return raw.decode("utf-8", errors="replace"), "invalid_encoding"
    try:
        value = json.loads(text)
        if not isinstance(value, dict):
            return text, "not_a_json_object"
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except (json.JSONDecodeError, RecursionError):
        return text, "invalid_json"
    except UnicodeEncodeError:
        return text, "invalid_encoding"
    return text, None


def _slow_batch(chunk: bytes | bytearray, first_line: int) -> JsonlBatch:
    """`read_json_lines`' per-line path over one batch."""
    lines, records, errors = _parse_lines(chunk)
    lines = [n + first_line - 1 for n in lines]
    frame = _assemble(lines, records, errors)
    return JsonlBatch(frame, fast=False, texts=frame["_record"])


def _valid_utf8(chunk: bytes | bytearray) -> bool:
    if chunk.isascii():  # most logs: a byte scan, no decoding
        return True
    try:
        pa.array([chunk], pa.binary()).cast(pa.string())  # validates, without a Python str
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return False
    return True


def _text_array(chunk: bytes | bytearray, starts: np.ndarray, ends: np.ndarray) -> pl.Series:
    """Every line (its `\\n` included) as a String Series over the chunk's bytes (the chunk
    is valid UTF-8, and a line boundary never splits a character)."""
    offsets = np.empty(len(starts) + 1, dtype=np.int64)
    offsets[:-1] = starts
    offsets[-1] = ends[-1] if len(ends) else 0
    array = pa.LargeStringArray.from_buffers(
        len(starts), pa.py_buffer(offsets), pa.py_buffer(chunk)
    )
    series = pl.from_arrow(array)
    assert isinstance(series, pl.Series)
    return series.alias("_text")


def text_leaves(dtype: pl.DataType) -> pl.DataType:
    """`dtype` with every scalar leaf String: what Polars' json_decode reads without silently
    converting (into Int64 it would read 1e-05 as 0)."""
    if isinstance(dtype, pl.Struct):
        return pl.Struct({f.name: text_leaves(f.dtype) for f in dtype.fields})
    if isinstance(dtype, pl.List):
        return pl.List(text_leaves(dtype.inner))
    return pl.String()


_ARROW_SCALARS: dict[type[pl.DataType], pa.DataType] = {
    pl.String: pa.string(),
    pl.Int64: pa.int64(),
    pl.Float64: pa.float64(),
    pl.Boolean: pa.bool_(),
}


def _arrow_type(dtype: pl.DataType) -> pa.DataType:
    # pyarrow's JSON reader converts to string / list, not to their large variants.
    if isinstance(dtype, pl.Struct):
        return pa.struct([(f.name, _arrow_type(f.dtype)) for f in dtype.fields])
    if isinstance(dtype, pl.List):
        return pa.list_(_arrow_type(dtype.inner))
    return _ARROW_SCALARS[dtype.base_type()]


def arrow_schema(fields: pl.Struct) -> pa.Schema:
    return pa.schema([(f.name, _arrow_type(f.dtype)) for f in fields.fields])


def _decode(texts: pl.Series, fields: pl.Struct) -> pl.Series | None:
    try:
        return texts.str.json_decode(text_leaves(fields))
    except pl.exceptions.PolarsError:
        return None


def _arrow_decode(chunk: bytes | bytearray, schema: pa.Schema, rows: int) -> pl.DataFrame | None:
    """The chunk's fields by pyarrow (blank lines skipped, as they are by the caller), or
    None when pyarrow refuses a line or counts other rows."""
    options = pa_json.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")
    try:
        table = pa_json.read_json(
            pa.BufferReader(chunk), parse_options=options, read_options=_READ_OPTIONS
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError):
        # pyarrow rejects the whole chunk for one bad line; the caller falls back to Polars'
        # decoder and then to line-by-line checks, so each bad line gets its own reason.
        return None
    if table.num_rows != rows:
        return None
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    return frame


def _last_bytes(data: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Each line's last byte before its `\\n` / `\\r\\n` (any byte of an empty line)."""
    last = ends - 1
    last = np.where((last > 0) & (data[last] == _NEWLINE), last - 1, last)
    last = np.where((last > 0) & (data[np.maximum(last, 0)] == _CR), last - 1, last)
    return data[np.clip(last, 0, len(data) - 1)]


def read_batch(
    chunk: bytes | bytearray, first_line: int, fields: pl.Struct, schema: pa.Schema | None = None
) -> JsonlBatch:
    """One batch; `schema` (arrow_schema(fields)) enables the pyarrow parser."""
    data = np.frombuffer(chunk, dtype=np.uint8)
    newlines = np.flatnonzero(data == _NEWLINE)
    starts = np.concatenate(([0], newlines + 1))
    ends = np.concatenate((newlines + 1, [len(chunk)]))
    if starts[-1] == len(chunk):  # the chunk ends with a newline: no last partial line
        starts, ends = starts[:-1], ends[:-1]
    numbers = np.arange(first_line, first_line + len(starts), dtype=np.int64)
    valid_utf8 = _valid_utf8(chunk)
    if not valid_utf8:
        suspect = np.ones(len(starts), dtype=bool)
    else:
        # Not `{...}`: blank, whitespace around, an array, garbage, a truncated line.
        first = data[np.minimum(starts, len(chunk) - 1)]
        suspect = (first != _BRACE) | (_last_bytes(data, ends) != _CLOSE)
    keep = np.ones(len(starts), dtype=bool)
    errors: dict[int, tuple[str, str]] = {}  # row -> (record, error)
    for row in np.flatnonzero(suspect).tolist():
        record, error = _check_line(chunk[starts[row] : ends[row]].rstrip(b"\n"))
        if record is None:
            keep[row] = False
        elif error is not None:
            errors[row] = (record, error)
        elif not valid_utf8:
            # Valid JSON in a batch with a bad encoding elsewhere: read as before.
            return _slow_batch(chunk, first_line)
    if not valid_utf8:
        return _slow_batch(chunk, first_line)

    good = keep.copy()
    if errors:
        good[list(errors)] = False
    fields_frame: pl.DataFrame | None = None
    texts: pl.Series | None = None
    if schema is not None:
        lengths = ends - starts
        buffer = chunk if good.all() else data[np.repeat(good, lengths)].tobytes()
        fields_frame = _arrow_decode(buffer, schema, int(good.sum()))
    if fields_frame is None:
        texts = _text_array(chunk, starts, ends)
        decoded = _decode(texts.filter(pl.Series(good)), fields)
        if decoded is None:
            # Which lines are not JSON at all? Python has the last word on each of them.
            valid = texts.str.json_path_match("$").is_not_null().to_numpy()
            for row in np.flatnonzero(good & ~valid).tolist():
                record, error = _check_line(chunk[starts[row] : ends[row]].rstrip(b"\n"))
                if error is None:
                    return _slow_batch(chunk, first_line)
                assert record is not None
                errors[row] = (record, error)
                good[row] = False
            decoded = _decode(texts.filter(pl.Series(good)), fields)
            if decoded is None:
                return _slow_batch(chunk, first_line)
        if decoded.null_count():
            return _slow_batch(chunk, first_line)  # a line that decodes to no object at all
        fields_frame = decoded.struct.unnest()

    rows = np.flatnonzero(keep)
    frame = _meta(numbers[rows])
    bad_rows = sorted(errors)
    if bad_rows:
        position = np.cumsum(keep) - 1  # row in the chunk -> row in `frame`
        bad = position[bad_rows]
        frame = frame.with_columns(
            frame["_record"].scatter(bad, [errors[r][0] for r in bad_rows]),
            frame["_parse_error"].scatter(bad, [errors[r][1] for r in bad_rows]),
        )
        # Decoded rows are the good ones only: spread them over the kept rows.
        index = pl.Series("_i", np.flatnonzero(good[keep]))
        fields_frame = (
            pl.DataFrame({"_i": np.arange(len(rows))})
            .join(fields_frame.with_columns(index), on="_i", how="left", maintain_order="left")
            .drop("_i")
        )
    frame = pl.concat([frame, fields_frame], how="horizontal")
    if texts is not None:
        return JsonlBatch(frame, fast=True, texts=texts.filter(pl.Series(keep)))
    return JsonlBatch(frame, fast=True, chunk=chunk, starts=starts[keep], ends=ends[keep])


def _meta(numbers: np.ndarray) -> pl.DataFrame:
    """`_line`, with `_record` and `_parse_error` null."""
    return pl.DataFrame(
        {
            "_line": numbers,
            "_record": pl.repeat(None, len(numbers), dtype=pl.String, eager=True),
            "_parse_error": pl.repeat(None, len(numbers), dtype=pl.String, eager=True),
        }
    )


def read_jsonl_batches(
    path: Path, fields: pl.Struct, batch_bytes: int = BATCH_BYTES
) -> Iterator[JsonlBatch]:
    """Batches of a JSONL file, read against `fields` (see the module docstring), in file
    order, one in memory at a time. (Parsing the next batch in a thread while the caller
    maps the current one gained nothing measurable: pyarrow and Polars each already use
    every core.)"""
    schema = arrow_schema(fields)
    for first_line, chunk in _chunks(path, batch_bytes):
        yield read_batch(chunk, first_line, fields, schema)
