"""Field types shared by the contract models.

Every validator here raises a message that describes the expected shape and never quotes
the input value: claim fields can be PHI, and validation messages reach the dead-letter
topic and the logs.
"""

import math
import re
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, TypeGuard

from pydantic import BeforeValidator, ConfigDict
from pydantic_core import PydanticCustomError

__all__ = [
    "CONTRACT_MODEL",
    "IsoDate",
    "JsonNumber",
    "Money",
    "Rfc3339Time",
    "Units",
    "WholeNumber",
]

CONTRACT_MODEL = ConfigDict(
    strict=True,
    extra="ignore",
    frozen=True,
    hide_input_in_errors=True,
)
"""Settings of every inbound model: exact JSON types, unknown fields ignored, input never echoed."""

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})",
)
_MONEY = re.compile(r"[0-9]+(\.[0-9]{1,2})?")


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _number_error() -> PydanticCustomError:
    return PydanticCustomError("number_type", "Input should be a valid number")


def _whole_number(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise PydanticCustomError("whole_number", "Input should be a whole number")


def _json_number(value: object) -> float:
    if not _is_number(value) or not math.isfinite(value):
        raise _number_error()
    return float(value)


def _as_decimal(value: int | float) -> Decimal:
    # repr() is the shortest text that round-trips the parsed JSON number, so 2542.8 stays 2542.8.
    return Decimal(value) if isinstance(value, int) else Decimal(repr(value))


def _units(value: object) -> Decimal:
    if not _is_number(value) or (isinstance(value, float) and not math.isfinite(value)):
        raise _number_error()
    return _as_decimal(value)


def _money(value: object) -> Decimal:
    if isinstance(value, str):
        if _MONEY.fullmatch(value):
            return Decimal(value)
        raise PydanticCustomError(
            "money_format",
            "Money should be a string of digits with at most 2 decimals, like '412.00'",
        )
    if _is_number(value):
        try:
            amount = _as_decimal(value)
        except (InvalidOperation, ValueError) as error:
            raise _number_error() from error
        exponent = amount.as_tuple().exponent
        if amount.is_finite() and amount >= 0 and isinstance(exponent, int) and exponent >= -2:
            return amount
        raise PydanticCustomError(
            "money_number",
            "Money should be a number >= 0 with at most 2 decimals",
        )
    raise PydanticCustomError("money_type", "Money should be a string or a number")


def _iso_date(value: object) -> date:
    if isinstance(value, str) and _DATE.fullmatch(value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise PydanticCustomError("iso_date", "Input should be a calendar date as YYYY-MM-DD")


def _rfc3339(value: object) -> datetime:
    if isinstance(value, str) and _RFC3339.fullmatch(value):
        try:
            return datetime.fromisoformat(value.upper().replace("Z", "+00:00")).astimezone(UTC)
        except (ValueError, OverflowError):  # e.g. 0001-01-01T00:00:00+05:30 is before year 1 UTC
            pass
    raise PydanticCustomError(
        "rfc3339",
        "Input should be an RFC 3339 date-time with an offset, like 2026-11-20T15:04:05Z",
    )


WholeNumber = Annotated[int, BeforeValidator(_whole_number)]
JsonNumber = Annotated[float, BeforeValidator(_json_number)]
Units = Annotated[Decimal, BeforeValidator(_units)]
Money = Annotated[Decimal, BeforeValidator(_money)]
IsoDate = Annotated[date, BeforeValidator(_iso_date)]
Rfc3339Time = Annotated[datetime, BeforeValidator(_rfc3339)]
