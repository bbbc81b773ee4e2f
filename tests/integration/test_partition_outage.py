"""One output partition without a leader stalls only the input partition that writes to it.

A second broker joins the local cluster and leads partition 0 of the clean topic; it is
killed, and the worker's other partitions must keep committing meanwhile. When it comes back,
the stalled partition's claims arrive, every claim exactly once.
"""

import asyncio
import contextlib
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.partitioner import murmur2

from claim_scrubber.adapters.kafka.topic_sizes import OUTPUT_TOPIC_CONFIGS
from tests.claims import default_event, event_bytes, patched
from tests.conftest import WorkerStarter
from tests.kafka_harness import SecondBroker, Topics, WorkerProcess, free_port, wait_ready

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

PARTITIONS = 6
CLAIMS_PER_PARTITION = 10
OFFLINE = 0
"""The clean topic's partition led by the second broker (and the input partition whose claims
land there: results are keyed by claim id, like the input)."""


def _partition_of(key: bytes) -> int:
    """The partition Kafka's default partitioner gives a key (murmur2, as aiokafka's)."""
    return int(murmur2(key) & 0x7FFFFFFF) % PARTITIONS


def _claim_ids(prefix: str, per_partition: int) -> dict[int, list[str]]:
    ids: dict[int, list[str]] = {p: [] for p in range(PARTITIONS)}
    number = 0
    while any(len(found) < per_partition for found in ids.values()):
        claim_id = f"{prefix}-{number}"
        found = ids[_partition_of(claim_id.encode())]
        if len(found) < per_partition:
            found.append(claim_id)
        number += 1
    return ids


async def _send(bootstrap: str, topic: str, claim_ids: list[str]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for claim_id in claim_ids:
            event = patched(
                default_event(), {"event_id": f"ev-{claim_id}", "claim.claim_id": claim_id}
            )
            await producer.send(topic, event_bytes(event), key=claim_id.encode())
        await producer.flush()
    finally:
        await producer.stop()


async def _create(bootstrap: str, topics: Topics) -> None:
    """Every partition on broker 1, except the clean topic's OFFLINE one, on broker 2."""
    on_one = {p: [1] for p in range(PARTITIONS)}
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [
                NewTopic(topics.input, -1, -1, replica_assignments=on_one),
                NewTopic(
                    topics.clean,
                    -1,
                    -1,
                    replica_assignments=on_one | {OFFLINE: [SecondBroker.NODE_ID]},
                    topic_configs=OUTPUT_TOPIC_CONFIGS,
                ),
                *(
                    NewTopic(
                        t, -1, -1, replica_assignments=on_one, topic_configs=OUTPUT_TOPIC_CONFIGS
                    )
                    for t in (topics.review, topics.dead_letter)
                ),
            ]
        )
    finally:
        await admin.close()


async def _delete(bootstrap: str, topics: Topics) -> None:
    """Best effort, bounded: a cleanup that cannot reach node 2 must neither hang the run nor
    hide why the test failed."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    with contextlib.suppress(Exception):
        await admin.start()
        await asyncio.wait_for(admin.delete_topics([topics.input, *topics.outputs]), 20)
    with contextlib.suppress(Exception):
        await admin.close()


async def _transaction_and_group_topics_exist(bootstrap: str, topic: str) -> None:
    """The coordinators' internal topics, made now on broker 1: made later, some of their
    partitions could land on the broker this test takes down."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, transactional_id=f"outage-{uuid.uuid4().hex[:8]}"
    )
    await producer.start()
    await producer.stop()
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=f"outage-{uuid.uuid4().hex[:8]}"
    )
    await consumer.start()
    try:
        await consumer.commit({TopicPartition(topic, 0): 0})
    finally:
        await consumer.stop()


@asynccontextmanager
async def _second_broker(bootstrap: str, workdir: Path) -> AsyncIterator[SecondBroker]:
    broker = SecondBroker(workdir)
    try:
        broker.start()
        await broker.wait_registered(bootstrap)
        yield broker
    finally:
        broker.close()


async def _results(
    bootstrap: str, topic: str, partitions: list[int], expected: int, timeout_s: float
) -> Counter[str]:
    """Claim ids of the committed results on these partitions, once `expected` are there."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, isolation_level="read_committed", group_id=None
    )
    await consumer.start()
    consumer.assign([TopicPartition(topic, p) for p in partitions])
    await consumer.seek_to_beginning()
    claims: Counter[str] = Counter()
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline and sum(claims.values()) < expected:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                claims.update(orjson.loads(r.value or b"{}")["claim_id"] for r in records)
    finally:
        await consumer.stop()
    return claims


def _gave_up(worker: WorkerProcess) -> list[dict[str, object]]:
    """The times partition OFFLINE's transaction ran out of time (or its fence did)."""
    return [
        event
        for name in ("broker.unreachable", "partition.fence_failed")
        for event in worker.events(name)
        if event.get("partition") == OFFLINE
    ]


@pytest.mark.exclusive
async def test_while_one_output_partition_has_no_leader_the_others_keep_committing(
    kafka_bootstrap: str, start_worker: WorkerStarter, tmp_path: Path
) -> None:
    topics = Topics(f"test.outage.{uuid.uuid4().hex[:8]}", PARTITIONS)
    first = _claim_ids("FIRST", CLAIMS_PER_PARTITION)
    online = [p for p in range(PARTITIONS) if p != OFFLINE]
    second_wave = [c for p, found in _claim_ids("NEXT", 5).items() if p != OFFLINE for c in found]
    everything = Counter([*(c for found in first.values() for c in found), *second_wave])
    await _transaction_and_group_topics_exist(kafka_bootstrap, "claims.submitted")
    async with _second_broker(kafka_bootstrap, tmp_path) as second:
        await _create(kafka_bootstrap, topics)
        try:
            port = free_port()
            worker = start_worker(
                "outage",
                SCRUBBER_TRANSACTION_TIMEOUT_MS="20000",
                SCRUBBER_HTTP_PORT=str(port),
                **topics.env(kafka_bootstrap),
            )
            await worker.wait_for_event("partitions.assigned")
            await wait_ready(port)  # every partition fenced and owned: the outage is the output's
            second.kill()  # partition OFFLINE of the clean topic has no leader now

            await _send(kafka_bootstrap, topics.input, list(everything - Counter(second_wave)))
            first_online = Counter(c for p in online for c in first[p])
            during = await _results(
                kafka_bootstrap, topics.clean, online, len(first_online), timeout_s=90
            )
            assert during == first_online
            # Partition OFFLINE's transaction now waits for a leader (up to 16 s here). The
            # next batch of the other partitions must not wait for it.
            await _send(kafka_bootstrap, topics.input, second_wave)
            during = await _results(
                kafka_bootstrap, topics.clean, online, len(first_online) + len(second_wave), 90
            )
            assert during == first_online + Counter(second_wave)
            assert _gave_up(worker) == [], "the others waited for its transaction"
            while not _gave_up(worker):  # its transaction runs out of time, alone
                await asyncio.sleep(0.2)
            assert {event["partition"] for event in worker.events("transaction.aborted")} <= {
                OFFLINE
            }

            second.start()  # the leader is back: the stalled partition catches up
            await second.wait_registered(kafka_bootstrap)
            after = await _results(
                kafka_bootstrap,
                topics.clean,
                list(range(PARTITIONS)),
                sum(everything.values()),
                180,
            )
            assert after == everything  # every claim, exactly once
        finally:
            await asyncio.shield(_delete(kafka_bootstrap, topics))
