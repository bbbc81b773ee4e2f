"""The edge between Kafka records and the scrubber: decide, publish in a transaction, audit.

One batch from the consumer becomes one transaction per input partition, committed
concurrently, and while they commit the next batch is decided. A partition whose
transaction fails is rewound to its first record of the batch, so the records are decided
again and published exactly once.
"""

import asyncio
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from aiokafka import TopicPartition
from aiokafka.errors import IllegalStateError, KafkaConnectionError, KafkaError
from structlog.typing import FilteringBoundLogger

from claim_scrubber.adapters.kafka.transactions import (
    OutboundRecord,
    PartitionFencedError,
    PartitionProducers,
    PartitionRevokedError,
)
from claim_scrubber.adapters.settings import Settings
from claim_scrubber.scrubber import DEAD_LETTER, Decision, Scrubber, timestamp_text

__all__ = ["Backoff", "ClaimRouter", "Cursor", "InputRecord"]

_JSON = b"application/json"


class InputRecord(Protocol):
    """The fields of aiokafka's ConsumerRecord the router reads."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def timestamp(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...


class Cursor(Protocol):
    """The part of aiokafka's consumer the router moves: where each partition reads next."""

    def seek(self, partition: TopicPartition, offset: int) -> None: ...
    async def position(self, partition: TopicPartition) -> int: ...


class Backoff:
    """Exponential delay with jitter between retries of a failing partition (0.2 s .. 10 s)."""

    def __init__(self, *, first_s: float = 0.2, cap_s: float = 10.0) -> None:
        self._first_s = first_s
        self._cap_s = cap_s
        self.attempt = 0

    def next_delay(self) -> float:
        self.attempt += 1
        ceiling = min(self._cap_s, self._first_s * 2 ** (self.attempt - 1))
        jitter = random.uniform(0, ceiling / 2)  # noqa: S311 - spreads retries, not security
        return float(ceiling / 2 + jitter)

    def reset(self) -> None:
        self.attempt = 0


@dataclass(frozen=True, slots=True)
class _Routed:
    record: InputRecord
    decision: Decision
    output: OutboundRecord


@dataclass(frozen=True, slots=True)
class _PartitionBatch:
    """One partition's share of a batch, and the assignment of the partition it was read in."""

    partition: int
    generation: int
    routed: list[_Routed]


def _key_text(key: bytes | None) -> str | None:
    if key is None:
        return None
    try:
        return key.decode("utf-8")
    except UnicodeDecodeError:
        return None


class ClaimRouter:
    def __init__(
        self,
        *,
        settings: Settings,
        scrubber: Scrubber,
        producers: PartitionProducers,
        log: FilteringBoundLogger,
    ) -> None:
        self._settings = settings
        self._scrubber = scrubber
        self._producers = producers
        self._log = log
        self._backoff = Backoff()
        self._topic_by_outcome = {
            "clean": settings.topic_clean,
            "needs_review": settings.topic_review,
            DEAD_LETTER: settings.topic_dead_letter,
        }
        self._ruleset_version = scrubber.ruleset.version.encode()
        self._in_flight: asyncio.Task[None] | None = None

    def _route(self, record: InputRecord, decided_at: str) -> _Routed:
        payload = record.value or b""
        decision = self._scrubber.decide(
            payload,
            result_source={
                "topic": record.topic,
                "partition": record.partition,
                "offset": record.offset,
            },
            dead_letter_source={
                "topic": record.topic,
                "partition": record.partition,
                "offset": record.offset,
                "timestamp_ms": record.timestamp,
                "key": _key_text(record.key),
            },
            decided_at=decided_at,
        )
        claim_id = (decision.claim_id or "").encode()
        output = OutboundRecord(
            topic=self._topic_by_outcome[decision.outcome],
            key=record.key if decision.is_dead_letter else claim_id,
            value=decision.document,
            headers=[
                ("content-type", _JSON),
                ("event-id", (decision.event_id or "").encode()),
                ("claim-id", claim_id),
                ("outcome", decision.outcome.encode()),
                ("ruleset-version", self._ruleset_version),
            ],
        )
        return _Routed(record, decision, output)

    async def handle(self, records: Sequence[InputRecord], consumer: Cursor) -> None:
        """Decide every record, then start the batch's transactions, one per partition.

        The transactions of a batch commit while the next batch is decided: this returns once
        they have started, after the previous batch's have ended. `drain` waits for them.
        """
        decided_at = timestamp_text(datetime.now(UTC))
        by_partition: dict[int, list[_Routed]] = {}
        try:
            for record in records:
                if self._producers.owns(record.partition):  # else revoked since it was fetched
                    by_partition.setdefault(record.partition, []).append(
                        self._route(record, decided_at)
                    )
        except Exception as error:  # noqa: BLE001 - a bug here must not skip the batch
            self._log.error("batch.failed", records=len(records), exc_info=error)
            await self.drain()
            firsts: dict[int, InputRecord] = {}
            for record in records:
                firsts.setdefault(record.partition, record)
            for first in firsts.values():
                if not await self._delivered_again(first, consumer):
                    self._rewind(first, consumer)
            await asyncio.sleep(self._backoff.next_delay())
            return

        await self.drain()
        batch: list[_PartitionBatch] = []
        for partition, routed in by_partition.items():
            generation = self._producers.generation(partition)
            if not await self._delivered_again(routed[0].record, consumer):
                batch.append(_PartitionBatch(partition, generation, routed))
        if batch:
            self._in_flight = asyncio.create_task(self._commit(batch, consumer))

    async def _delivered_again(self, first: InputRecord, consumer: Cursor) -> bool:
        """Whether the consumer will deliver a partition's records from `first` on again, or
        no longer reads the partition at all: either way they are not this batch's to publish.

        The consumer reads a partition again from before such a batch when the batch was
        fetched before a rewind (the previous batch failed on it meanwhile) or before the
        partition was revoked and assigned back (its position restarts at the committed
        offset). Publishing that batch would duplicate it; rewinding to it could skip records.
        """
        try:
            position = await consumer.position(TopicPartition(first.topic, first.partition))
        except (IllegalStateError, AssertionError, KafkaError):
            return True  # revoked: its new owner starts from the committed offset
        return position <= first.offset

    async def drain(self) -> None:
        """Wait until the last batch's transactions have ended and its claims are audited."""
        in_flight, self._in_flight = self._in_flight, None
        if in_flight is None:
            return
        try:
            await asyncio.shield(in_flight)
        except Exception as error:  # noqa: BLE001 - its failed partitions were rewound already
            self._log.error("batch.failed", exc_info=error)

    async def _commit(self, batch: list[_PartitionBatch], consumer: Cursor) -> None:
        outcomes = await asyncio.gather(
            *(
                self._producers.commit(
                    part.partition,
                    [routed.output for routed in part.routed],
                    part.routed[-1].record.offset + 1,
                    generation=part.generation,
                )
                for part in batch
            ),
            return_exceptions=True,
        )
        committed_ms = time.time() * 1000
        failures = 0
        for part, outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, PartitionRevokedError):
                self._log.info("partition.revoked_before_commit", partition=part.partition)
            elif isinstance(outcome, BaseException):
                failures += 1
                self._rewind(part.routed[0].record, consumer)
                self._report_failure(part.partition, outcome)
            else:
                for item in part.routed:
                    self._audit(item, committed_ms)
        if failures:
            delay = self._backoff.next_delay()
            self._log.info(
                "worker.retrying", retry_in_s=round(delay, 2), attempt=self._backoff.attempt
            )
            await asyncio.sleep(delay)
        else:
            self._backoff.reset()

    def _rewind(self, first: InputRecord, consumer: Cursor) -> None:
        try:
            consumer.seek(TopicPartition(first.topic, first.partition), first.offset)
        except (IllegalStateError, AssertionError, KafkaError):
            # The partition was revoked meanwhile: its new owner starts from the committed offset.
            self._log.info("partition.rewind_skipped", partition=first.partition)

    def _report_failure(self, partition: int, error: BaseException) -> None:
        if isinstance(error, PartitionFencedError):
            self._log.warning("transaction.fenced", partition=partition)
        elif isinstance(error, KafkaConnectionError | asyncio.TimeoutError | OSError):
            self._log.warning(
                "broker.unreachable",
                partition=partition,
                error_type=type(error).__name__,
                error=str(error),
                bootstrap_servers=self._settings.kafka_bootstrap_servers,
            )
        elif isinstance(error, KafkaError):
            self._log.warning(
                "transaction.aborted",
                partition=partition,
                error_type=type(error).__name__,
                error=str(error),
            )
        else:
            self._log.error("transaction.aborted", partition=partition, exc_info=error)

    def _audit(self, item: _Routed, committed_ms: float) -> None:
        decision, record = item.decision, item.record
        fields = {
            "event_id": decision.event_id,
            "claim_id": decision.claim_id,
            "claim_version": decision.claim_version,
            "outcome": decision.outcome,
            "rule_ids": list(decision.rule_ids),
            "ruleset_version": self._scrubber.ruleset.version,
            "source_topic": record.topic,
            "source_partition": record.partition,
            "source_offset": record.offset,
            "output_topic": item.output.topic,
            "latency_ms": max(0, round(committed_ms - record.timestamp)),
            "worker_id": self._settings.worker_id,
        }
        if decision.dead_letter_kind is not None:
            self._log.warning(
                "claim.dead_lettered", dead_letter_kind=decision.dead_letter_kind.value, **fields
            )
        else:
            self._log.info("claim.scrubbed", **fields)
