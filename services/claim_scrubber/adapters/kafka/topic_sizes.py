"""The topics' `max.message.bytes`, read from the brokers at start: the worker (and intake)
refuses to start unless every output it can produce fits its topic (docs/operating/delivery.md): a
dead letter of the largest record its input topics accept, and the result of the largest
claim it scrubs."""

from dataclasses import dataclass
from typing import Final

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import (
    KafkaError,
)

from claim_scrubber.adapters.kafka.outbound import dead_letter_bytes_needed, result_bytes_needed
from claim_scrubber.adapters.kafka.security import (
    KafkaConnection,
)
from claim_scrubber.adapters.kafka.stage import Stage, StageError
from claim_scrubber.adapters.settings import Settings

__all__ = [
    "OUTPUT_TOPIC_CONFIGS",
    "TopicSizes",
    "admin_client",
    "check_changelog",
    "check_topic_sizes",
    "describe_topics",
]

_MAX_MESSAGE_BYTES: Final = "max.message.bytes"

OUTPUT_TOPIC_CONFIGS: Final = {_MAX_MESSAGE_BYTES: str(2 * 1024 * 1024)}
"""What `make kafka-up`, the compose file, the tests and the bench give the three output topics:
2 MiB holds a dead letter of the broker's default largest record (1 MiB) and any result."""


def admin_client(kafka: KafkaConnection) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(**kafka.client_args(), request_timeout_ms=5_000)


@dataclass(frozen=True, slots=True)
class _TopicConfig:
    topic: str
    error_code: int
    max_message_bytes: int | None


async def describe_topics(stage: Stage, kafka: KafkaConnection) -> list[_TopicConfig]:
    """The stage's topics' `max.message.bytes` as the brokers describe them, with each topic's
    error code (0, UNKNOWN_TOPIC_OR_PARTITION, TOPIC_AUTHORIZATION_FAILED, …)."""
    admin = admin_client(kafka)
    try:
        await admin.start()
        responses = await admin.describe_configs(
            [
                ConfigResource(ConfigResourceType.TOPIC, topic, configs={_MAX_MESSAGE_BYTES: None})
                for topic in stage.topics
            ]
        )
    finally:
        await admin.close()
    described = []
    for response in responses:
        for error_code, _, _, topic, entries in response.resources:
            size = next((int(v) for name, v, *_ in entries if name == _MAX_MESSAGE_BYTES), None)
            described.append(_TopicConfig(topic, error_code, size))
    return described


@dataclass(frozen=True, slots=True)
class TopicSizes:
    """`max.message.bytes` of each topic, by name."""

    by_topic: dict[str, int]


async def _read_topic_sizes(settings: Settings, stage: Stage, kafka: KafkaConnection) -> TopicSizes:
    try:
        described = await describe_topics(stage, kafka)
    except (KafkaError, OSError) as error:
        raise StageError(
            f"cannot read the topics' {_MAX_MESSAGE_BYTES} on {settings.kafka_bootstrap_servers}"
            f" ({type(error).__name__})"
        ) from None
    sizes: dict[str, int] = {}
    for found in described:
        if found.error_code or found.max_message_bytes is None:
            raise StageError(
                f"cannot read {_MAX_MESSAGE_BYTES} of topic {found.topic} "
                f"(Kafka error code {found.error_code})"
            )
        sizes[found.topic] = found.max_message_bytes
    return TopicSizes(sizes)


async def check_topic_sizes(settings: Settings, stage: Stage, kafka: KafkaConnection) -> TopicSizes:
    """Read the topics' sizes and refuse to start unless every output fits its topic: a dead
    letter of the largest input record and (for the worker) the largest claim's result."""
    sizes = await _read_topic_sizes(settings, stage, kafka)
    largest_topic = max(stage.inputs, key=lambda topic: sizes.by_topic[topic])
    largest_input = sizes.by_topic[largest_topic]
    needs = {
        stage.dead_letter: (
            dead_letter_bytes_needed(largest_input),
            f"a dead letter of the largest record {largest_topic} accepts ({largest_input} bytes)",
        ),
    }
    for topic in stage.forwarded:
        source = max(
            (t for t in stage.inputs if t not in stage.forwarded),
            key=lambda t: sizes.by_topic[t],
        )
        needs[topic] = (sizes.by_topic[source], f"the largest record {source} accepts")
    largest_claim = min(largest_input, settings.max_message_bytes)
    for topic in stage.results:
        needs[topic] = (
            result_bytes_needed(largest_claim),
            f"the result of the largest claim scrubbed ({largest_claim} bytes)",
        )
    for topic, (needed, what) in needs.items():
        if sizes.by_topic[topic] < needed:
            raise StageError(
                f"topic {topic} has {_MAX_MESSAGE_BYTES}={sizes.by_topic[topic]}; it needs at "
                f"least {needed} to hold {what} (kafka-configs --alter --entity-type topics "
                f"--entity-name {topic} --add-config {_MAX_MESSAGE_BYTES}={needed})"
            )
    return sizes


_CLEANUP_POLICY: Final = "cleanup.policy"


async def check_changelog(stage: Stage, kafka: KafkaConnection) -> None:
    """History on: refuse to start unless the changelog is compacted and has as many
    partitions as the input re-keyed by patient (a partition's history is the changelog
    partition of the same number, docs/operating/history.md)."""
    changelog = stage.changelog
    if changelog is None:
        return
    by_patient = stage.forwarded[0]
    admin = admin_client(kafka)
    try:
        await admin.start()
        described = await admin.describe_topics([by_patient, changelog])
        responses = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, changelog, configs={_CLEANUP_POLICY: None})]
        )
    except (KafkaError, OSError) as error:
        raise StageError(
            f"cannot describe topics {by_patient} and {changelog} ({type(error).__name__})"
        ) from None
    finally:
        await admin.close()
    counts = {topic["topic"]: len(topic["partitions"]) for topic in described}
    if counts.get(by_patient) != counts.get(changelog):
        raise StageError(
            f"topic {changelog} has {counts.get(changelog)} partitions and {by_patient} "
            f"{counts.get(by_patient)}; the history changelog needs exactly as many partitions "
            "as the input re-keyed by patient"
        )
    policy = next(
        (
            value
            for response in responses
            for *_, entries in response.resources
            for name, value, *_ in entries
            if name == _CLEANUP_POLICY
        ),
        None,
    )
    if policy != "compact":  # compact,delete would drop histories after retention.ms
        raise StageError(
            f"topic {changelog} has {_CLEANUP_POLICY}={policy}; the history changelog must be "
            "compacted and never deleted (kafka-configs --alter --entity-type topics "
            f"--entity-name {changelog} --add-config {_CLEANUP_POLICY}=compact)"
        )
