"""The worker as a FastStream application on Kafka.

FastStream owns the consumer (group membership, batches, rebalance callbacks, signals and
graceful shutdown) and describes the topics in AsyncAPI. Output goes through
PartitionOwnership's transactional producers instead of FastStream publishers: FastStream
has no Kafka transactions (faststream#2512), and exactly-once needs the output and the
consumed offsets in one. The publishers declared here document the output topics and are
never called.

Shutdown order (SIGTERM): stop starting batches, let the transactions in flight end (commit
or abort), stop the producers, and only then let FastStream stop the consumer, which leaves
the group: a partition's next owner never starts while this worker's transaction is open.
"""

import asyncio
import gc
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from faststream import AckPolicy, FastStream
from faststream.kafka import KafkaBroker, KafkaMessage, Topic
from faststream.message import StreamMessage
from faststream.specification import AsyncAPI
from structlog.typing import FilteringBoundLogger

from claim_scrubber import __version__
from claim_scrubber.adapters.kafka.group import (
    ConsumerMember,
    OwnershipListener,
    transactional_producers,
)
from claim_scrubber.adapters.kafka.outbound import InputRecord, OutboundMapping, OutputTopics
from claim_scrubber.adapters.kafka.ownership import PartitionOwnership, ProducerFactory
from claim_scrubber.adapters.kafka.router import ClaimRouter, Cursor
from claim_scrubber.adapters.kafka.security import KafkaConnection, connection
from claim_scrubber.adapters.kafka.startup import (
    StartupError,
    check_permissions,
    check_topic_sizes,
    wait_for_broker,
    watch_broker,
)
from claim_scrubber.adapters.settings import Settings
from claim_scrubber.models import DeadLetter, ScrubResult
from claim_scrubber.scrubber import Scrubber

__all__ = ["StartupError", "WorkerFailure", "build_app"]


@dataclass
class WorkerFailure:
    """Why the running worker stopped itself, in one line (None: it was asked to stop)."""

    problem: str | None = None


async def _undecoded(message: StreamMessage[object]) -> None:
    """The handler reads the raw records; FastStream's default decoder would JSON-parse every
    body and wrap every record in a message object first (12 % of the worker's CPU)."""
    del message


class _Worker:
    """The router, built at start once the topics' sizes are known."""

    def __init__(
        self, settings: Settings, scrubber: Scrubber, ownership: PartitionOwnership
    ) -> None:
        self._settings = settings
        self._scrubber = scrubber
        self._ownership = ownership
        self.router: ClaimRouter | None = None

    def start(self, max_bytes: dict[str, int], log: FilteringBoundLogger) -> None:
        settings = self._settings
        topics = OutputTopics(
            clean=settings.topic_clean,
            review=settings.topic_review,
            dead_letter=settings.topic_dead_letter,
            max_bytes=dict(max_bytes),
        )
        mapping = OutboundMapping(
            scrubber=self._scrubber, topics=topics, worker_id=settings.worker_id
        )
        self.router = ClaimRouter(mapping=mapping, ownership=self._ownership, log=log)

    async def handle(self, records: Sequence[InputRecord], consumer: Cursor) -> None:
        if self.router is not None:
            await self.router.handle(records, consumer)

    async def stop(self) -> None:
        if self.router is not None:
            await self.router.close()
        await self._ownership.close()


def build_app(
    settings: Settings,
    scrubber: Scrubber,
    log: FilteringBoundLogger,
    *,
    kafka: KafkaConnection | None = None,
    producer_factory: ProducerFactory | None = None,
    failure: WorkerFailure | None = None,
) -> FastStream:
    """The worker application: consume, scrub, publish and commit exactly once.

    `kafka` is how every client connects (default: built from `settings`, which raises
    SettingsError for an unusable secret or certificate file); `producer_factory` replaces
    aiokafka's transactional producers (tests); `failure` receives the reason when the worker
    stops itself (a permission the broker refuses), after a graceful stop.
    """
    kafka = kafka or connection(settings)
    failure = failure if failure is not None else WorkerFailure()
    running: list[FastStream] = []

    def stop_for_good(problem: str) -> None:
        if failure.problem is None:
            failure.problem = problem
            log.error("worker.failed", problem=problem)
            for app in running:
                app.exit()

    broker = KafkaBroker(
        settings.kafka_bootstrap_servers,
        security=kafka.faststream_security(),
        sasl_oauth_token_provider=kafka.token_provider,
        client_id=f"claim-scrubber-{settings.worker_id}",
        logger=logging.getLogger("faststream.claim_scrubber"),
        log_level=logging.DEBUG,
        graceful_timeout=settings.shutdown_timeout_s,
    )
    ownership = PartitionOwnership(
        group_id=settings.group_id,
        input_topic=settings.topic_input,
        producer_factory=producer_factory
        or transactional_producers(
            connection=kafka,
            client_id=f"claim-scrubber-{settings.worker_id}",
            transaction_timeout_ms=settings.transaction_timeout_ms,
        ),
        member=ConsumerMember(lambda: subscriber.consumer, settings.topic_input),
        log=log,
        fence_quarantine_s=settings.transaction_timeout_ms / 1000,
        on_fatal=stop_for_good,
    )
    worker = _Worker(settings, scrubber, ownership)
    subscriber = broker.subscriber(
        # The worker never creates a topic: a missing one is a start-up error.
        Topic(settings.topic_input, declare=False),
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
        listener=OwnershipListener(topic=settings.topic_input, ownership=ownership, log=log),
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
        await worker.handle(message.raw_message, consumer)

    async def starting() -> None:
        await wait_for_broker(settings, kafka, log)
        await check_permissions(settings, kafka)
        sizes = await check_topic_sizes(settings, kafka)
        worker.start(sizes.by_topic, log)

    watch: list[asyncio.Task[None]] = []

    async def started() -> None:
        # Everything allocated so far lives as long as the worker: leave it out of garbage
        # collection, whose full passes over it stalled the event loop 20-50 ms each.
        gc.collect()
        gc.freeze()
        watch.append(
            asyncio.create_task(
                watch_broker(settings, kafka, log, stop_for_good), name="broker-watch"
            )
        )
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
        await worker.stop()

    async def stopped() -> None:
        log.info("worker.stopped")

    application = FastStream(
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
    running.append(application)
    return application
