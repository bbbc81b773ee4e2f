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

CONTRACT_VERSION = "1.2"
"""The version of the message contract these models implement (schema_version stays "1":
every change since is additive)."""

__all__ = [
    "CONTRACT_VERSION",
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
