"""The Kafka edge without a broker: routing, headers, and what happens when a transaction fails."""

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import KafkaConnectionError

from claim_scrubber.adapters.kafka.router import ClaimRouter, Seek
from claim_scrubber.adapters.kafka.transactions import OutboundRecord, PartitionFencedError
from claim_scrubber.adapters.logging import configure_logging, get_logger
from claim_scrubber.adapters.ruleset_file import load_ruleset
from claim_scrubber.adapters.settings import Settings
from claim_scrubber.scrubber import Scrubber
from tests.claims import default_event, event_bytes, patched


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None


class FakeProducers:
    """Stands in for PartitionProducers: records commits, or fails the partitions it is told to."""

    def __init__(self, failing: dict[int, BaseException] | None = None) -> None:
        self.failing = failing or {}
        self.committed: dict[int, tuple[list[OutboundRecord], int]] = {}
        self.revoked: set[int] = set()

    def owns(self, partition: int) -> bool:
        return partition not in self.revoked

    async def commit(
        self, partition: int, records: Sequence[OutboundRecord], next_offset: int
    ) -> None:
        if partition in self.failing:
            raise self.failing[partition]
        self.committed[partition] = (list(records), next_offset)


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


def _record(partition: int, offset: int, value: bytes, key: bytes | None = None) -> Record:
    return Record("claims.submitted", partition, offset, 1_763_651_045_000, key, value)


def _no_seek(partition: TopicPartition, offset: int) -> None:
    del partition, offset


async def _handled(
    router: ClaimRouter, records: Sequence[Record], seek: Seek = _no_seek
) -> ClaimRouter:
    """Handle one batch and wait for its transactions, as the next batch or shutdown does."""
    await router.handle(records, seek)
    await router.drain()
    return router


GOOD = event_bytes(default_event())
BAD_NPI = event_bytes(patched(default_event(), {"claim.billing_provider.npi": "1"}))


class TestRouting:
    async def test_one_transaction_per_partition_commits_the_offset_after_its_last_record(
        self,
    ) -> None:
        producers = FakeProducers()
        seeks: list[tuple[TopicPartition, int]] = []
        records = [_record(0, 10, GOOD), _record(1, 4, BAD_NPI), _record(0, 11, b"[]", b"k")]

        await _handled(_router(producers), records, lambda tp, offset: seeks.append((tp, offset)))

        assert seeks == []
        outputs_0, next_0 = producers.committed[0]
        outputs_1, next_1 = producers.committed[1]
        assert (next_0, next_1) == (12, 5)
        assert [o.topic for o in outputs_0] == ["claims.clean", "claims.dead-letter"]
        assert [o.topic for o in outputs_1] == ["claims.needs-review"]
        assert outputs_0[1].key == b"k"
        assert dict(outputs_1[0].headers)["outcome"] == b"needs_review"

    async def test_a_null_record_value_is_a_dead_letter_not_a_crash(self) -> None:
        producers = FakeProducers()
        await _handled(_router(producers), [Record("claims.submitted", 2, 0, 0, None, None)])
        (output,), _ = producers.committed[2]
        assert output.topic == "claims.dead-letter"


class TestFailedTransactions:
    @pytest.mark.parametrize(
        "error", [KafkaConnectionError("down"), PartitionFencedError("claim-scrubber-x-1")]
    )
    async def test_a_failed_partition_is_rewound_to_its_first_record_and_others_commit(
        self, error: BaseException, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        delays: list[float] = []

        async def no_sleep(delay: float) -> None:
            delays.append(delay)

        monkeypatch.setattr("claim_scrubber.adapters.kafka.router.asyncio.sleep", no_sleep)
        producers = FakeProducers(failing={1: error})
        seeks: list[tuple[TopicPartition, int]] = []
        records = [_record(1, 7, GOOD), _record(1, 8, GOOD), _record(0, 3, GOOD)]

        await _handled(_router(producers), records, lambda tp, offset: seeks.append((tp, offset)))

        assert seeks == [(TopicPartition("claims.submitted", 1), 7)]
        assert list(producers.committed) == [0]
        assert len(delays) == 1
        assert 0 < delays[0] <= 10

    async def test_repeated_failures_back_off_exponentially_up_to_a_cap(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        delays: list[float] = []

        async def no_sleep(delay: float) -> None:
            delays.append(delay)

        monkeypatch.setattr("claim_scrubber.adapters.kafka.router.asyncio.sleep", no_sleep)
        router = _router(FakeProducers(failing={0: KafkaConnectionError("down")}))
        for _ in range(20):  # every other batch was fetched across a rewind: rewound again
            await _handled(router, [_record(0, 0, GOOD)])

        assert len(delays) == 10
        assert delays[0] <= 0.2
        assert delays[4] > delays[0]
        assert max(delays) <= 10
        assert delays[-1] >= 5


class TestPipelining:
    async def test_the_next_batch_is_decided_while_the_previous_one_commits(self) -> None:
        gate = asyncio.Event()

        class GatedProducers(FakeProducers):
            async def commit(
                self, partition: int, records: Sequence[OutboundRecord], next_offset: int
            ) -> None:
                await gate.wait()
                await super().commit(partition, records, next_offset)

        producers = GatedProducers()
        router = _router(producers)

        await router.handle([_record(0, 0, GOOD)], _no_seek)
        second = asyncio.create_task(router.handle([_record(0, 1, GOOD)], _no_seek))
        await asyncio.sleep(0.01)

        assert producers.committed == {}
        assert not second.done()  # decided, and waiting for the first batch's transaction
        gate.set()
        await second
        await router.drain()
        assert producers.committed[0][1] == 2

    async def test_records_fetched_across_a_rewind_are_rewound_again_not_committed(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        async def no_sleep(delay: float) -> None:
            del delay

        pause = asyncio.sleep
        monkeypatch.setattr("claim_scrubber.adapters.kafka.router.asyncio.sleep", no_sleep)
        producers = FakeProducers(failing={1: KafkaConnectionError("down")})
        router = _router(producers)
        seeks: list[tuple[TopicPartition, int]] = []

        def seek(partition: TopicPartition, offset: int) -> None:
            seeks.append((partition, offset))

        await router.handle([_record(1, 7, GOOD), _record(1, 8, GOOD)], seek)
        await pause(0.01)  # its transaction fails and the partition is rewound
        producers.failing.clear()
        await router.handle([_record(1, 9, GOOD), _record(0, 3, GOOD)], seek)
        await _handled(
            router, [_record(1, 7, GOOD), _record(1, 8, GOOD), _record(1, 9, GOOD)], seek
        )

        assert seeks == [(TopicPartition("claims.submitted", 1), 7)] * 2
        assert producers.committed[0][1] == 4
        assert [o.topic for o in producers.committed[1][0]] == ["claims.clean"] * 3
        assert producers.committed[1][1] == 10

    async def test_a_batch_that_fails_after_a_rewind_keeps_the_rewound_offset(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        async def no_sleep(delay: float) -> None:
            del delay

        def broken(record: object, decided_at: str) -> None:
            del record, decided_at
            raise RuntimeError("bug")

        pause = asyncio.sleep
        monkeypatch.setattr("claim_scrubber.adapters.kafka.router.asyncio.sleep", no_sleep)
        producers = FakeProducers(failing={1: KafkaConnectionError("down")})
        router = _router(producers)
        seeks: list[tuple[TopicPartition, int]] = []

        def seek(partition: TopicPartition, offset: int) -> None:
            seeks.append((partition, offset))

        await router.handle([_record(1, 7, GOOD), _record(1, 8, GOOD)], seek)
        await pause(0.01)  # its transaction fails and the partition is rewound to 7
        monkeypatch.setattr(router, "_route", broken)
        await _handled(router, [_record(1, 9, GOOD), _record(0, 3, GOOD)], seek)

        assert seeks == [
            (TopicPartition("claims.submitted", 1), 7),
            (TopicPartition("claims.submitted", 1), 7),
            (TopicPartition("claims.submitted", 0), 3),
        ]


class TestRevokedPartitions:
    async def test_records_of_a_partition_revoked_since_the_fetch_are_left_to_its_new_owner(
        self,
    ) -> None:
        producers = FakeProducers()
        producers.revoked.add(1)
        seeks: list[tuple[TopicPartition, int]] = []

        await _handled(
            _router(producers),
            [_record(1, 5, GOOD), _record(0, 2, GOOD)],
            lambda tp, offset: seeks.append((tp, offset)),
        )

        assert list(producers.committed) == [0]
        assert seeks == []


class TestUnexpectedFailures:
    async def test_a_batch_that_fails_before_publishing_is_rewound_not_skipped(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        async def no_sleep(delay: float) -> None:
            del delay

        def broken(record: object, decided_at: str) -> None:
            del record, decided_at
            raise RuntimeError("bug")

        monkeypatch.setattr("claim_scrubber.adapters.kafka.router.asyncio.sleep", no_sleep)
        producers = FakeProducers()
        router = _router(producers)
        monkeypatch.setattr(router, "_route", broken)
        seeks: list[tuple[TopicPartition, int]] = []

        records = [_record(0, 4, GOOD), _record(0, 5, GOOD), _record(3, 9, GOOD)]
        await _handled(router, records, lambda tp, offset: seeks.append((tp, offset)))

        assert producers.committed == {}
        assert sorted(seeks) == [
            (TopicPartition("claims.submitted", 0), 4),
            (TopicPartition("claims.submitted", 3), 9),
        ]
