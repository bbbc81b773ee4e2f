"""Traces on the real broker: a span per batch and per transaction, the trace context carried."""

import secrets
from collections import Counter

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from claim_scrubber.adapters.kafka import build_app
from claim_scrubber.adapters.logging import configure_logging, get_logger
from claim_scrubber.adapters.ruleset_file import load_ruleset
from claim_scrubber.adapters.tracing import Tracing
from claim_scrubber.scrubber import Scrubber
from tests.claims import canary_event, event_bytes, patched, phi_strings
from tests.kafka_harness import OutputWatcher, Topics

pytestmark = [pytest.mark.kafka]

CLAIMS = 40


async def test_one_span_per_batch_and_transaction_and_each_output_carries_its_traceparent(
    kafka_bootstrap: str, topics: Topics, capfd: pytest.CaptureFixture[str]
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    settings = topics.settings(kafka_bootstrap, worker_id="traced")
    configure_logging(level="info")
    app = build_app(
        settings,
        Scrubber(load_ruleset(), max_message_bytes=settings.max_message_bytes),
        get_logger(worker_id="traced"),
        tracing=Tracing(provider),
    )
    parents = {
        f"tr-{n}": f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01".encode()
        for n in range(CLAIMS)
    }
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    for event_id, traceparent in parents.items():
        value = event_bytes(patched(canary_event(), {"event_id": event_id}))
        await producer.send(topics.input, value, headers=[("traceparent", traceparent)])
    await producer.stop()

    async with OutputWatcher(kafka_bootstrap, topics) as watcher:
        await app.start()
        try:
            tally = await watcher.wait_for(CLAIMS, timeout_s=60)
        finally:
            await app.stop()

    spans = exporter.get_finished_spans()
    names = Counter(span.name for span in spans)
    assert set(names) == {"claim_scrubber.batch", "claim_scrubber.transaction"}
    # spans per batch and per transaction, never per claim: each claim is counted once by the
    # batch that read it and once by the transaction that committed it
    for name in names:
        counted = [
            int(str((span.attributes or {})["messaging.batch.message_count"]))
            for span in spans
            if span.name == name
        ]
        assert sum(counted) == CLAIMS, name
    for output in tally.outputs:
        assert output.headers["traceparent"] == parents[output.body["event_id"]]
    linked = {
        format(link.context.trace_id, "032x")
        for span in spans
        if span.name == "claim_scrubber.batch"
        for link in span.links
    }
    assert linked == {traceparent.decode().split("-")[1] for traceparent in parents.values()}
    batch_traces = {
        format(span.context.trace_id, "032x")
        for span in spans
        if span.name == "claim_scrubber.batch"
    }
    audited = [
        orjson.loads(line)
        for line in capfd.readouterr().out.splitlines()
        if line.startswith("{") and '"claim.scrubbed"' in line
    ]
    assert len(audited) == CLAIMS
    assert {line["trace_id"] for line in audited} <= batch_traces
    exported = repr([(s.name, dict(s.attributes or {}), s.events) for s in spans])
    assert all(secret not in exported for secret in phi_strings())
