"""The commit loop without a broker: routing, pipelining, and partitions that fail alone.

The router runs on the real PartitionOwnership over fake producers and a fake group member.
"""

import asyncio
import base64
import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, TypeVar

import orjson
import pytest
from aiokafka import TopicPartition
from aiokafka.errors import IllegalStateError, KafkaConnectionError, MessageSizeTooLargeError

from claim_scrubber.adapters.kafka.commit_loop import LARGE_RECORD_BYTES, MAX_ATTEMPTS, CommitLoop
from claim_scrubber.adapters.kafka.history import HistoryTables
from claim_scrubber.adapters.kafka.outbound import (
    RECORD_OVERHEAD_BYTES,
    InputRecord,
    OutputTopics,
    Routed,
)
from claim_scrubber.adapters.kafka.ownership import PartitionState, PartitionStore
from claim_scrubber.adapters.kafka.scrub_mapping import ScrubMapping
from claim_scrubber.adapters.logging import get_logger
from claim_scrubber.adapters.operations import (
    Health,
    StageMetrics,
    beat_while_running,
    watch_lag,
)
from claim_scrubber.adapters.ruleset_file import load_ruleset
from claim_scrubber.models import DeadLetter, ScrubResult
from claim_scrubber.scrubber import Decision, Scrubber
from claim_scrubber.scrubber.history import read_history_document
from tests.claims import default_event, event_bytes, patched
from tests.component.fakes import FakeBroker, FakeGroup, FakeMember, settle

TOPIC = "claims.submitted"
HISTORY_TOPIC = "claims.history"
DEAD_LETTER_TOPIC_BYTES = 1_048_588


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]] = ()


class FakeConsumer:
    """Where each partition reads next: the member's positions, moved by every fetch."""

    def __init__(self, member: FakeMember) -> None:
        self.member = member
        self.revoked: set[int] = set()
        self.highwaters: dict[int, int] = {}

    def fetch(self, records: Sequence[Record]) -> Sequence[Record]:
        for record in records:
            self.member.positions[record.partition] = record.offset + 1
        return records

    async def position(self, partition: TopicPartition) -> int:
        if partition.partition in self.revoked:
            raise IllegalStateError(f"{partition} is not assigned")
        return self.member.positions[partition.partition]

    def highwater(self, partition: TopicPartition) -> int | None:
        return self.highwaters.get(partition.partition)

    def seek(self, partition: TopicPartition, offset: int) -> None:
        self.member.positions[partition.partition] = offset


class FlakyMapping(ScrubMapping):
    """The real mapping, except that routing the records it is told of raises."""

    failing: set[tuple[int, int]]

    def route(self, record: InputRecord, decided_at: str, *, shrink: int = 0) -> Routed[Decision]:
        if (record.partition, record.offset) in self.failing:
            raise RuntimeError("bug")
        return super().route(record, decided_at, shrink=shrink)


M = TypeVar("M", bound=FlakyMapping)


def _mapping(kind: type[M], history: HistoryTables | None = None) -> M:
    mapping = kind(
        history=None if history is None else (history, HISTORY_TOPIC),
        scrubber=Scrubber(load_ruleset(), max_message_bytes=1024 * 1024),
        topics=OutputTopics(
            clean="claims.clean",
            review="claims.needs-review",
            dead_letter="claims.dead-letter",
            max_bytes={
                "claims.clean": 2 * 1024 * 1024,
                "claims.needs-review": 2 * 1024 * 1024,
                "claims.dead-letter": DEAD_LETTER_TOPIC_BYTES,
            },
        ),
        worker_id="component",
    )
    mapping.failing = set()
    return mapping


class _World(FakeGroup):
    def __init__(
        self, *, store: PartitionStore | None = None, history: HistoryTables | None = None
    ) -> None:
        """`store` and `history`: claim history on, each partition's table in `history`."""
        super().__init__(store=store)
        self.mapping = _mapping(FlakyMapping, history)
        self.router = CommitLoop(
            mapping=self.mapping, ownership=self.ownership, log=get_logger(), tables=history
        )
        self.consumer = FakeConsumer(self.member)

    def use_loop(self, **options: Any) -> None:
        """A commit loop of the world's mapping and ownership with these options."""
        self.router = CommitLoop(
            mapping=self.mapping, ownership=self.ownership, log=get_logger(), **options
        )

    async def handled(self, records: Sequence[Record]) -> None:
        """Fetch and handle one batch, then wait for its transactions."""
        await self.router.handle(self.consumer.fetch(records), self.consumer)
        await self.router.drain()

    def outputs(self, partition: int) -> list[dict[str, object]]:
        return [orjson.loads(value) for value in self.broker.published.get(partition, [])]


@pytest.fixture
async def world() -> _World:
    world = _World()
    await world.assign(range(6))
    return world


def _record(partition: int, offset: int, value: bytes | None, key: bytes | None = None) -> Record:
    return Record(TOPIC, partition, offset, 1_763_651_045_000, key, value)


GOOD = event_bytes(default_event())
BAD_NPI = event_bytes(patched(default_event(), {"claim.billing_provider.npi": "1"}))


class TestRouting:
    async def test_one_transaction_per_partition_commits_the_offset_after_its_last_record(
        self, world: _World
    ) -> None:
        records = [_record(0, 10, GOOD), _record(1, 4, BAD_NPI), _record(0, 11, b"[]", b"k")]

        await world.handled(records)

        assert world.broker.committed == {0: 12, 1: 5}
        outcomes_0 = [o.get("outcome", "dead_letter") for o in world.outputs(0)]
        assert outcomes_0 == ["clean", "dead_letter"]
        assert [o["outcome"] for o in world.outputs(1)] == ["needs_review"]

    async def test_every_output_validates_against_the_published_models(self, world: _World) -> None:
        await world.handled([_record(0, 0, GOOD), _record(0, 1, b"{"), _record(0, 2, BAD_NPI)])

        result, dead_letter, review = world.outputs(0)
        ScrubResult.model_validate(result)
        DeadLetter.model_validate(dead_letter)
        ScrubResult.model_validate(review)

    async def test_a_null_record_value_is_a_dead_letter_not_a_crash(self, world: _World) -> None:
        await world.handled([_record(2, 0, None)])
        (output,) = world.outputs(2)
        assert output["error"]["kind"] == "invalid_json"  # type: ignore[index]


class TestBoundedDeadLetters:
    async def test_a_dead_letter_too_large_for_its_topic_carries_the_payload_cut_to_fit(
        self, world: _World
    ) -> None:
        poison = b"\x01" * 900_000

        await world.handled([_record(0, 0, poison, b"k"), _record(0, 1, GOOD, b"k")])

        (dead_letter, result) = world.outputs(0)
        value = world.broker.published[0][0]
        assert len(value) <= DEAD_LETTER_TOPIC_BYTES - RECORD_OVERHEAD_BYTES - 1
        DeadLetter.model_validate(dead_letter)
        assert dead_letter["payload_truncated"] is True
        assert dead_letter["payload_bytes"] == 900_000
        assert dead_letter["payload_sha256"] == hashlib.sha256(poison).hexdigest()
        kept = base64.b64decode(dead_letter["payload_base64"])  # type: ignore[arg-type]
        assert poison.startswith(kept)
        assert len(kept) > 700_000
        assert result["outcome"] == "clean"
        assert world.broker.committed == {0: 2}

    async def test_a_dead_letter_that_fits_keeps_the_whole_payload(self, world: _World) -> None:
        await world.handled([_record(0, 0, b"\x01" * 600_000)])

        (dead_letter,) = world.outputs(0)
        assert "payload_truncated" not in dead_letter
        assert base64.b64decode(dead_letter["payload_base64"]) == b"\x01" * 600_000  # type: ignore[arg-type]

    async def test_a_record_the_broker_refuses_as_too_large_is_cut_smaller_on_its_retry(
        self, world: _World
    ) -> None:
        world.broker.fail_delivery[(0, 0)] = MessageSizeTooLargeError()
        poison = b"\x02" * 500_000

        await world.handled([_record(0, 0, poison)])
        await world.sleep.release()
        await world.handled([_record(0, 0, poison)])

        (dead_letter,) = world.outputs(0)
        assert dead_letter["payload_truncated"] is True
        assert len(world.broker.published[0][0]) < DEAD_LETTER_TOPIC_BYTES // 2
        assert world.broker.committed == {0: 1}


class TestPipelining:
    async def test_the_next_batch_is_decided_while_the_previous_one_commits_and_follows_it(
        self, world: _World
    ) -> None:
        world.broker.commit_gate = asyncio.Event()
        await world.router.handle(world.consumer.fetch([_record(0, 0, GOOD)]), world.consumer)
        await world.router.handle(world.consumer.fetch([_record(0, 1, GOOD)]), world.consumer)
        await settle()

        assert world.broker.committed == {}
        assert [entry for entry in world.broker.journal if entry[0] == "commit"] == []
        world.broker.commit_gate.set()
        await world.router.drain()
        commits = [entry for entry in world.broker.journal if entry[0] == "commit"]
        assert commits == [("commit", 0, 1), ("commit", 0, 2)]

    async def test_a_slow_transaction_of_one_partition_holds_no_other_partition(
        self, world: _World
    ) -> None:
        world.broker.commit_gates[1] = asyncio.Event()  # partition 1's commit is slow
        await world.router.handle(
            world.consumer.fetch([_record(0, 0, GOOD), _record(1, 0, GOOD)]), world.consumer
        )

        for offset in range(1, 4):
            batch = world.consumer.fetch([_record(0, offset, GOOD)])
            await asyncio.wait_for(world.router.handle(batch, world.consumer), timeout=1)
            await settle()

        assert world.broker.committed == {0: 4}
        world.broker.commit_gates[1].set()
        await world.router.drain()
        assert world.broker.committed == {0: 4, 1: 1}

    async def test_a_partition_with_a_transaction_in_flight_and_one_queued_is_paused(
        self, world: _World
    ) -> None:
        world.broker.commit_gates[1] = asyncio.Event()
        await world.router.handle(world.consumer.fetch([_record(1, 0, GOOD)]), world.consumer)
        await world.router.handle(world.consumer.fetch([_record(1, 1, GOOD)]), world.consumer)
        await settle()

        assert world.member.paused == {1}  # no third batch of it is fetched meanwhile
        world.broker.commit_gates[1].set()
        await world.router.drain()
        assert world.broker.committed == {1: 2}
        assert world.member.paused == set()

    async def test_what_waits_behind_a_transaction_in_flight_is_bounded_and_read_again(
        self, world: _World
    ) -> None:
        world.use_loop(
            queued_max_records=12
        )  # 6 partitions assigned: 2 records of each may wait behind its transaction
        world.broker.commit_gates[0] = asyncio.Event()
        await world.router.handle(world.consumer.fetch([_record(0, 0, GOOD)]), world.consumer)
        await world.router.handle(
            world.consumer.fetch([_record(0, offset, GOOD) for offset in range(1, 9)]),
            world.consumer,
        )

        assert world.member.positions[0] == 3  # offsets 3-8 are fetched again later
        assert 0 in world.member.paused
        world.broker.commit_gates[0].set()
        await world.router.drain()
        assert world.broker.committed == {0: 3}
        await world.handled([_record(0, offset, GOOD) for offset in range(3, 9)])
        assert world.broker.committed == {0: 9}
        assert len(world.outputs(0)) == 9

    async def test_records_fetched_before_a_partition_was_reread_are_not_published(
        self, world: _World
    ) -> None:
        world.broker.fail_commit[1] = KafkaConnectionError("down")
        await world.router.handle(
            world.consumer.fetch([_record(1, 0, GOOD), _record(1, 1, GOOD)]), world.consumer
        )
        stale = world.consumer.fetch([_record(1, 2, GOOD), _record(0, 3, GOOD)])
        await world.router.drain()
        await world.sleep.release()  # partition 1 recovers: re-read from its committed offset

        await world.router.handle(stale, world.consumer)  # handled after the re-read
        await world.router.drain()
        await world.handled([_record(1, 0, GOOD), _record(1, 1, GOOD), _record(1, 2, GOOD)])

        assert world.broker.committed == {0: 4, 1: 3}
        assert len(world.outputs(1)) == 3


class SlowMapping(FlakyMapping):
    """The real mapping, taking `seconds` of CPU-bound work to route a record of `large` bytes
    or more (an 837P interchange of thousands of claims), and noting whether it ran on the
    event loop and how far a ticking task got meanwhile."""

    large = 1 << 30
    seconds = 0.0
    ticks = 0
    on_loop: list[bool]
    ticks_during: list[int]

    def route(self, record: InputRecord, decided_at: str, *, shrink: int = 0) -> Routed[Decision]:
        if len(record.value or b"") >= self.large:
            self.on_loop.append(_on_event_loop())
            ticks, until = self.ticks, time.perf_counter() + self.seconds
            while time.perf_counter() < until:
                pass
            self.ticks_during.append(self.ticks - ticks)
        return super().route(record, decided_at, shrink=shrink)


def _on_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class TestLargeBatches:
    async def test_a_batch_over_its_byte_bound_commits_in_rounds_each_within_the_bound(
        self, world: _World
    ) -> None:
        world.use_loop(batch_max_bytes=3 * len(GOOD))
        records = [_record(0, offset, GOOD) for offset in range(7)] + [_record(1, 0, GOOD)]

        await world.handled(records)

        # Two rounds of partition 0 are in flight and queued: the third waits in the topic.
        assert world.member.positions[0] == 6
        await world.handled([_record(0, 6, GOOD)])
        commits = [entry[1:] for entry in world.broker.journal if entry[0] == "commit"]
        assert [offset for partition, offset in commits if partition == 0] == [3, 6, 7]
        assert [offset for partition, offset in commits if partition == 1] == [1]
        assert len(world.outputs(0)) == 7

    async def test_a_record_larger_than_the_bound_is_a_round_of_its_own(
        self, world: _World
    ) -> None:
        world.use_loop(batch_max_bytes=10)

        await world.handled([_record(0, 0, GOOD), _record(0, 1, GOOD)])

        commits = [entry for entry in world.broker.journal if entry[0] == "commit"]
        assert commits == [("commit", 0, 1), ("commit", 0, 2)]

    async def test_a_large_record_is_decided_off_the_event_loop_which_keeps_turning(
        self, world: _World
    ) -> None:
        mapping = _mapping(SlowMapping)
        mapping.large, mapping.seconds = LARGE_RECORD_BYTES, 0.2
        mapping.on_loop, mapping.ticks_during = [], []
        world.router = CommitLoop(mapping=mapping, ownership=world.ownership, log=get_logger())
        large = GOOD + b" " * (LARGE_RECORD_BYTES - len(GOOD))

        async def tick() -> None:
            while True:
                mapping.ticks += 1
                await asyncio.sleep(0)

        ticking = asyncio.create_task(tick())
        await world.handled([_record(0, 0, large), _record(1, 0, GOOD), _record(2, 0, large)])
        ticking.cancel()

        assert world.broker.committed == {0: 1, 1: 1, 2: 1}
        assert mapping.on_loop == [False, False]
        assert all(ticks > 0 for ticks in mapping.ticks_during), mapping.ticks_during


class TestFailingPartitions:
    async def test_a_failed_transaction_pauses_only_its_partition_and_blocks_no_batch(
        self, world: _World
    ) -> None:
        world.broker.fail_commit[1] = KafkaConnectionError("down")

        await world.handled([_record(1, 7, GOOD), _record(0, 3, GOOD)])
        await world.handled([_record(0, 4, GOOD)])

        assert world.broker.committed == {0: 5}
        assert world.member.paused == {1}
        assert world.ownership.state(1) is PartitionState.ASSIGNED
        await world.sleep.release()
        assert world.member.paused == set()

    async def test_a_record_that_cannot_be_decided_holds_back_only_its_partition(
        self, world: _World
    ) -> None:
        world.mapping.failing = {(1, 8)}

        await world.handled([_record(1, 7, GOOD), _record(1, 8, GOOD), _record(0, 3, GOOD)])

        assert world.broker.committed == {0: 4}
        assert world.member.paused == {1}

    async def test_a_record_that_fails_every_time_becomes_a_processing_error_dead_letter(
        self, world: _World
    ) -> None:
        world.mapping.failing = {(1, 8)}
        batch = [_record(1, 7, GOOD), _record(1, 8, GOOD, b"CLM-1"), _record(1, 9, GOOD)]

        for _ in range(MAX_ATTEMPTS + 1):
            await world.handled(batch)
            await world.sleep.release()

        assert world.broker.committed == {1: 10}
        clean, dead_letter, clean_after = world.outputs(1)
        assert (clean["outcome"], clean_after["outcome"]) == ("clean", "clean")
        DeadLetter.model_validate(dead_letter)
        assert dead_letter["error"]["kind"] == "processing_error"  # type: ignore[index]
        assert f"{MAX_ATTEMPTS} times (RuntimeError)" in dead_letter["error"]["message"]  # type: ignore[index]
        assert base64.b64decode(dead_letter["payload_base64"]) == GOOD  # type: ignore[arg-type]

    async def test_a_broker_outage_never_turns_a_good_record_into_a_dead_letter(
        self, world: _World
    ) -> None:
        for _ in range(MAX_ATTEMPTS + 1):
            world.broker.fail_delivery[(0, 0)] = KafkaConnectionError("down")
            await world.handled([_record(0, 0, GOOD)])
            await world.sleep.release()
        await world.handled([_record(0, 0, GOOD)])

        (result,) = world.outputs(0)
        assert result["outcome"] == "clean"


class TestRevokedPartitions:
    async def test_records_of_a_partition_revoked_since_the_fetch_are_left_to_its_new_owner(
        self, world: _World
    ) -> None:
        batch = world.consumer.fetch([_record(1, 5, GOOD), _record(0, 2, GOOD)])
        await world.ownership.revoke([1])

        await world.router.handle(batch, world.consumer)
        await world.router.drain()

        assert world.broker.committed == {0: 3}

    async def test_a_batch_queued_when_its_partition_was_revoked_is_never_published(
        self, world: _World
    ) -> None:
        world.broker.commit_gates[1] = asyncio.Event()
        await world.router.handle(
            world.consumer.fetch([_record(1, 5, GOOD), _record(0, 2, GOOD)]), world.consumer
        )
        await world.router.handle(world.consumer.fetch([_record(1, 6, GOOD)]), world.consumer)
        await settle()
        revoking = asyncio.create_task(world.ownership.revoke([1]))
        await settle()

        world.broker.commit_gates[1].set()  # the transaction in flight ends, then the producer
        await revoking
        await world.assign([1])
        await world.router.drain()

        assert world.broker.committed == {0: 3, 1: 6}  # offset 6, queued, is read again


class TestStopping:
    async def test_closing_ends_the_transaction_in_flight_and_publishes_no_later_batch(
        self, world: _World
    ) -> None:
        world.broker.commit_gate = asyncio.Event()
        await world.router.handle(world.consumer.fetch([_record(0, 0, GOOD)]), world.consumer)
        closing = asyncio.create_task(world.router.close())
        await settle()
        assert not closing.done()

        world.broker.commit_gate.set()
        await closing
        await world.handled([_record(0, 1, GOOD)])

        assert world.broker.committed == {0: 1}


class TestMetrics:
    async def test_partitions_are_reported_by_topic_and_state_every_state_shown(self) -> None:
        world = _World()
        metrics = StageMetrics(ruleset_version="test")
        metrics.watch_partitions(world.ownership.states)

        await world.assign(range(6))

        def partitions(state: str) -> float | None:
            labels = {"topic": "claims.submitted", "state": state}
            return metrics.registry.get_sample_value("claim_scrubber_partitions", labels)

        assert partitions("owned") == 6
        assert [partitions(s) for s in ("assigned", "fencing", "fenced", "revoked")] == [0] * 4
        assert metrics.registry.get_sample_value("process_resident_memory_bytes") is not None

    async def test_committed_records_are_counted_by_outcome_kind_rule_and_result(self) -> None:
        world = _World()
        metrics = StageMetrics(ruleset_version="test")
        world.use_loop(metrics=metrics)
        await world.assign(range(6))
        world.consumer.highwaters[0] = 40
        world.broker.fail_commit[1] = KafkaConnectionError("down")

        await world.handled(
            [
                _record(0, 10, GOOD),
                _record(0, 11, BAD_NPI),
                _record(0, 12, b"{"),
                _record(1, 0, GOOD),
            ]
        )

        def value(name: str, **labels: str) -> float | None:
            return metrics.registry.get_sample_value(f"claim_scrubber_{name}", labels)

        assert value("records_total", outcome="clean") == 1
        assert value("records_total", outcome="needs_review") == 1
        assert value("records_total", outcome="dead_letter") == 1
        assert value("dead_letters_total", kind="invalid_json") == 1
        assert value("findings_total", rule_id="CLM-001", severity="error") == 1
        assert value("transactions_total", result="committed") == 1
        assert value("transactions_total", result="aborted") == 1
        assert value("consumer_lag", topic="claims.submitted", partition="0") == 27
        assert value("batch_records_count") == 1
        assert value("end_to_end_latency_seconds_count") == 3

    async def test_time_the_event_loop_could_not_turn_is_measured(self) -> None:
        metrics = StageMetrics(ruleset_version="test")
        beating = asyncio.create_task(
            beat_while_running(Health(), metrics.loop_delay_seconds, interval_s=0.01)
        )
        await asyncio.sleep(0.05)
        time.sleep(0.3)  # noqa: ASYNC251 - the blocking call on the loop measured here
        await asyncio.sleep(0.05)
        beating.cancel()

        registry = metrics.registry
        blocked = registry.get_sample_value(
            "claim_scrubber_event_loop_delay_seconds_bucket", {"le": "0.25"}
        )
        count = registry.get_sample_value("claim_scrubber_event_loop_delay_seconds_count")
        assert count is not None
        assert blocked is not None
        assert count - blocked == 1  # one beat came at least 0.25 s late


class TestIntakeMetrics:
    def test_intake_counts_claims_under_names_of_its_own(self) -> None:
        metrics = StageMetrics(ruleset_version="test", stage="intake")

        metrics.committed(["converted", "converted", "dead_letter"], ["invalid_x12"], [], [])

        def value(name: str, **labels: str) -> float | None:
            return metrics.registry.get_sample_value(f"claim_scrubber_{name}", labels)

        assert value("intake_claims_total", outcome="converted") == 2
        assert value("intake_claims_total", outcome="dead_letter") == 1
        assert value("intake_dead_letters_total", kind="invalid_x12") == 1
        assert value("records_total", outcome="converted") is None  # the worker's name


class _StuckPartitions:
    """Two assigned partitions that commit nothing while records keep arriving."""

    topic = "claims.submitted"

    def __init__(self) -> None:
        self.ends = {0: 50, 1: 7}

    def assigned(self) -> list[int]:
        return [0, 1]

    async def end_offsets(self, partitions: list[int]) -> dict[int, int]:
        return {partition: self.ends[partition] for partition in partitions}

    async def committed(self, partition: int) -> int | None:
        return {0: 20, 1: None}[partition]


class TestLagWatch:
    async def test_lag_is_refreshed_from_the_broker_whether_or_not_anything_commits(
        self,
    ) -> None:
        metrics = StageMetrics(ruleset_version="test")
        source = _StuckPartitions()
        watching = asyncio.create_task(watch_lag([source], metrics, interval_s=0.01))

        def lag(partition: str) -> float | None:
            labels = {"topic": "claims.submitted", "partition": partition}
            return metrics.registry.get_sample_value("claim_scrubber_consumer_lag", labels)

        try:
            await asyncio.sleep(0.05)
            first = lag("0")
            source.ends[0] = 90  # more records, still no commit
            await asyncio.sleep(0.05)
            grown = lag("0")
        finally:
            watching.cancel()

        assert (first, grown) == (30, 70)
        assert lag("1") is None  # nothing committed yet: no lag to state


class _FakeChangelog:
    """The history changelog as the fake broker committed it, read back like ChangelogStore."""

    def __init__(self, tables: HistoryTables) -> None:
        self.broker: FakeBroker | None = None
        self.tables = tables
        self.restores = 0

    async def restore(self, partition: int) -> None:
        assert self.broker is not None
        self.restores += 1
        table, sizes = self.tables.empty(), {}
        for topic, key, value in self.broker.sent.get(partition, []):
            if topic == HISTORY_TOPIC and key is not None:
                table.restore(key.decode(), read_history_document(value))
                sizes[key.decode()] = len(value or b"")
        self.tables.restored(partition, table, sizes)

    def forget(self, partition: int) -> None:
        self.tables.forget(partition)


def _weekly_claim(week: int, claim: str | None = None) -> bytes:
    day = (date(2026, 3, 1) + timedelta(days=7 * week)).isoformat()
    return event_bytes(
        patched(
            default_event(),
            {
                "event_id": f"ev-{claim or week}",
                "claim.claim_id": claim or f"W{week}",
                "claim.lines[0].service_date": day,
                "claim.lines[1].service_date": day,
            },
        )
    )


class TestHistory:
    async def test_a_change_whose_transaction_aborted_is_written_again_with_its_record(
        self,
    ) -> None:
        tables = HistoryTables(b"component-history-key", 400)
        changelog = _FakeChangelog(tables)
        world = _World(store=changelog, history=tables)
        changelog.broker = world.broker
        await world.assign(range(6))
        await world.handled([_record(0, week, _weekly_claim(week)) for week in range(3)])
        world.broker.fail_commit[0] = KafkaConnectionError("down")

        await world.handled([_record(0, 3, _weekly_claim(3))])  # aborted
        await world.sleep.release()  # partition 0 recovers: re-read, history restored
        await world.handled([_record(0, 3, _weekly_claim(3))])

        assert changelog.restores == 6 + 1  # each partition at assignment, 0 after the abort
        (patient,) = {key for topic, key, _ in world.broker.sent[0] if topic == HISTORY_TOPIC}
        assert patient is not None
        assert world.broker.committed[0] == 4
        history = tables.table(0).of(patient.decode())
        assert [a.claim_id for a in history.applications] == ["W0", "W1", "W2", "W3"]
        last = [v for t, k, v in world.broker.sent[0] if t == HISTORY_TOPIC][-1]
        assert read_history_document(last) == history, "the changelog holds week 3 too"

    async def test_a_partition_is_not_owned_and_the_stage_not_ready_while_history_restores(
        self,
    ) -> None:
        restored = asyncio.Event()

        class SlowChangelog(_FakeChangelog):
            async def restore(self, partition: int) -> None:
                await restored.wait()
                await super().restore(partition)

        tables = HistoryTables(b"component-history-key", 400)
        changelog = SlowChangelog(tables)
        world = _World(store=changelog, history=tables)
        changelog.broker = world.broker
        await world.assign([0])

        assert world.ownership.state(0) is PartitionState.FENCING
        assert not world.ownership.settled, "/readyz answers 503 meanwhile"
        assert world.member.paused == {0}, "none of its records is fetched before"
        restored.set()
        await settle()
        assert world.ownership.state(0) is PartitionState.OWNED
        assert world.ownership.settled
