"""IntakeMapping, the pure part of Kafka intake: what one inbound record is published as."""

import base64
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from claim_scrubber.adapters.conversion import Intake, audit_fields
from claim_scrubber.adapters.kafka.intake_mapping import IntakeMapping
from claim_scrubber.adapters.kafka.ownership import OutboundRecord
from claim_scrubber.adapters.ruleset_file import load_ruleset
from claim_scrubber.formats import read_x12
from tests.formats.samples import interchange, q4390_claim, subscriber, transaction

BAD_LINES = ["LX*1", "SV1*HC:Q4390*X*UN*20***1", "DTP*472*D8*20261120"]
TRACEPARENT = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@dataclass(frozen=True)
class Record:
    value: bytes | None
    key: bytes | None = b"batch-7"
    topic: str = "claims.inbound.x12"
    partition: int = 3
    offset: int = 41
    timestamp: int = 1_764_000_000_000
    headers: list[tuple[str, bytes]] = field(default_factory=lambda: [("traceparent", TRACEPARENT)])


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _document(record: OutboundRecord) -> Any:
    assert record.value is not None
    return orjson.loads(record.value)


def mapping(dead_letter_max_bytes: int | None = 2 * 1024 * 1024) -> IntakeMapping:
    return IntakeMapping(
        intake=Intake(load_ruleset().payer_directory, ZoneInfo("UTC")),
        format_name="x12",
        output_topic="claims.submitted",
        dead_letter_topic="claims.dead-letter",
        dead_letter_max_bytes=dead_letter_max_bytes,
        worker_id="unit",
        ruleset_version=load_ruleset().version,
    )


def batch() -> bytes:
    return interchange(
        transaction(
            subscriber(2),
            q4390_claim("A-1"),
            q4390_claim("A-2", frequency="8"),
            q4390_claim("A-3", lines=BAD_LINES),
        )
    )


def test_each_claim_is_a_keyed_event_and_an_unusable_claim_a_dead_letter_of_the_record() -> None:
    data = batch()
    routed = mapping().route(Record(data), "2026-11-28T12:00:00.000Z")
    event, void, dead = routed.outputs
    assert _document(void)["event_type"] == "claim.voided"  # forwarded (contract v1.2)
    assert (event.topic, event.key) == ("claims.submitted", b"A-1")
    assert _document(event)["claim"]["claim_id"] == "A-1"
    assert dict(event.headers)["traceparent"] == TRACEPARENT
    assert dict(event.headers)["event-id"] == _document(event)["event_id"].encode()
    assert (dead.topic, dead.key) == ("claims.dead-letter", b"batch-7")
    letter = _document(dead)
    assert letter["error"]["kind"] == "invalid_x12"
    assert letter["source"] == {
        "topic": "claims.inbound.x12",
        "partition": 3,
        "offset": 41,
        "timestamp_ms": 1_764_000_000_000,
        "key": "batch-7",
        "key_base64": None,
        "headers": [
            {"name": "traceparent", "value_base64": base64.b64encode(TRACEPARENT).decode()}
        ],
        "claim_index": 3,
    }
    assert base64.b64decode(letter["payload_base64"]) == data
    assert routed.counts.outcomes == ("converted", "voided", "dead_letter")
    assert routed.counts.dead_letter_kinds == ("invalid_x12",)


def test_the_audit_line_counts_the_claims_and_never_carries_their_content() -> None:
    routed = mapping().route(Record(batch()), "2026-11-28T12:00:00.000Z")
    line = mapping().audit(routed, committed_ms=1_764_000_000_250, trace_id="abc")
    assert line.event == "intake.converted"
    assert line.warning  # a claim was dead-lettered
    assert line.fields["claims_converted"] == 2  # the void is forwarded
    assert line.fields["claims_voided"] == 1
    assert line.fields["claims_dead_lettered"] == 1
    assert line.fields["latency_ms"] == 250
    assert line.fields["trace_id"] == "abc"
    text = orjson.dumps(line.fields)
    assert b"CANARY" not in text
    assert b"L97" not in text


def test_an_unusable_record_is_one_dead_letter_and_a_dead_lettered_audit_line() -> None:
    routed = mapping().route(Record(b"not x12", key=None), "2026-11-28T12:00:00.000Z")
    [dead] = routed.outputs
    assert _document(dead)["source"]["claim_index"] is None
    assert mapping().audit(routed, 0).event == "intake.dead_lettered"


def test_a_record_intake_keeps_failing_on_becomes_a_processing_error_dead_letter() -> None:
    data = batch()
    routed = mapping().processing_error(
        Record(data), "2026-11-28T12:00:00.000Z", attempts=3, error_type="RuntimeError"
    )
    [dead] = routed.outputs
    letter = _document(dead)
    assert letter["error"]["kind"] == "processing_error"
    assert "3 times (RuntimeError)" in letter["error"]["message"]
    assert base64.b64decode(letter["payload_base64"]) == data
    assert mapping().audit(routed, 0).fields["dead_letter_kinds"] == ["processing_error"]


def test_a_dead_letter_that_would_not_fit_its_topic_is_cut_with_the_whole_records_hash() -> None:
    data = batch()
    routed = mapping(dead_letter_max_bytes=2 * 1024).route(Record(data), "2026-11-28T12:00:00.000Z")
    letter = _document(routed.outputs[-1])
    assert letter["payload_truncated"] is True
    assert letter["payload_bytes"] == len(data)
    assert len(routed.outputs[-1].value or b"") <= 2 * 1024 - 1024 - len(
        b"batch-7"
    )  # beside framing, key


def test_a_record_with_many_unusable_claims_is_one_dead_letter_listing_each() -> None:
    parts = [subscriber(2), q4390_claim("G-1")]
    parts += [q4390_claim(f"B-{n}", lines=BAD_LINES) for n in range(5)]
    parts += [q4390_claim("G-2")]
    data = interchange(transaction(*parts))

    routed = mapping().route(Record(data), "2026-11-28T12:00:00.000Z")

    events = [o for o in routed.outputs if o.topic == "claims.submitted"]
    [dead] = [o for o in routed.outputs if o.topic == "claims.dead-letter"]
    assert [event.key for event in events] == [b"G-1", b"G-2"]
    letter = _document(dead)
    assert base64.b64decode(letter["payload_base64"]) == data  # the record's bytes, once
    assert [(r["claim_index"], r["claim_id"], r["kind"]) for r in letter["rejected_claims"]] == [
        (index, f"B-{index - 2}", "invalid_x12") for index in range(2, 7)
    ]
    assert all("SV102" in r["message"] for r in letter["rejected_claims"])
    assert letter["error"]["kind"] == "invalid_x12"
    assert "5 of 7 claims" in letter["error"]["message"]
    assert routed.counts.outcomes.count("dead_letter") == 5  # claims, for the metrics


def test_an_intake_dead_letter_carries_the_contract_headers_and_names_the_claim() -> None:
    routed = mapping().route(Record(batch()), "2026-11-28T12:00:00.000Z")

    dead = routed.outputs[-1]

    assert dict(dead.headers) == {
        "content-type": b"application/json",
        "event-id": b"",
        "claim-id": b"A-3",
        "outcome": b"dead_letter",
        "ruleset-version": load_ruleset().version.encode(),
        "traceparent": TRACEPARENT,
    }


def test_the_list_of_rejected_claims_is_bounded_and_counts_the_rest() -> None:
    parts = [subscriber(2)]
    parts += [q4390_claim(f"B-{n}", lines=BAD_LINES) for n in range(130)]
    data = interchange(transaction(*parts))

    routed = mapping().route(Record(data), "2026-11-28T12:00:00.000Z")

    [dead] = routed.outputs
    letter = _document(dead)
    assert len(letter["rejected_claims"]) == 100
    assert letter["rejected_claims_not_listed"] == 30
    assert "130 of 130 claims" in letter["error"]["message"]
    assert base64.b64decode(letter["payload_base64"]) == data
    assert routed.counts.outcomes.count("dead_letter") == 130
    assert routed.counts.dead_letter_kinds == ("invalid_x12",) * 130


def test_only_the_listed_unusable_claims_are_held_in_memory_the_rest_are_counted() -> None:
    parts = [subscriber(2)]
    parts += [q4390_claim(f"B-{n}", lines=BAD_LINES) for n in range(130)]
    parts += [q4390_claim("G-1")]

    conversion = read_x12(
        interchange(transaction(*parts)),
        directory=load_ruleset().payer_directory,
        zone=ZoneInfo("UTC"),
    )

    assert len(conversion.rejected) == 100
    assert conversion.rejected_count == 130
    assert conversion.claim_count == 131
    assert [claim.claim_id for claim in conversion.converted] == ["G-1"]
    assert audit_fields(conversion)["claims_dead_lettered"] == 130
