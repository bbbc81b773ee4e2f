"""`claim-scrubber dead-letters` on the real broker (contract section 11): dead letters give back
their records byte for byte, replay publishes each exactly once across a killed and a
concurrent run, a second pass is a no-op, a dry run publishes nothing, and no line of the
command carries a payload byte or PHI."""

import asyncio
import base64
import signal
import time
from collections import Counter
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tests.claims import default_event, event_bytes, patched
from tests.kafka_harness import (
    Topics,
    WorkerProcess,
    collect,
    committed_reader,
)

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

CANARY = "CANARY-PHI-7Q2"
"""A patient name in some payloads: never in any line of the command."""
SMALL_LIMIT = 4096
"""SCRUBBER_MAX_MESSAGE_BYTES of the worker that makes the too_large dead letters."""


Record = tuple[bytes | None, bytes, list[tuple[str, bytes]]]
"""(key, value, headers) of a record to produce."""


def _bad_record(n: int) -> Record:
    """A record the worker dead-letters, of one of five kinds, with a key that is text, bytes
    that are not UTF-8, or none, and sometimes headers of its own."""
    marker = f"event_id: BAD-{n}"
    kind = n % 5
    if kind == 0:
        value = f"{{not json {marker} {CANARY}".encode()
    elif kind == 1:
        value = orjson.dumps([marker])
    elif kind == 2:
        value = orjson.dumps({"schema_version": "9", "note": marker})
    elif kind == 3:
        value = b"\xff\xfe " + marker.encode()
    else:
        big = patched(default_event(), {"event_id": f"BAD-{n}", "claim.lines[0].note": "x" * 5000})
        value = event_bytes(big)
    key = (f"K-{n}".encode(), b"\xff\x00" + str(n).encode(), None)[n % 3]
    headers = [("producer", b"\x00\x01" + str(n).encode()), ("trace", b"t")] if n % 4 == 0 else []
    return key, value, headers


async def _produce(bootstrap: str, topic: str, records: list[Record]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, max_request_size=4 * 1024 * 1024)
    await producer.start()
    try:
        for key, value, headers in records:
            await producer.send(topic, value, key=key, headers=headers)
        await producer.flush()
    finally:
        await producer.stop()


async def _read(bootstrap: str, topic: str, partitions: int = 6) -> list[Any]:
    """Every committed record of `topic` to its end (read_committed)."""
    consumer = committed_reader(bootstrap)
    await consumer.start()
    found: list[Any] = []
    try:
        assigned = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(assigned)
        ends = await consumer.end_offsets(assigned)
        for tp in assigned:
            while await consumer.position(tp) < ends[tp]:
                found += (await consumer.getmany(tp, timeout_ms=500)).get(tp, [])
    finally:
        await consumer.stop()
    assert found, f"{topic} holds no record: the test reads the wrong thing"
    return found


async def _end_offsets(bootstrap: str, *topics: str) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await consumer.start()
    try:
        return dict(
            await consumer.end_offsets([TopicPartition(t, p) for t in topics for p in range(6)])
        )
    finally:
        await consumer.stop()


def _replay(topics: Topics, bootstrap: str, name: str, *args: str) -> WorkerProcess:
    return WorkerProcess(topics.env(bootstrap), name, ["dead-letters", "replay", *args])


async def _dead_letters_of_a_worker(
    bootstrap: str, topics: Topics, records: list[Record], **env: str
) -> None:
    worker = WorkerProcess(topics.env(bootstrap) | env, "dead-lettering")
    try:
        await worker.wait_for_event("worker.started")
        await _produce(bootstrap, topics.input, records)
        await collect(bootstrap, topics, expected=len(records), timeout_s=120)
    finally:
        worker.kill()


async def test_every_replayable_dead_letter_is_republished_once_byte_for_byte_whatever_runs(
    kafka_bootstrap: str, topics: Topics
) -> None:
    records = [_bad_record(n) for n in range(1000)]
    await _dead_letters_of_a_worker(
        kafka_bootstrap, topics, records, SCRUBBER_MAX_MESSAGE_BYTES=str(SMALL_LIMIT)
    )
    truncated = {
        "schema_version": "1",
        "error": {"kind": "processing_error", "message": "cut to fit", "details": []},
        "source": {"topic": topics.input, "partition": 0, "offset": 0, "timestamp_ms": 0,
                   "key": None, "key_base64": None, "headers": []},
        "payload_base64": base64.b64encode(b"{not json").decode(),
        "received_at": "2026-12-06T12:00:00.000Z",
        "payload_truncated": True,
        "payload_bytes": 5000,
        "payload_sha256": "0" * 64,
    }  # fmt: skip
    await _produce(kafka_bootstrap, topics.dead_letter, [(None, orjson.dumps(truncated), [])])
    target = f"{topics.prefix}.replayed-input"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(target, topics.partitions, 1)])
    finally:
        await admin.close()

    dry = _replay(topics, kafka_bootstrap, "dry", "--to", target)
    before = await _end_offsets(kafka_bootstrap, target, topics.ledger)
    assert await dry.wait(120) == 0, dry.all_output()[-2000:]
    assert await _end_offsets(kafka_bootstrap, target, topics.ledger) == before, "a dry run"
    assert len(dry.events("dead_letter.would_replay")) == 1000

    runs = [
        _replay(topics, kafka_bootstrap, name, "--to", target, "--execute", "--rate", "150")
        for name in ("first", "second")
    ]
    deadline = time.monotonic() + 60
    while not any(run.events("dead_letter.replayed") for run in runs):
        assert time.monotonic() < deadline, "neither run replayed anything"
        await asyncio.sleep(0.1)
    await asyncio.sleep(1.5)
    # the one still publishing is killed halfway; the other was fenced by it, or is fenced
    # by nobody and finishes
    running = [run for run in runs if run.process.poll() is None]
    assert running, "both runs ended within 1.5 s: the kill would come too late"
    killed = running[-1]
    killed.process.send_signal(signal.SIGKILL)
    for run in runs:
        code = await run.wait(180)
        if run is killed:
            assert code == -signal.SIGKILL
        else:
            assert code == 0 or "another replay run took over" in run.all_output(), code
    third = _replay(topics, kafka_bootstrap, "third", "--to", target, "--execute")
    assert await third.wait(180) == 0
    again = _replay(topics, kafka_bootstrap, "again", "--to", target, "--execute")
    assert await again.wait(120) == 0
    assert "nothing to replay" in again.all_output()
    assert not again.events("dead_letter.replayed")

    originals = {(r.partition, r.offset): r for r in await _read(kafka_bootstrap, topics.input)}
    letters = {
        f"{topics.dead_letter}/{r.partition}/{r.offset}": orjson.loads(r.value)
        for r in await _read(kafka_bootstrap, topics.dead_letter)
    }
    replays = await _read(kafka_bootstrap, target)
    by_letter = Counter(dict(r.headers)["replay-of"].decode() for r in replays)
    replayable = {c for c, letter in letters.items() if not letter.get("payload_truncated")}
    assert Counter(by_letter) == Counter(dict.fromkeys(replayable, 1)), "each exactly once"
    for replayed in replays:
        headers = list(replayed.headers)
        assert headers[-2:] == [
            ("replay-of", dict(headers)["replay-of"]),
            ("replay-count", b"1"),
        ]
        source = letters[dict(headers)["replay-of"].decode()]["source"]
        original = originals[(source["partition"], source["offset"])]
        assert (replayed.key, headers[:-2], replayed.value) == (
            original.key,
            list(original.headers),
            original.value,
        )
    ledger = {r.key.decode() for r in await _read(kafka_bootstrap, topics.ledger)}
    assert ledger == replayable
    kinds = Counter(letter["error"]["kind"] for letter in letters.values())
    assert set(kinds) >= {"invalid_json", "not_an_object", "unsupported_schema_version",
                          "invalid_encoding", "too_large"}  # fmt: skip
    for run in [dry, *runs, third, again]:
        output = run.all_output()
        assert CANARY not in output
        assert "not json" not in output
    assert "payload was truncated" in dry.all_output(), "the truncated one is listed with why"
    listing = WorkerProcess(
        topics.env(kafka_bootstrap), "list", ["dead-letters", "list", "--kind", "invalid_json"]
    )
    assert await listing.wait(60) == 0
    listed = [orjson.loads(line) for line in listing.lines]
    assert len(listed) == kinds["invalid_json"] == 200
    assert all(entry["replayed"] and entry["kind"] == "invalid_json" for entry in listed)
    assert CANARY not in listing.all_output()
    assert "payload_base64" not in listing.all_output()
    assert "200  invalid_json" in "\n".join(listing.stderr_lines)


async def test_too_large_dead_letters_replayed_after_the_limit_is_raised_are_scrubbed_once(
    kafka_bootstrap: str, topics: Topics
) -> None:
    claims = [
        patched(default_event(), {"event_id": f"BIG-{n}", "claim.claim_id": f"BIG-{n}",
                                  "claim.lines[0].note": "x" * 5000})
        for n in range(5)
    ]  # fmt: skip
    records: list[Record] = [
        (f"BIG-{n}".encode(), event_bytes(claim), []) for n, claim in enumerate(claims)
    ]
    await _dead_letters_of_a_worker(
        kafka_bootstrap, topics, records, SCRUBBER_MAX_MESSAGE_BYTES=str(SMALL_LIMIT)
    )
    worker = WorkerProcess(topics.env(kafka_bootstrap), "after-the-fix")
    try:
        await worker.wait_for_event("worker.started")
        run = _replay(topics, kafka_bootstrap, "fix", "--kind", "too_large", "--execute")
        assert await run.wait(120) == 0
        tally = await collect(kafka_bootstrap, topics, expected=10, timeout_s=120)
    finally:
        worker.kill()

    results = [o for o in tally.outputs if o.topic in {topics.clean, topics.review}]
    assert Counter(o.body["event_id"] for o in results) == Counter(
        {f"BIG-{n}": 1 for n in range(5)}
    )
    assert len([o for o in tally.outputs if o.topic == topics.dead_letter]) == 5, "no new ones"
