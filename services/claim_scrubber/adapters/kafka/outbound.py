"""From an input record to the record the worker publishes and the audit line it writes.

Pure: no Kafka client, no clock, no logging. The topics' size limits (read from the brokers
at start) bound every document, so a record never becomes an output its topic refuses.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Generic, Protocol, TypeVar

from claim_scrubber.adapters.intake import REJECTED_CLAIMS_LISTED
from claim_scrubber.adapters.kafka.ownership import OutboundRecord
from claim_scrubber.scrubber import DEAD_LETTER, Decision, DocumentLimits, Scrubber

__all__ = [
    "RECORD_OVERHEAD_BYTES",
    "AuditLine",
    "InputRecord",
    "OutboundMapping",
    "OutputTopics",
    "RecordMapping",
    "Routed",
    "Tally",
    "dead_letter_bytes_needed",
    "dead_letter_room",
    "dead_letter_source",
    "result_bytes_needed",
    "traceparent_of",
]

_JSON: Final = b"application/json"
_TRACEPARENT: Final = "traceparent"

RECORD_OVERHEAD_BYTES: Final = 1024
"""Room a record needs beyond its key and value: the batch header, the record's framing and
our five headers (event ids are at most 128 characters, claim ids 64)."""

_DEAD_LETTER_ENVELOPE_BYTES: Final = 4096 + REJECTED_CLAIMS_LISTED * 512
"""A dead letter beyond its base64 payload and key: error (a message and at most 20 details),
source, timestamps and field names; for intake, the listed rejected claims (a claim id of at
most 64 characters and a message of at most 300 each)."""

_RESULT_ENVELOPE_BYTES: Final = 512 * 1024
"""A result beyond its echoed claim: the findings and the envelope. Measured at 145 KB for the
worst claim tried (50 lines failing every line rule they can: 755 findings); 512 KiB leaves
room for longer messages."""


def dead_letter_bytes_needed(largest_input_bytes: int) -> int:
    """The `max.message.bytes` a dead-letter topic needs to hold, whole, a dead letter of the
    largest record the input topic accepts (its key and value together)."""
    base64_bytes = -(-largest_input_bytes // 3) * 4
    return base64_bytes + _DEAD_LETTER_ENVELOPE_BYTES + RECORD_OVERHEAD_BYTES


def result_bytes_needed(largest_claim_bytes: int) -> int:
    """The `max.message.bytes` a result topic needs to hold the result of the largest claim
    the worker scrubs (larger input is a `too_large` dead letter)."""
    return largest_claim_bytes + _RESULT_ENVELOPE_BYTES + RECORD_OVERHEAD_BYTES


class InputRecord(Protocol):
    """The fields of aiokafka's ConsumerRecord the worker reads."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def timestamp(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Sequence[tuple[str, bytes]]: ...


@dataclass(frozen=True, slots=True)
class OutputTopics:
    """The output topics by name, and each one's `max.message.bytes` (None: not bounded)."""

    clean: str
    review: str
    dead_letter: str
    max_bytes: Mapping[str, int | None]


Detail = TypeVar("Detail")


@dataclass(frozen=True, slots=True)
class Tally:
    """What one committed input record adds to the metrics."""

    outcomes: tuple[str, ...]
    dead_letter_kinds: tuple[str, ...] = ()
    findings: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class AuditLine:
    event: str
    fields: dict[str, object]
    warning: bool = False


@dataclass(frozen=True, slots=True)
class Routed(Generic[Detail]):
    """One input record, what it was decided to be, and the records to publish for it."""

    record: InputRecord
    detail: Detail
    outputs: tuple[OutboundRecord, ...]
    tally: Tally
    traceparent: bytes | None = None
    """The input's W3C trace context, copied to the outputs."""


class RecordMapping(Protocol[Detail]):
    """How a stage turns its input records into outputs and audit lines (pure)."""

    def route(self, record: InputRecord, decided_at: str, *, shrink: int = 0) -> Routed[Detail]:
        """Decide the record (never raises for bad input); `shrink`: halve the documents'
        room that many times after the broker refused one as too large."""
        ...

    def processing_error(
        self,
        record: InputRecord,
        decided_at: str,
        *,
        attempts: int,
        error_type: str,
        shrink: int = 0,
    ) -> Routed[Detail]:
        """The dead letter of a record the stage failed on `attempts` times."""
        ...

    def audit(
        self, routed: Routed[Detail], committed_ms: float, trace_id: str | None = None
    ) -> AuditLine: ...


def traceparent_of(record: InputRecord) -> bytes | None:
    return next((v for k, v in record.headers if k == _TRACEPARENT), None)


def _key_text(key: bytes | None) -> str | None:
    if key is None:
        return None
    try:
        return key.decode("utf-8")
    except UnicodeDecodeError:
        return None


def dead_letter_source(record: InputRecord) -> dict[str, object]:
    """A dead letter's `source`: the record's coordinates, timestamp and key (as UTF-8 text,
    null when absent or not UTF-8)."""
    return {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "timestamp_ms": record.timestamp,
        "key": _key_text(record.key),
    }


def dead_letter_room(max_bytes: int | None, key: bytes | None, shrink: int) -> int | None:
    """The room for a dead letter of a record with this key on a topic of `max_bytes`; halved
    `shrink` times after a broker refused the record as too large anyway."""
    if max_bytes is None:
        return None
    return (max_bytes - RECORD_OVERHEAD_BYTES - len(key or b"")) >> shrink


class OutboundMapping:
    """Decides records with the scrubber and maps each decision to its output and audit."""

    def __init__(self, *, scrubber: Scrubber, topics: OutputTopics, worker_id: str) -> None:
        self._scrubber = scrubber
        self._topics = topics
        self._worker_id = worker_id
        self._topic_by_outcome = {
            "clean": topics.clean,
            "needs_review": topics.review,
            DEAD_LETTER: topics.dead_letter,
        }
        self._ruleset_version = scrubber.ruleset.version.encode()
        result_max = min(
            (size for t in (topics.clean, topics.review) if (size := topics.max_bytes.get(t))),
            default=None,
        )
        self._result_room = None if result_max is None else result_max - RECORD_OVERHEAD_BYTES
        self._dead_letter_max = topics.max_bytes.get(topics.dead_letter)

    def _limits(self, key: bytes | None, shrink: int) -> DocumentLimits:
        """The room for each document of a record with this key; halved `shrink` times after
        a broker refused the record as too large anyway."""
        result = self._result_room
        if shrink and result is not None:
            result >>= shrink
        return DocumentLimits(
            result=result, dead_letter=dead_letter_room(self._dead_letter_max, key, shrink)
        )

    @staticmethod
    def _sources(record: InputRecord) -> tuple[dict[str, object], dict[str, object]]:
        result_source: dict[str, object] = {
            "topic": record.topic,
            "partition": record.partition,
            "offset": record.offset,
        }
        return result_source, dead_letter_source(record)

    def route(self, record: InputRecord, decided_at: str, *, shrink: int = 0) -> Routed[Decision]:
        """Decide the record and build its output (never raises for bad input)."""
        result_source, dead_letter_source = self._sources(record)
        decision = self._scrubber.decide(
            record.value or b"",
            result_source=result_source,
            dead_letter_source=dead_letter_source,
            decided_at=decided_at,
            limits=self._limits(record.key, shrink),
        )
        return self._routed(record, decision)

    def processing_error(
        self,
        record: InputRecord,
        decided_at: str,
        *,
        attempts: int,
        error_type: str,
        shrink: int = 0,
    ) -> Routed[Decision]:
        """The dead letter of a record the worker failed on `attempts` times."""
        _, dead_letter_source = self._sources(record)
        decision = self._scrubber.processing_error(
            record.value or b"",
            attempts=attempts,
            error_type=error_type,
            dead_letter_source=dead_letter_source,
            decided_at=decided_at,
            limits=self._limits(record.key, shrink),
        )
        return self._routed(record, decision)

    def _routed(self, record: InputRecord, decision: Decision) -> Routed[Decision]:
        claim_id = (decision.claim_id or "").encode()
        headers = [
            ("content-type", _JSON),
            ("event-id", (decision.event_id or "").encode()),
            ("claim-id", claim_id),
            ("outcome", decision.outcome.encode()),
            ("ruleset-version", self._ruleset_version),
        ]
        traceparent = traceparent_of(record)
        if traceparent is not None:
            headers.append((_TRACEPARENT, traceparent))
        output = OutboundRecord(
            topic=self._topic_by_outcome[decision.outcome],
            key=record.key if decision.is_dead_letter else claim_id,
            value=decision.document,
            headers=headers,
        )
        tally = Tally(
            (decision.outcome,),
            () if decision.dead_letter_kind is None else (decision.dead_letter_kind.value,),
            decision.findings,
        )
        return Routed(record, decision, (output,), tally, traceparent)

    def audit(
        self, routed: Routed[Decision], committed_ms: float, trace_id: str | None = None
    ) -> AuditLine:
        """The audit event name and its allow-listed fields (contract section 5), with the
        batch's trace id when tracing is on."""
        decision, record = routed.detail, routed.record
        fields: dict[str, object] = {
            "event_id": decision.event_id,
            "claim_id": decision.claim_id,
            "claim_version": decision.claim_version,
            "outcome": decision.outcome,
            "rule_ids": list(decision.rule_ids),
            "ruleset_version": self._scrubber.ruleset.version,
            "source_topic": record.topic,
            "source_partition": record.partition,
            "source_offset": record.offset,
            "output_topic": routed.outputs[0].topic,
            "latency_ms": max(0, round(committed_ms - record.timestamp)),
            "worker_id": self._worker_id,
        }
        if trace_id is not None:
            fields["trace_id"] = trace_id
        if decision.dead_letter_kind is None:
            return AuditLine("claim.scrubbed", fields)
        fields["dead_letter_kind"] = decision.dead_letter_kind.value
        return AuditLine("claim.dead_lettered", fields, warning=True)
