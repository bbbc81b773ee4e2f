"""The worker on a real broker: routing, keys, headers, dead letters, exactly once, no PHI."""

import base64
import signal

import pytest

from tests.claims import canary_event, default_event, event_bytes, patched, phi_strings
from tests.conftest import WorkerStarter
from tests.kafka_harness import Topics, collect, committed_offsets, input_end_offsets, produce

pytestmark = [pytest.mark.kafka]


def _claim(number: int, **patch: object) -> bytes:
    document = patched(
        default_event(),
        {"event_id": f"ev-{number}", "claim.claim_id": f"CLM-{number}", **patch},
    )
    return event_bytes(document)


AUDIT_FIELDS = {
    "event",
    "timestamp",
    "level",
    "event_id",
    "claim_id",
    "claim_version",
    "outcome",
    "rule_ids",
    "ruleset_version",
    "source_topic",
    "source_partition",
    "source_offset",
    "output_topic",
    "latency_ms",
    "worker_id",
}


class TestRouting:
    async def test_each_outcome_lands_on_its_topic_with_the_contract_key_and_headers(
        self, kafka_bootstrap: str, topics: Topics, start_worker: WorkerStarter
    ) -> None:
        worker = start_worker()
        await produce(
            kafka_bootstrap,
            topics.input,
            [
                (b"CLM-1", _claim(1)),
                (b"CLM-2", _claim(2, **{"claim.billing_provider.npi": "1245319598"})),
                (b"raw-key", b"{not json"),
            ],
        )
        tally = await collect(kafka_bootstrap, topics, expected=3)

        by_topic = {output.topic: output for output in tally.outputs}
        assert tally.by_topic() == {topics.clean: 1, topics.review: 1, topics.dead_letter: 1}
        clean, review, dead = (by_topic[t] for t in topics.outputs)
        assert clean.key == b"CLM-1"
        assert clean.headers == {
            "content-type": b"application/json",
            "event-id": b"ev-1",
            "claim-id": b"CLM-1",
            "outcome": b"clean",
            "ruleset-version": b"2026.12.0",
        }
        assert review.key == b"CLM-2"
        assert review.headers["outcome"] == b"needs_review"
        assert [f["rule_id"] for f in review.body["findings"]] == [
            "CLM-001",
            "PRICE-001",
        ]
        assert dead.key == b"raw-key"
        assert dead.headers["outcome"] == b"dead_letter"
        # contract section 5: one audit line per decision, with these fields (and no others
        # beyond the trace id)
        await worker.wait_for_event("claim.dead_lettered")
        [scrubbed] = [
            line for line in worker.events("claim.scrubbed") if line["claim_id"] == "CLM-2"
        ]
        assert set(scrubbed) - {"trace_id"} == AUDIT_FIELDS
        assert scrubbed["rule_ids"] == ["CLM-001"]
        assert scrubbed["output_topic"] == topics.review
        assert (scrubbed["source_topic"], scrubbed["event_id"]) == (topics.input, "ev-2")
        assert scrubbed["level"] == "info"
        assert dead.body["error"]["kind"] == "invalid_json"
        assert base64.b64decode(dead.body["payload_base64"]) == b"{not json"

    async def test_a_record_without_a_key_is_keyed_by_the_claim_id_from_its_body(
        self, kafka_bootstrap: str, topics: Topics, start_worker: WorkerStarter
    ) -> None:
        start_worker()
        await produce(kafka_bootstrap, topics.input, [(None, _claim(7))])
        tally = await collect(kafka_bootstrap, topics, expected=1)
        assert [output.key for output in tally.outputs] == [b"CLM-7"]

    async def test_every_dead_letter_kind_is_published_with_the_original_bytes(
        self, kafka_bootstrap: str, topics: Topics, start_worker: WorkerStarter
    ) -> None:
        start_worker(SCRUBBER_MAX_MESSAGE_BYTES="4096")
        unusable = {
            "too_large": _claim(1, **{"claim.lines[0].note": "x" * 5000}),
            "invalid_encoding": b'{"schema_version": "1", "x": "\xff"}',
            "invalid_json": b'{"schema_version": "1",',
            "not_an_object": b'["schema_version", "1"]',
            "unsupported_schema_version": _claim(2, schema_version="2"),
            "schema_violation": _claim(3, **{"claim.lines[0].units": "one"}),
        }
        await produce(
            kafka_bootstrap,
            topics.input,
            [(kind.encode(), value) for kind, value in unusable.items()] + [(b"ok", _claim(4))],
        )
        tally = await collect(kafka_bootstrap, topics, expected=len(unusable) + 1)

        dead = {o.key.decode(): o for o in tally.outputs if o.topic == topics.dead_letter if o.key}
        assert {kind: o.body["error"]["kind"] for kind, o in dead.items()} == {
            kind: kind for kind in unusable
        }
        for kind, output in dead.items():
            assert base64.b64decode(output.body["payload_base64"]) == unusable[kind]
            assert output.body["source"]["topic"] == topics.input
        assert tally.by_topic()[topics.clean] == 1


class TestExactlyOnce:
    async def test_a_read_committed_consumer_sees_every_input_exactly_once(
        self, kafka_bootstrap: str, topics: Topics, start_worker: WorkerStarter
    ) -> None:
        records = [
            (f"CLM-{n}".encode() if n % 5 else None, _claim(n) if n % 7 else b"garbage")
            for n in range(600)
        ]
        await produce(kafka_bootstrap, topics.input, records)
        start_worker()
        tally = await collect(kafka_bootstrap, topics, expected=len(records))
        ends = await input_end_offsets(kafka_bootstrap, topics)

        assert len(tally.outputs) == len(records)
        assert tally.duplicates() == 0
        assert tally.missing(ends) == 0
        assert await committed_offsets(kafka_bootstrap, topics) == ends

    async def test_a_worker_killed_mid_stream_and_restarted_loses_and_duplicates_nothing(
        self, kafka_bootstrap: str, topics: Topics, start_worker: WorkerStarter
    ) -> None:
        total = 6000
        await produce(kafka_bootstrap, topics.input, [(None, _claim(n)) for n in range(total)])
        first = start_worker("w-killed", SCRUBBER_BATCH_MAX_RECORDS="200")
        await first.wait_for_event("claim.scrubbed")
        first.signal(signal.SIGKILL)
        await first.wait()
        scrubbed_before_kill = len(first.events("claim.scrubbed"))

        start_worker("w-restarted")
        tally = await collect(kafka_bootstrap, topics, expected=total)
        ends = await input_end_offsets(kafka_bootstrap, topics)

        assert scrubbed_before_kill < total, "the kill must land mid-stream"
        assert tally.duplicates() == 0
        assert tally.missing(ends) == 0
        assert len(tally.outputs) == total


class TestLifecycle:
    async def test_sigterm_stops_the_worker_with_exit_code_zero_and_says_so(
        self, kafka_bootstrap: str, topics: Topics, start_worker: WorkerStarter
    ) -> None:
        worker = start_worker()
        await worker.wait_for_event("partitions.assigned")
        await produce(kafka_bootstrap, topics.input, [(None, _claim(1))])
        await collect(kafka_bootstrap, topics, expected=1)
        worker.signal(signal.SIGTERM)

        assert await worker.wait() == 0
        assert worker.events("worker.stopping")
        assert worker.events("worker.stopped")

    async def test_no_log_line_carries_a_phi_value(
        self, kafka_bootstrap: str, topics: Topics, start_worker: WorkerStarter
    ) -> None:
        worker = start_worker(SCRUBBER_LOG_LEVEL="debug")
        clean = canary_event()
        violating = canary_event(**{"claim.patient.first_name": 42})
        rule_failing = canary_event(**{"claim.billing_provider.npi": "PHICANARY-NPI"})
        await produce(
            kafka_bootstrap,
            topics.input,
            [(None, event_bytes(doc)) for doc in (clean, violating, rule_failing)],
        )
        await collect(kafka_bootstrap, topics, expected=3)
        worker.signal(signal.SIGTERM)
        await worker.wait()

        logged = worker.all_output()
        assert len(worker.events("claim.scrubbed")) == 2
        assert len(worker.events("claim.dead_lettered")) == 1
        leaked = [canary for canary in phi_strings() if canary in logged]
        assert leaked == []


class TestBadStart:
    async def test_a_worker_with_an_unusable_ruleset_consumes_nothing(
        self, kafka_bootstrap: str, topics: Topics, start_worker: WorkerStarter
    ) -> None:
        await produce(kafka_bootstrap, topics.input, [(None, _claim(1))])
        worker = start_worker(SCRUBBER_RULESET="/nonexistent/ruleset.toml")

        assert await worker.wait() == 2
        assert len(worker.stderr_lines) == 1
        assert await committed_offsets(kafka_bootstrap, topics) == {}
        tally = await collect(kafka_bootstrap, topics, expected=1, timeout_s=3)
        assert tally.outputs == []
