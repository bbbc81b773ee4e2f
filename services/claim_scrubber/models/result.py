"""What the scrubber publishes: ScrubResult (clean / needs-review) and DeadLetter
(docs/consuming-results/index.md)."""

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ConvertedFileSource",
    "DeadLetter",
    "DeadLetterError",
    "DeadLetterKafkaSource",
    "DeadLetterKind",
    "FileSource",
    "Finding",
    "KafkaSource",
    "Outcome",
    "RejectedClaimEntry",
    "ScrubResult",
    "Severity",
    "ViolationDetail",
]

_OUTPUT_MODEL = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)


class Severity(StrEnum):
    """`error` sends a claim to review; `warning` and `info` annotate a clean claim."""

    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


class Outcome(StrEnum):
    CLEAN = "clean"
    NEEDS_REVIEW = "needs_review"


class DeadLetterKind(StrEnum):
    TOO_LARGE = "too_large"
    INVALID_ENCODING = "invalid_encoding"
    INVALID_JSON = "invalid_json"
    NOT_AN_OBJECT = "not_an_object"
    UNSUPPORTED_SCHEMA_VERSION = "unsupported_schema_version"
    SCHEMA_VIOLATION = "schema_violation"
    PROCESSING_ERROR = "processing_error"
    INVALID_X12 = "invalid_x12"
    INVALID_FHIR = "invalid_fhir"
    UNSUPPORTED_TRANSACTION = "unsupported_transaction"


# A plain dataclass rather than a model: the engine makes one per hit on the hot path.
# Pydantic still describes and validates it as part of ScrubResult.
@dataclass(frozen=True, slots=True)
class Finding:
    """One thing a coder must know about a claim: which rule, where, and what to do."""

    rule_id: Annotated[
        str,
        Field(
            pattern=r"^[A-Z]+-[0-9]{3}$",
            description="the rule's stable id, e.g. MOD-004; `claim-scrubber rules` and the "
            "rules page document each",
        ),
    ]
    severity: Annotated[
        Severity,
        Field(
            description="error sends the claim to review; warning and info annotate it "
            "(an operator's ruleset may change a rule's severity)"
        ),
    ]
    line_number: Annotated[
        int | None,
        Field(description="the claim line's line_number; null for a claim-level finding"),
    ]
    field: Annotated[
        str, Field(description="path into the event, e.g. claim.lines[1].modifiers (zero-based)")
    ]
    message: Annotated[
        str,
        Field(
            description="what is wrong and what to do, for a coder; it names values of the claim "
            "where that helps (so it is PHI-adjacent: never logged)"
        ),
    ]
    title: Annotated[
        str,
        Field(
            description="(v1.2) the rule's title from the catalog, for grouping and labelling "
            "findings without a copy of the catalog"
        ),
    ]


class KafkaSource(BaseModel):
    model_config = _OUTPUT_MODEL

    topic: str
    """The input topic the claim event was read from."""
    partition: int
    """Its partition."""
    offset: int
    """Its offset."""


class FileSource(BaseModel):
    """Where an offline `claim-scrubber scrub` input line came from (1-based line)."""

    model_config = _OUTPUT_MODEL

    file: str
    """The file name as given, or - for stdin."""
    line: int
    """The 1-based line the event starts on."""


class ConvertedFileSource(BaseModel):
    """Where a claim converted offline from an 837P or FHIR file came from: its file and its
    1-based ordinal among the file's claims (`convert`, `scrub --from`)."""

    model_config = _OUTPUT_MODEL

    file: str
    """The 837P, 837I or FHIR file name as given, or - for stdin."""
    claim_index: int | None = Field(description="null when the whole file is unusable")


class ScrubResult(BaseModel):
    """Published to `claims.clean` or `claims.needs-review`, keyed by claim_id."""

    model_config = _OUTPUT_MODEL

    schema_version: Literal["1"] = "1"
    """Always "1"."""
    event_id: str
    """The input event's event_id."""
    claim_id: str
    """The input claim's claim_id; also the record's key."""
    claim_version: int
    """The input claim's claim_version: of two results for one claim, the higher version is
    current."""
    outcome: Outcome
    """needs_review when at least one finding is an error, else clean; also the topic it is on."""
    findings: list[Finding]
    """What a coder must know, claim-level findings first, then by line number and rule id."""
    ruleset_version: str
    """The version of the ruleset that judged the claim."""
    scrubbed_at: datetime
    """When the worker decided (UTC)."""
    source: KafkaSource | FileSource | ConvertedFileSource
    """Where the claim event came from: Kafka coordinates, or a file position offline."""
    claim: dict[str, Any] = Field(description="the input claim object, as received")


class ViolationDetail(BaseModel):
    model_config = _OUTPUT_MODEL

    loc: str = Field(description="the validator's location, joined with dots")
    msg: str
    """What is wrong there, never the value."""


class DeadLetterError(BaseModel):
    model_config = _OUTPUT_MODEL

    kind: DeadLetterKind
    """Why the record is unusable: too_large, invalid_encoding, invalid_json, not_an_object,
    unsupported_schema_version, schema_violation, processing_error; intake adds invalid_x12,
    invalid_fhir, unsupported_transaction."""
    message: str
    """One line naming where and why, never a patient value."""
    details: list[ViolationDetail] = Field(default_factory=list)
    """Every schema violation, with its location (schema_violation only)."""


class DeadLetterHeader(BaseModel):
    model_config = _OUTPUT_MODEL

    name: str
    """The header's name."""
    value_base64: str | None = Field(description="the header value's bytes; null for none")


class DeadLetterKafkaSource(BaseModel):
    model_config = _OUTPUT_MODEL

    topic: str
    """The topic the unusable record came from."""
    partition: int
    """Its partition."""
    offset: int
    """Its offset."""
    timestamp_ms: int | None
    """Its timestamp, in milliseconds since the epoch."""
    key: str | None = Field(
        description="the input key as UTF-8 text; null when absent or not UTF-8"
    )
    key_base64: str | None = Field(
        default=None,
        description="(v1.2) the input key's bytes in base64 when they are not UTF-8; null when "
        "the key is absent or is text (then `key` holds it)",
    )
    headers: list[DeadLetterHeader] | None = Field(
        default=None,
        description="(v1.2) every header of the input record, in order: with the key and the "
        "payload, enough to publish the record again byte for byte",
    )
    claim_index: int | None = Field(
        default=None,
        description="intake only: the 1-based ordinal of the first unusable claim of the "
        "inbound record (null when the whole record is unusable; rejected_claims lists all)",
    )


class RejectedClaimEntry(BaseModel):
    """One unusable claim of an inbound record (intake)."""

    model_config = _OUTPUT_MODEL

    claim_index: int = Field(description="1-based ordinal of the claim in the inbound record")
    claim_id: str | None = Field(description="CLM01 / Claim.identifier (not PHI); null if unread")
    kind: DeadLetterKind
    """Why this claim is unusable (a dead-letter kind)."""
    message: str = Field(description="where and why, naming segments and elements, no value")


class DeadLetter(BaseModel):
    """Published to `claims.dead-letter` with the input key unchanged; keeps the original bytes."""

    model_config = _OUTPUT_MODEL

    schema_version: Literal["1"] = "1"
    """Always "1"."""
    error: DeadLetterError
    """Why the record could not be used."""
    source: DeadLetterKafkaSource | FileSource | ConvertedFileSource
    """Where the record came from, with its key and headers: enough to replay it."""
    payload_base64: str = Field(
        description="the original record value, whole unless payload_truncated is true"
    )
    received_at: datetime
    """When the worker or intake dead-lettered it (UTC)."""
    payload_truncated: bool | None = Field(
        default=None,
        description="true when payload_base64 holds only the first bytes of the record value, "
        "cut so that the dead letter fits its topic",
    )
    payload_bytes: int | None = Field(
        default=None, description="length of the whole record value (set when truncated)"
    )
    payload_sha256: str | None = Field(
        default=None,
        pattern=r"^[0-9a-f]{64}$",
        description="hex SHA-256 of the whole record value (set when truncated)",
    )
    rejected_claims: list[RejectedClaimEntry] | None = Field(
        default=None,
        description="intake: the unusable claims of the record (at most 100 listed); the "
        "record's usable claims were published",
    )
    rejected_claims_not_listed: int | None = Field(
        default=None, description="intake: unusable claims beyond the 100 listed"
    )
