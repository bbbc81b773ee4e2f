"""ScrubMapping, the pure part of the worker: what one claim event is published as."""

import base64
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest

from claim_scrubber.adapters.kafka.outbound import OutputTopics
from claim_scrubber.adapters.kafka.scrub_mapping import ScrubMapping
from claim_scrubber.adapters.ruleset_file import load_ruleset
from claim_scrubber.models import DeadLetter
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


def _replayed(letter: dict[str, Any]) -> tuple[bytes | None, list[tuple[str, bytes | None]], bytes]:
    """The record a dead letter gives back (contract section 4, "Replayable")."""
    source = letter["source"]
    key = (
        base64.b64decode(source["key_base64"])
        if source["key_base64"] is not None
        else None
        if source["key"] is None
        else source["key"].encode()
    )
    headers = [
        (h["name"], None if h["value_base64"] is None else base64.b64decode(h["value_base64"]))
        for h in source["headers"]
    ]
    return key, headers, base64.b64decode(letter["payload_base64"])


@pytest.mark.parametrize(
    "key", [b"CLM-2026-000123", b"\xff\xfe not utf-8", None], ids=["text", "bytes", "none"]
)
def test_a_dead_letter_gives_back_its_record_byte_for_byte(key: bytes | None) -> None:
    headers = [("traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")]
    headers += [("producer", b"\x00\x01binary"), ("producer", b"twice, in order")]
    record = Record(b"{not json", key=key, headers=headers)

    (output,) = mapping().route(record, "2026-12-06T12:00:00.000Z").outputs

    assert output.value is not None
    letter = orjson.loads(output.value)
    DeadLetter.model_validate(letter)
    assert _replayed(letter) == (key, headers, b"{not json")
    assert (letter["source"]["key"] is None) == (key != b"CLM-2026-000123")
