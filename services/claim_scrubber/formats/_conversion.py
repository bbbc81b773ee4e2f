"""What converting one 837P interchange or one FHIR submission gives: per claim, a ClaimEvent
document (a void too: contract v1.2 forwards it as `claim.voided`), or the reason the claim
(or the whole input) is unusable.

Pure: the caller passes the zone and the payer directory. No message built here quotes a
claim value: messages name segments, elements and positions only, because they reach the
dead-letter topic and the logs.
"""

import hashlib
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Final

from pydantic import ValidationError

from claim_scrubber.models import ClaimEvent, DeadLetterKind
from claim_scrubber.models.documents import json_document

__all__ = [
    "REJECTED_CLAIMS_KEPT",
    "Conversion",
    "ConvertedClaim",
    "RejectedClaim",
    "event_id",
    "finish_claim",
]

_EVENT_IDS: Final = uuid.UUID("6f1c4f2e-5a7e-4c55-9d53-0c1f3c9b2a10")
"""The UUIDv5 namespace of intake's event ids (never change it: re-sent files would get new
ids)."""
_NAMESPACE: Final = _EVENT_IDS.bytes

REJECTED_CLAIMS_KEPT: Final = 100
"""Unusable claims of one input kept with their messages (the ones its dead letter lists);
the others are only counted by kind, so a record of thousands of bad claims costs no more
memory than its good ones."""


def event_id(*parts: str) -> str:
    """A deterministic event id, the UUIDv5 of the parts joined by `|`: the same input claim
    always gets the same id (uuid.uuid5's result, formatted without building a UUID)."""
    digest = bytearray(hashlib.sha1(_NAMESPACE + "|".join(parts).encode()).digest()[:16])  # noqa: S324 - UUIDv5 is SHA-1 by definition
    digest[6] = (digest[6] & 0x0F) | 0x50
    digest[8] = (digest[8] & 0x3F) | 0x80
    text = digest.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


@dataclass(frozen=True, slots=True)
class ConvertedClaim:
    index: int
    """1-based ordinal of the claim in its input."""
    event_id: str
    claim_id: str
    event_type: str
    document: bytes
    """The ClaimEvent JSON, validated against the contract model."""


@dataclass(frozen=True, slots=True)
class RejectedClaim:
    index: int | None
    """None when the whole input is unusable."""
    kind: DeadLetterKind
    message: str
    details: tuple[tuple[str, str], ...] = ()
    claim_id: str | None = None


Outcome = ConvertedClaim | RejectedClaim


@dataclass(slots=True)
class Conversion:
    """Every claim of one input, in input order: the first REJECTED_CLAIMS_KEPT unusable ones
    with their messages, the rest counted by kind."""

    claims: list[Outcome] = field(default_factory=list)
    rejected_not_kept: Counter[DeadLetterKind] = field(default_factory=Counter)
    _rejected_kept: int = 0

    def add(self, outcome: Outcome) -> None:
        if isinstance(outcome, RejectedClaim):
            if self._rejected_kept >= REJECTED_CLAIMS_KEPT:
                self.rejected_not_kept[outcome.kind] += 1
                return
            self._rejected_kept += 1
        self.claims.append(outcome)

    @property
    def converted(self) -> list[ConvertedClaim]:
        return [claim for claim in self.claims if isinstance(claim, ConvertedClaim)]

    @property
    def voided(self) -> int:
        """How many of the converted claims are voids (`claim.voided`)."""
        return sum(1 for claim in self.converted if claim.event_type == "claim.voided")

    @property
    def rejected(self) -> list[RejectedClaim]:
        """The unusable claims kept (at most REJECTED_CLAIMS_KEPT)."""
        return [claim for claim in self.claims if isinstance(claim, RejectedClaim)]

    @property
    def rejected_count(self) -> int:
        """Every unusable claim, kept or not."""
        return self._rejected_kept + self.rejected_not_kept.total()

    @property
    def claim_count(self) -> int:
        return len(self.claims) + self.rejected_not_kept.total()

    def rejected_kinds(self) -> list[DeadLetterKind]:
        """The kind of every unusable claim, kept or not."""
        kinds = [claim.kind for claim in self.rejected]
        return kinds + list(self.rejected_not_kept.elements())


def _location(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc)


def finish_claim(
    index: int, document: dict[str, Any], kind: DeadLetterKind, where: str
) -> ConvertedClaim | RejectedClaim:
    """Validate a built ClaimEvent document against the contract; a violation rejects the
    claim with the model's own (value-free) messages."""
    claim_id = str(document["claim"]["claim_id"])
    try:
        ClaimEvent.model_validate(document)
    except ValidationError as error:
        problems = error.errors(include_url=False, include_input=False, include_context=False)
        details = tuple((_location(p["loc"]), p["msg"]) for p in problems[:20])
        first_loc, first_msg = details[0]
        return RejectedClaim(
            index=index,
            kind=kind,
            message=f"{where}: the converted claim breaks the ClaimEvent contract at "
            f"{first_loc}: {first_msg}",
            details=details,
        )
    return ConvertedClaim(
        index=index,
        event_id=str(document["event_id"]),
        claim_id=claim_id,
        event_type=str(document["event_type"]),
        document=json_document(document),
    )
