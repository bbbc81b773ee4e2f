"""Before and while the worker consumes: are the brokers there, and are the topics usable?

At start the worker (and intake) waits (with backoff, up to the start-up timeout) until the
brokers answer and its topics exist; it never creates a topic. It then reads the topics'
`max.message.bytes` and refuses to start unless every output it can produce fits its topic
(contract section 4): a dead letter of the largest record the input topic accepts, and the
result of the largest claim it scrubs.
"""

import asyncio
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.conn import create_conn
from aiokafka.errors import (
    AuthenticationFailedError,
    GroupAuthorizationFailedError,
    IllegalSaslStateError,
    KafkaError,
    SaslAuthenticationFailed,
    TopicAuthorizationFailedError,
    TransactionalIdAuthorizationFailed,
    UnknownTopicOrPartitionError,
    UnsupportedSaslMechanismError,
)
from structlog.typing import FilteringBoundLogger

from claim_scrubber.adapters.backoff import Backoff
from claim_scrubber.adapters.kafka.outbound import dead_letter_bytes_needed, result_bytes_needed
from claim_scrubber.adapters.kafka.security import (
    KafkaConnection,
    OAuthTokenRefusedError,
    OAuthTokenUnavailableError,
)
from claim_scrubber.adapters.settings import Settings

__all__ = [
    "OUTPUT_TOPIC_CONFIGS",
    "Stage",
    "StartupError",
    "TopicSizes",
    "check_permissions",
    "check_topic_sizes",
    "wait_for_broker",
    "watch_broker",
]

_HEALTH_PROBE_INTERVAL_S: Final = 5.0
_READ_CHECK_EVERY: Final = 6
"""Probes between two checks of the read permissions (a consumer's start and one fetch)."""
_CREDENTIALS_REFUSED: Final = (
    SaslAuthenticationFailed,
    AuthenticationFailedError,
    UnsupportedSaslMechanismError,
    IllegalSaslStateError,
)
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


@dataclass(frozen=True, slots=True)
class Stage:
    """What one consuming process reads and writes: the worker (claims.submitted to results)
    or intake (the inbound 837P and FHIR topics to claims.submitted)."""

    name: str
    group_id: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    dead_letter: str
    results: tuple[str, ...] = ()
    """Outputs that carry scrub results (each must hold the largest claim's result)."""

    @property
    def topics(self) -> list[str]:
        return [*self.inputs, *self.outputs, self.dead_letter]

    @classmethod
    def worker(cls, settings: Settings) -> "Stage":
        return cls(
            "worker",
            settings.group_id,
            (settings.topic_input,),
            (settings.topic_clean, settings.topic_review),
            settings.topic_dead_letter,
            results=(settings.topic_clean, settings.topic_review),
        )

    @classmethod
    def intake(cls, settings: Settings) -> "Stage":
        return cls(
            "intake",
            settings.intake_group_id,
            (settings.topic_inbound_x12, settings.topic_inbound_fhir),
            (settings.topic_input,),
            settings.topic_dead_letter,
        )


@dataclass(frozen=True, slots=True)
class _TopicConfig:
    topic: str
    error_code: int
    max_message_bytes: int | None


async def _describe_topics(stage: Stage, kafka: KafkaConnection) -> list[_TopicConfig]:
    """The stage's topics' `max.message.bytes` as the brokers describe them, with each topic's
    error code (0, UNKNOWN_TOPIC_OR_PARTITION, TOPIC_AUTHORIZATION_FAILED, …)."""
    admin = _admin(kafka)
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


async def _authenticate(kafka: KafkaConnection) -> _BrokerProblem | None:
    """Open one connection with the worker's TLS and SASL settings, to tell what retrying
    cannot mend (raised as StartupError) from an outage (returned, to retry).

    aiokafka's clients log such failures and report only "unable to bootstrap", so this
    connects the way they do and reads the real error.
    """
    host, _, port = kafka.bootstrap_servers.split(",")[0].strip().rpartition(":")
    args = kafka.client_args()
    del args["bootstrap_servers"]
    where = f"{host}:{port}"
    try:
        conn = await create_conn(host, int(port), request_timeout_ms=5_000, **args)
    except ssl.SSLCertVerificationError as error:
        raise StartupError(f"TLS verification of {where} failed: {error.verify_message}") from None
    except ssl.SSLError as error:
        raise StartupError(f"TLS handshake with {where} failed: {error.reason}") from None
    except OAuthTokenRefusedError as error:
        raise StartupError(str(error)) from None
    except OAuthTokenUnavailableError as error:
        return _BrokerProblem(
            "no OAUTHBEARER token can be had (the identity provider is out)",
            {"error_type": type(error).__name__, "error": str(error)},
        )
    except _CREDENTIALS_REFUSED as error:
        who = f"user {kafka.sasl_username}" if kafka.sasl_username else "the OAUTHBEARER token"
        raise StartupError(
            f"Kafka at {where} refused the {kafka.sasl_mechanism} credentials of {who}: "
            f"wrong username or password, or an unknown user ({type(error).__name__})"
        ) from None
    except (TimeoutError, KafkaError, OSError) as error:
        return _BrokerProblem(
            f"cannot reach Kafka at {kafka.bootstrap_servers}",
            {"error_type": type(error).__name__, "error": str(error)},
        )
    conn.close()
    return None


async def _probe(settings: Settings, stage: Stage, kafka: KafkaConnection) -> _BrokerProblem | None:
    """None when the brokers answer and all the stage's topics exist; a problem to retry otherwise.

    Raises StartupError when retrying cannot help: refused credentials, a TLS certificate
    that does not verify, a topic this worker may not describe.
    """
    if kafka.security_protocol != "PLAINTEXT":
        problem = await _authenticate(kafka)
        if problem is not None:
            return problem
    try:
        described = await _describe_topics(stage, kafka)
    except (KafkaError, OSError) as error:
        return _BrokerProblem(
            f"cannot reach Kafka at {settings.kafka_bootstrap_servers}",
            {"error_type": type(error).__name__, "error": str(error)},
        )
    missing = []
    for found in described:
        topic, error_code = found.topic, found.error_code
        if error_code == TopicAuthorizationFailedError.errno:
            raise StartupError(
                f"{_principal(kafka)} may not describe topic {topic} (the {stage.name} needs "
                "Describe and DescribeConfigs on its topics; README, 'Connecting to a "
                "managed Kafka')"
            )
        if error_code == UnknownTopicOrPartitionError.errno:
            missing.append(topic)
    if missing:
        return _BrokerProblem(
            f"topics {', '.join(sorted(missing))} do not exist on "
            f"{settings.kafka_bootstrap_servers}",
            {"missing_topics": sorted(missing)},
        )
    return None


def _principal(kafka: KafkaConnection) -> str:
    if kafka.sasl_username:
        return f"user {kafka.sasl_username}"
    return "this worker's principal"


async def _check_reading(stage: Stage, kafka: KafkaConnection) -> None:
    """Raise StartupError without Read on the group or on an input topic."""
    admin = _admin(kafka)
    try:
        await admin.start()
        await admin.list_consumer_group_offsets(stage.group_id)
    except GroupAuthorizationFailedError:
        raise StartupError(
            f"{_principal(kafka)} may not read consumer group {stage.group_id} "
            f"(the {stage.name} needs Read on its group)"
        ) from None
    except (KafkaError, OSError):
        return  # an outage: the probe reports it
    finally:
        await admin.close()
    # A fetch at the end of one input partition reads nothing, but needs Read on the topic.
    reader = AIOKafkaConsumer(**kafka.client_args(), group_id=None, request_timeout_ms=10_000)
    topic = stage.inputs[0]
    try:
        await reader.start()
        for topic in stage.inputs:
            partition = TopicPartition(topic, 0)
            reader.assign([partition])
            await reader.seek_to_end(partition)
            await reader.getmany(partition, timeout_ms=300)
    except TopicAuthorizationFailedError:
        raise StartupError(
            f"{_principal(kafka)} may not read topic {topic} "
            f"(the {stage.name} needs Read on its input topics)"
        ) from None
    except (KafkaError, OSError):
        return
    finally:
        await reader.stop()


async def check_permissions(stage: Stage, kafka: KafkaConnection) -> None:
    """Refuse to start, in one line, without Read on the group and the input topics or Write
    on the transactional ids (Write on the output topics shows at the first transaction,
    which then stops the process the same way, committing nothing)."""
    await _check_reading(stage, kafka)
    for topic in stage.inputs:
        prefix = f"{stage.group_id}-{topic}-"
        transactional_id = f"{prefix}preflight"
        producer = AIOKafkaProducer(
            **kafka.client_args(), transactional_id=transactional_id, request_timeout_ms=10_000
        )
        try:
            await producer.start()
        except TransactionalIdAuthorizationFailed:
            raise StartupError(
                f"{_principal(kafka)} may not use transactional id {transactional_id} (the "
                f"{stage.name} needs Write and Describe on transactional ids prefixed {prefix})"
            ) from None
        except (KafkaError, OSError) as error:
            raise StartupError(
                f"cannot start a transactional producer ({type(error).__name__})"
            ) from None
        finally:
            await producer.stop()


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
    settings: Settings, stage: Stage, kafka: KafkaConnection, log: FilteringBoundLogger
) -> None:
    """Retry the brokers with backoff until they answer and the topics exist, or give up."""
    backoff = Backoff(first_s=0.5, cap_s=10.0)
    deadline = time.monotonic() + settings.startup_timeout_s
    while (found := await _probe(settings, stage, kafka)) is not None:
        if time.monotonic() >= deadline:
            raise StartupError(f"{found.problem} (gave up after {settings.startup_timeout_s:g} s)")
        await asyncio.sleep(_log_outage(log, found, backoff))


async def watch_broker(
    settings: Settings,
    stage: Stage,
    kafka: KafkaConnection,
    log: FilteringBoundLogger,
    *,
    on_fatal: Callable[[str], None],
    on_reachable: Callable[[bool], None],
) -> None:
    """While the worker runs, probe the brokers; log an outage with backoff, and its end.

    The consumer and the producers reconnect by themselves; this makes the outage visible to
    operators even when no record is in flight. A permission lost meanwhile (credentials, a
    topic's Describe or Read, the group's Read) goes to `on_fatal`: the consumer would
    otherwise retry it forever.
    """
    backoff = Backoff(first_s=1.0, cap_s=30.0)
    down_since: float | None = None
    probes = 0
    while True:
        probes += 1
        try:
            found = await _probe(settings, stage, kafka)
            if found is None and probes % _READ_CHECK_EVERY == 0:
                await _check_reading(stage, kafka)
        except StartupError as error:
            on_fatal(str(error))
            return
        on_reachable(found is None)
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


async def _read_topic_sizes(settings: Settings, stage: Stage, kafka: KafkaConnection) -> TopicSizes:
    try:
        described = await _describe_topics(stage, kafka)
    except (KafkaError, OSError) as error:
        raise StartupError(
            f"cannot read the topics' {_MAX_MESSAGE_BYTES} on {settings.kafka_bootstrap_servers}"
            f" ({type(error).__name__})"
        ) from None
    sizes: dict[str, int] = {}
    for found in described:
        if found.error_code or found.max_message_bytes is None:
            raise StartupError(
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
    largest_claim = min(largest_input, settings.max_message_bytes)
    for topic in stage.results:
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
