"""Real-broker test harness: isolated topics, worker processes, exactly-once accounting."""

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

ROOT = Path(__file__).resolve().parents[1]
WORKER = [str(Path(sys.executable).with_name("claim-scrubber")), "worker"]


@dataclass(frozen=True)
class Topics:
    """One test's own input and output topics and consumer group."""

    prefix: str
    partitions: int = 6

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
    def outputs(self) -> tuple[str, str, str]:
        return (self.clean, self.review, self.dead_letter)

    @property
    def group(self) -> str:
        return f"{self.prefix}.scrubber"

    def env(self, bootstrap: str) -> dict[str, str]:
        return {
            "SCRUBBER_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "SCRUBBER_GROUP_ID": self.group,
            "SCRUBBER_TOPIC_INPUT": self.input,
            "SCRUBBER_TOPIC_CLEAN": self.clean,
            "SCRUBBER_TOPIC_REVIEW": self.review,
            "SCRUBBER_TOPIC_DEAD_LETTER": self.dead_letter,
        }


async def create_topics(bootstrap: str, name: str, partitions: int = 6) -> Topics:
    topics = Topics(f"test.{name}.{uuid.uuid4().hex[:8]}", partitions)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [
                NewTopic(t, num_partitions=partitions, replication_factor=1)
                for t in (topics.input, *topics.outputs)
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


@dataclass
class Output:
    topic: str
    key: bytes | None
    headers: dict[str, bytes]
    body: dict[str, Any]

    @property
    def source(self) -> tuple[int, int]:
        return (self.body["source"]["partition"], self.body["source"]["offset"])


@dataclass
class Tally:
    """What a read_committed consumer saw on the output topics."""

    outputs: list[Output] = field(default_factory=list)

    def by_topic(self) -> Counter[str]:
        return Counter(output.topic for output in self.outputs)

    def duplicates(self) -> int:
        counts = Counter(output.source for output in self.outputs)
        return sum(count - 1 for count in counts.values() if count > 1)

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


async def collect(
    bootstrap: str,
    topics: Topics,
    expected: int,
    *,
    timeout_s: float = 90.0,
    settle_s: float = 2.0,
) -> Tally:
    """Read every output topic with read_committed until `expected` arrived, then settle."""
    consumer = AIOKafkaConsumer(
        *topics.outputs,
        bootstrap_servers=bootstrap,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    await consumer.start()
    tally = Tally()
    deadline = time.monotonic() + timeout_s
    settle_until: float | None = None
    try:
        while time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500, max_records=5000)
            for records in batches.values():
                tally.outputs.extend(
                    Output(
                        topic=record.topic,
                        key=record.key,
                        headers=dict(record.headers),
                        body=orjson.loads(record.value),
                    )
                    for record in records
                )
            if len(tally.outputs) >= expected:
                settle_until = settle_until or time.monotonic() + settle_s
                if time.monotonic() >= settle_until:
                    break
    finally:
        await consumer.stop()
    return tally


class WorkerProcess:
    """`claim-scrubber worker` as a child process whose log lines are kept for inspection."""

    def __init__(self, env: dict[str, str], name: str) -> None:
        self.name = name
        self.lines: list[str] = []
        self.stderr_lines: list[str] = []
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("SCRUBBER_")}
        full_env.update(env)
        full_env.setdefault("SCRUBBER_WORKER_ID", name)
        self.process = subprocess.Popen(
            WORKER,
            env=full_env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
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
        raise AssertionError(f"{self.name}: no {name} within {timeout_s} s")

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
