"""Stand-ins for the broker side of PartitionOwnership: producers and the group member.

They keep one shared journal of what happened, in order, so tests can state the order of
pauses, InitProducerIds, seeks and commits.
"""

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from claim_scrubber.adapters.kafka.ownership import (
    PartitionOwnership,
    PartitionStore,
    TransactionalProducer,
)
from claim_scrubber.adapters.logging import configure_logging, get_logger


@dataclass
class FakeBroker:
    """Committed offsets and transactions as the tests script them."""

    journal: list[tuple[Any, ...]] = field(default_factory=list)
    committed: dict[int, int] = field(default_factory=dict)
    published: dict[int, list[bytes]] = field(default_factory=dict)
    """Each partition's committed values (tombstones left out)."""
    sent: dict[int, list[tuple[str, bytes | None, bytes | None]]] = field(default_factory=dict)
    """Each partition's committed records: (topic, key, value)."""
    fail_starts: dict[int, list[BaseException]] = field(default_factory=dict)
    fail_commit: dict[int, BaseException] = field(default_factory=dict)
    fail_delivery: dict[tuple[int, int], BaseException] = field(default_factory=dict)
    """(partition, index of the record in its transaction) -> the error its delivery gets."""
    during_start: dict[int, Callable[[], None]] = field(default_factory=dict)
    """partition -> what happens while its producer's InitProducerId waits."""
    commit_gate: asyncio.Event | None = None
    commit_gates: dict[int, asyncio.Event] = field(default_factory=dict)
    """partition -> what its commits wait for (beside `commit_gate`, every partition's)."""
    start_gate: asyncio.Event | None = None
    """When set, every InitProducerId waits for it."""
    producers: list["FakeProducer"] = field(default_factory=list)

    def starts(self, partition: int) -> int:
        return sum(1 for entry in self.journal if entry[:2] == ("start", partition))


class FakeProducer:
    def __init__(self, broker: FakeBroker, transactional_id: str, partition: int) -> None:
        self.broker = broker
        self.transactional_id = transactional_id
        self.partition = partition
        self.stopped = False
        self._pending: list[tuple[str, bytes | None, bytes | None]] = []
        self._offset: int | None = None

    async def start(self) -> None:
        self.broker.journal.append(("start", self.partition))
        if (happening := self.broker.during_start.get(self.partition)) is not None:
            happening()
        if self.broker.start_gate is not None:
            await self.broker.start_gate.wait()
        failures = self.broker.fail_starts.get(self.partition)
        if failures:
            raise failures.pop(0)

    async def stop(self) -> None:
        self.stopped = True
        self.broker.journal.append(("stop", self.partition))

    async def begin_transaction(self) -> None:
        self._pending, self._offset = [], None

    async def send(
        self,
        topic: str,
        value: bytes | None,
        *,
        key: bytes | None,
        headers: list[tuple[str, bytes]],
        partition: int | None = None,
    ) -> Awaitable[Any]:
        del headers, partition
        delivery: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        error = self.broker.fail_delivery.pop((self.partition, len(self._pending)), None)
        if error is None:
            delivery.set_result(None)
        else:
            delivery.set_exception(error)
        self._pending.append((topic, key, value))
        return delivery

    async def send_offsets_to_transaction(self, offsets: dict[Any, int], group_id: str) -> None:
        del group_id
        ((_, offset),) = offsets.items()
        self._offset = offset

    async def commit_transaction(self) -> None:
        if self.broker.commit_gate is not None:
            await self.broker.commit_gate.wait()
        if (gate := self.broker.commit_gates.get(self.partition)) is not None:
            await gate.wait()
        error = self.broker.fail_commit.pop(self.partition, None)
        if error is not None:
            raise error
        assert self._offset is not None
        self.broker.sent.setdefault(self.partition, []).extend(self._pending)
        self.broker.published.setdefault(self.partition, []).extend(
            value for _, _, value in self._pending if value is not None
        )
        self.broker.committed[self.partition] = self._offset
        self.broker.journal.append(("commit", self.partition, self._offset))

    async def abort_transaction(self) -> None:
        self.broker.journal.append(("abort", self.partition))


def producer_factory(broker: FakeBroker) -> Any:
    def build(transactional_id: str, partition: int) -> TransactionalProducer:
        producer = FakeProducer(broker, transactional_id, partition)
        broker.producers.append(producer)
        return producer

    return build


@dataclass
class FakeMember:
    """The group consumer: paused partitions, positions, and whether the group still agrees."""

    broker: FakeBroker
    paused: set[int] = field(default_factory=set)
    positions: dict[int, int] = field(default_factory=dict)
    current_member: bool = True

    def pause(self, partition: int) -> None:
        self.paused.add(partition)
        self.broker.journal.append(("pause", partition))

    def resume(self, partition: int) -> None:
        self.paused.discard(partition)
        self.broker.journal.append(("resume", partition))

    async def seek_to_committed(self, partition: int) -> None:
        offset = self.broker.committed.get(partition, 0)
        self.positions[partition] = offset
        self.broker.journal.append(("seek", partition, offset))

    async def confirm_membership(self) -> bool:
        self.broker.journal.append(("confirm", self.current_member))
        return self.current_member


class ManualSleep:
    """asyncio.sleep under the test's control: every delay asked for waits for `release`."""

    def __init__(self) -> None:
        self.delays: list[float] = []
        self._waiting: list[asyncio.Future[None]] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        waiting: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append(waiting)
        await waiting

    @property
    def pending(self) -> int:
        """Sleeps in progress (call `settle` first for tasks that were just started)."""
        return sum(1 for waiting in self._waiting if not waiting.done())

    async def release(self) -> None:
        """End every sleep in progress, then let the woken tasks run."""
        await settle()
        for waiting in self._waiting:
            if not waiting.done():
                waiting.set_result(None)
        await settle()


async def settle() -> None:
    """Let every ready task run until none is left (sleeps under ManualSleep stay asleep)."""
    for _ in range(50):
        await asyncio.sleep(0)


class FakeGroup:
    """PartitionOwnership over fake producers and a fake member, with the clock in hand."""

    def __init__(
        self,
        *,
        fence_quarantine_s: float = 60.0,
        wait_s: float = 30.0,
        store: PartitionStore | None = None,
    ) -> None:
        configure_logging(level="error")
        self.broker = FakeBroker()
        self.member = FakeMember(self.broker)
        self.sleep = ManualSleep()
        self.fatal: list[str] = []
        self.ownership = PartitionOwnership(
            group_id="g",
            input_topic="claims.submitted",
            producer_factory=producer_factory(self.broker),
            member=self.member,
            log=get_logger(),
            on_fatal=self.fatal.append,
            fence_quarantine_s=fence_quarantine_s,
            wait_s=wait_s,
            store=store,
            sleep=self.sleep,
        )

    async def assign(self, partitions: Iterable[int]) -> None:
        """The group assigns these partitions; the fences they schedule have run."""
        await self.ownership.assign(partitions)
        await settle()
