"""Who may publish for an input partition: one state machine, one transactional producer each.

aiokafka commits consumer offsets with TxnOffsetCommit v0, which carries no consumer-group
generation (the pre-KIP-447 model): a worker that stalled and lost its partitions can only be
fenced through its transactional id. So each input partition has its own producer,
`<group>-<topic>-<partition>`, and the InitProducerId that starts it fences every older
holder of that id and waits until the holder's last transaction has ended.

Every partition goes through these states, and only these transitions:

    ASSIGNED ──fence──▶ FENCING ──producer up, offset re-read, state restored──▶ OWNED
       ▲                   │ fails: backoff                        │ transaction fails
       └───────────────────┴───────────────────────────────────────┤ (abort, backoff)
       ▲                                                           │ ProducerFenced
       └──── quarantine over, still ours in the group ◀── FENCED ◀─┘
    any state ──revoked by the group──▶ REVOKED (the producer stops after its transaction)

- The rebalance callback only pauses the assigned partitions and schedules their fences
  (one task per partition): it never waits on the broker, so a slow InitProducerId delays
  that partition alone and never the group's next rebalance.
- A producer is created only by the fence step, never lazily by a commit: a worker that was
  fenced or failed does not take its transactional id back on its own.
- A partition is paused in the consumer from assignment (and from any failure) until it is
  OWNED again, and its position is re-read from the committed offset after the producer is
  up: InitProducerId returns only once the previous holder's transaction has completed, so
  the offset read then is final (the one aiokafka fetched on assignment may not be). The
  partition's state (claim history, PartitionStore) is read back then too, for the same reason.
- Before fencing again after a failure, the worker confirms with the group coordinator that
  it is still a current member; a stale member waits for the group to revoke the partition.
- Every wait on the broker ends: InitProducerId, the offset re-read and each transaction
  (its deliveries and its commit) are bounded by `wait_s` (the transaction timeout less a
  margin, so this worker gives up before the broker aborts it); running out is a failure
  with backoff, like any other.
- A transaction the broker timed out (InvalidProducerEpoch, KIP-588) is such a failure too;
  only a fence means another producer took the id: aiokafka's ProducerFenced, or the
  coordinator's PRODUCER_FENCED (code 90, which aiokafka 0.14 does not know: registered here).
- After ProducerFenced the partition stays FENCED for a quarantine (the transaction timeout):
  whoever fenced it may finish its transaction. A rightful new owner makes the group revoke
  the partition long before; if the group still names this worker after the quarantine, it
  fences again.
- The epoch counts every state change (`_move`, the one place a state changes, checked
  against `_TRANSITIONS`). Records decided in one epoch are never
  published in another: the consumer delivers them again.

A failure affects only its own partition: each has its own backoff and recovery task.
"""

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final, Protocol

from aiokafka import TopicPartition
from aiokafka.errors import (
    AuthenticationFailedError,
    BrokerResponseError,
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    ProducerFenced,
    SaslAuthenticationFailed,
    TopicAuthorizationFailedError,
    TransactionalIdAuthorizationFailed,
    for_code,
    kafka_errors,
)
from structlog.typing import FilteringBoundLogger

from claim_scrubber.adapters.backoff import Backoff

__all__ = [
    "GroupMember",
    "OutboundRecord",
    "PartitionFencedError",
    "PartitionOwnership",
    "PartitionRevokedError",
    "PartitionState",
    "PartitionStore",
    "ProducerFactory",
    "TransactionFailedError",
    "TransactionalProducer",
    "broker_wait_s",
    "denied",
]


class PartitionState(StrEnum):
    ASSIGNED = "assigned"
    FENCING = "fencing"
    OWNED = "owned"
    FENCED = "fenced"
    REVOKED = "revoked"


_TRANSITIONS: Final = {
    PartitionState.ASSIGNED: {
        PartitionState.ASSIGNED,  # assigned again by the group
        PartitionState.FENCING,
        PartitionState.REVOKED,
    },
    PartitionState.FENCING: {PartitionState.OWNED, PartitionState.ASSIGNED, PartitionState.REVOKED},
    PartitionState.OWNED: {PartitionState.ASSIGNED, PartitionState.FENCED, PartitionState.REVOKED},
    PartitionState.FENCED: {PartitionState.ASSIGNED, PartitionState.REVOKED},
    PartitionState.REVOKED: {PartitionState.ASSIGNED, PartitionState.REVOKED},
}
"""Every state change the machine makes (the diagram above); any other is a bug."""
_ASSIGNED_BY_THE_GROUP: Final = {PartitionState.ASSIGNED, PartitionState.REVOKED}
"""The states from which entering ASSIGNED is the group's assignment (not a fence's end)."""


class IllegalTransitionError(Exception):
    """A state change the machine does not make: a bug in this module, never input."""


class PartitionFencedError(Exception):
    """Another producer took this partition's transactional id; nothing of the transaction
    is visible."""


class PartitionRevokedError(Exception):
    """The partition is not OWNED in the epoch the records were read in: nothing was sent,
    and the consumer (this worker's later or another worker's) reads them again."""


class TransactionFailedError(Exception):
    """The transaction was aborted; `record_index` names the record whose delivery failed,
    when one did."""

    def __init__(self, cause: BaseException, record_index: int | None) -> None:
        super().__init__(type(cause).__name__)
        self.cause = cause
        self.record_index = record_index


@dataclass(frozen=True, slots=True)
class OutboundRecord:
    topic: str
    key: bytes | None
    value: bytes | None
    """None: a tombstone (the history changelog's empty history)."""
    headers: list[tuple[str, bytes]]
    partition: int | None = None
    """None: the producer's partitioner picks it from the key."""


class TransactionalProducer(Protocol):
    """The part of aiokafka's AIOKafkaProducer (with a transactional_id) used here."""

    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def begin_transaction(self) -> None: ...
    async def send(
        self,
        topic: str,
        value: bytes | None,
        *,
        key: bytes | None,
        headers: list[tuple[str, bytes]],
        partition: int | None = None,
    ) -> Awaitable[Any]: ...
    async def send_offsets_to_transaction(self, offsets: dict[Any, int], group_id: str) -> None: ...
    async def commit_transaction(self) -> None: ...
    async def abort_transaction(self) -> None: ...


ProducerFactory = Callable[[str, int], TransactionalProducer]
"""(transactional id, partition) -> a producer not yet started."""


class PartitionStore(Protocol):
    """State kept per input partition (claim history), written by the partition's
    transactions: read back to its end after each fence, before the partition is OWNED."""

    async def restore(self, partition: int) -> None: ...
    def forget(self, partition: int) -> None: ...


class GroupMember(Protocol):
    """What ownership needs from the group consumer, by input partition number."""

    def pause(self, partition: int) -> None: ...
    def resume(self, partition: int) -> None: ...
    async def seek_to_committed(self, partition: int) -> None: ...
    async def confirm_membership(self) -> bool: ...


class ProducerFencedByCoordinatorError(BrokerResponseError):  # type: ignore[misc]
    """PRODUCER_FENCED: the transaction coordinator's answer (KIP-588) to a producer whose id
    another producer's InitProducerId took."""

    errno = 90
    message = "PRODUCER_FENCED"
    description = "There is a newer producer with the same transactionalId."


# aiokafka 0.14 knows no error code 90 and raises UnknownError for it, which would read as a
# passing failure: the worker would fence back the producer that rightfully took its id.
kafka_errors.setdefault(ProducerFencedByCoordinatorError.errno, ProducerFencedByCoordinatorError)
_FENCED_ERRORS = (ProducerFenced, for_code(ProducerFencedByCoordinatorError.errno))
_DENIED: Final = {
    TopicAuthorizationFailedError: "write to an output topic (Write on the topic)",
    TransactionalIdAuthorizationFailed: "use its transactional id (Write on TransactionalId)",
    GroupAuthorizationFailedError: "commit offsets for its group (Read on the group)",
    ClusterAuthorizationFailedError: "use transactions (a cluster permission)",
    SaslAuthenticationFailed: "authenticate (the broker refused the credentials)",
    AuthenticationFailedError: "authenticate (the broker refused the credentials)",
}


def denied(error: BaseException) -> str | None:
    """What the broker refused, when `error` is an authentication or authorization failure:
    those are not retried like an outage."""
    for error_type, what in _DENIED.items():
        if isinstance(error, error_type):
            return what
    return None


_STOP_TIMEOUT_S = 10.0
_WAIT_MARGIN_S: Final = 5.0


def broker_wait_s(transaction_timeout_ms: int) -> float:
    """How long one wait on the broker may take: the transaction timeout less a margin (at
    most 5 s, at most a fifth), so the worker aborts before the broker would."""
    timeout_s = transaction_timeout_ms / 1000
    return timeout_s - min(_WAIT_MARGIN_S, timeout_s / 5)


@dataclass(slots=True)
class _Progress:
    """How far a transaction got: the record whose delivery is awaited, if any."""

    record_index: int | None = None


@dataclass(slots=True)
class _Partition:
    number: int
    state: PartitionState = PartitionState.ASSIGNED
    epoch: int = 0
    producer: TransactionalProducer | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    backoff: Backoff = field(default_factory=Backoff)
    recovery: asyncio.Task[None] | None = None


class PartitionOwnership:
    """The state of every input partition this worker was assigned, and its producer."""

    def __init__(
        self,
        *,
        group_id: str,
        input_topic: str,
        producer_factory: ProducerFactory,
        member: GroupMember,
        log: FilteringBoundLogger,
        fence_quarantine_s: float,
        wait_s: float,
        on_fatal: Callable[[str], None],
        store: PartitionStore | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        """`on_fatal` is told, in one line, of a failure that retrying cannot mend (the broker
        refused a permission); the partition stays paused and nothing of it is committed.
        `store`: the partitions' state, restored after every fence (a failure to restore is
        a failed fence) and forgotten when the partition is revoked."""
        self._group_id = group_id
        self._input_topic = input_topic
        self._factory = producer_factory
        self._member = member
        self._log = log
        self._fence_quarantine_s = fence_quarantine_s
        self._wait_s = wait_s
        self._on_fatal = on_fatal
        self._store = store
        self._sleep = sleep
        self._partitions: dict[int, _Partition] = {}
        self._closed = False

    def transactional_id(self, partition: int) -> str:
        return f"{self._group_id}-{self._input_topic}-{partition}"

    def state(self, partition: int) -> PartitionState:
        """A partition keeps its entry (and its epoch) once assigned, REVOKED when not ours."""
        found = self._partitions.get(partition)
        return PartitionState.REVOKED if found is None else found.state

    def epoch(self, partition: int) -> int:
        found = self._partitions.get(partition)
        return 0 if found is None else found.epoch

    def owns(self, partition: int) -> bool:
        return self.state(partition) is PartitionState.OWNED

    def owned(self) -> list[int]:
        """The partitions OWNED now. Also read by the metrics server's thread: it copies the
        entries first (one C-level step under the GIL) so the loop may add some meanwhile."""
        entries = list(self._partitions.values())
        return sorted(p.number for p in entries if p.state is PartitionState.OWNED)

    def assigned(self) -> list[int]:
        """The partitions assigned to this worker now, in any state but revoked (a copy, like
        owned())."""
        entries = list(self._partitions.values())
        return sorted(p.number for p in entries if p.state is not PartitionState.REVOKED)

    def states(self) -> list[tuple[str, str]]:
        """(input topic, state) of each partition ever assigned; read by the metrics thread
        from a copy of the entries, like owned()."""
        entries = list(self._partitions.values())
        return [(self._input_topic, p.state.value) for p in entries]

    @property
    def settled(self) -> bool:
        """Whether every partition assigned to this worker has its producer up (true with
        none: a worker beyond the partition count is a ready standby)."""
        states = [p.state for p in list(self._partitions.values())]
        return all(state in {PartitionState.OWNED, PartitionState.REVOKED} for state in states)

    # Transitions driven by the group ------------------------------------------------------

    async def assign(self, partitions: Iterable[int]) -> None:
        """The group assigned these partitions: pause them and schedule each one's fence.

        This returns at once (it runs in the rebalance callback, which must not wait on the
        broker): each partition is fenced, re-read and resumed by a task of its own. Fencing
        right after the assignment needs no membership check: the group has just named this
        worker. A partition whose fence fails stays paused and is retried with backoff.
        """
        if self._closed:  # stopping: the partitions stay paused until the consumer leaves
            return
        for number in partitions:
            entry = self._partitions.setdefault(number, _Partition(number))
            self._cancel_recovery(entry)
            self._move(entry, PartitionState.ASSIGNED)
            entry.backoff.reset()
            self._schedule_recovery(entry, 0.0, assigned=True)

    async def revoke(self, partitions: Iterable[int]) -> None:
        """The group took these partitions: no transaction starts for them any more, the one
        in progress ends (commit or abort) before the producer stops."""

        async def revoke_one(entry: _Partition) -> None:
            self._cancel_recovery(entry)
            self._move(entry, PartitionState.REVOKED)
            if self._store is not None:
                self._store.forget(entry.number)
            async with entry.lock:
                await self._stop_producer(entry)

        await asyncio.gather(
            *(revoke_one(self._partitions[p]) for p in partitions if p in self._partitions)
        )

    async def close(self) -> None:
        """Shutdown: every transaction has ended (the router drained); stop every producer,
        and fence nothing any more."""
        self._closed = True
        await self.revoke(
            [p.number for p in self._partitions.values() if p.state is not PartitionState.REVOKED]
        )

    # Publishing ---------------------------------------------------------------------------

    async def commit(
        self,
        partition: int,
        records: Sequence[OutboundRecord],
        next_offset: int,
        *,
        epoch: int,
    ) -> None:
        """Publish `records` and commit `next_offset` for the partition in one transaction.

        `epoch` is the partition's epoch when the records were read. Raises
        PartitionRevokedError when the partition is not OWNED in that epoch (nothing was
        sent), PartitionFencedError when another producer took its transactional id, or
        TransactionFailedError when the transaction was aborted. In every failure nothing of
        it is visible to read_committed consumers, and the partition recovers by itself.
        """
        entry = self._partitions.get(partition)
        if entry is None:
            raise PartitionRevokedError(self.transactional_id(partition))
        async with entry.lock:
            if entry.state is not PartitionState.OWNED or entry.epoch != epoch:
                raise PartitionRevokedError(self.transactional_id(partition))
            producer = entry.producer
            assert producer is not None
            progress = _Progress()
            try:
                async with asyncio.timeout(
                    self._wait_s
                ):  # no task per transaction, unlike wait_for
                    await self._transact(producer, partition, records, next_offset, progress)
            except _FENCED_ERRORS as error:
                await self._fenced(entry)
                raise PartitionFencedError(self.transactional_id(partition)) from error
            except Exception as error:
                await self._failed(entry, error)
                raise TransactionFailedError(error, progress.record_index) from error
            entry.backoff.reset()

    async def _transact(
        self,
        producer: TransactionalProducer,
        partition: int,
        records: Sequence[OutboundRecord],
        next_offset: int,
        progress: "_Progress",
    ) -> None:
        """One transaction: the records, then the offset, then the commit."""
        await producer.begin_transaction()
        deliveries = []
        for index, record in enumerate(records):
            progress.record_index = index
            deliveries.append(
                await producer.send(
                    record.topic,
                    record.value,
                    key=record.key,
                    headers=record.headers,
                    partition=record.partition,
                )
            )
        progress.record_index = None
        await producer.send_offsets_to_transaction(
            {TopicPartition(self._input_topic, partition): next_offset}, self._group_id
        )
        # Every record must be written before the offsets commit: aiokafka can let
        # commit_transaction() succeed after a batch failed (seen with
        # OutOfOrderSequenceNumber after a broker restart), which would lose it.
        for index, delivery in enumerate(deliveries):
            progress.record_index = index
            await delivery
        progress.record_index = None
        await producer.commit_transaction()

    def fail(self, partition: int, reason: str) -> None:
        """A record of this partition could not be decided: read it again after backoff,
        from the committed offset, with a fresh producer."""
        entry = self._partitions.get(partition)
        if entry is None or entry.state is not PartitionState.OWNED:
            return
        self._move(entry, PartitionState.ASSIGNED)
        delay = entry.backoff.next_delay()
        self._log.warning(
            "partition.retrying",
            partition=partition,
            reason=reason,
            attempt=entry.backoff.attempt,
            retry_in_s=round(delay, 2),
        )
        self._schedule_recovery(entry, delay)

    def hold(self, partition: int) -> None:
        """Fetch no more records of this OWNED partition for now: the router has one of its
        transactions in flight and another queued."""
        if self.owns(partition):
            self._member.pause(partition)

    def release(self, partition: int) -> None:
        """Fetch the partition again after `hold`, if it is still OWNED (ownership itself
        keeps a partition that is not paused until it is)."""
        if self.owns(partition):
            self._member.resume(partition)

    # Internals ----------------------------------------------------------------------------

    def _move(self, entry: _Partition, to: PartitionState) -> None:
        """The one place a partition changes state (the module's diagram, _TRANSITIONS).

        Every change starts a new epoch, so records read before it are never published after
        it. The consumer fetches the partition only while it is OWNED: it is paused when the
        group assigns it and when it leaves OWNED (but for the group: a revoked partition is
        not the consumer's any more), and resumed when it is OWNED.
        """
        was = entry.state
        if to not in _TRANSITIONS[was]:
            raise IllegalTransitionError(f"partition {entry.number}: {was} -> {to}")
        entry.state = to
        entry.epoch += 1
        if to is PartitionState.OWNED:
            self._member.resume(entry.number)
        elif (was is PartitionState.OWNED and to is not PartitionState.REVOKED) or (
            to is PartitionState.ASSIGNED and was in _ASSIGNED_BY_THE_GROUP
        ):
            self._member.pause(entry.number)

    async def _fenced(self, entry: _Partition) -> None:
        """Another producer holds the id: drop ours, and do not take the id back before the
        quarantine is over and the group still names this worker."""
        self._move(entry, PartitionState.FENCED)
        await self._stop_producer(entry)
        self._log.warning(
            "transaction.fenced",
            partition=entry.number,
            transactional_id=self.transactional_id(entry.number),
            quarantine_s=self._fence_quarantine_s,
        )
        self._schedule_recovery(entry, self._fence_quarantine_s)

    def _refused(self, entry: _Partition, what: str) -> None:
        self._on_fatal(
            f"Kafka refused to let this worker {what}: transactional id "
            f"{self.transactional_id(entry.number)}, input partition {entry.number}"
        )

    async def _failed(self, entry: _Partition, error: BaseException) -> None:
        self._move(entry, PartitionState.ASSIGNED)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._abort(entry), timeout=_STOP_TIMEOUT_S)
        await self._stop_producer(entry)
        if (what := denied(error)) is not None:
            self._refused(entry, what)
            return
        delay = entry.backoff.next_delay()
        event = "broker.unreachable" if _is_outage(error) else "transaction.aborted"
        self._log.warning(
            event,
            partition=entry.number,
            error_type=type(error).__name__,
            error=str(error),
            attempt=entry.backoff.attempt,
            retry_in_s=round(delay, 2),
        )
        self._schedule_recovery(entry, delay)

    async def _abort(self, entry: _Partition) -> None:
        if entry.producer is not None:
            await entry.producer.abort_transaction()

    async def _stop_producer(self, entry: _Partition) -> None:
        producer, entry.producer = entry.producer, None
        if producer is not None:
            with contextlib.suppress(Exception):  # a broken producer may not stop cleanly
                await asyncio.wait_for(producer.stop(), timeout=_STOP_TIMEOUT_S)

    async def _fence(self, entry: _Partition) -> bool:
        """ASSIGNED -> FENCING -> OWNED: start the producer (InitProducerId fences every other
        holder of the id and waits for its transaction to end), then re-read the committed
        offset and resume. False, back in ASSIGNED, when any step fails."""
        async with entry.lock:
            if not _in(entry, PartitionState.ASSIGNED):
                return _in(entry, PartitionState.OWNED)
            self._move(entry, PartitionState.FENCING)
            await self._stop_producer(entry)  # the one a failed decision left idle
            producer = self._factory(self.transactional_id(entry.number), entry.number)
            try:
                async with asyncio.timeout(self._wait_s):
                    await producer.start()
                entry.producer = producer
                async with asyncio.timeout(self._wait_s):
                    await self._member.seek_to_committed(entry.number)
                if self._store is not None:  # bounds its own waits: a large one takes a while
                    await self._store.restore(entry.number)
            except BaseException as error:  # any failure, or cancellation: no producer left up
                entry.producer = None
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(producer.stop(), timeout=_STOP_TIMEOUT_S)
                if _in(entry, PartitionState.FENCING):
                    self._move(entry, PartitionState.ASSIGNED)
                if not isinstance(error, Exception):
                    raise
                if (what := denied(error)) is not None:
                    self._move(entry, PartitionState.REVOKED)  # never retried: the worker stops
                    self._refused(entry, what)
                    return False
                self._log.warning(
                    "partition.fence_failed",
                    partition=entry.number,
                    error_type=type(error).__name__,
                    error=str(error),
                )
                return False
            if not _in(entry, PartitionState.FENCING):  # revoked while fencing
                await self._stop_producer(entry)
                if self._store is not None:
                    self._store.forget(entry.number)
                return False
            self._move(entry, PartitionState.OWNED)
            return True

    def _schedule_recovery(
        self, entry: _Partition, delay: float, *, assigned: bool = False
    ) -> None:
        if entry.recovery is None or entry.recovery.done():
            entry.recovery = asyncio.create_task(
                self._recover(entry, delay, assigned=assigned),
                name=f"fence-partition-{entry.number}",
            )

    def _cancel_recovery(self, entry: _Partition) -> None:
        if entry.recovery is not None and not entry.recovery.done():
            entry.recovery.cancel()
        entry.recovery = None

    async def _recover(self, entry: _Partition, delay: float, *, assigned: bool) -> None:
        """Fence the partition until it is OWNED (or no longer this worker's), after `delay`
        and then with backoff; `assigned`: the group has just named this worker, so the first
        try needs no membership check."""
        if delay > 0:
            await self._sleep(delay)
        confirmed = assigned
        while entry.state in {PartitionState.ASSIGNED, PartitionState.FENCED}:
            if entry.state is PartitionState.FENCED:
                self._move(entry, PartitionState.ASSIGNED)
            member = confirmed or await self._still_member()
            confirmed = False
            if member and await self._fence(entry):
                if not assigned:
                    self._log.info("partition.recovered", partition=entry.number, epoch=entry.epoch)
                return
            assigned = False
            delay = entry.backoff.next_delay()
            if not member:  # said at each try, so as often as the backoff allows
                self._log.warning(
                    "partition.waiting",
                    partition=entry.number,
                    reason="the group coordinator does not confirm this worker as a member",
                    attempt=entry.backoff.attempt,
                    retry_in_s=round(delay, 2),
                )
            await self._sleep(delay)

    async def _still_member(self) -> bool:
        try:
            return await self._member.confirm_membership()
        except Exception:  # noqa: BLE001 - unknown means not confirmed
            return False


def _in(entry: _Partition, state: PartitionState) -> bool:
    """Whether the partition is in `state` now (read afresh: awaits and _move change it)."""
    return entry.state is state


def _is_outage(error: BaseException) -> bool:
    return isinstance(error, KafkaConnectionError | asyncio.TimeoutError | OSError)
