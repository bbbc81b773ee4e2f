"""Field types shared by the contract models.

Each type is a pydantic-core schema that runs in Rust: validating a claim calls back into
Python only for a float that must be a whole number and for occurred_at. Every error
message describes the expected shape and never quotes the input value: claim fields can be
PHI, and validation messages reach the dead-letter topic and the logs.
"""

import re
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Annotated

from pydantic import BeforeValidator, ConfigDict, GetPydanticSchema, WithJsonSchema
from pydantic_core import CoreSchema, PydanticCustomError
from pydantic_core import core_schema as cs

__all__ = [
    "CONTRACT_MODEL",
    "IsoDate",
    "JsonNumber",
    "Money",
    "PositiveWholeNumber",
    "Rfc3339Time",
    "Units",
    "WholeNumber",
]

CONTRACT_MODEL = ConfigDict(
    strict=True,
    extra="ignore",
    frozen=True,
    hide_input_in_errors=True,
    use_attribute_docstrings=True,
)
"""Settings of every inbound model: exact JSON types, unknown fields ignored, input never echoed."""

_MONEY_PATTERN = r"^[0-9]+(\.[0-9]{1,2})?$"
_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})",
)

_NUMBER = cs.union_schema(
    [cs.int_schema(strict=True), cs.float_schema(strict=True, allow_inf_nan=False)],
)
"""A finite JSON number, an int kept exact (a float only when the JSON had a fraction or an
exponent); booleans and strings are not numbers."""


def _shape(schema: CoreSchema, error_type: str, message: str) -> CoreSchema:
    """One error of our own wording for any mismatch of `schema`."""
    return cs.custom_error_schema(
        schema, custom_error_type=error_type, custom_error_message=message
    )


def _whole(value: float) -> int:
    if value.is_integer():
        return int(value)
    raise ValueError


def _whole_number(minimum: int | None) -> CoreSchema:
    whole = _shape(
        cs.union_schema(
            [
                cs.int_schema(strict=True),
                cs.no_info_after_validator_function(
                    _whole, cs.float_schema(strict=True, allow_inf_nan=False)
                ),
            ],
        ),
        "whole_number",
        "Input should be a whole number",
    )
    if minimum is None:
        return whole
    return cs.chain_schema([whole, cs.int_schema(strict=False, ge=minimum)])


def _validated_by(schema: CoreSchema) -> GetPydanticSchema:
    return GetPydanticSchema(lambda _source, _handler: schema)


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


WholeNumber = Annotated[
    int, _validated_by(_whole_number(None)), WithJsonSchema({"type": "integer"})
]
"""An integer; 1.0 is accepted as 1, 1.5 is not."""

_DECIMAL = cs.decimal_schema(strict=False)

PositiveWholeNumber = Annotated[
    int, _validated_by(_whole_number(1)), WithJsonSchema({"type": "integer", "minimum": 1})
]

JsonNumber = Annotated[
    float,
    _validated_by(
        _shape(
            cs.float_schema(strict=True, allow_inf_nan=False),
            "number_type",
            "Input should be a valid number",
        ),
    ),
    WithJsonSchema({"type": "number"}),
]

Units = Annotated[
    Decimal,
    _validated_by(
        _shape(
            cs.chain_schema([_NUMBER, _DECIMAL]),
            "number_type",
            "Input should be a valid number",
        ),
    ),
    WithJsonSchema({"type": "number"}),
]
"""A JSON number as a Decimal: 2542.8 stays 2542.8 (the shortest text of the parsed float)."""

_MONEY_TEXT = cs.str_schema(strict=True, pattern=_MONEY_PATTERN)
_MONEY_AMOUNT = cs.decimal_schema(strict=False, ge=Decimal(0), decimal_places=2)

Money = Annotated[
    Decimal,
    _validated_by(
        _shape(
            cs.union_schema(
                [
                    cs.chain_schema([_MONEY_TEXT, _DECIMAL]),
                    cs.chain_schema([_NUMBER, _MONEY_AMOUNT]),
                ],
            ),
            "money",
            "Money should be a string of digits like '412.00' or a number >= 0, "
            "with at most 2 decimals",
        ),
    ),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": _MONEY_PATTERN},
                {"type": "number", "minimum": 0},
            ],
        },
    ),
]

_DATE_TEXT = cs.str_schema(strict=True, pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")

IsoDate = Annotated[
    date,
    _validated_by(
        _shape(
            cs.chain_schema([_DATE_TEXT, cs.date_schema(strict=False)]),
            "iso_date",
            "Input should be a calendar date as YYYY-MM-DD",
        ),
    ),
    WithJsonSchema({"type": "string", "format": "date"}),
]

Rfc3339Time = Annotated[datetime, BeforeValidator(_rfc3339)]
"""Checked in Python: one per claim, and the offset is required (a naive time is refused)."""
