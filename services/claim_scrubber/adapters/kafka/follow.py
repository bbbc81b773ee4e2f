"""Reading topics as a person or a page does: every partition, read_committed, in no consumer
group, from a point in time and then as records arrive (`claim-scrubber tail`, the review
page)."""

from collections.abc import AsyncIterator
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from claim_scrubber.adapters.kafka.security import KafkaConnection
from claim_scrubber.adapters.kafka.topic_sizes import admin_client

__all__ = ["Followed", "UnreadableTopicsError", "follow_topics"]

Followed = tuple[list["ConsumerRecord[bytes, bytes]"], bool]
"""One poll's records, and whether every partition has reached the end it had at the start."""


_TOPIC_AUTHORIZATION_FAILED = 29
"""Kafka's error code for a topic this principal may not describe (an ACL is missing)."""


class UnreadableTopicsError(Exception):
    """Topics that cannot be followed: unknown to the brokers, or this principal may not
    describe them. The message names them (topic names carry no PHI)."""

    def __init__(self, *, missing: list[str], not_authorized: list[str]) -> None:
        self.missing = missing
        self.not_authorized = not_authorized
        problems = []
        if not_authorized:
            problems.append(
                f"not authorized to read {', '.join(not_authorized)}: grant this principal "
                "Describe and Read on them"
            )
        if missing:
            problems.append(f"no topic {', '.join(missing)} on the broker (is the worker set up?)")
        super().__init__("; ".join(problems))


async def _partitions(kafka: KafkaConnection, topics: list[str]) -> list[TopicPartition]:
    """Every partition of `topics`; UnreadableTopicsError when one cannot be described."""
    admin = admin_client(kafka)
    try:
        await admin.start()
        described: list[dict[str, Any]] = await admin.describe_topics(topics)
    finally:
        await admin.close()
    refused = [d for d in described if d.get("error_code")]
    if refused:
        raise UnreadableTopicsError(
            missing=[
                str(d["topic"]) for d in refused if d["error_code"] != _TOPIC_AUTHORIZATION_FAILED
            ],
            not_authorized=[
                str(d["topic"]) for d in refused if d["error_code"] == _TOPIC_AUTHORIZATION_FAILED
            ],
        )
    return [
        TopicPartition(str(d["topic"]), int(partition["partition"]))
        for d in described
        for partition in d["partitions"]
    ]


async def follow_topics(
    kafka: KafkaConnection, topics: list[str], *, since_s: float
) -> AsyncIterator[Followed]:
    """Every committed record of `topics` written at or after `since_s` (epoch seconds), then
    each new one, poll by poll; UnreadableTopicsError, before anything is read, when one of them
    does not exist or may not be read."""
    partitions = await _partitions(kafka, topics)
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
