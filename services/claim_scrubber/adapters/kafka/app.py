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
from claim_scrubber.adapters.operations import (
    Health,
    OperationsServer,
    WorkerMetrics,
    beat_while_running,
)
from claim_scrubber.adapters.settings import Settings
from claim_scrubber.adapters.tracing import Tracing
from claim_scrubber.models import DeadLetter, ScrubResult
from claim_scrubber.rules import ruleset_gaps
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

    def start(
        self,
        max_bytes: dict[str, int],
        log: FilteringBoundLogger,
        metrics: WorkerMetrics,
        tracing: Tracing,
    ) -> None:
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
        self.router = ClaimRouter(
            mapping=mapping, ownership=self._ownership, log=log, metrics=metrics, tracing=tracing
        )

    async def handle(self, records: Sequence[InputRecord], consumer: Cursor) -> None:
        if self.router is not None:
            await self.router.handle(records, consumer)

    async def stop(self) -> None:
        if self.router is not None:
            await self.router.close()
        await self._ownership.close()


class _Operations:
    """The worker's metrics, health flags and the HTTP server that serves them."""

    def __init__(self, port: int, ruleset_version: str, ownership: PartitionOwnership) -> None:
        self.metrics = WorkerMetrics(ruleset_version=ruleset_version)
        self.metrics.partitions_owned.set_function(lambda: len(ownership.owned()))
        self.health = Health(producers_up=lambda: ownership.settled)
        self._port = port
        self._server: OperationsServer | None = None

    def serve(self) -> None:
        """Start the server (port 0: none); a port that cannot be bound is a start-up error."""
        if not self._port:
            return
        try:
            self._server = OperationsServer(
                port=self._port, metrics=self.metrics, health=self.health
            )
        except OSError as error:
            raise StartupError(
                f"cannot serve /metrics, /livez and /readyz on port {self._port} "
                f"({error.strerror or type(error).__name__}); set SCRUBBER_HTTP_PORT "
                "(0 turns the server off)"
            ) from None
        self._server.start()

    def broker_answered(self, answered: bool) -> None:  # noqa: FBT001 - a probe callback's flag
        self.health.broker_reachable = answered
        self.metrics.broker_reachable.set(1 if answered else 0)

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()


def build_app(
    settings: Settings,
    scrubber: Scrubber,
    log: FilteringBoundLogger,
    *,
    kafka: KafkaConnection | None = None,
    producer_factory: ProducerFactory | None = None,
    failure: WorkerFailure | None = None,
    tracing: Tracing | None = None,
) -> FastStream:
    """The worker application: consume, scrub, publish and commit exactly once.

    `kafka` is how every client connects (default: built from `settings`, which raises
    SettingsError for an unusable secret or certificate file); `producer_factory` replaces
    aiokafka's transactional producers (tests); `failure` receives the reason when the worker
    stops itself (a permission the broker refuses), after a graceful stop.
    """
    kafka = kafka or connection(settings)
    failure = failure if failure is not None else WorkerFailure()
    tracing = tracing or Tracing.from_settings(
        endpoint=settings.otel_exporter_otlp_endpoint,
        exporter=settings.otel_traces_exporter,
        service_name=settings.otel_service_name,
    )
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
    operations = _Operations(settings.http_port, scrubber.ruleset.version, ownership)
    metrics, health = operations.metrics, operations.health

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
        listener=OwnershipListener(
            topic=settings.topic_input,
            ownership=ownership,
            log=log,
            health=health,
            metrics=metrics,
        ),
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

    watch: list[asyncio.Task[None]] = []

    async def starting() -> None:
        # Liveness answers while the worker waits for the brokers; readiness once it owns.
        watch.append(asyncio.create_task(beat_while_running(health), name="heartbeat"))
        operations.serve()
        await wait_for_broker(settings, kafka, log)
        operations.broker_answered(answered=True)
        await check_permissions(settings, kafka)
        sizes = await check_topic_sizes(settings, kafka)
        worker.start(sizes.by_topic, log, metrics, tracing)

    async def started() -> None:
        # Everything allocated so far lives as long as the worker: leave it out of garbage
        # collection, whose full passes over it stalled the event loop 20-50 ms each.
        gc.collect()
        gc.freeze()
        watch.append(
            asyncio.create_task(
                watch_broker(settings, kafka, log, stop_for_good, operations.broker_answered),
                name="broker-watch",
            )
        )
        gaps = ruleset_gaps(scrubber.ruleset)
        if gaps:
            log.warning(
                "ruleset.incomplete", ruleset_version=scrubber.ruleset.version, missing=list(gaps)
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
        health.in_group = False
        for task in watch:
            task.cancel()
        await worker.stop()

    async def stopped() -> None:
        operations.stop()
        tracing.shutdown()
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
