"""What the review page reads: `claims.needs-review` and `claims.clean`, read_committed, in no
consumer group, from the start of the window (SCRUBBER_REVIEW_WINDOW_DAYS) and then as results
arrive."""

import asyncio
import time
from typing import Final

from aiokafka.errors import KafkaError
from structlog.typing import FilteringBoundLogger

from claim_scrubber.adapters.kafka.follow import UnreadableTopicsError, follow_topics
from claim_scrubber.adapters.kafka.security import KafkaConnection
from claim_scrubber.adapters.review.app import ReviewState

__all__ = ["follow_results"]

_RETRY_S: Final = 5.0


async def follow_results(
    kafka: KafkaConnection,
    topics: list[str],
    state: ReviewState,
    *,
    window_days: int,
    log: FilteringBoundLogger,
    ready: asyncio.Event,
) -> None:
    """Fill `state` from the window's start, then follow; `ready` once caught up. An outage,
    a topic not there yet or a missing ACL is logged and retried (the page keeps what it
    has)."""
    while True:
        try:
            await _follow(kafka, topics, state, window_days=window_days, ready=ready)
        except UnreadableTopicsError as error:
            log.warning(
                "review.feed_failed",
                error_type=type(error).__name__,
                not_authorized=error.not_authorized,
                missing=error.missing,
                problem=str(error),
                retry_in_s=_RETRY_S,
            )
        except (KafkaError, OSError) as error:
            log.warning("review.feed_failed", error_type=type(error).__name__, retry_in_s=_RETRY_S)
        await asyncio.sleep(_RETRY_S)


async def _follow(
    kafka: KafkaConnection,
    topics: list[str],
    state: ReviewState,
    *,
    window_days: int,
    ready: asyncio.Event,
) -> None:
    async for records, caught_up in follow_topics(
        kafka, topics, since_s=time.time() - window_days * 86_400
    ):
        for record in records:
            if record.value is not None:
                state.take(record.value)
        if caught_up:
            ready.set()
