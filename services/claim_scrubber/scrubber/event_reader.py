"""From a record's bytes to a ClaimEvent, or to the reason it is a dead letter.

The order of the checks is the contract's: size, UTF-8, JSON, object, schema_version,
schema. No message produced here quotes a claim value: they travel to the dead-letter
topic and the logs.
"""

import re
from dataclasses import dataclass
from typing import Any, Final

import orjson
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from claim_scrubber.models import ClaimEvent, DeadLetterKind

__all__ = ["Accepted", "Rejected", "read_claim_event"]

SUPPORTED_SCHEMA_VERSION: Final = "1"
_MAX_REPORTED_VIOLATIONS: Final = 20
_CLAIM_ID: Final = re.compile(r"[!-~](?:[ -~]{0,62}[!-~])?")


@dataclass(frozen=True, slots=True)
class Accepted:
    event: ClaimEvent
    claim_document: dict[str, Any]
    """The claim object exactly as parsed, unknown fields included, for the result's echo."""


@dataclass(frozen=True, slots=True)
class Rejected:
    kind: DeadLetterKind
    message: str
    details: tuple[tuple[str, str], ...] = ()
    """(loc, msg) pairs of a schema violation."""
    event_id: str | None = None
    claim_id: str | None = None
    """Identifiers read from a JSON object when they are well formed, for headers and audit."""


def _json_type(value: object) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if value is None:
        return "null"
    return "number"


def _schema_version_problem(document: dict[str, Any]) -> str | None:
    if "schema_version" not in document:
        return 'schema_version is missing; this worker reads schema_version "1"'
    version = document["schema_version"]
    if version == SUPPORTED_SCHEMA_VERSION:
        return None
    if isinstance(version, str) and len(version) <= 16 and version.isprintable():
        return f'schema_version "{version}" is not supported; this worker reads "1"'
    return f'schema_version is a {_json_type(version)}; this worker reads the string "1"'


def _rejected(
    kind: DeadLetterKind,
    message: str,
    document: dict[str, Any],
    details: tuple[tuple[str, str], ...] = (),
) -> Rejected:
    """A rejection of a JSON object, with its event and claim ids when they are well formed."""
    event_id = document.get("event_id")
    if not (isinstance(event_id, str) and 0 < len(event_id) <= 128 and event_id.isprintable()):
        event_id = None
    claim = document.get("claim")
    claim_id = claim.get("claim_id") if isinstance(claim, dict) else None
    if not (isinstance(claim_id, str) and _CLAIM_ID.fullmatch(claim_id)):
        claim_id = None
    return Rejected(kind, message, details, event_id=event_id, claim_id=claim_id)


_PATTERN_MESSAGES: Final = {
    "claim_id": "should be 1-64 printable ASCII characters, not starting or ending with a space",
}
"""What a field's pattern means, in words: a coder reads the message, not the regex."""


def _message(problem: ErrorDetails) -> str:
    if problem["type"] == "string_pattern_mismatch" and problem["loc"]:
        return _PATTERN_MESSAGES.get(str(problem["loc"][-1]), problem["msg"])
    return problem["msg"]


def _violation(error: ValidationError, document: dict[str, Any]) -> Rejected:
    problems = error.errors(include_url=False, include_context=False, include_input=False)
    details = tuple(
        (".".join(str(part) for part in problem["loc"]), _message(problem))
        for problem in problems[:_MAX_REPORTED_VIOLATIONS]
    )
    first_loc, first_msg = details[0]
    message = f"{first_loc}: {first_msg}"
    if len(problems) > 1:
        message += f" (and {len(problems) - 1} more)"
    return _rejected(DeadLetterKind.SCHEMA_VIOLATION, message, document, details)


def read_claim_event(  # noqa: PLR0911 - one return per contract check, in contract order
    payload: bytes, *, max_bytes: int
) -> Accepted | Rejected:
    """Parse and validate one input record value."""
    if len(payload) > max_bytes:
        return Rejected(
            DeadLetterKind.TOO_LARGE,
            f"record value is {len(payload)} bytes; the limit is {max_bytes} bytes",
        )
    try:  # the usual case, a valid event: validated straight from the bytes
        event = ClaimEvent.model_validate_json(payload)
        return Accepted(event, orjson.loads(payload)["claim"])
    except Exception:  # noqa: BLE001, S110 - the checks below, in contract order, name the problem
        pass
    try:
        document = orjson.loads(payload)
    except orjson.JSONDecodeError as error:
        try:
            payload.decode("utf-8")
        except UnicodeDecodeError as bad_bytes:
            return Rejected(
                DeadLetterKind.INVALID_ENCODING,
                f"record value is not valid UTF-8 (first bad byte at offset {bad_bytes.start})",
            )
        if not payload.strip():
            return Rejected(DeadLetterKind.INVALID_JSON, "record value is empty")
        return Rejected(
            DeadLetterKind.INVALID_JSON,
            f"record value is not valid JSON (line {error.lineno}, column {error.colno})",
        )
    if not isinstance(document, dict):
        return Rejected(
            DeadLetterKind.NOT_AN_OBJECT,
            f"record value is a JSON {_json_type(document)}, not an object",
        )
    problem = _schema_version_problem(document)
    if problem is not None:
        return _rejected(DeadLetterKind.UNSUPPORTED_SCHEMA_VERSION, problem, document)
    try:
        event = ClaimEvent.model_validate(document)
    except ValidationError as error:
        return _violation(error, document)
    except Exception as error:  # noqa: BLE001 - a validator bug must not block the partition
        return _rejected(
            DeadLetterKind.SCHEMA_VIOLATION,
            f"claim event could not be validated ({type(error).__name__})",
            document,
        )
    return Accepted(event, document["claim"])
