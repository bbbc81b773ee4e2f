"""Reading topics as a person or a page does: every partition, read_committed, in no consumer
group, from a point in time and then as records arrive (`claim-scrubber tail`, the review
page)."""

from collections.abc import AsyncIterator

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from claim_scrubber.adapters.kafka.security import KafkaConnection
from claim_scrubber.adapters.kafka.topic_sizes import admin_client

__all__ = ["Followed", "follow_topics", "missing_topics"]

Followed = tuple[list["ConsumerRecord[bytes, bytes]"], bool]
"""One poll's records, and whether every partition has reached the end it had at the start."""


async def _described(kafka: KafkaConnection, topics: list[str]) -> list[dict[str, object]]:
    admin = admin_client(kafka)
    try:
        await admin.start()
        described: list[dict[str, object]] = await admin.describe_topics(topics)
    finally:
        await admin.close()
    return described


async def missing_topics(kafka: KafkaConnection, topics: list[str]) -> list[str]:
    """The topics the brokers do not know."""
    return [str(t["topic"]) for t in await _described(kafka, topics) if t.get("error_code")]


async def follow_topics(
    kafka: KafkaConnection, topics: list[str], *, since_s: float
) -> AsyncIterator[Followed]:
    """Every committed record of `topics` written at or after `since_s` (epoch seconds), then
    each new one, poll by poll; a topic the brokers do not know contributes nothing."""
    partitions = [
        TopicPartition(str(topic["topic"]), int(partition["partition"]))
        for topic in await _described(kafka, topics)
        for partition in topic.get("partitions", [])  # type: ignore[attr-defined]
    ]
    consumer = AIOKafkaConsumer(
        **kafka.client_args(),
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
    )
    await consumer.start()
    try:
        consumer.assign(partitions)
        # The ends first: a partition with nothing since `since_s` starts at its end as it
        # was then, so a record written meanwhile is read.
        ends = await consumer.end_offsets(partitions)
        starts = await consumer.offsets_for_times(dict.fromkeys(partitions, int(since_s * 1000)))
        for partition in partitions:
            found = starts.get(partition)
            consumer.seek(partition, ends[partition] if found is None else found.offset)
        caught_up = False
        while True:
            batches = await consumer.getmany(timeout_ms=500, max_records=2000)
            if not caught_up:
                positions = [await consumer.position(p) for p in partitions]
                caught_up = all(at >= ends[p] for at, p in zip(positions, partitions, strict=True))
            yield [record for records in batches.values() for record in records], caught_up
    finally:
        await consumer.stop()
