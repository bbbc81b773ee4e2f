"""PartitionOwnership's transitions, each without a broker (real-broker proof: integration)."""

import asyncio

import aiokafka.errors
import pytest
from aiokafka.errors import (
    InvalidProducerEpoch,
    KafkaConnectionError,
    MessageSizeTooLargeError,
    ProducerFenced,
)

from claim_scrubber.adapters.kafka.ownership import (
    OutboundRecord,
    PartitionFencedError,
    PartitionRevokedError,
    PartitionState,
    TransactionFailedError,
)
from tests.component.fakes import FakeGroup, settle

QUARANTINE_S = 60.0


def _record(value: bytes = b"{}") -> OutboundRecord:
    return OutboundRecord("claims.clean", b"k", value, [])


async def _fail_then_lose_the_group(setup: "_Setup", *, partition: int, tries: int) -> None:
    """A transaction of `partition` fails, then the group stops confirming this worker while
    the partition's recovery tries `tries` times."""
    await setup.assign([partition])
    setup.broker.fail_commit[partition] = KafkaConnectionError("down")
    with pytest.raises(TransactionFailedError):
        await setup.commit(partition, 9)
    setup.member.current_member = False
    for _ in range(tries):
        await setup.sleep.release()


class _Recorder:
    """A logger that keeps (level, event, fields) of every line."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, object]]] = []

    def info(self, event: str, **fields: object) -> None:
        self.lines.append(("info", event, fields))

    def warning(self, event: str, **fields: object) -> None:
        self.lines.append(("warning", event, fields))


WAIT_S = 0.05


class _Setup(FakeGroup):
    def __init__(self) -> None:
        super().__init__(fence_quarantine_s=QUARANTINE_S, wait_s=WAIT_S)

    async def commit(self, partition: int, next_offset: int, records: int = 1) -> None:
        await self.ownership.commit(
            partition,
            [_record() for _ in range(records)],
            next_offset,
            epoch=self.ownership.epoch(partition),
        )


@pytest.fixture
async def setup() -> _Setup:
    return _Setup()


class TestAssignment:
    async def test_an_assigned_partition_is_paused_fenced_reread_and_resumed_in_that_order(
        self, setup: _Setup
    ) -> None:
        setup.broker.committed[0] = 42

        await setup.assign([0])

        assert setup.broker.journal == [
            ("pause", 0),
            ("start", 0),
            ("seek", 0, 42),
            ("resume", 0),
        ]
        assert setup.ownership.state(0) is PartitionState.OWNED
        assert setup.broker.producers[0].transactional_id == "g-claims.submitted-0"

    async def test_the_offset_is_read_after_the_previous_holders_transaction_ended(
        self, setup: _Setup
    ) -> None:
        """InitProducerId returns once the previous holder's transaction has completed: an
        offset it committed meanwhile is the one the new owner starts from."""
        setup.broker.committed[0] = 10
        setup.broker.during_start[0] = lambda: setup.broker.committed.__setitem__(0, 25)

        await setup.assign([0])

        assert setup.member.positions[0] == 25

    async def test_the_rebalance_callback_only_pauses_and_schedules_the_fence(
        self, setup: _Setup
    ) -> None:
        setup.broker.start_gate = asyncio.Event()  # InitProducerId waits for the last holder

        await asyncio.wait_for(setup.ownership.assign([0, 1]), timeout=1)

        assert setup.member.paused == {0, 1}
        assert setup.ownership.state(0) is PartitionState.FENCING
        setup.broker.start_gate.set()
        await settle()
        assert setup.ownership.owned() == [0, 1]
        assert setup.member.paused == set()

    async def test_a_failed_fence_keeps_the_partition_paused_and_retries_after_backoff(
        self, setup: _Setup
    ) -> None:
        setup.broker.fail_starts[0] = [KafkaConnectionError("down")]

        await setup.assign([0])

        await settle()
        assert setup.ownership.state(0) is PartitionState.ASSIGNED
        assert 0 in setup.member.paused
        assert setup.sleep.pending == 1
        await setup.sleep.release()
        assert setup.ownership.state(0) is PartitionState.OWNED
        assert 0 not in setup.member.paused
        assert setup.broker.starts(0) == 2

    async def test_no_transaction_runs_for_a_partition_before_its_producer_is_up(
        self, setup: _Setup
    ) -> None:
        setup.broker.fail_starts[0] = [KafkaConnectionError("down")]
        await setup.assign([0])

        with pytest.raises(PartitionRevokedError):
            await setup.commit(0, 5)
        assert setup.broker.starts(0) == 1, "a commit never starts a producer"


class TestCommits:
    async def test_records_read_in_an_earlier_epoch_are_refused_without_sending(
        self, setup: _Setup
    ) -> None:
        await setup.assign([0])
        epoch = setup.ownership.epoch(0)
        await setup.ownership.revoke([0])
        await setup.assign([0])

        with pytest.raises(PartitionRevokedError):
            await setup.ownership.commit(0, [_record()], 5, epoch=epoch)
        assert setup.broker.committed.get(0) is None

    async def test_a_revoked_partition_ends_its_transaction_before_the_producer_stops(
        self, setup: _Setup
    ) -> None:
        await setup.assign([0])
        setup.broker.commit_gate = asyncio.Event()
        committing = asyncio.create_task(setup.commit(0, 7))
        await settle()

        revoking = asyncio.create_task(setup.ownership.revoke([0]))
        await settle()
        assert not revoking.done()
        setup.broker.commit_gate.set()
        await committing
        await revoking

        assert setup.broker.journal[-2:] == [("commit", 0, 7), ("stop", 0)]
        assert setup.ownership.state(0) is PartitionState.REVOKED


class TestFencing:
    async def test_a_fenced_partition_does_not_take_its_transactional_id_back(
        self, setup: _Setup
    ) -> None:
        await setup.assign([0])
        setup.broker.fail_commit[0] = ProducerFenced()

        with pytest.raises(PartitionFencedError):
            await setup.commit(0, 3)
        with pytest.raises(PartitionRevokedError):
            await setup.commit(0, 4)
        await settle()

        assert setup.ownership.state(0) is PartitionState.FENCED
        assert 0 in setup.member.paused
        assert setup.broker.starts(0) == 1
        assert setup.broker.producers[0].stopped
        assert setup.sleep.delays == [QUARANTINE_S]

    async def test_the_coordinators_producer_fenced_code_90_is_a_fence_too(
        self, setup: _Setup
    ) -> None:
        """Kafka 4 answers a superseded producer's EndTxn with PRODUCER_FENCED (error code 90,
        KIP-588), a code aiokafka 0.14 does not know: read as a transient failure, the worker
        would fence the rightful owner back."""
        await setup.assign([0])
        setup.broker.fail_commit[0] = aiokafka.errors.for_code(90)()

        with pytest.raises(PartitionFencedError):
            await setup.commit(0, 3)
        await settle()

        assert setup.ownership.state(0) is PartitionState.FENCED
        assert setup.sleep.delays == [QUARANTINE_S]

    async def test_after_the_quarantine_a_partition_the_group_still_assigns_is_fenced_again(
        self, setup: _Setup
    ) -> None:
        await setup.assign([0])
        setup.broker.fail_commit[0] = ProducerFenced()
        with pytest.raises(PartitionFencedError):
            await setup.commit(0, 3)

        await setup.sleep.release()

        assert setup.ownership.state(0) is PartitionState.OWNED
        assert setup.broker.starts(0) == 2
        assert ("confirm", True) in setup.broker.journal

    async def test_a_fenced_partition_that_the_group_revokes_is_never_fenced_again(
        self, setup: _Setup
    ) -> None:
        await setup.assign([0])
        setup.broker.fail_commit[0] = ProducerFenced()
        with pytest.raises(PartitionFencedError):
            await setup.commit(0, 3)

        await setup.ownership.revoke([0])
        await setup.sleep.release()

        assert setup.broker.starts(0) == 1
        assert setup.ownership.state(0) is PartitionState.REVOKED


class TestFailedTransactions:
    async def test_a_failed_transaction_is_aborted_and_only_its_partition_pauses(
        self, setup: _Setup
    ) -> None:
        await setup.assign([0, 1])
        setup.broker.fail_commit[1] = KafkaConnectionError("down")

        with pytest.raises(TransactionFailedError):
            await setup.commit(1, 9)
        await setup.commit(0, 4)

        assert ("abort", 1) in setup.broker.journal
        assert setup.member.paused == {1}
        assert setup.ownership.state(0) is PartitionState.OWNED
        assert setup.broker.committed == {0: 4}

    async def test_a_failed_partition_recovers_from_its_committed_offset_with_a_new_producer(
        self, setup: _Setup
    ) -> None:
        await setup.assign([1])
        await setup.commit(1, 5)
        setup.broker.fail_commit[1] = KafkaConnectionError("down")
        with pytest.raises(TransactionFailedError):
            await setup.commit(1, 9)

        await setup.sleep.release()

        assert setup.ownership.state(1) is PartitionState.OWNED
        assert setup.broker.starts(1) == 2
        assert setup.member.positions[1] == 5
        assert setup.broker.journal[-3:] == [("start", 1), ("seek", 1, 5), ("resume", 1)]

    async def test_a_worker_the_group_no_longer_confirms_never_starts_a_producer_again(
        self, setup: _Setup
    ) -> None:
        await _fail_then_lose_the_group(setup, partition=1, tries=3)

        assert setup.broker.starts(1) == 1
        assert setup.ownership.state(1) is PartitionState.ASSIGNED
        assert 1 in setup.member.paused

    async def test_a_partition_waiting_for_the_group_says_so_at_each_backed_off_try(
        self, setup: _Setup
    ) -> None:
        logs = _Recorder()
        setup.ownership._log = logs  # type: ignore[assignment]
        await _fail_then_lose_the_group(setup, partition=1, tries=3)

        waiting = [fields for level, event, fields in logs.lines if event == "partition.waiting"]
        assert [fields["attempt"] for fields in waiting] == [2, 3, 4]
        assert all(fields["partition"] == 1 for fields in waiting)
        assert {level for level, event, _ in logs.lines if event == "partition.waiting"} == {
            "warning"
        }
        delays = [float(str(fields["retry_in_s"])) for fields in waiting]
        assert delays == sorted(delays)  # backing off

    async def test_the_failed_delivery_names_its_record(self, setup: _Setup) -> None:
        await setup.assign([2])
        setup.broker.fail_delivery[(2, 1)] = MessageSizeTooLargeError()

        with pytest.raises(TransactionFailedError) as failed:
            await setup.commit(2, 3, records=3)

        assert failed.value.record_index == 1
        assert isinstance(failed.value.cause, MessageSizeTooLargeError)
        assert setup.broker.committed == {}

    async def test_each_partition_backs_off_on_its_own(self, setup: _Setup) -> None:
        await setup.assign([0, 1])
        for _ in range(3):
            setup.broker.fail_commit[0] = KafkaConnectionError("down")
            with pytest.raises(TransactionFailedError):
                await setup.commit(0, 9)
            await setup.sleep.release()
        setup.broker.fail_commit[1] = KafkaConnectionError("down")
        with pytest.raises(TransactionFailedError):
            await setup.commit(1, 9)
        await settle()

        first_delays_of_0, first_delay_of_1 = setup.sleep.delays[:3], setup.sleep.delays[3]
        assert first_delays_of_0[2] > first_delay_of_1, "partition 1 starts its own backoff"


class TestEveryWaitEnds:
    """Each wait on the broker is bounded (WAIT_S here, the transaction timeout less a margin
    in the worker); running out is a failure with backoff, never a stall."""

    async def test_an_init_producer_id_that_never_returns_is_a_failed_fence(
        self, setup: _Setup
    ) -> None:
        setup.broker.start_gate = asyncio.Event()  # never set: InitProducerId hangs

        await setup.ownership.assign([2])
        await asyncio.sleep(WAIT_S * 2)  # the fence's bounded wait runs out
        await settle()

        assert setup.ownership.state(2) is PartitionState.ASSIGNED
        assert 2 in setup.member.paused
        assert setup.broker.producers[0].stopped
        assert setup.sleep.pending == 1  # its recovery waits for the backoff

    async def test_a_commit_that_never_returns_is_an_aborted_transaction(
        self, setup: _Setup
    ) -> None:
        await setup.assign([3])
        setup.broker.commit_gate = asyncio.Event()  # never set: the commit hangs

        with pytest.raises(TransactionFailedError) as failed:
            await asyncio.wait_for(setup.commit(3, 9), timeout=5)

        assert isinstance(failed.value.cause, TimeoutError)
        assert ("abort", 3) in setup.broker.journal
        assert setup.ownership.state(3) is PartitionState.ASSIGNED  # backoff, not quarantine
        assert 3 not in setup.broker.committed

    async def test_a_transaction_the_broker_timed_out_is_a_failure_not_a_fence(
        self, setup: _Setup
    ) -> None:
        await setup.assign([4])
        setup.broker.fail_commit[4] = InvalidProducerEpoch()  # KIP-588: timed out, not fenced

        with pytest.raises(TransactionFailedError):
            await setup.commit(4, 9)
        await setup.sleep.release()  # the short backoff, not the 60 s quarantine

        assert setup.sleep.delays[0] < QUARANTINE_S
        assert setup.ownership.state(4) is PartitionState.OWNED
        assert setup.broker.starts(4) == 2


class TestUndecidableRecords:
    async def test_a_partition_whose_record_failed_is_reread_from_its_committed_offset(
        self, setup: _Setup
    ) -> None:
        await setup.assign([3])
        await setup.commit(3, 12)

        setup.ownership.fail(3, reason="record.failed")
        assert setup.ownership.state(3) is PartitionState.ASSIGNED
        assert 3 in setup.member.paused
        await setup.sleep.release()

        assert setup.ownership.state(3) is PartitionState.OWNED
        assert setup.member.positions[3] == 12
        assert setup.broker.producers[0].stopped, "the idle producer was replaced"


class TestClosing:
    async def test_after_close_no_partition_is_fenced_again(self, setup: _Setup) -> None:
        await setup.assign([0])
        await setup.ownership.close()

        await setup.assign([0, 1])

        assert setup.broker.starts(0) == 1
        assert setup.broker.starts(1) == 0
        assert setup.broker.producers[0].stopped

    async def test_a_fence_cancelled_midway_leaves_no_producer_running(self, setup: _Setup) -> None:
        setup.broker.fail_starts[0] = [KafkaConnectionError("down")]
        await setup.assign([0])
        await settle()  # the recovery sleeps its backoff
        setup.broker.start_gate = asyncio.Event()
        await setup.sleep.release()  # recovery: its InitProducerId hangs
        await setup.ownership.revoke([0])
        await settle()

        assert len(setup.broker.producers) == 2
        assert setup.broker.producers[1].stopped, "the producer started by the cancelled fence"
        assert setup.ownership.state(0) is PartitionState.REVOKED
