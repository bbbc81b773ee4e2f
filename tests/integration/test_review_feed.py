"""The review page's feed on a real broker: started before its topics exist (a compose or
Kubernetes start where the page comes up first), it says which are missing and shows the
results once they are there."""

import asyncio
import time
import uuid
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from claim_scrubber.adapters.kafka.topic_sizes import OUTPUT_TOPIC_CONFIGS
from tests.claims import default_event, event_bytes, patched
from tests.kafka_harness import Topics, WorkerProcess, free_port, http_get, produce

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

TOKEN = "review-feed-token-81d2"  # noqa: S105 - a test token


async def test_a_page_started_before_its_topics_exist_shows_the_results_once_they_do(
    kafka_bootstrap: str, topics: Topics, workers: list[WorkerProcess], tmp_path: Path
) -> None:
    later = {
        "SCRUBBER_TOPIC_REVIEW": f"{topics.review}.later-{uuid.uuid4().hex[:6]}",
        "SCRUBBER_TOPIC_CLEAN": f"{topics.clean}.later-{uuid.uuid4().hex[:6]}",
    }
    token = tmp_path / "review.token"
    token.write_text(TOKEN)
    port = free_port()
    env = topics.env(kafka_bootstrap) | later
    review = WorkerProcess(
        env | {"SCRUBBER_REVIEW_TOKEN_FILE": str(token), "SCRUBBER_REVIEW_PORT": str(port)},
        "review",
        "review",
    )
    workers.append(review)

    failed = await review.wait_for_event("review.feed_failed", timeout_s=60)
    assert failed["missing"] == [later["SCRUBBER_TOPIC_REVIEW"], later["SCRUBBER_TOPIC_CLEAN"]]
    assert failed["not_authorized"] == []

    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [
                NewTopic(name, topics.partitions, 1, topic_configs=OUTPUT_TOPIC_CONFIGS)
                for name in later.values()
            ]
        )
        workers.append(WorkerProcess(env, "worker"))
        claim = patched(
            default_event(),
            {"event_id": "late-1", "claim.claim_id": "LATE-1", "claim.lines[1].modifiers": ["ZZ"]},
        )
        await produce(kafka_bootstrap, topics.input, [(b"LATE-1", event_bytes(claim))])

        deadline = time.monotonic() + 90
        while (await _status(port, "/claims/LATE-1")) != 200:
            assert time.monotonic() < deadline, review.all_output()[-3000:]
            await asyncio.sleep(0.5)
        assert "LATE-1" not in review.all_output(), "no claim in the page's logs"
    finally:
        await admin.delete_topics(list(later.values()))
        await admin.close()


async def _status(port: int, path: str) -> int:
    return (await asyncio.to_thread(http_get, port, path, TOKEN))[0]
