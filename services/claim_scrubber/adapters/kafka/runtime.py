"""The runtime of a stage (the worker or intake) as a FastStream application on Kafka.

FastStream owns the consumers (group membership, batches, rebalance callbacks, signals and
graceful shutdown) and describes the topics in AsyncAPI. Output goes through
PartitionOwnership's transactional producers instead of FastStream publishers: FastStream
has no Kafka transactions (faststream#2512), and exactly-once needs the output and the
consumed offsets in one. The publishers declared here document the output topics and are
never called.

Both stages run the same machinery per input topic (InputStream: ownership, subscriber, commit
loop); only the mapping from an input record to its outputs differs: the scrubber's
(ScrubMapping) or intake's (IntakeMapping, one ClaimEvent per claim).

Shutdown order (SIGTERM): stop starting batches, let the transactions in flight end (commit
or abort), stop the producers, and only then let FastStream stop the consumers, which leave
the group: a partition's next owner never starts while this process's transaction is open.
"""

import asyncio
import gc
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Generic, TypeVar

from aiokafka import TopicPartition
from faststream import AckPolicy, FastStream
from faststream.kafka import KafkaBroker, KafkaMessage, Topic
from faststream.message import StreamMessage
from faststream.specification import AsyncAPI
from pydantic import BaseModel
from structlog.typing import FilteringBoundLogger

from claim_scrubber import __version__
from claim_scrubber.adapters.kafka.commit_loop import CommitLoop
from claim_scrubber.adapters.kafka.group import (
    ConsumerMember,
    OwnershipListener,
    transactional_producers,
)
from claim_scrubber.adapters.kafka.history import ChangelogStore, HistoryTables
from claim_scrubber.adapters.kafka.monitoring import StageOperations
from claim_scrubber.adapters.kafka.outbound import RecordMapping
from claim_scrubber.adapters.kafka.ownership import (
    PartitionOwnership,
    ProducerFactory,
    broker_wait_s,
)
from claim_scrubber.adapters.kafka.permissions import check_permissions
from claim_scrubber.adapters.kafka.probe import wait_for_broker, watch_broker
from claim_scrubber.adapters.kafka.security import KafkaConnection, connection
from claim_scrubber.adapters.kafka.stage import Stage
from claim_scrubber.adapters.kafka.topic_sizes import check_changelog, check_topic_sizes
from claim_scrubber.adapters.operations import (
    StageMetrics,
    beat_while_running,
    watch_lag,
)
from claim_scrubber.adapters.settings import Settings
from claim_scrubber.adapters.tracing import Tracing
from claim_scrubber.models import Ruleset
from claim_scrubber.rules import ruleset_gaps

__all__ = ["InputStream", "MappingFactory", "StageFailure", "StreamSpec", "stage_application"]

Detail = TypeVar("Detail")

_FETCH_BYTES: Final = 1024 * 1024
"""Bytes the consumer fetches per partition at least (more when records may be larger)."""


@dataclass
class StageFailure:
    """Why the running worker stopped itself, in one line (None: it was asked to stop)."""

    problem: str | None = None


async def _undecoded(message: StreamMessage[object]) -> None:
    """The handler reads the raw records; FastStream's default decoder would JSON-parse every
    body and wrap every record in a message object first (12 % of the worker's CPU)."""
    del message


class InputStream(Generic[Detail]):
    """One input topic of a stage: its partitions' ownership, its subscriber, and the router
    that is built at start, once the topics' sizes are known."""

    def __init__(
        self,
        *,
        broker: KafkaBroker,
        settings: Settings,
        stage: Stage,
        topic: str,
        producer_factory: ProducerFactory,
        log: FilteringBoundLogger,
        operations: "StageOperations",
        on_fatal: Callable[[str], None],
        title: str,
        description: str,
        history: ChangelogStore | None = None,
    ) -> None:
        """`history`: the stream's claim history, restored after each fence."""
        self.topic = topic
        self.router: CommitLoop[Detail] | None = None
        self._batch_max_bytes = settings.batch_max_bytes
        self._batch_max_records = settings.batch_max_records
        self._tables = None if history is None else history.tables
        group_id = stage.group_for(topic)
        self.ownership = PartitionOwnership(
            group_id=group_id,
            input_topic=topic,
            producer_factory=producer_factory,
            member=ConsumerMember(lambda: subscriber.consumer, topic),
            log=log,
            fence_quarantine_s=settings.transaction_timeout_ms / 1000,
            wait_s=broker_wait_s(settings.transaction_timeout_ms),
            on_fatal=on_fatal,
            store=history,
        )
        subscriber = broker.subscriber(
            # Nothing here creates a topic: a missing one is a start-up error.
            Topic(topic, declare=False),
            group_id=group_id,
            batch=True,
            max_records=settings.batch_max_records,
            batch_timeout_ms=settings.batch_timeout_ms,
            ack_policy=AckPolicy.MANUAL,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            session_timeout_ms=settings.session_timeout_ms,
            heartbeat_interval_ms=max(1000, settings.session_timeout_ms // 4),
            # What the consumer buffers per partition is most of the worker's memory: 4 MiB
            # measured 172-184 MB RSS draining, 1 MiB 113 MB at the same rate. A larger record
            # still comes whole (a fetch returns at least one record, KIP-74).
            max_partition_fetch_bytes=max(settings.max_message_bytes, _FETCH_BYTES),
            listener=OwnershipListener(
                topic=topic,
                ownership=self.ownership,
                log=log,
                health=operations.health,
                metrics=operations.metrics,
            ),
            decoder=_undecoded,
            title=title,
            description=description,
        )

        self._subscriber = subscriber

        @subscriber
        async def handle(message: KafkaMessage) -> None:
            """Decide a batch and publish each record's outputs exactly once."""
            consumer = subscriber.consumer
            if consumer is None or self.router is None:  # stopped between fetch and handling
                return
            await self.router.handle(message.raw_message, consumer)

    def start(
        self,
        mapping: RecordMapping[Detail],
        log: FilteringBoundLogger,
        metrics: StageMetrics,
        tracing: Tracing,
    ) -> None:
        self.router = CommitLoop(
            mapping=mapping,
            ownership=self.ownership,
            log=log,
            metrics=metrics,
            tracing=tracing,
            batch_max_bytes=self._batch_max_bytes,
            queued_max_records=self._batch_max_records,
            tables=self._tables,
        )

    async def stop(self) -> None:
        if self.router is not None:
            await self.router.close()
        await self.ownership.close()

    def assigned(self) -> list[int]:
        return self.ownership.assigned()

    async def end_offsets(self, partitions: list[int]) -> dict[int, int]:
        """The end offsets a read_committed consumer sees (the last stable offsets)."""
        consumer = self._subscriber.consumer
        if consumer is None:
            return {}
        ends = await consumer.end_offsets([TopicPartition(self.topic, p) for p in partitions])
        return {tp.partition: offset for tp, offset in ends.items()}

    async def committed(self, partition: int) -> int | None:
        consumer = self._subscriber.consumer
        if consumer is None:
            return None
        offset: int | None = await consumer.committed(TopicPartition(self.topic, partition))
        return offset


MappingFactory = Callable[[str, dict[str, int]], RecordMapping[Any]]
"""(input topic, every topic's max.message.bytes) -> the stream's mapping, built at start."""


@dataclass(frozen=True, slots=True)
class StreamSpec:
    topic: str
    title: str
    description: str
    history: bool = False
    """The stream is decided against claim history (the stage's changelog)."""


def _history_store(
    settings: Settings,
    stage: Stage,
    history: HistoryTables | None,
    *,
    kafka: KafkaConnection,
    log: FilteringBoundLogger,
    operations: StageOperations,
) -> ChangelogStore | None:
    if history is None or stage.changelog is None:
        return None
    operations.metrics.watch_history(history.size)
    return ChangelogStore(
        kafka=kafka,
        topic=stage.changelog,
        tables=history,
        log=log,
        metrics=operations.metrics,
        stall_s=broker_wait_s(settings.transaction_timeout_ms),
    )


def stage_application(
    settings: Settings,
    stage: Stage,
    ruleset: Ruleset,
    log: FilteringBoundLogger,
    *,
    streams: Sequence[StreamSpec],
    mapping_for: MappingFactory,
    publishers: Sequence[tuple[str, type[BaseModel] | None, str]],
    kafka: KafkaConnection | None,
    producer_factory: ProducerFactory | None,
    failure: StageFailure | None,
    tracing: Tracing | None,
    description: str,
    history: HistoryTables | None = None,
) -> FastStream:
    """A stage as a FastStream application: consume its inputs, publish and commit exactly
    once per input partition, audit, serve /metrics, /livez and /readyz. `history`: the
    claim history tables of the stream marked `history`, restored from `stage.changelog`."""
    kafka = kafka or connection(settings)
    failure = failure if failure is not None else StageFailure()
    tracing = tracing or Tracing.from_settings(
        endpoint=settings.otel_exporter_otlp_endpoint,
        exporter=settings.otel_traces_exporter,
        service_name=settings.otel_service_name,
    )
    running: list[FastStream] = []

    def stop_for_good(problem: str) -> None:
        if failure.problem is None:
            failure.problem = problem
            log.error(f"{stage.name}.failed", problem=problem)
            for app in running:
                app.exit()

    client_id = f"claim-scrubber-{settings.worker_id}"
    broker = KafkaBroker(
        settings.kafka_bootstrap_servers,
        security=kafka.faststream_security(),
        sasl_oauth_token_provider=kafka.token_provider,
        client_id=client_id,
        logger=logging.getLogger("faststream.claim_scrubber"),
        log_level=logging.DEBUG,
        graceful_timeout=settings.shutdown_timeout_s,
    )
    producers = producer_factory or transactional_producers(
        connection=kafka,
        client_id=client_id,
        transaction_timeout_ms=settings.transaction_timeout_ms,
    )
    operations = StageOperations(settings.http_port, ruleset.version, stage.name)
    store = _history_store(settings, stage, history, kafka=kafka, log=log, operations=operations)
    consumed: list[InputStream[Any]] = [
        InputStream(
            broker=broker,
            settings=settings,
            stage=stage,
            topic=spec.topic,
            producer_factory=producers,
            log=log,
            operations=operations,
            on_fatal=stop_for_good,
            title=spec.title,
            description=spec.description,
            history=store if spec.history else None,
        )
        for spec in streams
    ]
    operations.watch([stream.ownership for stream in consumed])
    metrics, health = operations.metrics, operations.health
    for topic, model, what in publishers:
        broker.publisher(topic, title=f"{topic}:publish", description=what, schema=model)

    watch: list[asyncio.Task[None]] = []

    async def starting() -> None:
        # Liveness answers while the stage waits for the brokers; readiness once it owns.
        watch.append(
            asyncio.create_task(
                beat_while_running(health, metrics.loop_delay_seconds), name="heartbeat"
            )
        )
        operations.serve()
        await wait_for_broker(settings, stage, kafka, log)
        operations.broker_answered(answered=True)
        await check_permissions(stage, kafka)
        sizes = await check_topic_sizes(settings, stage, kafka)
        await check_changelog(stage, kafka)
        for stream in consumed:
            stream.start(mapping_for(stream.topic, sizes.by_topic), log, metrics, tracing)

    async def started() -> None:
        # Everything allocated so far lives as long as the process: leave it out of garbage
        # collection, whose full passes over it stalled the event loop 20-50 ms each.
        gc.collect()
        gc.freeze()
        watch.append(
            asyncio.create_task(
                watch_broker(
                    settings,
                    stage,
                    kafka,
                    log,
                    on_fatal=stop_for_good,
                    on_reachable=operations.broker_answered,
                ),
                name="broker-watch",
            )
        )
        watch.append(asyncio.create_task(watch_lag(consumed, metrics), name="lag-watch"))
        gaps = ruleset_gaps(ruleset, datetime.now(UTC).date())
        if gaps:
            log.warning("ruleset.incomplete", ruleset_version=ruleset.version, missing=list(gaps))
        log.info(
            f"{stage.name}.started",
            version=__version__,
            ruleset_version=ruleset.version,
            code_sets=ruleset.code_sets.releases,
            bootstrap_servers=settings.kafka_bootstrap_servers,
            group_id=stage.group_id,
            input_topics=list(stage.inputs),
            history=stage.changelog is not None,
        )

    async def stopping() -> None:
        log.info(f"{stage.name}.stopping")
        health.in_group = False
        for task in watch:
            task.cancel()
        await asyncio.gather(*(stream.stop() for stream in consumed))

    async def stopped() -> None:
        operations.stop()
        tracing.shutdown()
        log.info(f"{stage.name}.stopped")

    application = FastStream(
        broker,
        logger=logging.getLogger("faststream.claim_scrubber"),
        on_startup=[starting],
        after_startup=[started],
        on_shutdown=[stopping],
        after_shutdown=[stopped],
        specification=AsyncAPI(
            title=f"claim-scrubber {stage.name}",
            version=__version__,
            description=description,
        ),
    )
    running.append(application)
    return application
