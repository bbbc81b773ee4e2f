"""What the review page reads: `claims.needs-review` and `claims.clean`, read_committed, in no
consumer group, from the start of the window (SCRUBBER_REVIEW_WINDOW_DAYS) and then as results
arrive."""

import asyncio
import time
from typing import Final

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from structlog.typing import FilteringBoundLogger

from claim_scrubber.adapters.kafka.security import KafkaConnection
from claim_scrubber.adapters.kafka.topic_sizes import admin_client
from claim_scrubber.adapters.review.app import ReviewState

__all__ = ["follow_results"]

_RETRY_S: Final = 5.0


async def _partitions(kafka: KafkaConnection, topics: list[str]) -> list[TopicPartition]:
    admin = admin_client(kafka)
    try:
        await admin.start()
        described = await admin.describe_topics(topics)
    finally:
        await admin.close()
    return [
        TopicPartition(topic["topic"], partition["partition"])
        for topic in described
        for partition in topic.get("partitions", [])
    ]


async def follow_results(
    kafka: KafkaConnection,
    topics: list[str],
    state: ReviewState,
    *,
    window_days: int,
    log: FilteringBoundLogger,
    ready: asyncio.Event,
) -> None:
    """Fill `state` from the window's start, then follow; `ready` once caught up. An outage
    is retried (the page keeps what it has)."""
    while True:
        try:
            await _follow(kafka, topics, state, window_days=window_days, ready=ready)
        except (KafkaError, OSError) as error:
            log.warning("review.feed_failed", error_type=type(error).__name__, retry_in_s=_RETRY_S)
            await asyncio.sleep(_RETRY_S)


async def _follow(
    kafka: KafkaConnection,
    topics: list[str],
    state: ReviewState,
    *,
    window_days: int,
    ready: asyncio.Event,
) -> None:
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
        # The ends first: a partition with no result in the window starts at its end as it
        # was then, so a result written meanwhile (newer than the window's start) is read.
        ends = await consumer.end_offsets(partitions)
        since_ms = int((time.time() - window_days * 86_400) * 1000)
        starts = await consumer.offsets_for_times(dict.fromkeys(partitions, since_ms))
        for partition in partitions:
            found = starts.get(partition)
            consumer.seek(partition, ends[partition] if found is None else found.offset)
        while True:
            batches = await consumer.getmany(timeout_ms=500, max_records=2000)
            for records in batches.values():
                for record in records:
                    if record.value is not None:
                        state.take(record.value)
            if not ready.is_set():
                positions = [await consumer.position(p) for p in partitions]
                if all(at >= ends[p] for at, p in zip(positions, partitions, strict=True)):
                    ready.set()
    finally:
        await consumer.stop()
