"""The Kafka edge without a broker: routing, headers, and what happens when a transaction fails."""

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import IllegalStateError, KafkaConnectionError

from claim_scrubber.adapters.kafka.router import ClaimRouter
from claim_scrubber.adapters.kafka.transactions import (
    OutboundRecord,
    PartitionFencedError,
    PartitionRevokedError,
)
from claim_scrubber.adapters.logging import configure_logging, get_logger
from claim_scrubber.adapters.ruleset_file import load_ruleset
from claim_scrubber.adapters.settings import Settings
from claim_scrubber.scrubber import Scrubber
from tests.claims import default_event, event_bytes, patched

TOPIC = "claims.submitted"


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None


class FakeProducers:
    """Stands in for PartitionProducers: records commits, or fails the partitions it is told to;
    with a gate, every commit waits for it to open."""

    def __init__(
        self,
        failing: dict[int, BaseException] | None = None,
        gate: asyncio.Event | None = None,
    ) -> None:
        self.failing = failing or {}
        self.gate = gate
        self.committed: dict[int, tuple[list[OutboundRecord], int]] = {}
        self.revoked: set[int] = set()
        self.generations: dict[int, int] = {}

    def owns(self, partition: int) -> bool:
        return partition not in self.revoked

    def generation(self, partition: int) -> int:
        return self.generations.get(partition, 1)

    def assign_again(self, partition: int) -> None:
        self.generations[partition] = self.generation(partition) + 1

    async def commit(
        self,
        partition: int,
        records: Sequence[OutboundRecord],
        next_offset: int,
        *,
        generation: int,
    ) -> None:
        if self.gate is not None:
            await self.gate.wait()
        if partition in self.revoked or generation != self.generation(partition):
            raise PartitionRevokedError(str(partition))
        if partition in self.failing:
            raise self.failing[partition]
        self.committed[partition] = (list(records), next_offset)


class FakeConsumer:
    """Stands in for aiokafka's consumer: where each partition reads next, and every seek."""

    def __init__(self) -> None:
        self.positions: dict[int, int] = {}
        self.seeks: list[tuple[int, int]] = []
        self.revoked: set[int] = set()

    def fetch(self, records: Sequence[Record]) -> Sequence[Record]:
        """Deliver a batch: each partition's position moves past its records."""
        for record in records:
            self.positions[record.partition] = record.offset + 1
        return records

    def seek(self, partition: TopicPartition, offset: int) -> None:
        self.seeks.append((partition.partition, offset))
        self.positions[partition.partition] = offset

    async def position(self, partition: TopicPartition) -> int:
        if partition.partition in self.revoked:
            raise IllegalStateError(f"{partition} is not assigned")
        return self.positions[partition.partition]


def _router(producers: FakeProducers) -> ClaimRouter:
    configure_logging(level="warning")
    settings = Settings.model_construct(worker_id="component")
    scrubber = Scrubber(load_ruleset(), max_message_bytes=1024 * 1024)
    return ClaimRouter(
        settings=settings,
        scrubber=scrubber,
        producers=producers,  # type: ignore[arg-type]
        log=get_logger(),
    )


def _record(partition: int, offset: int, value: bytes | None, key: bytes | None = None) -> Record:
    return Record(TOPIC, partition, offset, 1_763_651_045_000, key, value)


async def _handled(
    router: ClaimRouter, consumer: FakeConsumer, records: Sequence[Record]
) -> ClaimRouter:
    """Fetch and handle one batch, then wait for its transactions as the next batch does."""
    await router.handle(consumer.fetch(records), consumer)
    await router.drain()
    return router


@pytest.fixture
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The retry delays the router asks for, without waiting them."""
    delays: list[float] = []

    async def no_sleep(delay: float) -> None:
        delays.append(delay)

    monkeypatch.setattr("claim_scrubber.adapters.kafka.router.asyncio.sleep", no_sleep)
    return delays


async def _let_transactions_run() -> None:
    """Let the tasks started by `handle` run, even while the router's sleep is patched."""
    for _ in range(10):
        await asyncio.wait([asyncio.get_running_loop().create_future()], timeout=0)


def _broken_route(record: object, decided_at: str) -> None:
    """`_route` with a bug: the batch fails before anything of it is published."""
    del record, decided_at
    raise RuntimeError("bug")


GOOD = event_bytes(default_event())
BAD_NPI = event_bytes(patched(default_event(), {"claim.billing_provider.npi": "1"}))


class TestRouting:
    async def test_one_transaction_per_partition_commits_the_offset_after_its_last_record(
        self,
    ) -> None:
        producers, consumer = FakeProducers(), FakeConsumer()
        records = [_record(0, 10, GOOD), _record(1, 4, BAD_NPI), _record(0, 11, b"[]", b"k")]

        await _handled(_router(producers), consumer, records)

        assert consumer.seeks == []
        outputs_0, next_0 = producers.committed[0]
        outputs_1, next_1 = producers.committed[1]
        assert (next_0, next_1) == (12, 5)
        assert [o.topic for o in outputs_0] == ["claims.clean", "claims.dead-letter"]
        assert [o.topic for o in outputs_1] == ["claims.needs-review"]
        assert outputs_0[1].key == b"k"
        assert dict(outputs_1[0].headers)["outcome"] == b"needs_review"

    async def test_a_null_record_value_is_a_dead_letter_not_a_crash(self) -> None:
        producers = FakeProducers()
        await _handled(_router(producers), FakeConsumer(), [_record(2, 0, None)])
        (output,), _ = producers.committed[2]
        assert output.topic == "claims.dead-letter"


class TestFailedTransactions:
    @pytest.mark.parametrize(
        "error", [KafkaConnectionError("down"), PartitionFencedError("claim-scrubber-x-1")]
    )
    async def test_a_failed_partition_is_rewound_to_its_first_record_and_others_commit(
        self, error: BaseException, no_backoff: list[float]
    ) -> None:
        producers, consumer = FakeProducers(failing={1: error}), FakeConsumer()
        records = [_record(1, 7, GOOD), _record(1, 8, GOOD), _record(0, 3, GOOD)]

        await _handled(_router(producers), consumer, records)

        assert consumer.seeks == [(1, 7)]
        assert list(producers.committed) == [0]
        assert len(no_backoff) == 1
        assert 0 < no_backoff[0] <= 10

    async def test_repeated_failures_back_off_exponentially_up_to_a_cap(
        self, no_backoff: list[float]
    ) -> None:
        router = _router(FakeProducers(failing={0: KafkaConnectionError("down")}))
        consumer = FakeConsumer()
        for _ in range(10):
            await _handled(router, consumer, [_record(0, 0, GOOD)])

        assert len(no_backoff) == 10
        assert no_backoff[0] <= 0.2
        assert no_backoff[4] > no_backoff[0]
        assert max(no_backoff) <= 10
        assert no_backoff[-1] >= 5


async def _second_batch_fetched_before_a_rewind() -> tuple[
    FakeProducers, FakeConsumer, ClaimRouter, Sequence[Record]
]:
    """Partition 1 fails in a first batch, and is rewound to 7, after a second batch with its
    offset 9 and partition 0's offset 3 was fetched."""
    producers = FakeProducers(failing={1: KafkaConnectionError("down")})
    consumer = FakeConsumer()
    router = _router(producers)
    await router.handle(consumer.fetch([_record(1, 7, GOOD), _record(1, 8, GOOD)]), consumer)
    second = consumer.fetch([_record(1, 9, GOOD), _record(0, 3, GOOD)])
    await _let_transactions_run()
    return producers, consumer, router, second


class TestPipelining:
    async def test_the_next_batch_is_decided_while_the_previous_one_commits(self) -> None:
        gate = asyncio.Event()
        producers, consumer = FakeProducers(gate=gate), FakeConsumer()
        router = _router(producers)

        await router.handle(consumer.fetch([_record(0, 0, GOOD)]), consumer)
        second = asyncio.create_task(router.handle(consumer.fetch([_record(0, 1, GOOD)]), consumer))
        await asyncio.sleep(0.01)

        assert producers.committed == {}
        assert not second.done()  # decided, and waiting for the first batch's transaction
        gate.set()
        await second
        await router.drain()
        assert producers.committed[0][1] == 2

    async def test_records_fetched_before_a_rewind_are_not_published(
        self, no_backoff: list[float]
    ) -> None:
        producers, consumer, router, second = await _second_batch_fetched_before_a_rewind()
        producers.failing.clear()
        await router.handle(second, consumer)
        await _handled(router, consumer, [_record(1, 7, GOOD), _record(1, 8, GOOD)])
        await _handled(router, consumer, [_record(1, 9, GOOD)])

        assert consumer.seeks == [(1, 7)]
        assert producers.committed[0][1] == 4
        assert producers.committed[1][1] == 10
        assert len(no_backoff) == 1

    async def test_a_batch_that_fails_after_a_rewind_keeps_the_rewound_offset(
        self, no_backoff: list[float], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        producers, consumer, router, second = await _second_batch_fetched_before_a_rewind()
        monkeypatch.setattr(router, "_route", _broken_route)
        await router.handle(second, consumer)

        assert producers.committed == {}
        assert consumer.seeks == [(1, 7), (0, 3)]
        assert consumer.positions == {0: 3, 1: 7}
        assert len(no_backoff) == 2


class TestRevokedPartitions:
    async def test_records_of_a_partition_revoked_since_the_fetch_are_left_to_its_new_owner(
        self,
    ) -> None:
        producers, consumer = FakeProducers(), FakeConsumer()
        producers.revoked.add(1)

        await _handled(_router(producers), consumer, [_record(1, 5, GOOD), _record(0, 2, GOOD)])

        assert list(producers.committed) == [0]
        assert consumer.seeks == []

    async def test_records_read_before_the_partition_was_assigned_back_are_read_again(
        self,
    ) -> None:
        producers, consumer = FakeProducers(), FakeConsumer()
        router = _router(producers)
        batch = consumer.fetch([_record(1, 5, GOOD), _record(1, 6, GOOD), _record(0, 2, GOOD)])
        producers.assign_again(1)
        consumer.positions[1] = 5  # a new assignment restarts at the committed offset

        await router.handle(batch, consumer)
        await router.drain()

        assert list(producers.committed) == [0]
        assert consumer.seeks == []

    async def test_a_partition_assigned_again_while_its_transaction_waits_commits_nothing(
        self,
    ) -> None:
        producers, consumer = FakeProducers(), FakeConsumer()
        router = _router(producers)

        await router.handle(consumer.fetch([_record(1, 5, GOOD), _record(0, 2, GOOD)]), consumer)
        producers.assign_again(1)
        await router.drain()

        assert list(producers.committed) == [0]

    async def test_a_revoked_partition_is_not_rewound_after_a_failed_batch(
        self, no_backoff: list[float], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        consumer = FakeConsumer()
        router = _router(FakeProducers())
        monkeypatch.setattr(router, "_route", _broken_route)
        batch = consumer.fetch([_record(1, 5, GOOD), _record(0, 2, GOOD)])
        consumer.revoked.add(1)

        await router.handle(batch, consumer)

        assert consumer.seeks == [(0, 2)]
        assert len(no_backoff) == 1


class TestUnexpectedFailures:
    async def test_a_batch_that_fails_before_publishing_is_rewound_not_skipped(
        self, no_backoff: list[float], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        producers, consumer = FakeProducers(), FakeConsumer()
        router = _router(producers)
        monkeypatch.setattr(router, "_route", _broken_route)

        records = [_record(0, 4, GOOD), _record(0, 5, GOOD), _record(3, 9, GOOD)]
        await _handled(router, consumer, records)

        assert producers.committed == {}
        assert sorted(consumer.seeks) == [(0, 4), (3, 9)]
        assert len(no_backoff) == 1
