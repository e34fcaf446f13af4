"""Exact decimal columns on every backend: the `Money` and `ExactDecimal` SQLAlchemy types.

PostgreSQL stores NUMERIC(precision, scale). SQLite has no exact decimal type (its NUMERIC
affinity turns 0.1 into a binary float), so there the value is TEXT in one canonical form:
plain digits, a '.', exactly `scale` decimals, '-' for negatives, never an exponent
('0.000000001000000000'). One form per value means equal amounts are equal strings and a rerun
writes identical bytes. Python `Decimal` in and out on both backends; a float is refused
(money is never a float) and so is a value that would lose digits.

Also `UtcDateTime`: TIMESTAMP WITH TIME ZONE on PostgreSQL, UTC text on SQLite (naive
'YYYY-MM-DD HH:MM:SS.ffffff', SQLAlchemy's own SQLite format); aware UTC datetimes come back.
"""

from __future__ import annotations

import datetime as dt
from decimal import Context, Decimal, InvalidOperation
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

MONEY_PRECISION = 38
MONEY_SCALE = 18
# The default decimal context keeps 28 significant digits; NUMERIC(38, 18) needs 38.
_EXACT = Context(prec=80, traps=[InvalidOperation])


def exact_decimal(
    value: object, precision: int = MONEY_PRECISION, scale: int = MONEY_SCALE
) -> Decimal:
    """`value` as a Decimal with exactly `scale` decimals; ValueError if that changes it or
    it has more than `precision - scale` integer digits, TypeError for floats."""
    if isinstance(value, bool | float):
        raise TypeError(f"money must be Decimal, int or str, not {type(value).__name__}: {value!r}")
    try:
        number = value if isinstance(value, Decimal) else Decimal(str(value))
        quantized = number.quantize(Decimal(1).scaleb(-scale), context=_EXACT)
    except InvalidOperation as error:
        raise ValueError(f"not an exact decimal with {scale} decimals: {value!r}") from error
    if not number.is_finite() or quantized != number:
        raise ValueError(f"not an exact decimal with {scale} decimals: {value!r}")
    if quantized.adjusted() >= precision - scale:
        raise ValueError(f"more than {precision - scale} integer digits: {value!r}")
    # -0 and 0 are the same amount: one spelling.
    return quantized if quantized else Decimal(0).scaleb(-scale)


def decimal_text(value: object, precision: int = MONEY_PRECISION, scale: int = MONEY_SCALE) -> str:
    """The canonical SQLite text of an exact decimal (see the module docstring)."""
    return format(exact_decimal(value, precision, scale), "f")


class ExactDecimal(TypeDecorator[Decimal]):
    """NUMERIC(precision, scale) on PostgreSQL, canonical decimal TEXT on SQLite."""

    impl = sa.Numeric
    cache_ok = True

    def __init__(self, precision: int = MONEY_PRECISION, scale: int = MONEY_SCALE) -> None:
        super().__init__(precision=precision, scale=scale, asdecimal=True)
        self.precision = precision
        self.scale = scale

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(sa.Text())
        return dialect.type_descriptor(sa.Numeric(self.precision, self.scale, asdecimal=True))

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        if dialect.name == "sqlite":
            return decimal_text(value, self.precision, self.scale)
        return exact_decimal(value, self.precision, self.scale)

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        return exact_decimal(
            value if isinstance(value, Decimal) else Decimal(value), self.precision, self.scale
        )

    def __repr__(self) -> str:
        return f"ExactDecimal({self.precision}, {self.scale})"


class Money(ExactDecimal):
    """USD amounts: exact Decimal(38, 18)."""

    cache_ok = True

    def __init__(self) -> None:
        super().__init__(MONEY_PRECISION, MONEY_SCALE)

    def __repr__(self) -> str:
        return "Money()"


class UtcDateTime(TypeDecorator[dt.datetime]):
    """Aware UTC datetimes: timestamptz on PostgreSQL, naive UTC text on SQLite."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        if not isinstance(value, dt.datetime):
            raise TypeError(f"expected a datetime, got {type(value).__name__}: {value!r}")
        # Naive means UTC, as everywhere in the lake.
        utc = value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        stamp = dt.datetime.fromisoformat(value) if isinstance(value, str) else value
        if not isinstance(stamp, dt.datetime):
            raise TypeError(f"expected a datetime from the database, got {stamp!r}")
        if stamp.tzinfo is None:
            return stamp.replace(tzinfo=dt.UTC)
        return stamp.astimezone(dt.UTC)
