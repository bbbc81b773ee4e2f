"""Data shapes of the contract (events, results, dead letters) and of the ruleset file."""

from claim_scrubber.models.event import (
    ClaimEvent,
    ClaimLine,
    Documentation,
    Payer,
    PayerKind,
    Product,
    Provider,
    Wound,
)
from claim_scrubber.models.result import (
    DeadLetter,
    DeadLetterError,
    DeadLetterKind,
    Finding,
    Outcome,
    ScrubResult,
    Severity,
    ViolationDetail,
)
from claim_scrubber.models.ruleset import PayerProfile, RuleOverride, Ruleset

__all__ = [
    "ClaimEvent",
    "ClaimLine",
    "DeadLetter",
    "DeadLetterError",
    "DeadLetterKind",
    "Documentation",
    "Finding",
    "Outcome",
    "Payer",
    "PayerKind",
    "PayerProfile",
    "Product",
    "Provider",
    "RuleOverride",
    "Ruleset",
    "ScrubResult",
    "Severity",
    "ViolationDetail",
    "Wound",
]
