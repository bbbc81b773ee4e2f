"""`claim-scrubber dead-letters list|replay` on Kafka (docs/operating/dead-letters.md).

Listing reads the dead-letter topic and the replay ledger read_committed, in no group. Replay
publishes each dead letter's original record and its ledger record (`<dead-letter topic>.
replayed`, compacted, keyed by the dead letter's topic/partition/offset) in one transaction,
under one transactional id shared by every replay run (`<group>.replay`). Starting a run
fences any other (a killed one's open transaction is aborted, a running one can commit no
more), and only then is the ledger read: it holds everything any earlier run will ever have
committed, so a dead letter is replayed exactly once across crashes and concurrent runs.
"""

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final, cast

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import IllegalOperation, KafkaError, ProducerFenced
from structlog.typing import FilteringBoundLogger

from claim_scrubber.adapters.dead_letters import (
    REPLAY_COUNT,
    REPLAY_OF,
    DeadLetterFilter,
    StoredDeadLetter,
    read_stored,
)
from claim_scrubber.adapters.kafka.ownership import ProducerFencedByCoordinatorError, denied
from claim_scrubber.adapters.kafka.security import KafkaConnection
from claim_scrubber.adapters.kafka.topic_sizes import admin_client
from claim_scrubber.adapters.settings import Settings
from claim_scrubber.scrubber import timestamp_text

__all__ = ["ReplayError", "ReplaySummary", "ledger_topic", "list_dead_letters", "replay"]

_BATCH: Final = 100
"""Dead letters replayed in one transaction at most."""
_FETCH_MS: Final = 500
_TOPIC_AUTHORIZATION_FAILED: Final = 29


class ReplayError(Exception):
    """The command cannot go on; the message is one line for the operator."""


def ledger_topic(settings: Settings) -> str:
    """The replay ledger: the dead-letter topic's name with `.replayed`."""
    return f"{settings.topic_dead_letter}.replayed"


@dataclass(slots=True)
class ReplaySummary:
    replayed: int = 0
    would_replay: int = 0
    already_replayed: int = 0
    not_replayable: Counter[str] = field(default_factory=Counter)


Take = Callable[[int, int, bytes | None, bytes | None, list[tuple[str, bytes]]], bool]
"""(partition, offset, key, value, headers) of a record -> whether to read on."""


async def _read_all(kafka: KafkaConnection, topic: str, take: Take) -> None:
    """Every committed record of `topic` up to its end as of now, in partition order, until
    `take` returns False."""
    consumer = AIOKafkaConsumer(
        **kafka.client_args(),
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
        request_timeout_ms=15_000,
    )
    try:
        partitions = [TopicPartition(topic, p) for p in await _partitions(kafka, topic)]
        await consumer.start()
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        for partition in partitions:
            while await consumer.position(partition) < ends[partition]:
                batch = await consumer.getmany(partition, timeout_ms=_FETCH_MS, max_records=1000)
                for record in batch.get(partition, []):
                    if not take(
                        partition.partition,
                        record.offset,
                        record.key,
                        record.value,
                        list(record.headers),
                    ):
                        return
    except KafkaError as error:
        raise ReplayError(_kafka_problem(error, f"read topic {topic}")) from None
    finally:
        await consumer.stop()


async def _partitions(kafka: KafkaConnection, topic: str) -> list[int]:
    """The topic's partition numbers; ReplayError when it does not exist."""
    admin = admin_client(kafka)
    try:
        await admin.start()
        (described,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    partitions = sorted(p["partition"] for p in described.get("partitions", []))
    if described.get("error_code") == _TOPIC_AUTHORIZATION_FAILED:
        raise ReplayError(
            f"Kafka refused this command the permission to describe topic {topic} "
            "(TopicAuthorizationFailedError); grant what docs/operating/dead-letters.md lists"
        )
    if described.get("error_code") or not partitions:
        raise ReplayError(f"topic {topic} does not exist (make kafka-up creates it)")
    return partitions


def _kafka_problem(error: KafkaError, doing: str) -> str:
    if denied(error) is not None:
        return (
            f"Kafka refused this command the permission to {doing} ({type(error).__name__}); "
            "grant what docs/operating/dead-letters.md lists"
        )
    return f"cannot {doing}: {type(error).__name__}"


async def _ledger(kafka: KafkaConnection, topic: str) -> set[str]:
    """The dead letters replayed so far (the ledger's keys)."""
    found: set[str] = set()

    def take(
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        headers: list[tuple[str, bytes]],
    ) -> bool:
        del partition, offset, headers
        if key is not None and value is not None:
            found.add(key.decode("utf-8", "replace"))
        return True

    await _read_all(kafka, topic, take)
    return found


async def _matching(
    kafka: KafkaConnection, topic: str, wanted: DeadLetterFilter
) -> list[StoredDeadLetter]:
    found: list[StoredDeadLetter] = []

    def take(
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        headers: list[tuple[str, bytes]],
    ) -> bool:
        del key
        letter = read_stored(topic, partition, offset, value, headers)
        if letter is not None and wanted.matches(letter):
            found.append(letter)
        return wanted.limit is None or len(found) < wanted.limit

    await _read_all(kafka, topic, take)
    return found


async def list_dead_letters(
    kafka: KafkaConnection, settings: Settings, wanted: DeadLetterFilter
) -> list[tuple[StoredDeadLetter, bool]]:
    """The matching dead letters, each with whether it was replayed."""
    replayed = await _ledger(kafka, ledger_topic(settings))
    letters = await _matching(kafka, settings.topic_dead_letter, wanted)
    return [(letter, letter.coordinates in replayed) for letter in letters]


def _replay_count(headers: list[tuple[str, bytes | None]]) -> int:
    earlier = next((v for k, v in headers if k == REPLAY_COUNT), None)
    try:
        return int(earlier or b"0") + 1
    except ValueError:
        return 1


async def replay(
    kafka: KafkaConnection,
    settings: Settings,
    wanted: DeadLetterFilter,
    *,
    to: str | None,
    execute: bool,
    rate: float,
    log: FilteringBoundLogger,
    progress: Callable[[int, int], None] | None = None,
) -> ReplaySummary:
    """Replay the matching dead letters (a dry run unless `execute`); one audit line each."""
    summary = ReplaySummary()
    producer = None
    if execute:
        producer = AIOKafkaProducer(
            **kafka.client_args(),
            transactional_id=f"{settings.group_id}.replay",
            request_timeout_ms=30_000,
        )
        try:
            await producer.start()  # fences every other replay run first
        except KafkaError as error:
            await producer.stop()
            raise ReplayError(_kafka_problem(error, "start its transactional producer")) from None
    try:
        replayed = await _ledger(kafka, ledger_topic(settings))
        letters = await _matching(kafka, settings.topic_dead_letter, wanted)
        todo = []
        for letter in letters:
            why = letter.why_not_replayable()
            where = {"dead_letter": letter.coordinates, "kind": letter.kind}
            if letter.coordinates in replayed:
                summary.already_replayed += 1
                log.info("dead_letter.skipped", **where, reason="already replayed")
            elif why is not None:
                summary.not_replayable[why] += 1
                log.warning("dead_letter.skipped", **where, reason=why)
            elif producer is None:
                summary.would_replay += 1
                log.info(
                    "dead_letter.would_replay", **where, to_topic=to or letter.original().topic
                )
            else:
                todo.append(letter)
        if producer is not None:
            await _publish(producer, todo, settings, to=to, rate=rate, log=log, progress=progress)
            summary.replayed = len(todo)
    finally:
        if producer is not None:
            await producer.stop()
    return summary


async def _publish(
    producer: AIOKafkaProducer,
    letters: list[StoredDeadLetter],
    settings: Settings,
    *,
    to: str | None,
    rate: float,
    log: FilteringBoundLogger,
    progress: Callable[[int, int], None] | None,
) -> None:
    """Each dead letter's record and ledger record, a transaction per batch, at most `rate`
    records per second."""
    ledger = ledger_topic(settings)
    started = time.monotonic()
    done = 0
    for first in range(0, len(letters), _BATCH):
        batch = letters[first : first + _BATCH]
        try:
            await producer.begin_transaction()
            deliveries = []
            for letter in batch:
                original = letter.original()
                kept = [(k, v) for k, v in original.headers if k not in {REPLAY_OF, REPLAY_COUNT}]
                headers = [
                    *kept,
                    (REPLAY_OF, letter.coordinates.encode()),
                    (REPLAY_COUNT, str(_replay_count(original.headers)).encode()),
                ]
                target = to or original.topic
                deliveries.append(
                    await producer.send(
                        target,
                        original.value,
                        key=original.key,
                        # a null header value stays null: aiokafka writes None as null
                        headers=cast("list[tuple[str, bytes]]", headers),
                    )
                )
                entry = {"replayed_at": timestamp_text(datetime.now(UTC)), "to_topic": target}
                deliveries.append(
                    await producer.send(
                        ledger, orjson.dumps(entry), key=letter.coordinates.encode()
                    )
                )
            for delivery in deliveries:
                await delivery
            await producer.commit_transaction()
        except (ProducerFenced, ProducerFencedByCoordinatorError, IllegalOperation):
            # fenced by the next run; aiokafka then refuses the next send as IllegalOperation
            raise ReplayError(
                "another replay run took over (it fenced this one's transactional id); it "
                "replays what this one did not"
            ) from None
        except KafkaError as error:
            raise ReplayError(_kafka_problem(error, "publish the replayed records")) from None
        for letter in batch:
            log.info(
                "dead_letter.replayed",
                dead_letter=letter.coordinates,
                kind=letter.kind,
                to_topic=to or letter.original().topic,
            )
        done += len(batch)
        if progress is not None:
            progress(done, len(letters))
        ahead = done / rate - (time.monotonic() - started)
        if ahead > 0:
            await asyncio.sleep(ahead)
