"""The scrubbing core: bytes in, a routed decision and its document out. No I/O, no clock."""

from claim_scrubber.scrubber.core import (
    DEAD_LETTER,
    UNBOUNDED,
    VOIDED,
    Decision,
    DocumentLimits,
    Scrubber,
    Verdict,
    dead_letter_document,
    timestamp_text,
)
from claim_scrubber.scrubber.event_reader import Accepted, Rejected, read_claim_event

__all__ = [
    "DEAD_LETTER",
    "UNBOUNDED",
    "VOIDED",
    "Accepted",
    "Decision",
    "DocumentLimits",
    "Rejected",
    "Scrubber",
    "Verdict",
    "dead_letter_document",
    "read_claim_event",
    "timestamp_text",
]
