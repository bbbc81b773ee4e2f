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
    ConvertedFileSource,
    DeadLetter,
    DeadLetterError,
    DeadLetterKind,
    Finding,
    Outcome,
    ScrubResult,
    Severity,
    ViolationDetail,
)
from claim_scrubber.models.ruleset import (
    PayerDirectory,
    PayerIdEntry,
    PayerProfile,
    RuleOverride,
    Ruleset,
)

__all__ = [
    "ClaimEvent",
    "ClaimLine",
    "ConvertedFileSource",
    "DeadLetter",
    "DeadLetterError",
    "DeadLetterKind",
    "Documentation",
    "Finding",
    "Outcome",
    "Payer",
    "PayerDirectory",
    "PayerIdEntry",
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
