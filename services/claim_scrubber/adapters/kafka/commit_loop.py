"""The commit loop: decide a batch, publish it in one transaction per partition, audit it.

One batch from the consumer becomes one transaction per input partition. The partitions
commit independently: each has at most one transaction in flight and one queued behind it
(a partition with both is paused in the consumer), so one partition's slow transaction holds
no other, and the next batch is decided while they commit. A partition whose record
cannot be decided, or whose transaction fails, is handed to PartitionOwnership, which pauses
it alone and reads it again from its committed offset after its own backoff; the other
partitions carry on. A record that fails `MAX_ATTEMPTS` times for a reason that is not a
rule's is published as a `processing_error` dead letter instead of being retried forever.

The event loop keeps turning however large the input (heartbeats, probes, the other
partitions' commits): a fetched batch is decided and committed in rounds of at most
`batch_max_bytes` of input, a record of LARGE_RECORD_BYTES or more (an 837P interchange of
thousands of claims) is decided in a worker thread, and deciding yields to the loop between
records at least every YIELD_EVERY_S.
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
from claim_scrubber.adapters.operations import StageMetrics
from claim_scrubber.adapters.tracing import Tracing
from claim_scrubber.scrubber import timestamp_text

__all__ = ["LARGE_RECORD_BYTES", "MAX_ATTEMPTS", "YIELD_EVERY_S", "CommitLoop", "Cursor"]

MAX_ATTEMPTS: Final = 3
"""Failures of one record (not a rule's: those are ENGINE-001 findings) before it becomes a
`processing_error` dead letter."""

LARGE_RECORD_BYTES: Final = 256 * 1024
"""A record at least this large is decided in a worker thread, off the event loop."""
YIELD_EVERY_S: Final = 0.02
"""Deciding a batch yields to the event loop at least this often."""

_SIZE_ERRORS: Final = (MessageSizeTooLargeError, RecordTooLargeError)


class PartitionTables(Protocol):
    """State the mapping decides a partition's records against (claim history)."""

    def begin(self, partition: int) -> None:
        """The partition is decided in a new epoch: take up the state its fence restored."""
        ...


class Cursor(Protocol):
    """The part of aiokafka's consumer the router reads: where each partition reads next,
    and the last high-water mark it fetched (None before the first fetch)."""

    async def position(self, partition: TopicPartition) -> int: ...
    def highwater(self, partition: TopicPartition) -> int | None: ...
    def seek(self, partition: TopicPartition, offset: int) -> None: ...


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


class CommitLoop(Generic[Detail]):
    """The commit loop of one input topic, for any stage's RecordMapping."""

    def __init__(
        self,
        *,
        mapping: RecordMapping[Detail],
        ownership: PartitionOwnership,
        log: FilteringBoundLogger,
        metrics: StageMetrics | None = None,
        tracing: Tracing | None = None,
        batch_max_bytes: int | None = None,
        queued_max_records: int = 500,
        tables: PartitionTables | None = None,
    ) -> None:
        """`queued_max_records`: the records that may wait behind the partitions'
        transactions in flight, shared out among the assigned partitions. `tables`: the
        mapping's per-partition state, told when a partition is decided in a new epoch."""
        self._tables = tables
        self._mapping = mapping
        self._batch_max_bytes = batch_max_bytes
        self._queued_max_records = queued_max_records
        self._queued: set[int] = set()
        """Partitions with a transaction queued behind the one in flight."""
        self._ownership = ownership
        self._log = log
        self._metrics = metrics
        self._tracing = tracing or Tracing()
        self._in_flight: dict[int, asyncio.Task[None]] = {}
        """The last transaction started of each partition (each waits for its previous)."""
        self._failures: dict[tuple[int, int], _Failures] = {}
        self._handling = asyncio.Lock()
        self._closing = False

    async def handle(self, records: Sequence[InputRecord], consumer: Cursor) -> None:
        """Decide every record, then start the batch's transactions, one per partition.

        The transactions of a batch commit while the next batch is decided: this returns once
        each partition's is queued behind that partition's previous one. `drain` waits for
        them. A
        batch of more than `batch_max_bytes` is decided and committed in rounds of at most
        that many bytes (a record larger than that is a round of its own).
        """
        async with self._handling:
            rewound: set[int] = set()
            for round_ in _rounds(records, self._batch_max_bytes):
                if self._closing:  # stopping: the partitions' next owner reads these records
                    return
                with self._tracing.batch(len(round_)) as span:
                    await self._handle(round_, consumer, span, rewound)

    def _room(self, partition: int, share: int) -> int | None:
        """How many records of the partition this batch may take: any number when nothing of
        it is in flight, `share` to queue behind its transaction in flight, none when one is
        queued already."""
        in_flight = self._in_flight.get(partition)
        if in_flight is None or in_flight.done():
            return None
        return 0 if partition in self._queued else share

    def _part_of(
        self,
        partition: int,
        parts: dict[int, _PartitionBatch[Detail]],
        skipped: set[int],
        span: Span,
    ) -> _PartitionBatch[Detail] | None:
        """The round's share of the partition, None when its records are skipped: it is
        not OWNED (paused or revoked since fetched), or it moved to another epoch while the
        round was decided (a yield, a large record): those records are read again, and none
        may touch the new epoch's state."""
        if partition in skipped:
            return None
        part = parts.get(partition)
        if part is None:
            if not self._ownership.owns(partition):
                skipped.add(partition)
                return None
            part = parts[partition] = _PartitionBatch(
                partition, self._ownership.epoch(partition), span
            )
            if self._tables is not None:
                self._tables.begin(partition)
        elif self._ownership.epoch(partition) != part.epoch:
            del parts[partition]
            skipped.add(partition)
            return None
        return part

    async def _handle(
        self, records: Sequence[InputRecord], consumer: Cursor, span: Span, rewound: set[int]
    ) -> None:
        """Decide a round. A partition's records beyond its room are not decided: the
        consumer is moved back to the first of them (`rewound`), to fetch them again once
        the partition's queue moves, so what waits behind the transactions stays bounded."""
        decided_at = timestamp_text(datetime.now(UTC))
        deciding_since = time.perf_counter()
        parts: dict[int, _PartitionBatch[Detail]] = {}
        rooms: dict[int, int | None] = {}
        skipped: set[int] = set(rewound)
        share = max(1, self._queued_max_records // max(1, len(self._ownership.assigned())))
        yielded = deciding_since
        for record in records:
            if time.perf_counter() - yielded >= YIELD_EVERY_S:
                await asyncio.sleep(0)
                yielded = time.perf_counter()
            partition = record.partition
            part = self._part_of(partition, parts, skipped, span)
            if part is None:
                continue
            if partition not in rooms:
                rooms[partition] = self._room(partition, share)
            room = rooms[partition]
            if room is not None and len(part.routed) >= room:
                consumer.seek(TopicPartition(record.topic, partition), record.offset)
                rewound.add(partition)
                skipped.add(partition)
                if not part.routed:
                    del parts[partition]
                continue
            routed = await self._route(record, decided_at)
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

        for part in parts.values():
            self._start(part, consumer)

    def _start(self, part: _PartitionBatch[Detail], consumer: Cursor) -> None:
        """Commit a partition's share once its previous transaction has ended: one
        transaction in flight per partition, in order, and the partitions independent of
        each other. A partition with one in flight and this one queued is held (the consumer
        fetches no more of it) until the queue moves, so at most two of its batches wait."""
        partition = part.partition
        previous = self._in_flight.get(partition)
        if previous is not None and previous.done():
            previous = None
        if previous is not None:
            self._ownership.hold(partition)
            self._queued.add(partition)
        task = asyncio.create_task(self._commit_after(previous, part, consumer))
        self._in_flight[partition] = task
        task.add_done_callback(lambda done: self._forget(partition, done))

    def _forget(self, partition: int, task: "asyncio.Task[None]") -> None:
        if self._in_flight.get(partition) is task:
            del self._in_flight[partition]

    async def _commit_after(
        self,
        previous: "asyncio.Task[None] | None",
        part: _PartitionBatch[Detail],
        consumer: Cursor,
    ) -> None:
        if previous is not None:
            try:
                await asyncio.wait([previous])
            finally:
                self._queued.discard(part.partition)
            self._ownership.release(part.partition)
        if await self._delivered_again(part.routed[0].record, consumer):
            return
        try:
            await self._commit_one(part)
        except Exception as error:  # noqa: BLE001 - each kind is answered in _ended
            self._ended(part, error, consumer)
        else:
            self._ended(part, None, consumer)

    async def _route(self, record: InputRecord, decided_at: str) -> Routed[Detail] | None:
        """The record's output, or None when deciding it failed (its partition will read it
        again) — after MAX_ATTEMPTS failures, its `processing_error` dead letter. A large
        record is decided in a worker thread while the loop turns."""
        failures = self._failures.get((record.partition, record.offset))
        if failures is not None and failures.attempts >= MAX_ATTEMPTS:
            return self._mapping.processing_error(
                record,
                decided_at,
                attempts=failures.attempts,
                error_type=failures.error_type,
                shrink=failures.size_refusals,
            )
        shrink = 0 if failures is None else failures.size_refusals
        try:
            if len(record.value or b"") >= LARGE_RECORD_BYTES:
                return await asyncio.to_thread(
                    self._mapping.route, record, decided_at, shrink=shrink
                )
            return self._mapping.route(record, decided_at, shrink=shrink)
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
            # revoked: its new owner starts from the committed offset
            self._log.info("partition.revoked_before_commit", partition=first.partition)
            return True
        return position <= first.offset

    async def drain(self) -> None:
        """Wait until every partition's transactions have ended and their claims are
        audited."""
        in_flight = list(self._in_flight.values())
        if not in_flight:
            return
        ended = await asyncio.gather(
            *(asyncio.shield(task) for task in in_flight), return_exceptions=True
        )
        for outcome in ended:
            if isinstance(outcome, Exception):  # its partition recovers on its own
                self._log.error("batch.failed", exc_info=outcome)

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

    def _ended(
        self, part: _PartitionBatch[Detail], outcome: Exception | None, consumer: Cursor
    ) -> None:
        """Audit and count a partition's transaction that committed, or answer its failure."""
        if outcome is None:
            self._committed(part, time.time() * 1000)
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
        counts = [routed.counts for routed in part.routed]
        committed_s = time.time()
        metrics.committed(
            (outcome for t in counts for outcome in t.outcomes),
            (kind for t in counts for kind in t.dead_letter_kinds),
            (finding for t in counts for finding in t.findings),
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
            if line is None:
                continue
            if line.warning:
                self._log.warning(line.event, **line.fields)
            else:
                self._log.info(line.event, **line.fields)
        if self._failures:
            end = part.routed[-1].record.offset
            for key in [k for k in self._failures if k[0] == part.partition and k[1] <= end]:
                del self._failures[key]


def _rounds(records: Sequence[InputRecord], max_bytes: int | None) -> list[Sequence[InputRecord]]:
    """The batch cut into consecutive rounds of at most `max_bytes` of record values."""
    if max_bytes is None:
        return [records]
    rounds: list[Sequence[InputRecord]] = []
    start, size = 0, 0
    for index, record in enumerate(records):
        value = len(record.value or b"")
        if size + value > max_bytes and index > start:
            rounds.append(records[start:index])
            start, size = index, 0
        size += value
    rounds.append(records[start:])
    return rounds


def _input_of(part: _PartitionBatch[Detail], output_index: int) -> InputRecord:
    """The input record whose outputs include the transaction's `output_index`th record."""
    for routed in part.routed:
        if output_index < len(routed.outputs):
            return routed.record
        output_index -= len(routed.outputs)
    return part.routed[-1].record
