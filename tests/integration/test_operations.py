"""What operators see of a worker on the real broker: /metrics, /livez and /readyz."""

import asyncio
from datetime import UTC, datetime

import pytest
from prometheus_client.parser import text_string_to_metric_families

from claim_scrubber.adapters.ruleset_file import load_ruleset
from tests.claims import canary_event, event_bytes, patched, phi_strings
from tests.conftest import WorkerStarter
from tests.kafka_harness import Topics, collect, free_port, http_get, produce

pytestmark = [pytest.mark.kafka]

CANARY_CLAIM = "CANARY-CLM-4242"


async def _status_becomes(port: int, path: str, status: int, timeout_s: float = 60) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while asyncio.get_running_loop().time() < deadline:
        try:
            if (await asyncio.to_thread(http_get, port, path))[0] == status:
                return
        except OSError:
            pass  # not listening yet
        await asyncio.sleep(0.2)
    raise AssertionError(f"{path} did not answer {status} within {timeout_s} s")


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_metrics_count_what_the_topics_received_and_health_follows_the_worker(
    kafka_bootstrap: str, topics: Topics, start_worker: WorkerStarter
) -> None:
    port = free_port()
    worker = start_worker(SCRUBBER_HTTP_PORT=str(port))
    await _status_becomes(port, "/livez", 200)
    await worker.wait_for_event("partitions.assigned")
    await _status_becomes(port, "/readyz", 200)
    (incomplete,) = worker.events("ruleset.incomplete")
    assert incomplete["missing"][0].startswith('unit_limits."Q4390"')
    newest = load_ruleset().code_sets.icd10cm[-1]
    past_it = datetime.now(UTC).date() > newest.effective_through
    assert past_it == any(gap.startswith("code_sets.icd10cm") for gap in incomplete["missing"])
    (started,) = worker.events("worker.started")
    assert started["code_sets"]["icd10cm"] == [
        f"{newest.release}, in force 2025-10-01 to 2026-09-30"
    ]

    clean = [
        event_bytes(
            patched(canary_event(), {"event_id": f"ev-{n}", "claim.claim_id": CANARY_CLAIM})
        )
        for n in range(6)
    ]
    review = [
        event_bytes(
            patched(
                canary_event(),
                {"event_id": f"rv-{n}", "claim.billing_provider.npi": "1245319598"},
            )
        )
        for n in range(3)
    ]
    broken = [b"{not json", b"[1, 2]"]
    records = [(None, value) for value in [*clean, *review, *broken]]
    await produce(kafka_bootstrap, topics.input, records)
    tally = await collect(kafka_bootstrap, topics, expected=len(records))
    # each batch is counted just after its commit, and lag at the next fetch: wait for both
    for _ in range(150):
        status, text = await asyncio.to_thread(http_get, port, "/metrics")
        samples = _samples(text)
        counted = sum(v for (n, _), v in samples.items() if n == "claim_scrubber_records_total")
        lags = [v for (n, _), v in samples.items() if n == "claim_scrubber_consumer_lag"]
        if counted == len(records) and lags and not any(lags):
            break
        await asyncio.sleep(0.2)

    assert status == 200
    by_topic = tally.by_topic()
    assert (
        samples[("claim_scrubber_records_total", (("outcome", "clean"),))] == by_topic[topics.clean]
    )
    assert samples[("claim_scrubber_records_total", (("outcome", "needs_review"),))] == 3
    assert samples[("claim_scrubber_records_total", (("outcome", "dead_letter"),))] == 2
    assert samples[("claim_scrubber_dead_letters_total", (("kind", "invalid_json"),))] == 1
    assert samples[("claim_scrubber_dead_letters_total", (("kind", "not_an_object"),))] == 1
    lags = [value for (name, _), value in samples.items() if name == "claim_scrubber_consumer_lag"]
    assert lags, "lag is reported for the partitions that had records"
    assert all(lag == 0 for lag in lags)
    assert samples[("claim_scrubber_partitions_owned", ())] == 6
    owned = (("state", "owned"), ("topic", topics.input))
    assert samples[("claim_scrubber_partitions", owned)] == 6
    waiting = (("state", "fenced"), ("topic", topics.input))
    assert samples[("claim_scrubber_partitions", waiting)] == 0
    assert samples[("process_resident_memory_bytes", ())] > 0
    assert samples[("claim_scrubber_broker_reachable", ())] == 1
    assert samples[("claim_scrubber_transactions_total", (("result", "committed"),))] >= 1
    for secret in [CANARY_CLAIM, *phi_strings()]:
        assert secret not in text, "no claim id or PHI in a label"

    worker.signal(15)
    assert await worker.wait() == 0
    with pytest.raises(ConnectionRefusedError):  # nothing listens any more
        await asyncio.to_thread(http_get, port, "/livez")
