"""Real-broker test harness: isolated topics, worker processes, exactly-once accounting."""

import asyncio
import base64
import contextlib
import ctypes
import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError
from aiokafka.protocol.admin import CreateAclsRequest, DeleteAclsRequest

from claim_scrubber.adapters.kafka.topic_sizes import OUTPUT_TOPIC_CONFIGS
from claim_scrubber.adapters.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
_PR_SET_PDEATHSIG = 1
WORKER = [str(Path(sys.executable).with_name("claim-scrubber")), "worker"]


@dataclass(frozen=True)
class Topics:
    """One test's own input and output topics and consumer group."""

    prefix: str
    partitions: int = 6
    history: bool = False
    """Claim history on: the worker re-keys the input by patient and keeps a changelog."""

    HISTORY_KEY = "test-history-key-0123456789"

    @property
    def input(self) -> str:
        return f"{self.prefix}.submitted"

    @property
    def clean(self) -> str:
        return f"{self.prefix}.clean"

    @property
    def review(self) -> str:
        return f"{self.prefix}.needs-review"

    @property
    def dead_letter(self) -> str:
        return f"{self.prefix}.dead-letter"

    @property
    def ledger(self) -> str:
        """The dead-letter replay ledger (contract section 11)."""
        return f"{self.dead_letter}.replayed"

    @property
    def by_patient(self) -> str:
        return f"{self.prefix}.by-patient"

    @property
    def changelog(self) -> str:
        return f"{self.prefix}.history"

    @property
    def inbound_x12(self) -> str:
        return f"{self.prefix}.inbound.x12"

    @property
    def inbound_fhir(self) -> str:
        return f"{self.prefix}.inbound.fhir"

    @property
    def inbound(self) -> tuple[str, str]:
        return (self.inbound_x12, self.inbound_fhir)

    @property
    def outputs(self) -> tuple[str, str, str]:
        return (self.clean, self.review, self.dead_letter)

    @property
    def group(self) -> str:
        return f"{self.prefix}.scrubber"

    def _history_settings(self) -> dict[str, str]:
        if not self.history:
            return {}
        return {
            "history": "on",
            "history_key": self.HISTORY_KEY,
            "topic_by_patient": self.by_patient,
            "topic_history": self.changelog,
        }

    def settings(self, bootstrap: str, **extra: object) -> Settings:
        """Settings of an in-process worker on these topics (no HTTP server)."""
        return Settings.model_validate(
            {
                "kafka_bootstrap_servers": bootstrap,
                "group_id": self.group,
                "topic_input": self.input,
                "topic_clean": self.clean,
                "topic_review": self.review,
                "topic_dead_letter": self.dead_letter,
                "session_timeout_ms": 6000,
                "batch_timeout_ms": 50,
                "http_port": 0,
                **self._history_settings(),
                **extra,
            }
        )

    def env(self, bootstrap: str) -> dict[str, str]:
        return {
            "SCRUBBER_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "SCRUBBER_GROUP_ID": self.group,
            "SCRUBBER_TOPIC_INPUT": self.input,
            "SCRUBBER_TOPIC_CLEAN": self.clean,
            "SCRUBBER_TOPIC_REVIEW": self.review,
            "SCRUBBER_TOPIC_DEAD_LETTER": self.dead_letter,
            "SCRUBBER_TOPIC_INBOUND_X12": self.inbound_x12,
            "SCRUBBER_TOPIC_INBOUND_FHIR": self.inbound_fhir,
            **{f"SCRUBBER_{k.upper()}": v for k, v in self._history_settings().items()},
        }

    @property
    def stages(self) -> list[tuple[str, Sequence[str]]]:
        """(consumer group, input topics) of each stage, in the order records go through."""
        stages: list[tuple[str, Sequence[str]]] = [
            (f"{self.group}.intake", self.inbound),
            (self.group, [self.input]),
        ]
        if self.history:
            stages.append((f"{self.group}.by-patient", [self.by_patient]))
        return stages

    @property
    def all(self) -> list[str]:
        internal = [self.by_patient, self.changelog] if self.history else []
        return [self.input, *self.outputs, *self.inbound, self.ledger, *internal]


async def create_topics(
    bootstrap: str,
    name: str,
    partitions: int = 6,
    *,
    output_configs: dict[str, str] | None = None,
    inbound_configs: dict[str, str] | None = None,
    history: bool = False,
) -> Topics:
    """Fresh topics; the outputs sized as `make kafka-up` sizes them unless told otherwise;
    with `history`, the internal topics of claim history as `make kafka-up` makes them."""
    topics = Topics(f"test.{name}.{uuid.uuid4().hex[:8]}", partitions, history)
    internal = (
        [
            NewTopic(topics.by_patient, num_partitions=partitions, replication_factor=1),
            NewTopic(
                topics.changelog,
                num_partitions=partitions,
                replication_factor=1,
                topic_configs={"cleanup.policy": "compact"},
            ),
        ]
        if history
        else []
    )
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [
                NewTopic(topics.input, num_partitions=partitions, replication_factor=1),
                *(
                    NewTopic(
                        t,
                        num_partitions=partitions,
                        replication_factor=1,
                        topic_configs=inbound_configs or {},
                    )
                    for t in (topics.inbound_x12, topics.inbound_fhir)
                ),
                *(
                    NewTopic(
                        t,
                        num_partitions=partitions,
                        replication_factor=1,
                        topic_configs=(
                            OUTPUT_TOPIC_CONFIGS if output_configs is None else output_configs
                        ),
                    )
                    for t in topics.outputs
                ),
                NewTopic(
                    topics.ledger,
                    num_partitions=partitions,
                    replication_factor=1,
                    topic_configs={"cleanup.policy": "compact"},
                ),
                *internal,
            ]
        )
    finally:
        await admin.close()
    return topics


async def produce(bootstrap: str, topic: str, records: Iterable[tuple[bytes | None, bytes]]) -> int:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, max_request_size=4 * 1024 * 1024)
    await producer.start()
    sent = 0
    try:
        for key, value in records:
            await producer.send(topic, value, key=key)
            sent += 1
        await producer.flush()
    finally:
        await producer.stop()
    return sent


_INPUT_ID = re.compile(rb"event_id\W{1,4}([A-Za-z0-9._-]+)")


def input_id(payload: bytes) -> str | None:
    """The unique id a test input carries in its bytes: a claim's event_id, or the same marker
    (`event_id: ID`) inside input that is not a claim."""
    found = _INPUT_ID.search(payload)
    return found.group(1).decode("ascii") if found else None


@dataclass
class Output:
    topic: str
    key: bytes | None
    headers: dict[str, bytes]
    body: dict[str, Any]

    @property
    def source(self) -> tuple[int, int]:
        return (self.body["source"]["partition"], self.body["source"]["offset"])

    @property
    def input_id(self) -> str | None:
        """The id of the input this output answers, read from what it carries of the input
        (a result's event_id, a dead letter's payload), never from its `source`."""
        if "payload_base64" in self.body:
            return input_id(base64.b64decode(self.body["payload_base64"]))
        event_id = self.body.get("event_id")
        return event_id if isinstance(event_id, str) else None


@dataclass
class Tally:
    """What a read_committed consumer saw on the output topics."""

    outputs: list[Output] = field(default_factory=list)

    def by_topic(self) -> Counter[str]:
        return Counter(output.topic for output in self.outputs)

    def duplicates(self) -> int:
        counts = Counter(output.source for output in self.outputs)
        return sum(count - 1 for count in counts.values() if count > 1)

    def by_input_id(self, inputs: Counter[str]) -> tuple[int, int]:
        """(duplicated, lost) counted by the unique id each input carries: an input answered
        n times adds n-1 duplicates, an input never answered adds one loss."""
        answered = Counter(output.input_id for output in self.outputs)
        duplicated = sum(max(0, answered[i] - count) for i, count in inputs.items())
        duplicated += sum(count for i, count in answered.items() if i not in inputs)
        lost = sum(max(0, count - answered[i]) for i, count in inputs.items())
        return duplicated, lost

    def missing(self, input_end_offsets: dict[int, int]) -> int:
        """Input records (partition, offset) with no output at all."""
        seen = {output.source for output in self.outputs}
        expected = {(p, o) for p, end in input_end_offsets.items() for o in range(end)}
        return len(expected - seen)


async def input_end_offsets(bootstrap: str, topics: Topics) -> dict[int, int]:
    """Partition -> end offset of the input topic: every (partition, offset) below is an input."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await consumer.start()
    try:
        partitions = [TopicPartition(topics.input, p) for p in range(topics.partitions)]
        ends = await consumer.end_offsets(partitions)
        return {tp.partition: offset for tp, offset in ends.items()}
    finally:
        await consumer.stop()


async def input_ids(bootstrap: str, topics: Topics) -> Counter[str]:
    """Every input record's id, read back from the input topic (a record a producer retried
    may be there twice, and then needs two answers)."""
    ends = await input_end_offsets(bootstrap, topics)
    consumer = AIOKafkaConsumer(
        topics.input, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    ids: Counter[str] = Counter()
    try:
        read = dict.fromkeys(ends, 0)
        deadline = time.monotonic() + 60
        while any(read[p] < end for p, end in ends.items()) and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500, max_records=5000)
            for tp, records in batches.items():
                for record in records:
                    ids[
                        input_id(record.value or b"") or f"unmarked-{tp.partition}-{record.offset}"
                    ] += 1
                    read[tp.partition] = record.offset + 1
    finally:
        await consumer.stop()
    return ids


def committed_reader(bootstrap: str, *topics: str, **options: Any) -> AIOKafkaConsumer:
    """A consumer of what is committed (read_committed), from the start, in no group."""
    return AIOKafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
        **options,
    )


async def collect(
    bootstrap: str,
    topics: Topics,
    expected: int,
    *,
    timeout_s: float = 90.0,
) -> Tally:
    """Read every output topic with read_committed until `expected` arrived and every stage
    has committed all its input (see `caught_up`)."""
    consumer = committed_reader(bootstrap, *topics.outputs)
    await consumer.start()
    tally = Tally()
    deadline = time.monotonic() + timeout_s

    async def read(timeout_ms: int) -> None:
        batches = await consumer.getmany(timeout_ms=timeout_ms, max_records=5000)
        tally.outputs.extend(
            Output(
                topic=record.topic,
                key=record.key,
                headers=dict(record.headers),
                body=orjson.loads(record.value),
            )
            for records in batches.values()
            for record in records
        )

    try:
        while len(tally.outputs) < expected and time.monotonic() < deadline:
            await read(500)
        if len(tally.outputs) >= expected:
            await caught_up(bootstrap, topics, consumer, deadline, read)
    finally:
        await consumer.stop()
    return tally


async def caught_up(
    bootstrap: str,
    topics: Topics,
    consumer: AIOKafkaConsumer,
    deadline: float,
    read: Callable[[int], Awaitable[None]],
) -> None:
    """Wait until each stage the test runs (intake, the worker) has committed every record of
    its input topics, then until `consumer` has read the outputs to their end.

    From the moment every input is committed no stage adds an output but a late transaction
    the broker should have refused: reading to the end then sees every duplicate there is,
    where a settle window sees only those that come soon enough.
    """
    # intake first: once it has committed all its inbound records, the input topic is whole
    for group, inputs in topics.stages:
        needed = await _next_offsets(bootstrap, inputs, topics.partitions)
        # outputs arrived: each stage the test runs has committed some of them already
        while not await _committed_up_to(bootstrap, group, needed, if_it_ran=True):
            if time.monotonic() > deadline:
                raise AssertionError(f"{group} did not commit all of its input in time")
            await read(200)
    ends = await consumer.end_offsets(list(consumer.assignment()))  # read_committed: stable
    for tp, end in ends.items():
        while await consumer.position(tp) < end:
            if time.monotonic() > deadline:
                raise AssertionError(f"{tp} was not read to its end in time")
            await read(200)


async def _next_offsets(
    bootstrap: str, topics: Sequence[str], partitions: int
) -> dict[TopicPartition, int]:
    """Per partition, the offset after its last committed record: what a group that has read
    everything commits (a transaction's commit marker takes an offset the group never does)."""
    needed: dict[TopicPartition, int] = {}
    for topic in topics:
        for offset, record_partition in await _committed_records(bootstrap, topic, partitions):
            tp = TopicPartition(topic, record_partition)
            needed[tp] = max(needed.get(tp, 0), offset + 1)
    return needed


async def _committed_up_to(
    bootstrap: str, group: str, needed: dict[TopicPartition, int], *, if_it_ran: bool = False
) -> bool:
    """Whether `group` committed at least `needed`; with `if_it_ran`, a group that never
    committed anything counts as a stage the test does not run."""
    if not needed:
        return True
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        committed = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    if if_it_ran and not committed:
        return True
    return all(tp in committed and committed[tp].offset >= end for tp, end in needed.items())


async def group_committed_everything(
    bootstrap: str, group: str, inputs: Sequence[str], partitions: int
) -> bool:
    """Whether `group` has committed every committed record of its `inputs`."""
    return await _committed_up_to(
        bootstrap, group, await _next_offsets(bootstrap, inputs, partitions)
    )


async def read_to_end(
    bootstrap: str, topic: str, partitions: int, timeout_s: float = 60.0
) -> list[bytes]:
    """The committed values of `topic` (read_committed), up to its end as of now."""
    return [value for value, _ in await _read_committed(bootstrap, topic, partitions, timeout_s)]


async def _committed_records(bootstrap: str, topic: str, partitions: int) -> list[tuple[int, int]]:
    """(offset, partition) of every committed record of `topic`, up to its end as of now."""
    return [where for _, where in await _read_committed(bootstrap, topic, partitions, 60.0)]


async def _read_committed(
    bootstrap: str, topic: str, partitions: int, timeout_s: float
) -> list[tuple[bytes, tuple[int, int]]]:
    consumer = committed_reader(bootstrap)
    await consumer.start()
    found: list[tuple[bytes, tuple[int, int]]] = []
    deadline = time.monotonic() + timeout_s
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
        ends = await consumer.end_offsets(list(consumer.assignment()))
        for tp, end in ends.items():
            while await consumer.position(tp) < end:
                if time.monotonic() > deadline:
                    raise AssertionError(f"{tp} was not read to its end in time")
                batches = await consumer.getmany(tp, timeout_ms=500)
                found += [
                    (record.value or b"", (record.offset, tp.partition))
                    for record in batches.get(tp, [])
                ]
    finally:
        await consumer.stop()
    return found


_PRCTL = ctypes.CDLL("libc.so.6", use_errno=True).prctl  # resolved before any fork


async def delete_topics(bootstrap: str, topics: Topics) -> None:
    """Delete a test's topics, so that the broker carries only the running tests' partitions
    (a broker restart loads every partition it has)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_topics(topics.all, timeout_ms=30_000)
    finally:
        await admin.close()


def _die_with_parent() -> None:
    """In the child: get SIGKILL when the test process dies, however it dies (Linux)."""
    _PRCTL(_PR_SET_PDEATHSIG, signal.SIGKILL)


class WorkerProcess:
    """`claim-scrubber worker` (or `intake`) as a child process whose log lines are kept."""

    def __init__(
        self,
        env: dict[str, str],
        name: str,
        command: str | Sequence[str] = "worker",
        cwd: Path | None = None,
    ) -> None:
        """`command`: the subcommand and its arguments; `cwd`: the working directory
        (default: the repository's root)."""
        self.name = name
        self.lines: list[str] = []
        self.stderr_lines: list[str] = []
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("SCRUBBER_")}
        full_env.update(env)
        full_env.setdefault("SCRUBBER_WORKER_ID", name)
        full_env.setdefault("SCRUBBER_HTTP_PORT", "0")  # tests run several workers at once
        self.process = subprocess.Popen(
            [WORKER[0], *([command] if isinstance(command, str) else command)],
            env=full_env,
            cwd=cwd or ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=_die_with_parent,  # noqa: PLW1509 - one libc call, no Python locks
        )
        self._readers = [
            threading.Thread(
                target=self._pump, args=(self.process.stdout, self.lines), daemon=True
            ),
            threading.Thread(
                target=self._pump, args=(self.process.stderr, self.stderr_lines), daemon=True
            ),
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _pump(stream: Any, sink: list[str]) -> None:
        sink.extend(line.rstrip("\n") for line in stream)

    def events(self, name: str) -> list[dict[str, Any]]:
        found = []
        for line in list(self.lines):
            try:
                document = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if document.get("event") == name:
                found.append(document)
        return found

    async def wait_for_event(self, name: str, timeout_s: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = self.events(name)
            if found:
                return found[-1]
            if self.process.poll() is not None:
                raise AssertionError(
                    f"{self.name} exited ({self.process.returncode}) before {name}"
                )
            await asyncio.sleep(0.1)
        recent = "\n".join(line[:250] for line in [*self.lines[-30:], *self.stderr_lines[-10:]])
        raise AssertionError(f"{self.name}: no {name} within {timeout_s} s; last lines:\n{recent}")

    def signal(self, signum: int) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signum)

    async def wait(self, timeout_s: float = 60.0) -> int:
        deadline = time.monotonic() + timeout_s
        while self.process.poll() is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} did not exit within {timeout_s} s")
            await asyncio.sleep(0.1)
        for reader in self._readers:
            reader.join(timeout=5)
        return self.process.returncode

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.kill()
        self.process.wait(timeout=30)
        for reader in self._readers:
            reader.join(timeout=5)

    def all_output(self) -> str:
        return "\n".join([*self.lines, *self.stderr_lines])


class OutputWatcher:
    """Reads the output topics (read_committed) in the background, noting when each arrives."""

    def __init__(self, bootstrap: str, topics: Topics) -> None:
        self._bootstrap = bootstrap
        self._topics = topics
        self.arrivals: list[tuple[float, Output]] = []
        self._task: asyncio.Task[None] | None = None
        self._consumer: AIOKafkaConsumer | None = None

    async def __aenter__(self) -> "OutputWatcher":
        self._consumer = committed_reader(
            self._bootstrap, *self._topics.outputs, request_timeout_ms=10_000
        )
        await self._consumer.start()
        self._task = asyncio.create_task(self._run())
        return self

    async def _run(self) -> None:
        assert self._consumer is not None
        while True:
            try:
                batches = await self._consumer.getmany(timeout_ms=200, max_records=5000)
            except Exception:  # noqa: BLE001 - the broker may be restarting; keep reading
                await asyncio.sleep(0.5)
                continue
            now = time.monotonic()
            for records in batches.values():
                self.arrivals.extend(
                    (
                        now,
                        Output(
                            topic=record.topic,
                            key=record.key,
                            headers=dict(record.headers),
                            body=orjson.loads(record.value),
                        ),
                    )
                    for record in records
                )

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()

    def tally(self) -> Tally:
        return Tally([output for _, output in self.arrivals])

    async def wait_for(self, count: int, timeout_s: float = 120.0) -> Tally:
        """Wait until `count` outputs arrived and every stage has committed all its input,
        then until the outputs are read to their end (see `caught_up`)."""
        assert self._consumer is not None
        deadline = time.monotonic() + timeout_s
        while len(self.arrivals) < count and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        if len(self.arrivals) >= count:
            await caught_up(
                self._bootstrap,
                self._topics,
                self._consumer,
                deadline,
                lambda timeout_ms: asyncio.sleep(timeout_ms / 1000),
            )
        return self.tally()

    def first_arrival_after(self, moment: float) -> float | None:
        later = [arrived for arrived, _ in self.arrivals if arrived > moment]
        return min(later) if later else None


async def produce_steadily(
    bootstrap: str,
    topic: str,
    values: list[bytes],
    duration_s: float,
    stop: asyncio.Event | None = None,
    keys: Sequence[bytes | None] | None = None,
) -> int:
    """Send `values` (keyed by `keys`, when given) spread evenly over `duration_s`, each
    acknowledged before the next, until `stop` is set; retry through broker outages with a
    fresh producer (a retried record may land twice: count inputs by offset, not by what this
    returns). Returns how many it sent."""
    producer: AIOKafkaProducer | None = None
    start = time.monotonic()
    sent = 0
    try:
        for index, value in enumerate(values):
            if stop is not None and stop.is_set():
                break
            target = start + duration_s * index / len(values)
            delay = target - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            while True:
                try:
                    if producer is None:
                        producer = AIOKafkaProducer(
                            bootstrap_servers=bootstrap, request_timeout_ms=5_000
                        )
                        await producer.start()
                    key = None if keys is None else keys[index]
                    await (await producer.send(topic, value, key=key))
                    break
                except Exception:  # noqa: BLE001 - broker outage: new producer, same record
                    if producer is not None:
                        with contextlib.suppress(Exception):
                            await producer.stop()
                        producer = None
                    await asyncio.sleep(0.5)
            sent += 1
    finally:
        if producer is not None:
            await producer.stop()
    return sent


async def committed_offsets(bootstrap: str, topics: Topics) -> dict[int, int]:
    """The scrubber group's committed input offsets, by partition (absent: never committed)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(topics.group)
    finally:
        await admin.close()
    return {tp.partition: meta.offset for tp, meta in offsets.items() if meta.offset >= 0}


def free_port() -> int:
    """A TCP port nothing listens on right now, for a worker's operations endpoints."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def http_get(port: int, path: str, token: str | None = None) -> tuple[int, str]:
    """Status and body of GET http://127.0.0.1:PORT/PATH, with the bearer `token` if given
    (raises OSError when nothing listens)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


async def wait_ready(port: int, timeout_s: float = 60.0) -> None:
    """Until a worker's /readyz answers 200 (it owns every partition assigned to it)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if (await asyncio.to_thread(http_get, port, "/readyz"))[0] == 200:
                return
        await asyncio.sleep(0.2)
    raise AssertionError(f"/readyz on port {port} did not answer 200 within {timeout_s} s")


class SecondBroker:
    """A second broker (node 2, PLAINTEXT on a port of its own) joining the local cluster of
    `make kafka-up`, to hold the partitions a test puts on it and take them offline.

    Its data lives in `workdir`. `close` stops it and unregisters node 2, so no later topic
    is ever assigned to it."""

    NODE_ID = 2

    def __init__(self, workdir: Path) -> None:
        state = ROOT / ".kafka"
        meta = state / "data" / "meta.properties"
        if not meta.exists():
            raise RuntimeError("a second broker joins the local broker of `make kafka-up` only")
        found = re.search(r"cluster\.id=(\S+)", meta.read_text())
        if found is None:
            raise RuntimeError(f"{meta} names no cluster.id")
        self._cluster_id = found[1]
        self._libs = state / "libs"
        self.port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self._props = workdir / "broker-2.properties"
        self._data = workdir / "data"
        self._logs = workdir / "logs"
        self._logs.mkdir(parents=True, exist_ok=True)
        self._props.write_text(
            "\n".join(
                [
                    "process.roles=broker",
                    f"node.id={self.NODE_ID}",
                    "controller.quorum.bootstrap.servers=127.0.0.1:9093",
                    "controller.listener.names=CONTROLLER",
                    f"listeners=PLAINTEXT://{self.bootstrap}",
                    f"advertised.listeners=PLAINTEXT://{self.bootstrap}",
                    "inter.broker.listener.name=PLAINTEXT",
                    "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
                    f"log.dirs={self._data}",
                    "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
                    "super.users=User:ANONYMOUS;User:admin",
                    "allow.everyone.if.no.acl.found=false",
                    "num.network.threads=1",
                    "num.io.threads=2",
                ]
            )
            + "\n"
        )
        self._process: subprocess.Popen[bytes] | None = None

    def _java(self, *args: str, heap: str = "256m") -> list[str]:
        return [
            "java", f"-Xmx{heap}", "-XX:TieredStopAtLevel=1",
            f"-Dkafka.logs.dir={self._logs}",
            f"-Dlog4j2.configurationFile={ROOT / 'deploy/kafka/log4j2-tools.properties'}",
            "-cp", f"{self._libs}/*", *args,
        ]  # fmt: skip

    def start(self) -> None:
        if not (self._data / "meta.properties").exists():
            subprocess.run(
                self._java(
                    "kafka.tools.StorageTool", "format", "-t", self._cluster_id,
                    "-c", str(self._props), "--no-initial-controllers",
                ),
                check=True, capture_output=True, timeout=120,
            )  # fmt: skip
        with (self._logs / "stdout.log").open("ab") as log:
            self._process = subprocess.Popen(
                self._java("kafka.Kafka", str(self._props), heap="384m"),
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,  # noqa: PLW1509 - one libc call, no Python locks
            )

    async def wait_registered(self, bootstrap: str, timeout_s: float = 90.0) -> None:
        """Until the cluster lists node 2 as a live broker and node 2 accepts connections (the
        cluster may list it a moment before its listener is up: a client that picks it then
        gets NodeNotReadyError)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if await self._listed(bootstrap) and await self._listening():
                return
            await asyncio.sleep(0.5)
        raise TimeoutError(f"broker {self.NODE_ID} did not join within {timeout_s} s")

    async def _listed(self, bootstrap: str) -> bool:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        try:
            await admin.start()
            cluster = await admin.describe_cluster()
        except (KafkaError, OSError):
            return False  # the admin client picked node 2 while it was not ready yet
        finally:
            await admin.close()
        return any(b["node_id"] == self.NODE_ID for b in cluster["brokers"])

    async def _listening(self) -> bool:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", self.port)
        except OSError:
            return False
        writer.close()
        await writer.wait_closed()
        return True

    def kill(self) -> None:
        """Gone without a word: its partitions have no leader."""
        if self._process is not None:
            self._process.kill()
            self._process.wait(timeout=30)
            self._process = None

    def close(self) -> None:
        """Stop it (SIGTERM, a controlled shutdown) and take node 2 out of the cluster."""
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=30)
            self._process = None
        subprocess.run(
            self._java(
                "org.apache.kafka.tools.ClusterTool", "unregister",
                "--bootstrap-server", "127.0.0.1:9092", "--id", str(self.NODE_ID),
            ),
            check=False, capture_output=True, timeout=120,
        )  # fmt: skip


_TOPIC, _GROUP, _TRANSACTIONAL_ID = 2, 3, 5
"""Kafka's ACL resource types."""
_LITERAL, _PREFIXED = 3, 4
_READ, ACL_WRITE, _DESCRIBE, _DESCRIBE_CONFIGS = 3, 4, 8, 10
_ALLOW = 3


def worker_acls(
    user: str, group: str, input_topic: str, outputs: Iterable[str], without: str = ""
) -> list[tuple[int, str, int, str, str, int, int]]:
    """The ACL bindings of docs/operating/kafka-security.md for one worker (what `kafka.sh
    grant` adds), less the grant `without` names (read-input, write-outputs, describe-configs,
    read-group, transactional-id)."""
    principal = f"User:{user}"
    input_ops, output_ops = [_DESCRIBE], [_DESCRIBE]
    if without != "read-input":
        input_ops.append(_READ)
    if without != "write-outputs":
        output_ops.append(ACL_WRITE)
    if without != "describe-configs":
        input_ops.append(_DESCRIBE_CONFIGS)
        output_ops.append(_DESCRIBE_CONFIGS)
    bindings = [(_TOPIC, input_topic, _LITERAL, op) for op in input_ops]
    bindings += [(_TOPIC, topic, _LITERAL, op) for topic in outputs for op in output_ops]
    if without != "read-group":
        bindings.append((_GROUP, group, _LITERAL, _READ))
    if without != "transactional-id":
        prefix = f"{group}-{input_topic}-"
        bindings += [(_TRANSACTIONAL_ID, prefix, _PREFIXED, op) for op in (ACL_WRITE, _DESCRIBE)]
    return [
        (kind, name, pattern, principal, "*", op, _ALLOW) for kind, name, pattern, op in bindings
    ]


def history_acls(
    user: str, group: str, by_patient: str, changelog: str, without: str = ""
) -> list[tuple[int, str, int, str, str, int, int]]:
    """What history on adds to a worker's ACLs (what `kafka.sh up` grants with
    grant_history), less the grant `without` names (read-changelog)."""
    ops = [_DESCRIBE, _READ, ACL_WRITE, _DESCRIBE_CONFIGS]
    bindings = [(_TOPIC, by_patient, _LITERAL, op) for op in ops]
    bindings += [
        (_TOPIC, changelog, _LITERAL, op)
        for op in ops
        if not (without == "read-changelog" and op == _READ)
    ]
    scrubbing = f"{group}.by-patient"
    bindings.append((_GROUP, scrubbing, _LITERAL, _READ))
    prefix = f"{scrubbing}-{by_patient}-"
    bindings += [(_TRANSACTIONAL_ID, prefix, _PREFIXED, op) for op in (ACL_WRITE, _DESCRIBE)]
    return [
        (kind, name, pattern, f"User:{user}", "*", op, _ALLOW)
        for kind, name, pattern, op in bindings
    ]


def review_acls(
    user: str, results: Iterable[str]
) -> list[tuple[int, str, int, str, str, int, int]]:
    """The review page's ACL bindings of docs/operating/kafka-security.md: Read and Describe on
    the result topics it shows, and nothing else (it reads in no group)."""
    return [
        (_TOPIC, topic, _LITERAL, f"User:{user}", "*", op, _ALLOW)
        for topic in results
        for op in (_READ, _DESCRIBE)
    ]


async def create_acls(
    bootstrap: str, bindings: list[tuple[int, str, int, str, str, int, int]]
) -> None:
    """CreateAcls through the admin client (one request per binding, on one connection), as
    the broker's super user: no JVM per call."""
    await _acl_requests(bootstrap, [CreateAclsRequest(*binding) for binding in bindings])


async def delete_acls(
    bootstrap: str, filters: list[tuple[int, str, int, str, str, int, int]]
) -> None:
    """DeleteAcls: remove the bindings matching each filter (the fields of a binding)."""
    await _acl_requests(bootstrap, [DeleteAclsRequest(*found) for found in filters])


async def _acl_requests(bootstrap: str, requests: list[Any]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        responses = await asyncio.gather(*(admin._send_request(request) for request in requests))
    finally:
        await admin.close()
    for response in responses:
        results = getattr(response, "creation_responses", None) or response.filter_responses
        errors = [(result[0], result[1]) for result in results if result[0]]
        if errors:
            raise RuntimeError(f"{type(response).__name__}: {errors}")
