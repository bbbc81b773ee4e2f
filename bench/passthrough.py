"""The baseline: a bare aiokafka consume -> produce pass-through with the worker's transactions.

No parsing, no rules: each input record is copied to one output topic, keyed and with headers
like the worker's, in one transaction per input partition per batch, with the same
transactional producers (one per input partition), batch size and isolation level. What the
worker reaches relative to this is the cost of scrubbing.

    python -m bench.passthrough   (settings: the worker's SCRUBBER_* variables)
"""

import asyncio
import contextlib
import signal
from collections import defaultdict

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition

from claim_scrubber.adapters.kafka.transactions import OutboundRecord, PartitionProducers
from claim_scrubber.adapters.settings import load_settings

_HEADERS = [
    ("content-type", b"application/json"),
    ("event-id", b"passthrough"),
    ("claim-id", b"passthrough"),
    ("outcome", b"clean"),
    ("ruleset-version", b"baseline"),
]


class _Ownership(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, producers: PartitionProducers) -> None:
        self._producers = producers

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._producers.close(tp.partition for tp in revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self._producers.open(tp.partition for tp in assigned)


async def main() -> None:
    settings = load_settings()
    producers = PartitionProducers(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=settings.group_id,
        input_topic=settings.topic_input,
        client_id="passthrough",
        transaction_timeout_ms=settings.transaction_timeout_ms,
    )
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=settings.group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    consumer.subscribe([settings.topic_input], listener=_Ownership(producers))
    await consumer.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        while not stop.is_set():
            batch = await consumer.getmany(
                timeout_ms=settings.batch_timeout_ms, max_records=settings.batch_max_records
            )
            by_partition: dict[int, list[OutboundRecord]] = defaultdict(list)
            next_offsets: dict[int, int] = {}
            for tp, records in batch.items():
                for record in records:
                    by_partition[tp.partition].append(
                        OutboundRecord(settings.topic_clean, record.key, record.value, _HEADERS)
                    )
                next_offsets[tp.partition] = records[-1].offset + 1
            await asyncio.gather(
                *(
                    producers.commit(
                        partition,
                        outputs,
                        next_offsets[partition],
                        generation=producers.generation(partition),
                    )
                    for partition, outputs in by_partition.items()
                )
            )
    finally:
        with contextlib.suppress(Exception):
            await producers.close_all()
        await consumer.stop()


if __name__ == "__main__":
    asyncio.run(main())
