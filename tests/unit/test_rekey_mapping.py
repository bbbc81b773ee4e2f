"""The re-keying stage of claim history (history on): a claim goes on keyed by its patient; a
record that is not a usable claim event is answered there, exactly as without history."""

import orjson

from claim_scrubber.adapters.kafka.history import HistoryTables
from claim_scrubber.adapters.kafka.outbound import OutputTopics
from claim_scrubber.adapters.kafka.rekey_mapping import RekeyMapping
from claim_scrubber.adapters.kafka.scrub_mapping import ScrubMapping
from claim_scrubber.adapters.ruleset_file import load_ruleset
from claim_scrubber.models import ClaimEvent
from claim_scrubber.scrubber import Scrubber
from claim_scrubber.scrubber.history import patient_key
from tests.claims import default_event, event_bytes, patched
from tests.unit.test_scrub_mapping import Record

SECRET = b"rekey-test-secret"


def rekey() -> RekeyMapping:
    scrubbing = ScrubMapping(
        scrubber=Scrubber(load_ruleset(), max_message_bytes=4096),
        topics=OutputTopics("claims.clean", "claims.needs-review", "claims.dead-letter", {}),
        worker_id="unit",
        history=(HistoryTables(SECRET, 400), "claims.history"),
    )
    return RekeyMapping(secret=SECRET, output_topic="claims.by-patient", dead_letters=scrubbing)


def test_a_claim_goes_on_unchanged_keyed_by_its_patient() -> None:
    value = event_bytes(default_event())
    record = Record(value, headers=[("traceparent", b"t")])

    routed = rekey().route(record, "2026-12-06T12:00:00.000Z")

    [output] = routed.outputs
    expected_key = patient_key(SECRET, ClaimEvent.model_validate_json(value))
    assert (output.topic, output.key, output.value) == (
        "claims.by-patient",
        expected_key.encode() if expected_key else None,
        value,
    )
    assert output.headers == [("traceparent", b"t")]
    assert rekey().audit(routed, committed_ms=0) is None  # the scrubbing stage writes its line


def test_a_claim_that_does_not_validate_is_a_dead_letter_with_the_input_key_and_coordinates() -> (
    None
):
    broken = event_bytes(patched(default_event(), {"claim.lines[1].units": "twenty"}))
    record = Record(broken, key=b"CLM-BROKEN", topic="claims.submitted", partition=3, offset=9)

    routed = rekey().route(record, "2026-12-06T12:00:00.000Z")

    [output] = routed.outputs
    letter = orjson.loads(output.value or b"")
    assert output.topic == "claims.dead-letter"
    assert output.key == b"CLM-BROKEN"
    assert letter["error"]["kind"] == "schema_violation"
    assert (letter["source"]["topic"], letter["source"]["partition"]) == ("claims.submitted", 3)
    assert (letter["source"]["offset"], letter["source"]["key"]) == (9, "CLM-BROKEN")
    line = rekey().audit(routed, committed_ms=0)
    assert line is not None
    assert line.event == "claim.dead_lettered"
    assert routed.counts.outcomes == ("dead_letter",)


def test_a_record_too_large_is_a_dead_letter_of_the_input_too() -> None:
    record = Record(b'{"schema_version": "1", "x": "' + b"y" * 5000 + b'"}', key=None)

    [output] = rekey().route(record, "2026-12-06T12:00:00.000Z").outputs

    assert output.topic == "claims.dead-letter"
    assert orjson.loads(output.value or b"")["error"]["kind"] == "too_large"
