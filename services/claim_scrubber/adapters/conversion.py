"""Intake shared by `convert`, `scrub --from` and the Kafka intake: the reader of each
format, the dead letter of an unusable claim, and the audit fields of one inbound input.

Audit fields name claims by claim id, event id and control numbers only, never a patient
field or a raw segment.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal
from zoneinfo import ZoneInfo

from claim_scrubber.formats import REJECTED_CLAIMS_KEPT, Conversion, read_fhir, read_x12
from claim_scrubber.models import PayerDirectory
from claim_scrubber.scrubber import dead_letter_document

__all__ = [
    "FORMATS",
    "REJECTED_CLAIMS_LISTED",
    "REJECTED_CLAIM_MESSAGE_CHARS",
    "Format",
    "Intake",
    "audit_fields",
    "rejection_document",
]

Format = Literal["x12", "fhir"]
FORMATS: Final[tuple[Format, ...]] = ("x12", "fhir")

_AUDITED_EVENT_IDS: Final = 500
"""Event ids named in one audit line; a larger interchange's line counts the rest (the worker's
own audit line names every claim's event id anyway)."""

REJECTED_CLAIMS_LISTED: Final = REJECTED_CLAIMS_KEPT
"""Unusable claims an input's one dead letter lists; the rest are counted, so the dead letter
stays bounded (one copy of the input's bytes plus at most this many short entries)."""
REJECTED_CLAIM_MESSAGE_CHARS: Final = 300

_Reader = Callable[..., Conversion]
_READERS: Final[dict[Format, _Reader]] = {"x12": read_x12, "fhir": read_fhir}


@dataclass(frozen=True, slots=True)
class Intake:
    """Converts one input of a format with the ruleset's payer directory and the zone."""

    directory: PayerDirectory
    zone: ZoneInfo

    def convert(self, format_name: Format, payload: bytes) -> Conversion:
        return _READERS[format_name](payload, directory=self.directory, zone=self.zone)


def rejection_document(
    payload: bytes,
    conversion: Conversion,
    source: dict[str, object],
    received_at: str,
    limit: int | None = None,
) -> bytes | None:
    """The one DeadLetter of an input with unusable claims (docs/sending-claims/x12-and-fhir.md),
    or None when every claim was usable: the input's bytes once, `rejected_claims` naming each
    unusable claim (ordinal, CLM01, kind, why; at most REJECTED_CLAIMS_LISTED, the rest counted),
    and `source.claim_index` the first one's ordinal (null when the whole input is unusable)."""
    rejected = conversion.rejected
    if not rejected:
        return None
    first = rejected[0]
    if first.index is None:
        return dead_letter_document(
            payload,
            first.kind,
            first.message,
            source | {"claim_index": None},
            received_at,
            details=first.details,
            limit=limit,
        )
    message = (
        f"{conversion.rejected_count} of {conversion.claim_count} claims are unusable and were "
        f"not published (the others were); the first: {first.message}"
    )[:REJECTED_CLAIM_MESSAGE_CHARS]
    listed = [
        {
            "claim_index": claim.index,
            "claim_id": claim.claim_id,
            "kind": claim.kind.value,
            "message": claim.message[:REJECTED_CLAIM_MESSAGE_CHARS],
        }
        for claim in rejected[:REJECTED_CLAIMS_LISTED]
    ]
    extra: dict[str, object] = {"rejected_claims": listed}
    if conversion.rejected_count > len(listed):
        extra["rejected_claims_not_listed"] = conversion.rejected_count - len(listed)
    return dead_letter_document(
        payload,
        first.kind,
        message,
        source | {"claim_index": first.index},
        received_at,
        details=first.details,
        limit=limit,
        extra=extra,
    )


def audit_fields(conversion: Conversion) -> dict[str, object]:
    """What one inbound input became: counts (voids among the converted), the event ids
    written and the dead-letter kinds."""
    event_ids = [claim.event_id for claim in conversion.converted]
    return {
        "claims_converted": len(conversion.converted),
        "claims_voided": conversion.voided,
        "claims_dead_lettered": conversion.rejected_count,
        "event_ids": event_ids[:_AUDITED_EVENT_IDS],
        "event_ids_not_listed": max(0, len(event_ids) - _AUDITED_EVENT_IDS),
        "dead_letter_kinds": sorted({kind.value for kind in conversion.rejected_kinds()}),
    }
