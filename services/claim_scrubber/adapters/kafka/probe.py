"""Are the brokers there and the stage's topics usable? At start the stage waits (with
backoff, up to the start-up timeout) until the brokers answer and its topics exist (it never
creates a topic); while it runs, a watch probes them every few seconds and makes an outage
visible even when no record is in flight."""

import asyncio
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from aiokafka.conn import create_conn
from aiokafka.errors import (
    AuthenticationFailedError,
    IllegalSaslStateError,
    KafkaError,
    SaslAuthenticationFailed,
    TopicAuthorizationFailedError,
    UnknownTopicOrPartitionError,
    UnsupportedSaslMechanismError,
)
from structlog.typing import FilteringBoundLogger

from claim_scrubber.adapters.backoff import Backoff
from claim_scrubber.adapters.kafka.permissions import check_reading, principal
from claim_scrubber.adapters.kafka.security import (
    KafkaConnection,
    OAuthTokenRefusedError,
    OAuthTokenUnavailableError,
)
from claim_scrubber.adapters.kafka.stage import Stage, StageError
from claim_scrubber.adapters.kafka.topic_sizes import describe_topics
from claim_scrubber.adapters.settings import Settings

__all__ = ["wait_for_broker", "watch_broker"]

_HEALTH_PROBE_INTERVAL_S: Final = 5.0
_READ_CHECK_EVERY: Final = 6
"""Probes between two checks of the read permissions (a consumer's start and one fetch)."""
_CREDENTIALS_REFUSED: Final = (
    SaslAuthenticationFailed,
    AuthenticationFailedError,
    UnsupportedSaslMechanismError,
    IllegalSaslStateError,
)


@dataclass(frozen=True, slots=True)
class _BrokerProblem:
    problem: str
    detail: dict[str, object]


async def _authenticate(kafka: KafkaConnection) -> _BrokerProblem | None:
    """Open one connection with the worker's TLS and SASL settings, to tell what retrying
    cannot mend (raised as StageError) from an outage (returned, to retry).

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
        raise StageError(f"TLS verification of {where} failed: {error.verify_message}") from None
    except ssl.SSLError as error:
        raise StageError(f"TLS handshake with {where} failed: {error.reason}") from None
    except OAuthTokenRefusedError as error:
        raise StageError(str(error)) from None
    except OAuthTokenUnavailableError as error:
        return _BrokerProblem(
            "no OAUTHBEARER token can be had (the identity provider is out)",
            {"error_type": type(error).__name__, "error": str(error)},
        )
    except _CREDENTIALS_REFUSED as error:
        who = f"user {kafka.sasl_username}" if kafka.sasl_username else "the OAUTHBEARER token"
        raise StageError(
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

    Raises StageError when retrying cannot help: refused credentials, a TLS certificate
    that does not verify, a topic this worker may not describe.
    """
    if kafka.security_protocol != "PLAINTEXT":
        problem = await _authenticate(kafka)
        if problem is not None:
            return problem
    try:
        described = await describe_topics(stage, kafka)
    except (KafkaError, OSError) as error:
        return _BrokerProblem(
            f"cannot reach Kafka at {settings.kafka_bootstrap_servers}",
            {"error_type": type(error).__name__, "error": str(error)},
        )
    missing = []
    for found in described:
        topic, error_code = found.topic, found.error_code
        if error_code == TopicAuthorizationFailedError.errno:
            raise StageError(
                f"{principal(kafka)} may not describe topic {topic} (the {stage.name} needs "
                "Describe and DescribeConfigs on its topics; docs/operating/kafka-security.md)"
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
            raise StageError(f"{found.problem} (gave up after {settings.startup_timeout_s:g} s)")
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
                await check_reading(stage, kafka)
        except StageError as error:
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
