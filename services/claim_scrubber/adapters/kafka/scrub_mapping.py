"""The worker's mapping: a claim event to its scrub result or dead letter, and its audit line.

Pure: no Kafka client, no clock, no logging. Each document is bounded by its topic's size
(outbound.py), so a record never becomes an output its topic refuses.
"""

from claim_scrubber.adapters.kafka.history import HistoryTables
from claim_scrubber.adapters.kafka.outbound import (
    JSON,
    RECORD_OVERHEAD_BYTES,
    TRACEPARENT,
    AuditLine,
    InputRecord,
    MetricCounts,
    OutputTopics,
    Routed,
    dead_letter_room,
    dead_letter_source,
    traceparent_of,
)
from claim_scrubber.adapters.kafka.ownership import OutboundRecord
from claim_scrubber.models import ClaimEvent
from claim_scrubber.scrubber import DEAD_LETTER, VOIDED, Decision, DocumentLimits, Scrubber
from claim_scrubber.scrubber.history import history_document

__all__ = ["ScrubMapping"]


class ScrubMapping:
    """Decides records with the scrubber and maps each decision to its output and audit."""

    def __init__(
        self,
        *,
        scrubber: Scrubber,
        topics: OutputTopics,
        worker_id: str,
        history: tuple[HistoryTables, str] | None = None,
    ) -> None:
        """`history`: each partition's history table and the changelog topic its changes
        are written to (same partition number); None: history is off."""
        self._history = history
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

    def _limits(self, record: InputRecord, shrink: int) -> DocumentLimits:
        """The room for each document of this record; halved `shrink` times after a broker
        refused the record as too large anyway."""
        result = self._result_room
        if shrink and result is not None:
            result >>= shrink
        return DocumentLimits(
            result=result, dead_letter=dead_letter_room(self._dead_letter_max, record, shrink)
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
            limits=self._limits(record, shrink),
            history=None if self._history is None else self._history[0].table(record.partition),
        )
        return self._routed(record, decision)

    def admit(
        self, record: InputRecord, decided_at: str, *, shrink: int = 0
    ) -> ClaimEvent | Routed[Decision]:
        """The record as a valid ClaimEvent, or routed as its dead letter (never raises for bad
        input): what claim history's re-keying stage does before it keys a record by patient."""
        _, dead_letter_source = self._sources(record)
        read = self._scrubber.admit(
            record.value or b"",
            dead_letter_source=dead_letter_source,
            decided_at=decided_at,
            limits=self._limits(record, shrink),
        )
        if isinstance(read, Decision):
            return self._routed(record, read)
        return read.event

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
            limits=self._limits(record, shrink),
        )
        return self._routed(record, decision)

    def _changelog(self, record: InputRecord, decision: Decision) -> tuple[OutboundRecord, ...]:
        """The history change the record made, as its changelog record."""
        change = decision.history_change
        if change is None or self._history is None:
            return ()
        tables, topic = self._history
        value = history_document(change.history)
        tables.written(record.partition, change.patient, len(value or b""))
        return (OutboundRecord(topic, change.patient.encode(), value, [], record.partition),)

    def _routed(self, record: InputRecord, decision: Decision) -> Routed[Decision]:
        traceparent = traceparent_of(record)
        changelog = self._changelog(record, decision)
        if decision.is_void:  # no result: the audit line is all (docs/sending-claims/index.md)
            counts = MetricCounts((VOIDED,), (), ())
            return Routed(record, decision, changelog, counts, traceparent)
        claim_id = (decision.claim_id or "").encode()
        headers = [
            ("content-type", JSON),
            ("event-id", (decision.event_id or "").encode()),
            ("claim-id", claim_id),
            ("outcome", decision.outcome.encode()),
            ("ruleset-version", self._ruleset_version),
        ]
        if traceparent is not None:
            headers.append((TRACEPARENT, traceparent))
        output = OutboundRecord(
            topic=self._topic_by_outcome[decision.outcome],
            key=record.key if decision.is_dead_letter else claim_id,
            value=decision.document,
            headers=headers,
        )
        counts = MetricCounts(
            (decision.outcome,),
            () if decision.dead_letter_kind is None else (decision.dead_letter_kind.value,),
            decision.findings,
        )
        return Routed(record, decision, (output, *changelog), counts, traceparent)

    def audit(
        self, routed: Routed[Decision], committed_ms: float, trace_id: str | None = None
    ) -> AuditLine:
        """The audit event name and its allow-listed fields (docs/operating/monitoring.md), with
        the batch's trace id when tracing is on."""
        decision, record = routed.detail, routed.record
        fields = decision.audit_fields(self._scrubber.ruleset.version) | {
            "source_topic": record.topic,
            "source_partition": record.partition,
            "source_offset": record.offset,
            "output_topic": None if decision.is_void else routed.outputs[0].topic,
            "latency_ms": max(0, round(committed_ms - record.timestamp)),
            "worker_id": self._worker_id,
        }
        if trace_id is not None:
            fields["trace_id"] = trace_id
        if decision.dead_letter_kind is None:
            return AuditLine(decision.audit_event, fields)
        fields["dead_letter_kind"] = decision.dead_letter_kind.value
        return AuditLine(decision.audit_event, fields, warning=True)
