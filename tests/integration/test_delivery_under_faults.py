"""Exactly once under the faults production sees, against the real broker.

Each scenario counts inputs, outputs per topic, duplicates and losses (by the unique id every
input carries in its bytes, read back from the input topic and from what each output carries
of its input, never from the `source` an output claims; as a read_committed consumer sees
them) and the time from the fault to the next committed output ("-" when none came). The
table is printed at the end of the run and written to build/delivery-report.md.
"""

import asyncio
import contextlib
import logging
import math
import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import structlog
from structlog.testing import LogCapture

from claim_scrubber.adapters.kafka import build_app, connection
from claim_scrubber.adapters.kafka.group import transactional_producers
from claim_scrubber.adapters.kafka.ownership import TransactionalProducer
from claim_scrubber.adapters.logging import configure_logging, get_logger
from claim_scrubber.adapters.ruleset_file import load_ruleset
from claim_scrubber.models import Severity
from claim_scrubber.rules import CHECKED_RULES, ClaimFacts, Hit, rule
from claim_scrubber.scrubber import Scrubber
from tests.claims import default_event, event_bytes, patched
from tests.conftest import ReportRows, WorkerStarter
from tests.kafka_harness import (
    ROOT,
    OutputWatcher,
    Tally,
    Topics,
    WorkerProcess,
    free_port,
    http_get,
    input_end_offsets,
    input_ids,
    produce,
    produce_steadily,
    wait_ready,
)

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def _claims(count: int, prefix: str = "C") -> list[bytes]:
    base = default_event()
    return [
        event_bytes(
            patched(
                base,
                {
                    "event_id": f"{prefix}-ev-{n}",
                    "claim.claim_id": f"{prefix}-{n}",
                    "claim.billing_provider.npi": "1245319599" if n % 4 else "1245319598",
                },
            )
        )
        for n in range(count)
    ]


@dataclass(frozen=True)
class _Measured:
    tally: Tally
    duplicates: int
    lost: int


@dataclass(frozen=True)
class _Measurement:
    """Counts one scenario's outputs against its input and adds a row to the report."""

    kafka_bootstrap: str
    topics: Topics
    watcher: OutputWatcher
    report: ReportRows

    async def __call__(
        self,
        scenario: str,
        *,
        expected: int,
        started: float,
        fault_at: float | None = None,
        in_flight_s: float = 0.0,
        timeout_s: float = 120.0,
    ) -> _Measured:
        """Wait for `expected` outputs, then count them by input partition and offset.

        Recovery is the time from the fault to the next committed output; outputs arriving
        within `in_flight_s` of the fault were committed before it.
        """
        tally = await self.watcher.wait_for(expected, timeout_s=timeout_s)
        recovery = None
        if fault_at is not None:
            after = self.watcher.first_arrival_after(fault_at + in_flight_s)
            recovery = None if after is None else after - fault_at
        inputs = await input_ids(self.kafka_bootstrap, self.topics)
        by_topic = tally.by_topic()
        measured = _Measured(tally, *tally.by_input_id(inputs))
        self.report.append(
            {
                "scenario": scenario,
                "inputs": sum(inputs.values()),
                "clean": by_topic.get(self.topics.clean, 0),
                "needs_review": by_topic.get(self.topics.review, 0),
                "dead_letter": by_topic.get(self.topics.dead_letter, 0),
                "duplicates": measured.duplicates,
                "lost": measured.lost,
                "recovery_s": "-" if recovery is None else f"{recovery:.1f}",
                "drain_s": f"{time.monotonic() - started:.1f}",
            }
        )
        return measured


@pytest.fixture
async def watcher(kafka_bootstrap: str, topics: Topics) -> AsyncIterator[OutputWatcher]:
    async with OutputWatcher(kafka_bootstrap, topics) as watching:
        yield watching


@pytest.fixture
def measure(
    kafka_bootstrap: str,
    topics: Topics,
    watcher: OutputWatcher,
    delivery_report: ReportRows,
) -> _Measurement:
    return _Measurement(kafka_bootstrap, topics, watcher, delivery_report)


async def test_a_worker_killed_mid_batch_and_restarted_loses_and_duplicates_nothing(
    kafka_bootstrap: str,
    topics: Topics,
    start_worker: WorkerStarter,
    measure: _Measurement,
) -> None:
    total = 8000
    await produce(kafka_bootstrap, topics.input, [(None, value) for value in _claims(total)])
    started = time.monotonic()
    first = start_worker("crash-1", SCRUBBER_BATCH_MAX_RECORDS="300")
    while len(first.events("claim.scrubbed")) < 500:
        await asyncio.sleep(0.05)
    first.signal(signal.SIGKILL)
    await first.wait()
    killed_at = time.monotonic()

    start_worker("crash-2")
    measured = await measure(
        "crash (SIGKILL mid-batch)",
        expected=total,
        started=started,
        fault_at=killed_at,
    )

    assert len(first.events("claim.scrubbed")) < total, "the kill landed after the work was done"
    assert (measured.duplicates, measured.lost) == (0, 0)


async def test_rebalancing_under_load_as_workers_join_and_leave_keeps_exactly_once(
    kafka_bootstrap: str,
    topics: Topics,
    start_worker: WorkerStarter,
    measure: _Measurement,
) -> None:
    started = time.monotonic()
    first, second = start_worker("rebalance-1"), start_worker("rebalance-2")
    done = asyncio.Event()
    sending = asyncio.create_task(
        produce_steadily(kafka_bootstrap, topics.input, _claims(9000), duration_s=15, stop=done)
    )
    for worker in (first, second):
        await worker.wait_for_event("claim.scrubbed")
    third = start_worker("rebalance-3")
    await third.wait_for_event("claim.scrubbed")  # it joined and took a share
    first.signal(signal.SIGTERM)
    stopped_at = time.monotonic()
    assert await first.wait() == 0
    await second.wait_for_event("partitions.assigned")
    done.set()
    total = await sending
    assert total < 9000, "the faults landed while claims were still coming"

    measured = await measure(
        "rebalance (+1 worker, -1 SIGTERM)",
        expected=total,
        started=started,
        fault_at=stopped_at,
    )

    assert (measured.duplicates, measured.lost) == (0, 0)
    assert first.events("partitions.revoked")
    assert first.events("worker.stopped")
    assert len(second.events("partitions.assigned")) >= 2, "the second worker was rebalanced"


async def test_rolling_restarts_under_load_keep_exactly_once(
    kafka_bootstrap: str,
    topics: Topics,
    start_worker: WorkerStarter,
    measure: _Measurement,
) -> None:
    restarts = 6
    started = time.monotonic()
    pool = [start_worker(f"rolling-{n}") for n in range(3)]
    done = asyncio.Event()
    sending = asyncio.create_task(
        produce_steadily(kafka_bootstrap, topics.input, _claims(24000), duration_s=80, stop=done)
    )
    await pool[0].wait_for_event("claim.scrubbed")
    for restart in range(restarts):
        slot = restart % len(pool)
        pool[slot].signal(signal.SIGTERM)
        assert await pool[slot].wait() == 0
        pool[slot] = start_worker(f"rolling-{restart + len(pool)}")
        await pool[slot].wait_for_event("claim.scrubbed")  # in the group, and working
    restarted_at = time.monotonic()
    done.set()
    total = await sending
    assert total < 24000, "the restarts landed while claims were still coming"

    measured = await measure(
        f"rolling restarts ({restarts} SIGTERM + replace, 3 workers, under load)",
        expected=total,
        started=started,
        fault_at=restarted_at,
    )

    assert (measured.duplicates, measured.lost) == (0, 0)


class _FreezesInItsTransaction:
    """A partition's transactional producer whose process freezes (its event loop stands
    still, as under SIGSTOP or a long pause) inside the transaction that carries `marker`:
    its records and offsets are sent, its commit is not, until `thawed()` says so."""

    def __init__(
        self,
        producer: TransactionalProducer,
        marker: bytes,
        freeze: Callable[[], Callable[[], bool]],
    ) -> None:
        self._producer = producer
        self._marker = marker
        self._freeze = freeze
        self._carrying = False

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    async def begin_transaction(self) -> None:
        self._carrying = False
        await self._producer.begin_transaction()

    async def send(
        self,
        topic: str,
        value: bytes | None,
        *,
        key: bytes | None,
        headers: list[tuple[str, bytes]],
        partition: int | None = None,
    ) -> Awaitable[Any]:
        self._carrying = self._carrying or self._marker in (value or b"")
        return await self._producer.send(
            topic, value, key=key, headers=headers, partition=partition
        )

    async def send_offsets_to_transaction(self, offsets: dict[Any, int], group_id: str) -> None:
        await self._producer.send_offsets_to_transaction(offsets, group_id)

    async def commit_transaction(self) -> None:
        if self._carrying:
            thawed = self._freeze()
            deadline = time.monotonic() + 120
            while not thawed() and time.monotonic() < deadline:
                time.sleep(0.2)  # noqa: ASYNC251 - the point: the whole process stands still
        await self._producer.commit_transaction()

    async def abort_transaction(self) -> None:
        await self._producer.abort_transaction()


async def test_a_worker_frozen_inside_its_transaction_is_fenced_and_duplicates_nothing(
    kafka_bootstrap: str,
    topics: Topics,
    start_worker: WorkerStarter,
    measure: _Measurement,
) -> None:
    """The harmful path: the frozen worker holds an open transaction with its results and
    offsets in it; a successor takes the partition over while it stands still; when it thaws
    it commits, and the broker must refuse that commit (the successor's fence)."""
    marker = "FREEZE-1"
    total = 2000
    claims = _claims(total)
    claims[total // 2] = event_bytes(
        patched(default_event(), {"event_id": "freeze-ev", "claim.claim_id": marker})
    )
    successors: list[WorkerProcess] = []
    frozen_at: list[float] = []

    def freeze() -> Callable[[], bool]:
        """The successor starts while this worker stands still; it thaws once the successor
        has scrubbed the claim of the transaction it holds open."""
        frozen_at.append(time.monotonic())
        successor = start_worker("successor")
        successors.append(successor)
        return lambda: any(e["claim_id"] == marker for e in successor.events("claim.scrubbed"))

    settings = topics.settings(kafka_bootstrap, worker_id="zombie")
    real = transactional_producers(
        connection=connection(settings),
        client_id="claim-scrubber-zombie",
        transaction_timeout_ms=settings.transaction_timeout_ms,
    )
    capture = LogCapture()
    log = structlog.wrap_logger(
        None,
        processors=[capture],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
    )
    app = build_app(
        settings,
        Scrubber(load_ruleset(), max_message_bytes=settings.max_message_bytes),
        log,
        producer_factory=lambda tid, partition: _FreezesInItsTransaction(
            real(tid, partition), marker.encode(), freeze
        ),
    )
    started = time.monotonic()
    await app.start()
    try:
        await produce(kafka_bootstrap, topics.input, [(None, value) for value in claims])
        measured = await measure(
            "zombie (frozen inside its transaction > session timeout)",
            expected=total,
            started=started,
            fault_at=None,
        )
        fenced = [e for e in capture.entries if e["event"] == "transaction.fenced"]
    finally:
        await app.stop()

    assert frozen_at, "the worker never froze: the marked claim was not in its transaction"
    assert (measured.duplicates, measured.lost) == (0, 0)
    [successor] = successors
    assert [e["claim_id"] for e in successor.events("claim.scrubbed")].count(marker) == 1
    assert fenced, "the thawed worker's commit was refused by the broker (transaction.fenced)"
    zombie_scrubbed = [e["claim_id"] for e in capture.entries if e["event"] == "claim.scrubbed"]
    assert marker not in zombie_scrubbed


def _local_broker_is_ours(bootstrap: str) -> bool:
    pid_file = ROOT / ".kafka" / "kafka.pid"
    if bootstrap not in {"127.0.0.1:9092", "localhost:9092"} or not pid_file.exists():
        return False
    try:
        os.kill(int(pid_file.read_text().strip()), 0)
    except (OSError, ValueError):
        return False
    return True


@pytest.fixture
def restartable_broker(kafka_bootstrap: str) -> Iterator[None]:
    if not _local_broker_is_ours(kafka_bootstrap):
        message = "the broker-restart scenario needs the local broker of `make kafka-up`"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    yield
    _kafka("up")


@pytest.mark.exclusive
async def test_workers_ride_out_a_broker_restart_and_log_the_outage_with_backoff(
    kafka_bootstrap: str,
    topics: Topics,
    start_worker: WorkerStarter,
    restartable_broker: None,
    measure: _Measurement,
) -> None:
    del restartable_broker
    started = time.monotonic()
    port = free_port()
    workers = [start_worker("restart-1", SCRUBBER_HTTP_PORT=str(port)), start_worker("restart-2")]
    for worker in workers:
        await worker.wait_for_event("partitions.assigned")
    probes: list[tuple[str, int, int]] = []
    probing = asyncio.create_task(_probe_health(port, probes))
    done = asyncio.Event()
    sending = asyncio.create_task(
        produce_steadily(kafka_bootstrap, topics.input, _claims(8000), duration_s=40, stop=done)
    )
    try:
        for worker in workers:
            await worker.wait_for_event("claim.scrubbed")

        await asyncio.to_thread(_kafka, "down")
        down_at = time.monotonic()
        while 503 not in [ready for _, _, ready in probes] or not any(
            worker.events("broker.unreachable") for worker in workers
        ):
            assert time.monotonic() - down_at < 60, "the outage was neither logged nor seen"
            await asyncio.sleep(0.2)
        await asyncio.to_thread(_kafka, "up")
        probes.append(("broker up", 0, 0))
        up_at = time.monotonic()
        while measure.watcher.first_arrival_after(up_at) is None:
            assert time.monotonic() - up_at < 120, (
                "nothing was committed after the broker came back"
            )
            await asyncio.sleep(0.2)
        done.set()
        await sending
        inputs = sum((await input_end_offsets(kafka_bootstrap, topics)).values())

        measured = await measure(
            "broker restart (down until the workers see it)",
            expected=inputs,
            started=started,
            fault_at=up_at,
            timeout_s=180,
        )

        assert (measured.duplicates, measured.lost) == (0, 0)
        assert all(worker.process.poll() is None for worker in workers), "no worker crashed"
        # Each retrying source (a worker's probe, each partition's producer) backs off
        # exponentially from 0.2 s (Backoff): n retries take at least 0.1 x (2^(n-1) - 1) s.
        retries = Counter(
            (worker.name, line.get("partition"))
            for worker in workers
            for line in worker.events("broker.unreachable")
        )
        most = math.log2((up_at - down_at + 10) / 0.1 + 1) + 1
        assert max(retries.values()) <= most, f"retries back off instead of looping hot: {retries}"
        probing.cancel()
        up = probes.index(("broker up", 0, 0))
        assert all(live == 200 for _, live, _ in probes[:up] + probes[up + 1 :]), "/livez stays 200"
        assert 503 in [ready for _, _, ready in probes[:up]], "/readyz is 503 while it is down"
        await wait_ready(port, timeout_s=30)  # /readyz is 200 again in the group
    finally:
        # A failure above fails this test alone: nothing of it is left running for the next.
        done.set()
        probing.cancel()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(sending, probing, return_exceptions=True), 30)


async def _probe_health(port: int, probes: list[tuple[str, int, int]]) -> None:
    """Poll /livez and /readyz every half second."""
    while True:
        live = (await asyncio.to_thread(http_get, port, "/livez"))[0]
        ready = (await asyncio.to_thread(http_get, port, "/readyz"))[0]
        probes.append(("probe", live, ready))
        await asyncio.sleep(0.5)


def _kafka(action: str) -> None:
    """`kafka.sh up` or `down`; a failure carries what the script said, and the broker's log."""
    done = subprocess.run(
        ["bash", "deploy/kafka/kafka.sh", action],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if done.returncode != 0:
        server_log = ROOT / ".kafka" / "logs" / "server.log"
        tail = server_log.read_text().splitlines()[-30:] if server_log.exists() else []
        raise AssertionError(
            f"kafka.sh {action} exited {done.returncode}:\n{done.stdout}{done.stderr}"
            + "\n".join(["server.log ends:", *tail])
        )


@rule(
    "CLM-998",
    Severity.ERROR,
    title="Raises on marked claims",
    source="test",
    fails="a claim whose id starts with RAISE-",
    passes="any other claim",
)
def _raises_on_marked_claims(facts: ClaimFacts) -> Iterator[Hit]:
    """Raises for claims marked RAISE-, to prove a failing rule never stops the stream.

    The worker must turn the failure into ENGINE-001 and carry on.
    """
    if facts.event.claim.claim_id.startswith("RAISE-"):
        raise RuntimeError("rule bug")
    return iter(())


async def test_poison_input_interleaved_with_good_input_lands_where_the_contract_says(
    kafka_bootstrap: str,
    topics: Topics,
    measure: _Measurement,
) -> None:
    configure_logging(level="warning")
    settings = topics.settings(kafka_bootstrap, max_message_bytes=4096, worker_id="poison")
    scrubber = Scrubber(
        load_ruleset(),
        max_message_bytes=settings.max_message_bytes,
        rules=(*CHECKED_RULES, _raises_on_marked_claims),
    )

    def poison(round_number: int) -> dict[str, bytes]:
        """One of each kind of bad input, each carrying its own `event_id` marker."""
        marker = f"poison-{round_number}"
        return {
            "too_large": event_bytes(
                patched(
                    default_event(),
                    {"event_id": f"{marker}-large", "claim.lines[0].note": "x" * 5000},
                )
            ),
            "invalid_encoding": (
                f'{{"schema_version": "1", "event_id": "{marker}-utf8", "x": "'.encode() + b'\xff"}'
            ),
            "invalid_json": f'{{"schema_version": "1", "event_id": "{marker}-json"'.encode(),
            "not_an_object": f'"a string with event_id: {marker}-string"'.encode(),
            "unsupported_schema_version": (
                f'{{"schema_version": "0", "event_id": "{marker}-version"}}'.encode()
            ),
            "schema_violation": event_bytes(
                patched(default_event(), {"event_id": f"{marker}-schema", "claim.lines": "none"})
            ),
            "rule_raises": event_bytes(
                patched(
                    default_event(), {"event_id": f"{marker}-raise", "claim.claim_id": "RAISE-1"}
                )
            ),
        }

    good = _claims(300, "P")
    records: list[tuple[bytes | None, bytes]] = []
    for index, value in enumerate(good):
        records.append((None, value))
        if index % 40 == 0:
            records.extend((kind.encode(), payload) for kind, payload in poison(index).items())

    started = time.monotonic()
    app = build_app(settings, scrubber, get_logger(worker_id="poison"))
    await app.start()
    try:
        await produce(kafka_bootstrap, topics.input, records)
        measured = await measure(
            "poison interleaved (in-process worker)",
            expected=len(records),
            started=started,
        )
    finally:
        await app.stop()
    tally = measured.tally

    assert (measured.duplicates, measured.lost) == (0, 0)
    rounds = sum(1 for index in range(len(good)) if index % 40 == 0)
    dead = [o for o in tally.outputs if o.topic == topics.dead_letter]
    kinds = sorted(o.body["error"]["kind"] for o in dead)
    assert kinds == sorted([kind for kind in poison(0) if kind != "rule_raises"] * rounds)
    raised = [o for o in tally.outputs if o.key == b"RAISE-1"]
    assert len(raised) == rounds
    assert all(o.topic == topics.review for o in raised)
    assert all("ENGINE-001" in [f["rule_id"] for f in o.body["findings"]] for o in raised)
