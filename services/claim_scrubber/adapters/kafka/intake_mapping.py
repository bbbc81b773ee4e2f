"""Intake's mapping: one inbound record (an 837P interchange or a FHIR Claim/Bundle) to one
ClaimEvent per usable claim on the worker's input topic, at most one dead letter (listing every
unusable claim, with the record's bytes once), and one audit line.

Pure: no Kafka client, no clock, no logging. The ClaimEvents are keyed by claim id like the
billing platform's own events, so a claim's versions stay in one partition of claims.submitted.
"""

from dataclasses import dataclass
from typing import Final

from claim_scrubber.adapters.conversion import Format, Intake, audit_fields, rejection_document
from claim_scrubber.adapters.kafka.outbound import (
    JSON,
    AuditLine,
    InputRecord,
    MetricCounts,
    Routed,
    dead_letter_room,
    dead_letter_source,
    traceparent_of,
)
from claim_scrubber.adapters.kafka.ownership import OutboundRecord
from claim_scrubber.formats import Conversion, ConvertedClaim
from claim_scrubber.models import DeadLetterKind
from claim_scrubber.scrubber import dead_letter_document

__all__ = ["IntakeMapping", "IntakeOutcome"]

CONVERTED: Final = "converted"
VOIDED: Final = "voided"
DEAD_LETTER: Final = "dead_letter"


@dataclass(frozen=True, slots=True)
class IntakeOutcome:
    """What one inbound record became (the conversion), or its processing error."""

    conversion: Conversion
    processing_error: str | None = None


class IntakeMapping:
    def __init__(
        self,
        *,
        intake: Intake,
        format_name: Format,
        output_topic: str,
        dead_letter_topic: str,
        dead_letter_max_bytes: int | None,
        worker_id: str,
        ruleset_version: str,
    ) -> None:
        self._ruleset_version = ruleset_version.encode()
        self._intake = intake
        self._format: Format = format_name
        self._output_topic = output_topic
        self._dead_letter_topic = dead_letter_topic
        self._dead_letter_max = dead_letter_max_bytes
        self._worker_id = worker_id

    def _headers(
        self, record: InputRecord, pairs: list[tuple[str, bytes]]
    ) -> list[tuple[str, bytes]]:
        traceparent = traceparent_of(record)
        headers = [("content-type", JSON), *pairs]
        if traceparent is not None:
            headers.append(("traceparent", traceparent))
        return headers

    def _dead_letter(
        self, record: InputRecord, document: bytes, claim_id: str | None
    ) -> OutboundRecord:
        """A dead letter keyed like its record, with the headers of every output
        (docs/consuming-results/index.md): no event id, the (first) unusable claim's id where
        known."""
        return OutboundRecord(
            topic=self._dead_letter_topic,
            key=record.key,
            value=document,
            headers=self._headers(
                record,
                [
                    ("event-id", b""),
                    ("claim-id", (claim_id or "").encode()),
                    ("outcome", DEAD_LETTER.encode()),
                    ("ruleset-version", self._ruleset_version),
                ],
            ),
        )

    def route(
        self, record: InputRecord, decided_at: str, *, shrink: int = 0
    ) -> Routed[IntakeOutcome]:
        """Convert the record; never raises for bad input."""
        payload = record.value or b""
        conversion = self._intake.convert(self._format, payload)
        room = dead_letter_room(self._dead_letter_max, record, shrink)
        outputs = [
            OutboundRecord(
                topic=self._output_topic,
                key=claim.claim_id.encode(),
                value=claim.document,
                headers=self._headers(
                    record,
                    [
                        ("event-id", claim.event_id.encode()),
                        ("claim-id", claim.claim_id.encode()),
                    ],
                ),
            )
            for claim in conversion.claims
            if isinstance(claim, ConvertedClaim)
        ]
        letter = rejection_document(
            payload, conversion, dead_letter_source(record), decided_at, room
        )
        if letter is not None:
            first = conversion.rejected[0]
            outputs.append(self._dead_letter(record, letter, first.claim_id))
        voided = conversion.voided
        counts = MetricCounts(
            (CONVERTED,) * (len(conversion.converted) - voided)
            + (VOIDED,) * voided
            + (DEAD_LETTER,) * conversion.rejected_count,
            tuple(kind.value for kind in conversion.rejected_kinds()),
        )
        return Routed(
            record, IntakeOutcome(conversion), tuple(outputs), counts, traceparent_of(record)
        )

    def processing_error(
        self,
        record: InputRecord,
        decided_at: str,
        *,
        attempts: int,
        error_type: str,
        shrink: int = 0,
    ) -> Routed[IntakeOutcome]:
        """The dead letter of an inbound record intake failed on `attempts` times."""
        message = (
            f"intake failed on this record {attempts} times ({error_type}); it is not retried again"
        )
        document = dead_letter_document(
            record.value or b"",
            DeadLetterKind.PROCESSING_ERROR,
            message,
            dead_letter_source(record),
            decided_at,
            limit=dead_letter_room(self._dead_letter_max, record, shrink),
        )
        output = self._dead_letter(record, document, None)
        counts = MetricCounts((DEAD_LETTER,), (DeadLetterKind.PROCESSING_ERROR.value,))
        return Routed(
            record, IntakeOutcome(Conversion(), message), (output,), counts, traceparent_of(record)
        )

    def audit(
        self, routed: Routed[IntakeOutcome], committed_ms: float, trace_id: str | None = None
    ) -> AuditLine:
        """One line per inbound record: what it became, never a claim's content."""
        record, outcome = routed.record, routed.detail
        fields: dict[str, object] = {
            "format": self._format,
            **audit_fields(outcome.conversion),
            "source_topic": record.topic,
            "source_partition": record.partition,
            "source_offset": record.offset,
            "output_topic": self._output_topic,
            "latency_ms": max(0, round(committed_ms - record.timestamp)),
            "worker_id": self._worker_id,
        }
        if trace_id is not None:
            fields["trace_id"] = trace_id
        if outcome.processing_error is not None:
            fields["dead_letter_kinds"] = [DeadLetterKind.PROCESSING_ERROR.value]
            return AuditLine("intake.dead_lettered", fields, warning=True)
        if not outcome.conversion.converted:
            return AuditLine("intake.dead_lettered", fields, warning=True)
        return AuditLine("intake.converted", fields, warning=bool(outcome.conversion.rejected))
