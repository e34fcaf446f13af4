"""Deterministic JSON and CSV text with exact decimals.

Decimals are written as plain decimal numbers (never a binary float, never an exponent), so
a reader that parses them as Decimal gets back exactly the generated amount. Keys keep their
insertion order; output is byte-identical for equal input.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any


def dec_text(value: Decimal, point: bool = False) -> str:
    """Plain decimal text without trailing zeros; with `point`, always with a decimal point
    (FOCUS numbers, e.g. 1250000.0)."""
    text = format(value.normalize(), "f") if value != 0 else "0"
    if text.startswith("-0") and value == 0:
        text = "0"
    if point and "." not in text:
        text += ".0"
    return text


def cents(value: Decimal) -> str:
    """An amount rounded to the cent, always with two decimals."""
    return format(value.quantize(Decimal("0.01")), "f")


def dumps(obj: Any) -> str:
    if obj is None or isinstance(obj, bool | int | str):
        return json.dumps(obj)
    if isinstance(obj, Decimal):
        return dec_text(obj)
    if isinstance(obj, float):
        return json.dumps(obj)
    if isinstance(obj, dict):
        return "{" + ",".join(f"{json.dumps(str(k))}:{dumps(v)}" for k, v in obj.items()) + "}"
    if isinstance(obj, list | tuple):
        return "[" + ",".join(dumps(v) for v in obj) + "]"
    raise TypeError(f"cannot encode {type(obj).__name__}")


def write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dumps(obj) + "\n", encoding="utf-8")


def write_jsonl(path: Path, records: Iterable[Any]) -> int:
    lines = [dumps(r) for r in records]
    write_lines(path, lines)
    return len(lines)


def write_lines(path: Path, lines: Sequence[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="\n") as fh:
        for line in lines:
            fh.write(line)
            fh.write("\n")


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[object]]) -> int:
    """CSV with a header; None is an empty field, Decimal plain text, bool true/false."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    n = 0
    for row in rows:
        writer.writerow([_cell(v) for v in row])
        n += 1
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(buf.getvalue(), encoding="utf-8")
    return n


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return dec_text(value)
    return str(value)
