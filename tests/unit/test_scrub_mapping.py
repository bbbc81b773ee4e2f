"""ScrubMapping, the pure part of the worker: what one claim event is published as."""

from dataclasses import dataclass, field

from claim_scrubber.adapters.kafka.outbound import OutputTopics
from claim_scrubber.adapters.kafka.scrub_mapping import ScrubMapping
from claim_scrubber.adapters.ruleset_file import load_ruleset
from claim_scrubber.scrubber import Scrubber
from tests.claims import default_event, event_bytes, patched


@dataclass(frozen=True)
class Record:
    value: bytes | None
    key: bytes | None = b"CLM-2026-000123"
    topic: str = "claims.submitted"
    partition: int = 2
    offset: int = 17
    timestamp: int = 1_764_000_000_000
    headers: list[tuple[str, bytes]] = field(default_factory=list)


def mapping() -> ScrubMapping:
    topics = OutputTopics("claims.clean", "claims.needs-review", "claims.dead-letter", {})
    scrubber = Scrubber(load_ruleset(), max_message_bytes=1 << 20)
    return ScrubMapping(scrubber=scrubber, topics=topics, worker_id="unit")


def test_a_void_gets_no_result_and_one_claim_voided_audit_line() -> None:
    void = patched(default_event(), {"event_type": "claim.voided"})

    routed = mapping().route(Record(event_bytes(void)), "2026-12-06T12:00:00.000Z")
    line = mapping().audit(routed, committed_ms=1_764_000_000_040)

    assert routed.outputs == ()
    assert routed.counts.outcomes == ("voided",)
    assert line.event == "claim.voided"
    assert line.fields["claim_id"] == "CLM-2026-000123"
    assert line.fields["output_topic"] is None
    assert (line.fields["source_partition"], line.fields["source_offset"]) == (2, 17)


def test_a_submitted_claim_still_gets_its_result() -> None:
    routed = mapping().route(Record(event_bytes(default_event())), "2026-12-06T12:00:00.000Z")

    [output] = routed.outputs
    assert output.topic == "claims.clean"
    assert mapping().audit(routed, committed_ms=1_764_000_000_040).event == "claim.scrubbed"
