"""Before and while the worker consumes: are the brokers there, and are the topics usable?

At start the worker waits (with backoff, up to the start-up timeout) until the brokers answer
and its four topics exist; it never creates a topic. It then reads the topics'
`max.message.bytes` and refuses to start unless every output it can produce fits its topic
(contract section 4): a dead letter of the largest record the input topic accepts, and the
result of the largest claim it scrubs.
"""

import asyncio
import time
from dataclasses import dataclass
from typing import Final

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError
from structlog.typing import FilteringBoundLogger

from claim_scrubber.adapters.backoff import Backoff
from claim_scrubber.adapters.kafka.outbound import dead_letter_bytes_needed, result_bytes_needed
from claim_scrubber.adapters.kafka.security import KafkaConnection
from claim_scrubber.adapters.settings import Settings

__all__ = [
    "OUTPUT_TOPIC_CONFIGS",
    "StartupError",
    "TopicSizes",
    "check_topic_sizes",
    "wait_for_broker",
    "watch_broker",
]

_HEALTH_PROBE_INTERVAL_S: Final = 5.0
_MAX_MESSAGE_BYTES: Final = "max.message.bytes"

OUTPUT_TOPIC_CONFIGS: Final = {_MAX_MESSAGE_BYTES: str(2 * 1024 * 1024)}
"""What `make kafka-up`, the compose file, the tests and the bench give the three output topics:
2 MiB holds a dead letter of the broker's default largest record (1 MiB) and any result."""


class StartupError(Exception):
    """The worker cannot start; the message is one line for the operator."""


@dataclass(frozen=True, slots=True)
class _BrokerProblem:
    problem: str
    detail: dict[str, object]


def _admin(kafka: KafkaConnection) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(**kafka.client_args(), request_timeout_ms=5_000)


def _topics(settings: Settings) -> list[str]:
    return [
        settings.topic_input,
        settings.topic_clean,
        settings.topic_review,
        settings.topic_dead_letter,
    ]


async def _probe(settings: Settings, kafka: KafkaConnection) -> _BrokerProblem | None:
    """Ask the brokers for their topics: None when they answer and all four topics exist."""
    admin = _admin(kafka)
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
    missing = sorted(set(_topics(settings)) - topics)
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


async def wait_for_broker(
    settings: Settings, kafka: KafkaConnection, log: FilteringBoundLogger
) -> None:
    """Retry the brokers with backoff until they answer and the topics exist, or give up."""
    backoff = Backoff(first_s=0.5, cap_s=10.0)
    deadline = time.monotonic() + settings.startup_timeout_s
    while (found := await _probe(settings, kafka)) is not None:
        if time.monotonic() >= deadline:
            raise StartupError(f"{found.problem} (gave up after {settings.startup_timeout_s:g} s)")
        await asyncio.sleep(_log_outage(log, found, backoff))


async def watch_broker(
    settings: Settings, kafka: KafkaConnection, log: FilteringBoundLogger
) -> None:
    """While the worker runs, probe the brokers; log an outage with backoff, and its end.

    The consumer and the producers reconnect by themselves; this makes the outage visible to
    operators even when no record is in flight.
    """
    backoff = Backoff(first_s=1.0, cap_s=30.0)
    down_since: float | None = None
    while True:
        found = await _probe(settings, kafka)
        if found is None:
            if down_since is not None:
                log.info("broker.reachable", downtime_s=round(time.monotonic() - down_since, 1))
                down_since = None
                backoff.reset()
            await asyncio.sleep(_HEALTH_PROBE_INTERVAL_S)
            continue
        down_since = down_since if down_since is not None else time.monotonic()
        await asyncio.sleep(_log_outage(log, found, backoff))


@dataclass(frozen=True, slots=True)
class TopicSizes:
    """`max.message.bytes` of each topic, by name."""

    by_topic: dict[str, int]


async def _read_topic_sizes(settings: Settings, kafka: KafkaConnection) -> TopicSizes:
    admin = _admin(kafka)
    try:
        await admin.start()
        responses = await admin.describe_configs(
            [
                ConfigResource(ConfigResourceType.TOPIC, topic, configs={_MAX_MESSAGE_BYTES: None})
                for topic in _topics(settings)
            ]
        )
    except (KafkaError, OSError) as error:
        raise StartupError(
            f"cannot read the topics' {_MAX_MESSAGE_BYTES} on {settings.kafka_bootstrap_servers}"
            f" ({type(error).__name__})"
        ) from None
    finally:
        await admin.close()
    sizes: dict[str, int] = {}
    for response in responses:
        for error_code, _, _, topic, entries in response.resources:
            if error_code:
                raise StartupError(
                    f"cannot read {_MAX_MESSAGE_BYTES} of topic {topic} "
                    f"(Kafka error code {error_code})"
                )
            for name, value, *_ in entries:
                if name == _MAX_MESSAGE_BYTES:
                    sizes[topic] = int(value)
    return TopicSizes(sizes)


async def check_topic_sizes(settings: Settings, kafka: KafkaConnection) -> TopicSizes:
    """Read the topics' sizes and refuse to start unless every output fits its topic."""
    sizes = await _read_topic_sizes(settings, kafka)
    largest_input = sizes.by_topic[settings.topic_input]
    needs = {
        settings.topic_dead_letter: (
            dead_letter_bytes_needed(largest_input),
            f"a dead letter of the largest record {settings.topic_input} accepts "
            f"({largest_input} bytes)",
        ),
    }
    largest_claim = min(largest_input, settings.max_message_bytes)
    for topic in (settings.topic_clean, settings.topic_review):
        needs[topic] = (
            result_bytes_needed(largest_claim),
            f"the result of the largest claim scrubbed ({largest_claim} bytes)",
        )
    for topic, (needed, what) in needs.items():
        if sizes.by_topic[topic] < needed:
            raise StartupError(
                f"topic {topic} has {_MAX_MESSAGE_BYTES}={sizes.by_topic[topic]}; it needs at "
                f"least {needed} to hold {what} (kafka-configs --alter --entity-type topics "
                f"--entity-name {topic} --add-config {_MAX_MESSAGE_BYTES}={needed})"
            )
    return sizes
