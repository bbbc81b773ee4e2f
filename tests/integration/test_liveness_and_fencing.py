"""Never stall, never fence the rightful owner: each hole of issue 9, on the real broker.

Each test fails on the worker before the ownership state machine (commit 21fa088): a record
too large to dead-letter stalled its partition, a fenced worker took its transactional id
back, a new owner could start from a stale committed offset, SIGTERM left the group before
the last transaction ended, and a record that made routing raise rewound every partition.
"""

import asyncio
import base64
import hashlib
import os
import subprocess
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from faststream import FastStream

from claim_scrubber.adapters.kafka import build_app
from claim_scrubber.adapters.kafka.outbound import dead_letter_bytes_needed
from claim_scrubber.adapters.logging import configure_logging, get_logger
from claim_scrubber.adapters.ruleset_file import load_ruleset
from claim_scrubber.adapters.settings import Settings
from claim_scrubber.scrubber import Scrubber
from tests.claims import default_event, event_bytes, patched
from tests.conftest import WorkerStarter
from tests.kafka_harness import (
    WORKER,
    OutputWatcher,
    Topics,
    WorkerProcess,
    committed_offsets,
    create_topics,
)

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def _claim(tag: str, number: int) -> bytes:
    return event_bytes(
        patched(
            default_event(),
            {"event_id": f"{tag}-ev-{number}", "claim.claim_id": f"{tag}-{number}"},
        )
    )


async def _produce_to(
    bootstrap: str, topic: str, partition: int, records: list[tuple[bytes | None, bytes]]
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, max_request_size=2 * 1024 * 1024)
    await producer.start()
    try:
        for key, value in records:
            await producer.send(topic, value, key=key, partition=partition)
        await producer.flush()
    finally:
        await producer.stop()


async def _set_max_message_bytes(bootstrap: str, topic: str, value: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.alter_configs(
            [
                ConfigResource(
                    ConfigResourceType.TOPIC, topic, configs={"max.message.bytes": str(value)}
                )
            ]
        )
    finally:
        await admin.close()


def _settings(bootstrap: str, topics: Topics) -> Settings:
    return topics.settings(bootstrap, worker_id="in-process")


@asynccontextmanager
async def _in_process_worker(
    settings: Settings, scrubber: Scrubber | None = None
) -> AsyncIterator[FastStream]:
    configure_logging(level="warning")
    app = build_app(
        settings,
        scrubber or Scrubber(load_ruleset(), max_message_bytes=settings.max_message_bytes),
        get_logger(worker_id=settings.worker_id),
    )
    await app.start()
    try:
        yield app
    finally:
        await app.stop()


@pytest.fixture
async def watcher(kafka_bootstrap: str, topics: Topics) -> AsyncIterator[OutputWatcher]:
    async with OutputWatcher(kafka_bootstrap, topics) as watching:
        yield watching


class TestBoundedDeadLetters:
    async def test_a_worker_whose_dead_letter_topic_cannot_hold_the_largest_input_refuses_to_start(
        self, kafka_bootstrap: str, request: pytest.FixtureRequest
    ) -> None:
        # The broker's defaults: every topic takes 1 MiB records, so a dead letter of a 1 MiB
        # input (base64: 4/3 of it) could never be published.
        topics = await create_topics(kafka_bootstrap, request.node.name[:30], output_configs={})
        env = {k: v for k, v in os.environ.items() if not k.startswith("SCRUBBER_")}
        result = await asyncio.to_thread(
            subprocess.run,
            WORKER,
            env=env | topics.env(kafka_bootstrap),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

        assert result.returncode == 1
        (line,) = [line for line in result.stderr.splitlines() if line.strip()]
        assert f"topic {topics.dead_letter} has max.message.bytes=1048588" in line
        assert f"needs at least {dead_letter_bytes_needed(1_048_588)}" in line

    async def test_a_900_kb_unusable_record_and_the_claim_after_it_are_both_answered(
        self,
        kafka_bootstrap: str,
        topics: Topics,
        start_worker: WorkerStarter,
        watcher: OutputWatcher,
    ) -> None:
        poison = b"\x00not json" * 90_000
        await _produce_to(
            kafka_bootstrap, topics.input, 0, [(b"K-1", poison), (b"K-1", _claim("big", 1))]
        )
        start = time.monotonic()
        start_worker()

        tally = await watcher.wait_for(2, timeout_s=60)

        assert time.monotonic() - start < 60
        dead_letter, result = sorted(tally.outputs, key=lambda o: o.source)
        assert dead_letter.topic == topics.dead_letter
        assert base64.b64decode(dead_letter.body["payload_base64"]) == poison
        assert "payload_truncated" not in dead_letter.body
        assert result.topic == topics.clean

    async def test_a_record_too_large_to_dead_letter_whole_is_cut_to_fit_and_never_blocks(
        self,
        kafka_bootstrap: str,
        request: pytest.FixtureRequest,
        workers: list[WorkerProcess],
    ) -> None:
        # A dead-letter topic of the broker default (1 MiB), enough for the 600 kB records the
        # input topic accepts at start; then an operator raises the input limit to 1 MiB.
        topics = await create_topics(kafka_bootstrap, request.node.name[:30])
        await _set_max_message_bytes(kafka_bootstrap, topics.input, 600_000)
        await _set_max_message_bytes(kafka_bootstrap, topics.dead_letter, 1_048_588)
        async with OutputWatcher(kafka_bootstrap, topics) as watching:
            worker = WorkerProcess(
                topics.env(kafka_bootstrap) | {"SCRUBBER_SESSION_TIMEOUT_MS": "6000"}, "cut"
            )
            workers.append(worker)
            await worker.wait_for_event("partitions.assigned")
            await _set_max_message_bytes(kafka_bootstrap, topics.input, 1_048_588)
            poison = os.urandom(900_000)
            await _produce_to(
                kafka_bootstrap,
                topics.input,
                0,
                [(b"K-2", poison), (b"K-2", _claim("cut", 1))],
            )

            tally = await watching.wait_for(2, timeout_s=60)

        dead_letter, result = sorted(tally.outputs, key=lambda o: o.source)
        assert dead_letter.body["error"]["kind"] == "invalid_encoding"
        assert dead_letter.body["payload_truncated"] is True
        assert dead_letter.body["payload_bytes"] == 900_000
        assert dead_letter.body["payload_sha256"] == hashlib.sha256(poison).hexdigest()
        assert poison.startswith(base64.b64decode(dead_letter.body["payload_base64"]))
        assert result.topic == topics.clean


class TestFencing:
    async def test_a_fenced_worker_leaves_the_transactional_id_to_whoever_fenced_it(
        self,
        kafka_bootstrap: str,
        topics: Topics,
        start_worker: WorkerStarter,
        watcher: OutputWatcher,
    ) -> None:
        quarantine_s = 12  # the transaction timeout: how long a fenced worker keeps off the id
        worker = start_worker(SCRUBBER_TRANSACTION_TIMEOUT_MS=str(quarantine_s * 1000))
        await _produce_to(kafka_bootstrap, topics.input, 0, [(None, _claim("before", 0))])
        await watcher.wait_for(1, timeout_s=60)
        probe_topic = f"{topics.prefix}.probe"
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        await admin.create_topics([NewTopic(probe_topic, 1, 1)])
        await admin.close()

        intruder = AIOKafkaProducer(
            bootstrap_servers=kafka_bootstrap,
            transactional_id=f"{topics.group}-{topics.input}-0",
        )
        await intruder.start()  # InitProducerId: fences the worker's producer of partition 0
        try:
            await intruder.begin_transaction()
            await intruder.send_and_wait(probe_topic, b"probe")
            await _produce_to(
                kafka_bootstrap, topics.input, 0, [(None, _claim("during", n)) for n in range(5)]
            )
            await _produce_to(kafka_bootstrap, topics.input, 1, [(None, _claim("other", 0))])
            fenced = await worker.wait_for_event("transaction.fenced", timeout_s=30)
            assert fenced["quarantine_s"] == quarantine_s
            await asyncio.sleep(quarantine_s - 4)  # most of it: the id stays the intruder's
            await intruder.commit_transaction()  # ProducerFenced if the worker took the id back
        finally:
            await intruder.stop()

        tally = await watcher.wait_for(7, timeout_s=90)
        assert sorted(o.body["event_id"] for o in tally.outputs) == sorted(
            ["before-ev-0", "other-ev-0", *(f"during-ev-{n}" for n in range(5))]
        )
        assert worker.events("partition.recovered"), "the group still assigns it: fenced again"


class TestAssignment:
    async def test_a_new_owner_starts_from_the_offset_the_previous_owner_committed_last(
        self,
        kafka_bootstrap: str,
        topics: Topics,
        watcher: OutputWatcher,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        await _produce_to(
            kafka_bootstrap, topics.input, 0, [(None, _claim("held", n)) for n in range(20)]
        )
        # The previous owner of partition 0 has published the first 10 results and added its
        # offset to its transaction, but not committed yet.
        previous = AIOKafkaProducer(
            bootstrap_servers=kafka_bootstrap,
            transactional_id=f"{topics.group}-{topics.input}-0",
        )
        await previous.start()
        await previous.begin_transaction()
        for offset in range(10):
            body = {"event_id": f"held-ev-{offset}", "source": {"partition": 0, "offset": offset}}
            await previous.send(topics.clean, orjson.dumps(body))
        await previous.send_offsets_to_transaction(
            {TopicPartition(topics.input, 0): 10}, topics.group
        )
        # It commits just as the new owner's producer for partition 0 starts: after the new
        # owner read the committed offset on assignment, before its InitProducerId.
        real_start = AIOKafkaProducer.start
        transactional_id = f"{topics.group}-{topics.input}-0"
        previous_done: list[asyncio.Task[None]] = []

        async def finish_previous() -> None:
            # Time for the new owner's consumer to read the committed offset (10 is pending,
            # so it reads none), as aiokafka does right after the assignment.
            await asyncio.sleep(1)
            await previous.commit_transaction()
            await previous.stop()

        async def start_after_the_previous_owner_commits(producer: AIOKafkaProducer) -> None:
            manager = producer._txn_manager  # which partition's producer
            if producer is not previous and getattr(manager, "transactional_id", None) == (
                transactional_id
            ):
                if not previous_done:
                    previous_done.append(asyncio.create_task(finish_previous()))
                await previous_done[0]
            await real_start(producer)

        monkeypatch.setattr(AIOKafkaProducer, "start", start_after_the_previous_owner_commits)

        async with _in_process_worker(_settings(kafka_bootstrap, topics)):
            tally = await watcher.wait_for(20, timeout_s=60)

        event_ids = sorted(o.body["event_id"] for o in tally.outputs)
        assert event_ids == sorted(f"held-ev-{n}" for n in range(20)), "each exactly once"


class TestShutdown:
    async def test_sigterm_ends_the_transaction_in_flight_before_leaving_the_group(
        self,
        kafka_bootstrap: str,
        topics: Topics,
        watcher: OutputWatcher,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        gate = asyncio.Event()
        in_commit = asyncio.Event()
        real_commit = AIOKafkaProducer.commit_transaction

        async def held_commit(producer: AIOKafkaProducer) -> None:
            in_commit.set()
            await gate.wait()
            await real_commit(producer)

        monkeypatch.setattr(AIOKafkaProducer, "commit_transaction", held_commit)
        settings = _settings(kafka_bootstrap, topics)
        configure_logging(level="warning")
        app = build_app(
            settings,
            Scrubber(load_ruleset(), max_message_bytes=settings.max_message_bytes),
            get_logger(worker_id="sigterm"),
        )
        await app.start()
        try:
            await _produce_to(kafka_bootstrap, topics.input, 0, [(None, _claim("last", 0))])
            await asyncio.wait_for(in_commit.wait(), timeout=60)
            stopping = asyncio.create_task(app.stop())
            await asyncio.sleep(3)
            members_while_committing = await _group_members(kafka_bootstrap, topics.group)
            gate.set()
            await stopping
        finally:
            gate.set()
        members_after = await _group_members(kafka_bootstrap, topics.group)

        assert members_while_committing == 1, "still in the group while its transaction is open"
        assert members_after == 0
        assert await committed_offsets(kafka_bootstrap, topics) == {0: 1}
        tally = await watcher.wait_for(1, timeout_s=30)
        assert [o.body["event_id"] for o in tally.outputs] == ["last-ev-0"]


async def _group_members(bootstrap: str, group: str) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (description,) = await admin.describe_consumer_groups([group])
    finally:
        await admin.close()
    ((_, _, _, _, _, members, *_),) = description.groups
    return len(members)


class _ExplodingScrubber(Scrubber):
    """Fails outside the rules on records that carry a marker, as a bug in routing would."""

    def decide(self, payload: bytes, **kwargs: Any) -> Any:
        if b"EXPLODE" in payload:
            raise RuntimeError("routing bug")
        return super().decide(payload, **kwargs)


class TestFailingRecords:
    async def test_a_record_that_always_fails_becomes_a_processing_error_and_others_flow(
        self, kafka_bootstrap: str, topics: Topics, watcher: OutputWatcher
    ) -> None:
        settings = _settings(kafka_bootstrap, topics)
        scrubber = _ExplodingScrubber(load_ruleset(), max_message_bytes=settings.max_message_bytes)
        for partition in range(3):
            records: list[tuple[bytes | None, bytes]] = [
                (None, _claim(f"p{partition}", n)) for n in range(10)
            ]
            if partition == 1:
                records.insert(5, (b"boom", b'{"EXPLODE": true}'))
            await _produce_to(kafka_bootstrap, topics.input, partition, records)

        async with _in_process_worker(settings, scrubber):
            tally = await watcher.wait_for(31, timeout_s=90)

        dead = [o for o in tally.outputs if o.topic == topics.dead_letter]
        assert len(tally.outputs) == 31
        assert [o.body["error"]["kind"] for o in dead] == ["processing_error"]
        assert dead[0].key == b"boom"
        assert tally.duplicates() == 0


class TestTopics:
    def test_the_worker_declares_no_topic_for_faststream_to_create(self) -> None:
        settings = Settings.model_validate({"worker_id": "declare"})
        app = build_app(settings, Scrubber(load_ruleset(), max_message_bytes=1024), get_logger())

        assert app.broker is not None
        assert [t for s in app.broker.subscribers for t in s.topics_to_create] == []  # type: ignore[attr-defined]
