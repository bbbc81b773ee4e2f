"""The re-keying stage's mapping (history on, docs/operating/history.md): each input record goes on
to the input re-keyed by patient, bytes and headers unchanged, keyed by its patient key, so
all claims of one patient meet in one partition, in order.

Pure: no Kafka client, no clock, no logging. A record that is not a valid claim event is
answered here, as its dead letter with the input's key and coordinates, exactly as without
history; a claim that names no member keeps its own key (it has no history).
"""

from claim_scrubber.adapters.kafka.outbound import (
    AuditLine,
    InputRecord,
    MetricCounts,
    Routed,
    traceparent_of,
)
from claim_scrubber.adapters.kafka.ownership import OutboundRecord
from claim_scrubber.adapters.kafka.scrub_mapping import ScrubMapping
from claim_scrubber.models import ClaimEvent
from claim_scrubber.scrubber import Decision
from claim_scrubber.scrubber.history import patient_key

__all__ = ["RekeyMapping"]

_NOTHING_COUNTED = MetricCounts(())
"""The scrubbing stage counts each record's outcome: re-keying it counts nothing."""


class RekeyMapping:
    """Forwards every claim keyed by its patient (its own key when it names none); the
    detail is None, or the dead letter of a record that is not a claim or could not be
    forwarded."""

    def __init__(self, *, secret: bytes, output_topic: str, dead_letters: ScrubMapping) -> None:
        self._secret = secret
        self._output_topic = output_topic
        self._dead_letters = dead_letters

    def route(
        self, record: InputRecord, decided_at: str, *, shrink: int = 0
    ) -> Routed[Decision | None]:
        """A claim, unchanged, keyed by patient; anything else, its dead letter."""
        admitted = self._dead_letters.admit(record, decided_at, shrink=shrink)
        if not isinstance(admitted, ClaimEvent):
            return admitted
        patient = patient_key(self._secret, admitted)
        output = OutboundRecord(
            self._output_topic,
            record.key if patient is None else patient.encode(),
            record.value,
            list(record.headers),
        )
        return Routed(record, None, (output,), _NOTHING_COUNTED, traceparent_of(record))

    def processing_error(
        self,
        record: InputRecord,
        decided_at: str,
        *,
        attempts: int,
        error_type: str,
        shrink: int = 0,
    ) -> Routed[Decision | None]:
        """A record that could not be forwarded `attempts` times is a `processing_error`
        dead letter, as in the scrubbing stage."""
        return self._dead_letters.processing_error(
            record, decided_at, attempts=attempts, error_type=error_type, shrink=shrink
        )

    def audit(
        self, routed: Routed[Decision | None], committed_ms: float, trace_id: str | None = None
    ) -> AuditLine | None:
        """None for a forwarded record (the scrubbing stage writes its one audit line); a
        dead letter's, as the scrubbing stage writes it."""
        letter = routed.detail
        if letter is None:
            return None
        dead_lettered = Routed(routed.record, letter, routed.outputs, routed.counts)
        return self._dead_letters.audit(dead_lettered, committed_ms, trace_id)
