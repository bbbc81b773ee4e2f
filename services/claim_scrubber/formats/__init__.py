"""Intake: 837P interchanges and FHIR R4 Claims turned into ClaimEvents
(docs/sending-claims/x12-and-fhir.md).

Pure like the scrubber: bytes in, ClaimEvent documents (or the reasons a claim is not one)
out; the zone of X12 dates and the payer directory are passed in.
"""

from claim_scrubber.formats._conversion import (
    REJECTED_CLAIMS_KEPT,
    Conversion,
    ConvertedClaim,
    RejectedClaim,
)
from claim_scrubber.formats.fhir import DOCUMENTATION_SYSTEM, WOUND_LOCATION_SYSTEM, read_fhir
from claim_scrubber.formats.x12 import read_x12

__all__ = [
    "DOCUMENTATION_SYSTEM",
    "REJECTED_CLAIMS_KEPT",
    "WOUND_LOCATION_SYSTEM",
    "Conversion",
    "ConvertedClaim",
    "RejectedClaim",
    "read_fhir",
    "read_x12",
]
