"""OpenTelemetry traces: one span per batch and one per partition transaction, never per record.

Off unless `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_TRACES_EXPORTER` is set (the standard
variables; the OTLP/HTTP exporter reads its endpoint, headers and timeouts from them itself).
`OTEL_TRACES_EXPORTER`: `otlp` (default when an endpoint is set), `console` (to stderr, never
mixed with the audit log on stdout) or `none`.

A batch span links to the W3C trace contexts (`traceparent` headers) of the records it read,
up to 128; the worker copies each input's `traceparent` to its output record either way. Span
names and attributes are counts, partitions and offsets: nothing from a claim.
"""

import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Final

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
from opentelemetry.trace import NonRecordingSpan, Span, SpanContext, TraceFlags

from claim_scrubber import __version__

__all__ = ["TRACEPARENT", "Tracing", "parse_traceparent"]

TRACEPARENT: Final = "traceparent"
_MAX_LINKS: Final = 128
_VERSION_00: Final = "00"


def parse_traceparent(value: bytes) -> SpanContext | None:
    """The span context of a W3C `traceparent` header, or None when it is not one."""
    try:
        version, trace_id, span_id, flags = value.decode("ascii").strip().split("-")
        parsed = SpanContext(
            trace_id=int(trace_id, 16),
            span_id=int(span_id, 16),
            is_remote=True,
            trace_flags=TraceFlags(int(flags, 16)),
        )
    except (UnicodeDecodeError, ValueError):
        return None
    if version != _VERSION_00 or len(trace_id) != 32 or len(span_id) != 16:
        return None
    return parsed if parsed.is_valid else None


class Tracing:
    """The worker's tracer: real when configured, a no-op otherwise (no cost to speak of)."""

    def __init__(self, provider: TracerProvider | None = None) -> None:
        self._provider = provider
        self.enabled = provider is not None
        source = provider if provider is not None else trace.NoOpTracerProvider()
        self._tracer = source.get_tracer("claim_scrubber", __version__)

    @classmethod
    def from_settings(
        cls, *, endpoint: str | None, exporter: str | None, service_name: str
    ) -> "Tracing":
        """Tracing as the OTEL_* variables ask (read into Settings), or off."""
        choice = (exporter or ("otlp" if endpoint else "none")).strip().lower()
        if choice == "none":
            return cls()
        processor: SpanProcessor
        if choice == "console":
            processor = BatchSpanProcessor(ConsoleSpanExporter(out=sys.stderr))
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # noqa: PLC0415
                OTLPSpanExporter,
            )

            processor = BatchSpanProcessor(OTLPSpanExporter())
        provider = TracerProvider(
            resource=Resource.create({"service.name": service_name, "service.version": __version__})
        )
        provider.add_span_processor(processor)
        return cls(provider)

    @contextmanager
    def batch(self, records: int) -> Iterator[Span]:
        """The span of one consumer batch (`link` adds its records' trace contexts)."""
        with self._tracer.start_as_current_span(
            "claim_scrubber.batch",
            kind=trace.SpanKind.CONSUMER,
            attributes={"messaging.batch.message_count": records},
        ) as span:
            yield span

    def link(self, span: Span, parents: Sequence[bytes]) -> None:
        """Link the batch's span to the distinct trace contexts of its records (at most 128)."""
        if not self.enabled:
            return
        linked: set[bytes] = set()
        for header in parents:
            if len(linked) >= _MAX_LINKS:
                return
            if header not in linked and (context := parse_traceparent(header)) is not None:
                linked.add(header)
                span.add_link(context)

    @contextmanager
    def transaction(self, parent: Span, partition: int, records: int) -> Iterator[Span]:
        """The span of one partition's transaction, a child of its batch's span."""
        context = trace.set_span_in_context(NonRecordingSpan(parent.get_span_context()))
        with self._tracer.start_as_current_span(
            "claim_scrubber.transaction",
            context=context,
            kind=trace.SpanKind.PRODUCER,
            attributes={
                "messaging.destination.partition.id": str(partition),
                "messaging.batch.message_count": records,
            },
            record_exception=False,
        ) as span:
            yield span

    @staticmethod
    def trace_id(span: Span) -> str | None:
        """The trace id to put on audit lines (None when tracing is off)."""
        context = span.get_span_context()
        return format(context.trace_id, "032x") if context.is_valid else None

    def shutdown(self) -> None:
        if self._provider is not None:
            self._provider.shutdown()
