"""What every stage's mapping shares: the input record, what it was decided to be (outputs,
metric counts, audit line), and the size arithmetic that keeps each output within its topic.

Pure: no Kafka client, no clock, no logging. The topics' size limits (read from the brokers
at start) bound every document, so a record never becomes an output its topic refuses.
"""

import binascii
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Generic, Protocol, TypeVar

from claim_scrubber.adapters.conversion import REJECTED_CLAIMS_LISTED
from claim_scrubber.adapters.kafka.ownership import OutboundRecord

__all__ = [
    "JSON",
    "RECORD_OVERHEAD_BYTES",
    "TRACEPARENT",
    "AuditLine",
    "InputRecord",
    "MetricCounts",
    "OutputTopics",
    "RecordMapping",
    "Routed",
    "dead_letter_bytes_needed",
    "dead_letter_room",
    "dead_letter_source",
    "result_bytes_needed",
    "traceparent_of",
]

JSON: Final = b"application/json"
TRACEPARENT: Final = "traceparent"

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
Detail_co = TypeVar("Detail_co", covariant=True)


@dataclass(frozen=True, slots=True)
class MetricCounts:
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
class Routed(Generic[Detail_co]):
    """One input record, what it was decided to be, and the records to publish for it."""

    record: InputRecord
    detail: Detail_co
    outputs: tuple[OutboundRecord, ...]
    counts: MetricCounts
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
    ) -> AuditLine | None:
        """The committed record's audit line (None: a stage that decides nothing, the
        re-keying one, writes none)."""
        ...


def traceparent_of(record: InputRecord) -> bytes | None:
    return next((v for k, v in record.headers if k == TRACEPARENT), None)


def _key_text(key: bytes | None) -> str | None:
    if key is None:
        return None
    try:
        return key.decode("utf-8")
    except UnicodeDecodeError:
        return None


def dead_letter_source(record: InputRecord) -> dict[str, object]:
    """A dead letter's `source`: the record's coordinates, timestamp, key and headers, enough
    to publish the record again byte for byte (docs/operating/dead-letters.md): the key as
    UTF-8 text, or its bytes in base64 when it is not UTF-8; every header in order."""
    key = _key_text(record.key)
    return {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "timestamp_ms": record.timestamp,
        "key": key,
        "key_base64": (None if key is not None or record.key is None else _base64(record.key)),
        "headers": [
            {"name": name, "value_base64": None if value is None else _base64(value)}
            for name, value in record.headers
        ],
    }


def _base64(data: bytes) -> str:
    return binascii.b2a_base64(data, newline=False).decode("ascii")


_HEADER_ENVELOPE_BYTES: Final = 40
"""A header in a dead letter beyond its name and base64 value: `{"name":"","value_base64":""}`."""


def dead_letter_room(max_bytes: int | None, record: InputRecord, shrink: int) -> int | None:
    """The room for a dead letter of this record (beside its key and headers, which it keeps
    whole) on a topic of `max_bytes`; halved `shrink` times after a broker refused the record
    as too large anyway."""
    if max_bytes is None:
        return None
    kept = 2 * len(record.key or b"") + sum(
        len(name) + -(-len(value or b"") // 3) * 4 + _HEADER_ENVELOPE_BYTES
        for name, value in record.headers
    )
    return (max_bytes - RECORD_OVERHEAD_BYTES - kept) >> shrink
