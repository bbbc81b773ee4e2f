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

from aiokafka import AIOKafkaConsumer

from claim_scrubber.adapters.kafka.group import (
    ConsumerMember,
    OwnershipListener,
    transactional_producers,
)
from claim_scrubber.adapters.kafka.ownership import (
    OutboundRecord,
    PartitionOwnership,
    broker_wait_s,
)
from claim_scrubber.adapters.kafka.security import connection
from claim_scrubber.adapters.logging import configure_logging, get_logger
from claim_scrubber.adapters.settings import load_settings

_HEADERS = [
    ("content-type", b"application/json"),
    ("event-id", b"passthrough"),
    ("claim-id", b"passthrough"),
    ("outcome", b"clean"),
    ("ruleset-version", b"baseline"),
]


async def main() -> None:
    settings = load_settings()
    configure_logging(level="warning")
    log = get_logger(worker_id="passthrough")
    fatal: list[str] = []
    kafka = connection(settings)
    consumer = AIOKafkaConsumer(
        **kafka.client_args(),
        group_id=settings.group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    ownership = PartitionOwnership(
        group_id=settings.group_id,
        input_topic=settings.topic_input,
        producer_factory=transactional_producers(
            connection=kafka,
            client_id="passthrough",
            transaction_timeout_ms=settings.transaction_timeout_ms,
        ),
        member=ConsumerMember(lambda: consumer, settings.topic_input),
        log=log,
        fence_quarantine_s=settings.transaction_timeout_ms / 1000,
        wait_s=broker_wait_s(settings.transaction_timeout_ms),
        on_fatal=fatal.append,
    )
    consumer.subscribe(
        [settings.topic_input],
        listener=OwnershipListener(topic=settings.topic_input, ownership=ownership, log=log),
    )
    await consumer.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        while not stop.is_set() and not fatal:
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
                    ownership.commit(
                        partition,
                        outputs,
                        next_offsets[partition],
                        epoch=ownership.epoch(partition),
                    )
                    for partition, outputs in by_partition.items()
                ),
                return_exceptions=True,  # a failed partition recovers on its own
            )
    finally:
        with contextlib.suppress(Exception):
            await ownership.close()
        await consumer.stop()


if __name__ == "__main__":
    asyncio.run(main())
