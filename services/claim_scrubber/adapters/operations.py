"""What operators watch: Prometheus metrics, liveness and readiness, on one small HTTP server.

The server runs in a daemon thread of its own (stdlib `ThreadingHTTPServer`): it never touches
the event loop, the worker's signal handling, exit codes or shutdown order. The loop proves it
turns by stamping a heartbeat that `/livez` reads; `/readyz` reads flags the loop sets.

Label values are bounded sets chosen here (outcomes, dead-letter kinds, rule ids and
severities from the catalog, partition numbers, transaction results): never a claim id, a
payer id or anything from a claim.
"""

import asyncio
import contextlib
import functools
import platform
import threading
import time
from collections import Counter as Occurrences
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Final, Protocol

from aiokafka.errors import KafkaError
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

from claim_scrubber import __version__

__all__ = [
    "Health",
    "LagSource",
    "OperationsServer",
    "StageMetrics",
    "beat_while_running",
    "watch_lag",
]

_PREFIX: Final = "claim_scrubber_"
_LATENCY_BUCKETS: Final = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_DURATION_BUCKETS: Final = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
_RESTORE_BUCKETS: Final = (0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
_BATCH_BUCKETS: Final = (1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000)
_LIVENESS_GRACE_S: Final = 10.0
PARTITION_STATES: Final = ("assigned", "fencing", "owned", "fenced", "revoked")
"""The ownership machine's states (adapters/kafka/ownership.py), every one reported."""

PartitionStates = Callable[[], Iterable[tuple[str, str]]]
"""(input topic, state) of each partition a stage was assigned."""


class _PartitionStateCollector(Collector):
    """`claim_scrubber_partitions{topic,state}`, counted at scrape time from the ownership
    machines (which the metrics thread reads as a copy)."""

    def __init__(self) -> None:
        self.sources: list[PartitionStates] = []

    def collect(self) -> Iterable[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            f"{_PREFIX}partitions",
            "Input partitions of this process by topic and ownership state; one that stays "
            "out of owned (fenced, or assigned without fencing) is stuck",
            labels=["topic", "state"],
        )
        counts = Occurrences(pair for source in self.sources for pair in source())
        for topic in sorted({topic for topic, _ in counts}):
            for state in PARTITION_STATES:
                family.add_metric([topic, state], counts[(topic, state)])
        yield family


_BEAT_INTERVAL_S: Final = 1.0


def _nth(source: Callable[[], tuple[int, int, int]], index: int) -> float:
    return source()[index]


class StageMetrics:
    """Every metric the worker exports, in a registry of its own."""

    def __init__(self, *, ruleset_version: str, stage: str = "worker") -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        if stage == "intake":  # what intake counts is claims, under names of its own
            self.records = Counter(
                f"{_PREFIX}intake_claims", "Claims of committed inbound records, by what they "
                "became: converted, voided (a void, forwarded) or dead_letter", ["outcome"],
                registry=registry,
            )  # fmt: skip
            self.dead_letters = Counter(
                f"{_PREFIX}intake_dead_letters", "Unusable claims (or records) committed to "
                "the dead-letter topic, by kind", ["kind"], registry=registry,
            )  # fmt: skip
        else:
            self.records = Counter(
                f"{_PREFIX}records", "Input records decided and committed, by outcome",
                ["outcome"], registry=registry,
            )  # fmt: skip
            self.dead_letters = Counter(
                f"{_PREFIX}dead_letters", "Dead letters committed, by kind", ["kind"],
                registry=registry,
            )  # fmt: skip
        self.findings = Counter(
            f"{_PREFIX}findings", "Findings on committed results, by rule and severity",
            ["rule_id", "severity"], registry=registry,
        )  # fmt: skip
        self.batch_records = Histogram(
            f"{_PREFIX}batch_records", "Records per consumer batch",
            buckets=_BATCH_BUCKETS, registry=registry,
        )  # fmt: skip
        self.decide_seconds = Histogram(
            f"{_PREFIX}batch_decide_seconds", "Time to decide one batch",
            buckets=_DURATION_BUCKETS, registry=registry,
        )  # fmt: skip
        self.commit_seconds = Histogram(
            f"{_PREFIX}transaction_commit_seconds",
            "Time from a partition's transaction start to its end",
            buckets=_DURATION_BUCKETS, registry=registry,
        )  # fmt: skip
        self.latency_seconds = Histogram(
            f"{_PREFIX}end_to_end_latency_seconds",
            "From an input record's timestamp to the commit of its output",
            buckets=_LATENCY_BUCKETS, registry=registry,
        )  # fmt: skip
        self.loop_delay_seconds = Histogram(
            f"{_PREFIX}event_loop_delay_seconds", "How late the event loop ran its beat: time "
            "it could not turn, when the group's heartbeats and the probes wait too",
            buckets=_DURATION_BUCKETS, registry=registry,
        )  # fmt: skip
        self.transactions = Counter(
            f"{_PREFIX}transactions", "Partition transactions by result (committed, aborted, "
            "fenced)", ["result"], registry=registry,
        )  # fmt: skip
        self.consumer_lag = Gauge(
            f"{_PREFIX}consumer_lag",
            "Records of an assigned input partition not yet committed (high-water mark minus "
            "committed offset, from the consumer's own fetches)",
            ["topic", "partition"], registry=registry,
        )  # fmt: skip
        self._partition_states = _PartitionStateCollector()
        registry.register(self._partition_states)
        ProcessCollector(registry=registry)  # process_resident_memory_bytes, CPU, open fds
        self.partitions_owned = Gauge(
            f"{_PREFIX}partitions_owned", "Input partitions this worker owns with its producer up",
            registry=registry,
        )  # fmt: skip
        self.broker_reachable = Gauge(
            f"{_PREFIX}broker_reachable", "1 while the brokers answer the worker's probe",
            registry=registry,
        )  # fmt: skip
        Gauge(
            f"{_PREFIX}ruleset_info", "The ruleset version results carry", ["version"],
            registry=registry,
        ).labels(version=ruleset_version).set(1)  # fmt: skip
        Gauge(
            f"{_PREFIX}build_info", "The worker's version and Python", ["version", "python"],
            registry=registry,
        ).labels(version=__version__, python=platform.python_version()).set(1)  # fmt: skip
        for result in ("committed", "aborted", "fenced"):
            self.transactions.labels(result=result)
        self.history_restore_seconds = Histogram(
            f"{_PREFIX}history_restore_seconds", "Time to read one partition's claim history "
            "back from the changelog (after each fence; the partition waits meanwhile)",
            buckets=_RESTORE_BUCKETS, registry=registry,
        )  # fmt: skip
        self.history_restored_records = Counter(
            f"{_PREFIX}history_restored_records", "Changelog records read back into claim "
            "history", registry=registry,
        )  # fmt: skip
        self._history = {
            measure: Gauge(f"{_PREFIX}history_{measure}", what, registry=registry)
            for measure, what in (
                ("patients", "Patients in the claim history this process holds"),
                ("applications", "Q4390 applications in the claim history this process holds"),
                ("bytes", "Changelog bytes of the claim history this process holds"),
            )
        }

    def watch_history(self, size: Callable[[], tuple[int, int, int]]) -> None:
        """Report `size()` (patients, applications, bytes) as the claim_scrubber_history_*
        gauges, read at scrape time."""
        for index, gauge in enumerate(self._history.values()):
            gauge.set_function(functools.partial(_nth, size, index))

    def committed(
        self,
        outcomes: Iterable[str],
        dead_letter_kinds: Iterable[str],
        findings: Iterable[tuple[str, str]],
        latencies_s: Iterable[float],
    ) -> None:
        """One partition's committed batch, counted once per label."""
        for outcome, count in Occurrences(outcomes).items():
            self.records.labels(outcome=outcome).inc(count)
        for kind, count in Occurrences(dead_letter_kinds).items():
            self.dead_letters.labels(kind=kind).inc(count)
        for (rule_id, severity), count in Occurrences(findings).items():
            self.findings.labels(rule_id=rule_id, severity=severity).inc(count)
        for latency in latencies_s:
            self.latency_seconds.observe(latency)

    def watch_partitions(self, source: PartitionStates) -> None:
        """Report the partitions `source` lists in `claim_scrubber_partitions`."""
        self._partition_states.sources.append(source)

    def partitions_revoked(self, topic: str, partitions: Iterable[int]) -> None:
        """A revoked partition's lag is its next owner's to report."""
        for partition in partitions:
            with contextlib.suppress(KeyError):
                self.consumer_lag.remove(topic, str(partition))


@dataclass
class Health:
    """What `/livez` and `/readyz` answer from; the event loop writes it, the server reads it."""

    last_beat: float = 0.0
    in_group: bool = False
    broker_reachable: bool = False
    producers_up: Callable[[], bool] = lambda: False

    def alive(self) -> bool:
        return time.monotonic() - self.last_beat < _LIVENESS_GRACE_S

    def ready(self) -> bool:
        return self.in_group and self.broker_reachable and self.producers_up()


class LagSource(Protocol):
    """One input topic's partitions as the lag watch reads them (a stage's stream)."""

    @property
    def topic(self) -> str: ...
    def assigned(self) -> list[int]: ...
    async def end_offsets(self, partitions: list[int]) -> dict[int, int]: ...
    async def committed(self, partition: int) -> int | None: ...


_LAG_INTERVAL_S: Final = 10.0
_LAG_CALL_TIMEOUT_S: Final = 5.0


async def watch_lag(
    sources: Iterable[LagSource], metrics: StageMetrics, interval_s: float = _LAG_INTERVAL_S
) -> None:
    """Every `interval_s`, each assigned partition's lag (the end offset a read_committed
    consumer sees minus the group's committed offset), whether or not the partition commits:
    a partition that is stuck shows a growing lag. A probe that fails or takes longer than
    5 s is skipped until the next round (the broker watch reports an outage)."""
    while True:
        await asyncio.sleep(interval_s)
        for source in sources:
            partitions = source.assigned()
            if not partitions:
                continue
            try:
                ends = await asyncio.wait_for(source.end_offsets(partitions), _LAG_CALL_TIMEOUT_S)
                for partition in partitions:
                    committed = await asyncio.wait_for(
                        source.committed(partition), _LAG_CALL_TIMEOUT_S
                    )
                    if committed is not None and partition in ends:
                        metrics.consumer_lag.labels(
                            topic=source.topic, partition=str(partition)
                        ).set(max(0, ends[partition] - committed))
            except (TimeoutError, OSError, KafkaError):
                continue


async def beat_while_running(
    health: Health, delay: Histogram | None = None, *, interval_s: float = _BEAT_INTERVAL_S
) -> None:
    """Stamp the heartbeat every `interval_s`: `/livez` fails when the loop stops turning.
    How late each beat comes is the time the loop could not turn, observed in `delay`."""
    while True:
        health.last_beat = time.monotonic()
        await asyncio.sleep(interval_s)
        if delay is not None:
            delay.observe(max(0.0, time.monotonic() - health.last_beat - interval_s))


class OperationsServer:
    """`/metrics`, `/livez` and `/readyz` on 0.0.0.0:`port`, in a daemon thread."""

    def __init__(self, *, port: int, metrics: StageMetrics, health: Health) -> None:
        registry = metrics.registry

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/metrics":
                    self._answer(200, generate_latest(registry), CONTENT_TYPE_LATEST)
                elif self.path == "/livez":
                    alive = health.alive()
                    self._answer(200 if alive else 503, b"ok\n" if alive else b"stalled\n")
                elif self.path == "/readyz":
                    ready = health.ready()
                    self._answer(200 if ready else 503, b"ready\n" if ready else b"not ready\n")
                else:
                    self._answer(404, b"not found\n")

            def _answer(self, status: int, body: bytes, content_type: str = "text/plain") -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                del format, args  # probes every few seconds: not worth a log line each

        self._server = ThreadingHTTPServer(("0.0.0.0", port), Handler)  # noqa: S104 - probes
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="operations-http", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
