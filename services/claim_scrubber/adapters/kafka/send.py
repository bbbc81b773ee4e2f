"""Producing records the way the billing platform does: idempotent, acknowledged by every
in-sync replica (`claim-scrubber send`)."""

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer

from claim_scrubber.adapters.kafka.security import KafkaConnection

__all__ = ["Outgoing", "send_records"]

_ENVELOPE_BYTES = 64 * 1024
"""Room beside the largest value for its key, headers and the batch's framing."""


@dataclass(frozen=True, slots=True)
class Outgoing:
    topic: str
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()


async def send_records(kafka: KafkaConnection, records: Sequence[Outgoing]) -> None:
    """Publish `records` in order and wait until the brokers have every one."""
    producer = AIOKafkaProducer(
        **kafka.client_args(),
        enable_idempotence=True,
        acks="all",
        max_request_size=max((len(r.value) for r in records), default=0) + _ENVELOPE_BYTES,
    )
    try:
        await producer.start()
        delivered = [
            await producer.send(
                record.topic, record.value, key=record.key, headers=list(record.headers)
            )
            for record in records
        ]
        await asyncio.gather(*delivered)  # raises the first record the brokers refused
    finally:
        await producer.stop()
