"""The commit loop: decide a batch, publish it in one transaction per partition, audit it.

One batch from the consumer becomes one transaction per input partition, committed
concurrently, and while they commit the next batch is decided. A partition whose record
cannot be decided, or whose transaction fails, is handed to PartitionOwnership, which pauses
it alone and reads it again from its committed offset after its own backoff; the other
partitions carry on. A record that fails `MAX_ATTEMPTS` times for a reason that is not a
rule's is published as a `processing_error` dead letter instead of being retried forever.
"""

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final, Generic, Protocol, TypeVar

from aiokafka import TopicPartition
from aiokafka.errors import (
    IllegalStateError,
    KafkaError,
    MessageSizeTooLargeError,
    RecordTooLargeError,
)
from opentelemetry.trace import Span
from structlog.typing import FilteringBoundLogger

from claim_scrubber.adapters.kafka.outbound import InputRecord, RecordMapping, Routed
from claim_scrubber.adapters.kafka.ownership import (
    PartitionFencedError,
    PartitionOwnership,
    PartitionRevokedError,
    TransactionFailedError,
)
from claim_scrubber.adapters.operations import WorkerMetrics
from claim_scrubber.adapters.tracing import Tracing
from claim_scrubber.scrubber import timestamp_text

__all__ = ["MAX_ATTEMPTS", "ClaimRouter", "Cursor"]

MAX_ATTEMPTS: Final = 3
"""Failures of one record (not a rule's: those are ENGINE-001 findings) before it becomes a
`processing_error` dead letter."""

_SIZE_ERRORS: Final = (MessageSizeTooLargeError, RecordTooLargeError)


class Cursor(Protocol):
    """The part of aiokafka's consumer the router reads: where each partition reads next,
    and the last high-water mark it fetched (None before the first fetch)."""

    async def position(self, partition: TopicPartition) -> int: ...
    def highwater(self, partition: TopicPartition) -> int | None: ...


@dataclass(slots=True)
class _Failures:
    """What went wrong with one record so far."""

    attempts: int = 0
    size_refusals: int = 0
    error_type: str = ""


Detail = TypeVar("Detail")


@dataclass(slots=True)
class _PartitionBatch(Generic[Detail]):
    """One partition's share of a batch, the partition's epoch when it was read, and the
    batch's span."""

    partition: int
    epoch: int
    span: Span
    routed: list[Routed[Detail]] = field(default_factory=list)


class ClaimRouter(Generic[Detail]):
    """The commit loop of one input topic, for any stage's RecordMapping."""

    def __init__(
        self,
        *,
        mapping: RecordMapping[Detail],
        ownership: PartitionOwnership,
        log: FilteringBoundLogger,
        metrics: WorkerMetrics | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        self._mapping = mapping
        self._ownership = ownership
        self._log = log
        self._metrics = metrics
        self._tracing = tracing or Tracing()
        self._in_flight: asyncio.Task[None] | None = None
        self._failures: dict[tuple[int, int], _Failures] = {}
        self._handling = asyncio.Lock()
        self._closing = False

    async def handle(self, records: Sequence[InputRecord], consumer: Cursor) -> None:
        """Decide every record, then start the batch's transactions, one per partition.

        The transactions of a batch commit while the next batch is decided: this returns once
        they have started, after the previous batch's have ended. `drain` waits for them.
        """
        async with self._handling:
            if self._closing:  # stopping: the partitions' next owner reads these records
                return
            with self._tracing.batch(len(records)) as span:
                await self._handle(records, consumer, span)

    async def _handle(self, records: Sequence[InputRecord], consumer: Cursor, span: Span) -> None:
        decided_at = timestamp_text(datetime.now(UTC))
        deciding_since = time.perf_counter()
        parts: dict[int, _PartitionBatch[Detail]] = {}
        skipped: set[int] = set()
        for record in records:
            partition = record.partition
            if partition in skipped:
                continue
            part = parts.get(partition)
            if part is None:
                if not self._ownership.owns(partition):  # paused or revoked since fetched
                    skipped.add(partition)
                    continue
                part = parts[partition] = _PartitionBatch(
                    partition, self._ownership.epoch(partition), span
                )
            routed = self._route(record, decided_at)
            if routed is None:
                del parts[partition]
                skipped.add(partition)
            else:
                part.routed.append(routed)
        if self._tracing.enabled:
            self._tracing.link(
                span, [r.traceparent for p in parts.values() for r in p.routed if r.traceparent]
            )
        if self._metrics is not None:
            self._metrics.batch_records.observe(len(records))
            self._metrics.decide_seconds.observe(time.perf_counter() - deciding_since)

        await self.drain()
        batch = [
            part
            for part in parts.values()
            if not await self._delivered_again(part.routed[0].record, consumer)
        ]
        if batch:
            self._in_flight = asyncio.create_task(self._commit(batch, consumer))

    def _route(self, record: InputRecord, decided_at: str) -> Routed[Detail] | None:
        """The record's output, or None when deciding it failed (its partition will read it
        again) — after MAX_ATTEMPTS failures, its `processing_error` dead letter."""
        failures = self._failures.get((record.partition, record.offset))
        if failures is not None and failures.attempts >= MAX_ATTEMPTS:
            return self._mapping.processing_error(
                record,
                decided_at,
                attempts=failures.attempts,
                error_type=failures.error_type,
                shrink=failures.size_refusals,
            )
        try:
            return self._mapping.route(
                record, decided_at, shrink=0 if failures is None else failures.size_refusals
            )
        except Exception as error:  # noqa: BLE001 - a bug here must stall no partition
            failed = self._failed(record, error)
            self._log.error(
                "record.failed",
                partition=record.partition,
                offset=record.offset,
                attempt=failed.attempts,
                exc_info=error,
            )
            self._ownership.fail(record.partition, reason="record.failed")
            return None

    def _failed(self, record: InputRecord, error: BaseException) -> _Failures:
        failures = self._failures.setdefault((record.partition, record.offset), _Failures())
        failures.attempts += 1
        failures.error_type = type(error).__name__
        if isinstance(error, _SIZE_ERRORS):
            failures.size_refusals += 1
        return failures

    async def _delivered_again(self, first: InputRecord, consumer: Cursor) -> bool:
        """Whether the consumer will deliver a partition's records from `first` on again, or
        no longer reads the partition at all: either way they are not this batch's to publish.

        The consumer reads a partition again from before such a batch when the batch was
        fetched before the partition was re-read from its committed offset (after a failure,
        or when it was revoked and assigned back). Publishing that batch would duplicate it.
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
        except Exception as error:  # noqa: BLE001 - its partitions recover on their own
            self._log.error("batch.failed", exc_info=error)

    async def close(self) -> None:
        """Stop publishing: no new batch starts, the one in flight ends (commit or abort)."""
        self._closing = True
        async with self._handling:
            await self.drain()

    async def _commit_one(self, part: _PartitionBatch[Detail]) -> None:
        started = time.perf_counter()
        try:
            with self._tracing.transaction(part.span, part.partition, len(part.routed)):
                await self._ownership.commit(
                    part.partition,
                    [output for routed in part.routed for output in routed.outputs],
                    part.routed[-1].record.offset + 1,
                    epoch=part.epoch,
                )
        finally:
            if self._metrics is not None:
                self._metrics.commit_seconds.observe(time.perf_counter() - started)

    async def _commit(self, batch: list[_PartitionBatch[Detail]], consumer: Cursor) -> None:
        outcomes = await asyncio.gather(
            *(self._commit_one(part) for part in batch), return_exceptions=True
        )
        committed_ms = time.time() * 1000
        for part, outcome in zip(batch, outcomes, strict=True):
            if outcome is None:
                self._committed(part, committed_ms)
                self._count(part, "committed", consumer)
            elif isinstance(outcome, PartitionRevokedError):
                self._log.info("partition.revoked_before_commit", partition=part.partition)
            elif isinstance(outcome, TransactionFailedError):
                self._count(part, "aborted", consumer)
                # A refusal of one record's size is that record's; any other failure is the
                # partition's or the broker's and counts against no record.
                if outcome.record_index is not None and isinstance(outcome.cause, _SIZE_ERRORS):
                    self._failed(_input_of(part, outcome.record_index), outcome.cause)
            elif isinstance(outcome, PartitionFencedError):
                self._count(part, "fenced", consumer)
            else:
                self._log.error("transaction.aborted", partition=part.partition, exc_info=outcome)

    def _count(self, part: _PartitionBatch[Detail], result: str, consumer: Cursor) -> None:
        metrics = self._metrics
        if metrics is None:
            return
        metrics.transactions.labels(result=result).inc()
        if result != "committed":
            return
        tallies = [routed.tally for routed in part.routed]
        committed_s = time.time()
        metrics.committed(
            (outcome for t in tallies for outcome in t.outcomes),
            (kind for t in tallies for kind in t.dead_letter_kinds),
            (finding for t in tallies for finding in t.findings),
            (max(0.0, committed_s - routed.record.timestamp / 1000) for routed in part.routed),
        )
        first = part.routed[0].record
        highwater = consumer.highwater(TopicPartition(first.topic, first.partition))
        if highwater is not None:
            lag = max(0, highwater - (part.routed[-1].record.offset + 1))
            metrics.consumer_lag.labels(topic=first.topic, partition=str(part.partition)).set(lag)

    def _committed(self, part: _PartitionBatch[Detail], committed_ms: float) -> None:
        trace_id = Tracing.trace_id(part.span)
        for routed in part.routed:
            line = self._mapping.audit(routed, committed_ms, trace_id)
            if line.warning:
                self._log.warning(line.event, **line.fields)
            else:
                self._log.info(line.event, **line.fields)
        if self._failures:
            end = part.routed[-1].record.offset
            for key in [k for k in self._failures if k[0] == part.partition and k[1] <= end]:
                del self._failures[key]


def _input_of(part: _PartitionBatch[Detail], output_index: int) -> InputRecord:
    """The input record whose outputs include the transaction's `output_index`th record."""
    for routed in part.routed:
        if output_index < len(routed.outputs):
            return routed.record
        output_index -= len(routed.outputs)
    return part.routed[-1].record
