"""Claim history on Kafka (docs/operating/history.md): one table per owned partition of the input
re-keyed by patient, restored from the compacted changelog after every fence.

The commit loop decides a partition's records against its table and writes each change to
the changelog (same partition number) in the transaction of the records it belongs to. A
partition's table is therefore exactly its committed changelog plus the changes of records
decided since the partition was last OWNED; when the partition is fenced again (a failed
transaction, a rebalance) its table is read back from the changelog, which holds only what
committed. The restored table is set aside and taken up by `begin`, which the commit loop
calls when it starts deciding the partition in a new epoch: a record decided in an older
epoch (never published) never touches it.
"""

import asyncio
import time
from dataclasses import dataclass, field
from typing import Final

from aiokafka import AIOKafkaConsumer, TopicPartition
from structlog.typing import FilteringBoundLogger

from claim_scrubber.adapters.kafka.security import KafkaConnection
from claim_scrubber.adapters.operations import StageMetrics
from claim_scrubber.scrubber.history import HistoryTable, read_history_document

__all__ = ["ChangelogStore", "HistoryTables"]

_FETCH_MS: Final = 500
_RESTORE_FETCH_BYTES: Final = 8 * 1024 * 1024


@dataclass(slots=True)
class _Partition:
    table: HistoryTable
    sizes: dict[str, int] = field(default_factory=dict)
    """Changelog bytes of each patient's latest value (the history's size)."""
    bytes: int = 0

    def sized(self, patient: str, size: int) -> None:
        before = self.sizes.pop(patient, 0)
        if size:
            self.sizes[patient] = size
        self.bytes += size - before


class HistoryTables:
    """The history table of each partition this process decides (pure: no Kafka client)."""

    def __init__(self, secret: bytes, retention_days: int) -> None:
        self._secret = secret
        self._retention_days = retention_days
        self._current: dict[int, _Partition] = {}
        self._restored: dict[int, _Partition] = {}

    def empty(self) -> HistoryTable:
        return HistoryTable(self._secret, self._retention_days)

    def restored(self, partition: int, table: HistoryTable, sizes: dict[str, int]) -> None:
        """The partition's history as read back from the changelog; `begin` takes it up."""
        self._restored[partition] = _Partition(table, sizes, sum(sizes.values()))

    def begin(self, partition: int) -> None:
        """The commit loop starts deciding the partition in a new epoch: the table restored
        by that epoch's fence (if any) replaces the one of earlier epochs."""
        restored = self._restored.pop(partition, None)
        if restored is not None:
            self._current[partition] = restored

    def table(self, partition: int) -> HistoryTable:
        """The table records of the partition are decided against (KeyError: never
        restored, which ownership does before the partition is OWNED)."""
        return self._current[partition].table

    def written(self, partition: int, patient: str, size: int) -> None:
        """A patient's changelog value of `size` bytes (0: a tombstone) was decided."""
        self._current[partition].sized(patient, size)

    def forget(self, partition: int) -> None:
        """The partition is no longer this process's: free its history."""
        self._current.pop(partition, None)
        self._restored.pop(partition, None)

    def size(self) -> tuple[int, int, int]:
        """Patients, applications and changelog bytes over the partitions decided now (read
        by the metrics thread from a copy)."""
        parts = list(self._current.values())
        return (
            sum(len(p.table) for p in parts),
            sum(p.table.application_count for p in parts),
            sum(p.bytes for p in parts),
        )


class ChangelogStore:
    """Reads a partition's history back from the changelog to its end (read_committed)."""

    def __init__(
        self,
        *,
        kafka: KafkaConnection,
        topic: str,
        tables: HistoryTables,
        log: FilteringBoundLogger,
        metrics: StageMetrics,
        stall_s: float,
    ) -> None:
        """`stall_s`: how long the read may go without progress before it fails (the fence
        fails with it, and is retried with backoff)."""
        self._kafka = kafka
        self._topic = topic
        self.tables = tables
        self._log = log
        self._metrics = metrics
        self._stall_s = stall_s

    async def restore(self, partition: int) -> None:
        started = time.perf_counter()
        changelog = TopicPartition(self._topic, partition)
        table = self.tables.empty()
        sizes: dict[str, int] = {}
        records = 0
        consumer = AIOKafkaConsumer(
            **self._kafka.client_args(),
            group_id=None,
            enable_auto_commit=False,
            isolation_level="read_committed",
            max_partition_fetch_bytes=_RESTORE_FETCH_BYTES,
            request_timeout_ms=max(1000, int(self._stall_s * 1000)),
        )
        try:
            async with asyncio.timeout(self._stall_s):
                await consumer.start()
                consumer.assign([changelog])
                await consumer.seek_to_beginning(changelog)
                end = (await consumer.end_offsets([changelog]))[changelog]
            progress_at = time.monotonic()
            while await consumer.position(changelog) < end:
                batch = await consumer.getmany(changelog, timeout_ms=_FETCH_MS, max_records=5000)
                for record in batch.get(changelog, []):
                    if record.key is None:
                        continue  # not a history record: nothing of ours writes one
                    patient = record.key.decode("ascii")
                    table.restore(patient, read_history_document(record.value))
                    sizes.pop(patient, None)
                    if record.value is not None:
                        sizes[patient] = len(record.value)
                    records += 1
                    progress_at = time.monotonic()
                if time.monotonic() - progress_at > self._stall_s:
                    raise TimeoutError(f"no progress reading {self._topic} for {self._stall_s} s")
                await asyncio.sleep(0)
        finally:
            await consumer.stop()
        self.tables.restored(partition, table, sizes)
        seconds = time.perf_counter() - started
        self._metrics.history_restore_seconds.observe(seconds)
        self._metrics.history_restored_records.inc(records)
        self._log.info(
            "history.restored",
            partition=partition,
            patients=len(table),
            applications=table.application_count,
            records=records,
            seconds=round(seconds, 3),
        )

    def forget(self, partition: int) -> None:
        self.tables.forget(partition)
