"""The worker as a FastStream application on Kafka.

FastStream owns the consumer (group membership, batches, rebalance callbacks, signals and
graceful shutdown) and describes the topics in AsyncAPI. Output goes through
PartitionProducers instead of FastStream publishers: FastStream has no Kafka transactions
(faststream#2512), and exactly-once needs the output and the consumed offsets in one.
The publishers declared here document the output topics and are never called.
"""

import asyncio
import gc
import logging
import time
from dataclasses import dataclass

from aiokafka import ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from faststream import AckPolicy, FastStream
from faststream.kafka import KafkaBroker, KafkaMessage
from faststream.message import StreamMessage
from faststream.specification import AsyncAPI
from structlog.typing import FilteringBoundLogger

from claim_scrubber import __version__
from claim_scrubber.adapters.kafka.router import Backoff, ClaimRouter
from claim_scrubber.adapters.kafka.transactions import PartitionProducers
from claim_scrubber.adapters.settings import Settings
from claim_scrubber.models import DeadLetter, ScrubResult
from claim_scrubber.scrubber import Scrubber

__all__ = ["StartupError", "build_app"]


_HEALTH_PROBE_INTERVAL_S = 5.0


class StartupError(Exception):
    """The worker cannot start; the message is one line for the operator."""


class _PartitionOwnership(ConsumerRebalanceListener):  # type: ignore[misc]
    """Logs assignments and moves each partition's transactional producer with it."""

    def __init__(
        self, *, topic: str, producers: PartitionProducers, log: FilteringBoundLogger
    ) -> None:
        self._topic = topic
        self._producers = producers
        self._log = log

    def _ours(self, partitions: set[TopicPartition]) -> list[int]:
        return sorted(tp.partition for tp in partitions if tp.topic == self._topic)

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        partitions = self._ours(revoked)
        if partitions:  # the first join of a group revokes nothing
            self._log.info("partitions.revoked", topic=self._topic, partitions=partitions)
            await self._producers.close(partitions)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        partitions = self._ours(assigned)
        self._log.info("partitions.assigned", topic=self._topic, partitions=partitions)
        try:
            await self._producers.open(partitions)
        except KafkaError as error:
            # Each producer is started again before its partition's next transaction.
            self._log.warning(
                "broker.unreachable", error_type=type(error).__name__, error=str(error)
            )


@dataclass(frozen=True, slots=True)
class _BrokerProblem:
    problem: str
    detail: dict[str, object]


async def _probe(settings: Settings) -> _BrokerProblem | None:
    """Ask the brokers for their topics: None when they answer and all four topics exist."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap_servers, request_timeout_ms=5_000
    )
    try:
        await admin.start()
        topics = set(await admin.list_topics())
    except (KafkaError, OSError) as error:
        return _BrokerProblem(
            f"cannot reach Kafka at {settings.kafka_bootstrap_servers}",
            {"error_type": type(error).__name__, "error": str(error)},
        )
    finally:
        await admin.close()
    wanted = {
        settings.topic_input,
        settings.topic_clean,
        settings.topic_review,
        settings.topic_dead_letter,
    }
    missing = sorted(wanted - topics)
    if missing:
        return _BrokerProblem(
            f"topics {', '.join(missing)} do not exist on {settings.kafka_bootstrap_servers}",
            {"missing_topics": missing},
        )
    return None


def _log_outage(log: FilteringBoundLogger, found: _BrokerProblem, backoff: Backoff) -> float:
    """Log `broker.unreachable` with the next retry delay, and return that delay."""
    delay = backoff.next_delay()
    log.warning(
        "broker.unreachable",
        problem=found.problem,
        attempt=backoff.attempt,
        retry_in_s=round(delay, 2),
        **found.detail,
    )
    return delay


async def _wait_for_broker(settings: Settings, log: FilteringBoundLogger) -> None:
    """Retry the brokers with backoff until they answer and the topics exist, or give up."""
    backoff = Backoff(first_s=0.5, cap_s=10.0)
    deadline = time.monotonic() + settings.startup_timeout_s
    while (found := await _probe(settings)) is not None:
        if time.monotonic() >= deadline:
            raise StartupError(f"{found.problem} (gave up after {settings.startup_timeout_s:g} s)")
        await asyncio.sleep(_log_outage(log, found, backoff))


async def _watch_broker(settings: Settings, log: FilteringBoundLogger) -> None:
    """While the worker runs, probe the brokers; log an outage with backoff, and its end.

    The consumer and the producers reconnect by themselves; this makes the outage visible to
    operators even when no record is in flight.
    """
    backoff = Backoff(first_s=1.0, cap_s=30.0)
    down_since: float | None = None
    while True:
        found = await _probe(settings)
        if found is None:
            if down_since is not None:
                log.info("broker.reachable", downtime_s=round(time.monotonic() - down_since, 1))
                down_since = None
                backoff.reset()
            await asyncio.sleep(_HEALTH_PROBE_INTERVAL_S)
            continue
        down_since = down_since if down_since is not None else time.monotonic()
        await asyncio.sleep(_log_outage(log, found, backoff))


async def _undecoded(message: StreamMessage[object]) -> None:
    """The handler reads the raw records; FastStream's default decoder would JSON-parse every
    body and wrap every record in a message object first (12 % of the worker's CPU)."""
    del message


def build_app(settings: Settings, scrubber: Scrubber, log: FilteringBoundLogger) -> FastStream:
    """The worker application: consume, scrub, publish and commit exactly once."""
    broker = KafkaBroker(
        settings.kafka_bootstrap_servers,
        client_id=f"claim-scrubber-{settings.worker_id}",
        logger=logging.getLogger("faststream.claim_scrubber"),
        log_level=logging.DEBUG,
        graceful_timeout=settings.shutdown_timeout_s,
    )
    producers = PartitionProducers(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=settings.group_id,
        input_topic=settings.topic_input,
        client_id=f"claim-scrubber-{settings.worker_id}",
        transaction_timeout_ms=settings.transaction_timeout_ms,
    )
    router = ClaimRouter(settings=settings, scrubber=scrubber, producers=producers, log=log)
    subscriber = broker.subscriber(
        settings.topic_input,
        group_id=settings.group_id,
        batch=True,
        max_records=settings.batch_max_records,
        batch_timeout_ms=settings.batch_timeout_ms,
        ack_policy=AckPolicy.MANUAL,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        session_timeout_ms=settings.session_timeout_ms,
        heartbeat_interval_ms=max(1000, settings.session_timeout_ms // 4),
        max_partition_fetch_bytes=max(settings.max_message_bytes * 2, 4 * 1024 * 1024),
        listener=_PartitionOwnership(topic=settings.topic_input, producers=producers, log=log),
        decoder=_undecoded,
        title=f"{settings.topic_input}:scrub",
        description="ClaimEvent JSON, schema_version 1 (schemas/claim-event.schema.json)",
    )
    for topic, model, what in (
        (settings.topic_clean, ScrubResult, "ScrubResult with outcome clean, keyed by claim_id"),
        (settings.topic_review, ScrubResult, "ScrubResult with outcome needs_review"),
        (settings.topic_dead_letter, DeadLetter, "DeadLetter with the original bytes, input key"),
    ):
        broker.publisher(topic, title=f"{topic}:publish", description=what, schema=model)

    @subscriber
    async def scrub_claims(message: KafkaMessage) -> None:
        """Scrub a batch of claim events and publish each result exactly once."""
        consumer = subscriber.consumer
        if consumer is None:  # stopped between fetching and handling: nothing was consumed
            return
        await router.handle(message.raw_message, consumer)

    async def starting() -> None:
        await _wait_for_broker(settings, log)

    watch: list[asyncio.Task[None]] = []

    async def started() -> None:
        # Everything allocated so far lives as long as the worker: leave it out of garbage
        # collection, whose full passes over it stalled the event loop 20-50 ms each.
        gc.collect()
        gc.freeze()
        watch.append(asyncio.create_task(_watch_broker(settings, log), name="broker-watch"))
        log.info(
            "worker.started",
            version=__version__,
            ruleset_version=scrubber.ruleset.version,
            bootstrap_servers=settings.kafka_bootstrap_servers,
            group_id=settings.group_id,
            input_topic=settings.topic_input,
        )

    async def stopping() -> None:
        log.info("worker.stopping")
        for task in watch:
            task.cancel()

    async def stopped() -> None:
        await router.drain()
        await producers.close_all()
        log.info("worker.stopped")

    return FastStream(
        broker,
        logger=logging.getLogger("faststream.claim_scrubber"),
        on_startup=[starting],
        after_startup=[started],
        on_shutdown=[stopping],
        after_shutdown=[stopped],
        specification=AsyncAPI(
            title="claim-scrubber",
            version=__version__,
            description="Scrubs claim events for HCPCS Q4390 and claim integrity, exactly once.",
        ),
    )
