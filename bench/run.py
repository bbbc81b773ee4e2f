"""`make bench`: the scrubber core, the worker end to end, a pass-through baseline, and intake's
conversion rate (837P and FHIR).

    python -m bench.run [--claims 100000] [--latency-seconds 20]

Needs a broker at SCRUBBER_KAFKA_BOOTSTRAP_SERVERS (make bench starts the local one). Every
phase uses fresh topics. Prints a table and writes bench/results.json, which is committed with
the change it measured (the docs' benchmark page shows it).
"""

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, Final

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bench.convert import bench_convert
from bench.history import history_memory, restore_rate
from bench.review import bench_review
from claim_scrubber.adapters.kafka.security import KafkaConnection, connection
from claim_scrubber.adapters.kafka.topic_sizes import OUTPUT_TOPIC_CONFIGS
from claim_scrubber.adapters.ruleset_file import load_ruleset
from claim_scrubber.adapters.settings import load_settings
from claim_scrubber.scrubber import Scrubber, timestamp_text

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = sorted((ROOT / "tests" / "golden" / "claims").glob("*.json"))
RESULTS = ROOT / "bench" / "results.json"
LOGS = ROOT / "build" / "bench"
PARTITIONS = 6
WORKER = [str(Path(sys.executable).with_name("claim-scrubber")), "worker"]
PASSTHROUGH = [sys.executable, "-m", "bench.passthrough"]
HISTORY_KEY = "bench-history-key-0123456789abcdef"


def _golden_claims() -> list[dict[str, Any]]:
    return [json.loads(path.read_text("utf-8")) for path in GOLDEN]


PATIENTS: Final = 20_000
"""Patients the end-to-end claims belong to (5 claims each in a run of 100,000)."""


def _claim_values(count: int, tag: str) -> list[bytes]:
    """`count` realistic claim events (the golden mix), each with its own ids, of PATIENTS
    patients (a golden claim that names a member)."""
    claims = _golden_claims()
    values = []
    for n in range(count):
        event = claims[n % len(claims)]
        event["event_id"] = f"{tag}-{n}"
        event["claim"]["claim_id"] = f"{tag}-{n}"
        if (event["claim"].get("patient") or {}).get("member_id"):
            event["claim"]["patient"]["member_id"] = f"M{n % PATIENTS:06d}"
        values.append(json.dumps(event, separators=(",", ":")).encode())
    return values


def bench_core(seconds: float) -> dict[str, float]:
    """Claims/s of parse + all rules + serialize, one process, on the golden mix."""
    scrubber = Scrubber(load_ruleset(), max_message_bytes=1 << 20)
    payloads = _claim_values(len(GOLDEN) * 50, "core")
    source = {"topic": "claims.submitted", "partition": 0, "offset": 0}
    dead_source = {**source, "timestamp_ms": 0, "key": None}

    def scrub_all() -> None:
        for payload in payloads:  # the clock is read per claim here, per batch in the worker
            scrubber.decide(
                payload,
                result_source=source,
                dead_letter_source=dead_source,
                decided_at=timestamp_text(datetime.now(UTC)),
            )

    scrub_all()  # warm-up
    done = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        scrub_all()
        done += len(payloads)
    elapsed = time.perf_counter() - started
    return {
        "core_claims_per_s": round(done / elapsed),
        "core_us_per_claim": round(elapsed / done * 1e6, 1),
        "claim_bytes_mean": round(statistics.mean(len(p) for p in payloads)),
    }


class Topics:
    def __init__(self, phase: str, *, history: bool = False) -> None:
        """`history`: claim history on, with its internal topics."""
        self.prefix = f"bench.{phase}.{uuid.uuid4().hex[:6]}"
        self.input = f"{self.prefix}.submitted"
        self.outputs = [
            f"{self.prefix}.{name}" for name in ("clean", "needs-review", "dead-letter")
        ]
        self.group = f"{self.prefix}.group"
        self.history = history
        self.by_patient = f"{self.prefix}.by-patient"
        self.changelog = f"{self.prefix}.history"

    @property
    def scrubbing_group(self) -> str:
        """The group that commits once a claim is scrubbed."""
        return f"{self.group}.by-patient" if self.history else self.group

    @property
    def internal(self) -> list[str]:
        return [self.by_patient, self.changelog] if self.history else []

    def env(self, kafka: KafkaConnection) -> dict[str, str]:
        clean, review, dead = self.outputs
        # The measured processes connect as the bench does (SCRUBBER_KAFKA_* security too).
        base = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("SCRUBBER_") or k.startswith("SCRUBBER_KAFKA_")
        }
        return (
            base
            | {
                "SCRUBBER_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
                "SCRUBBER_GROUP_ID": self.group,
                "SCRUBBER_TOPIC_INPUT": self.input,
                "SCRUBBER_TOPIC_CLEAN": clean,
                "SCRUBBER_TOPIC_REVIEW": review,
                "SCRUBBER_TOPIC_DEAD_LETTER": dead,
                "SCRUBBER_WORKER_ID": self.prefix,
            }
            | (
                {
                    "SCRUBBER_HISTORY": "on",
                    "SCRUBBER_HISTORY_KEY": HISTORY_KEY,
                    "SCRUBBER_TOPIC_BY_PATIENT": self.by_patient,
                    "SCRUBBER_TOPIC_HISTORY": self.changelog,
                }
                if self.history
                else {}
            )
        )

    async def create(self, kafka: KafkaConnection) -> None:
        admin = AIOKafkaAdminClient(**kafka.client_args())
        await admin.start()
        try:
            await admin.create_topics(
                [
                    NewTopic(self.input, PARTITIONS, 1),
                    *(
                        NewTopic(t, PARTITIONS, 1, topic_configs=OUTPUT_TOPIC_CONFIGS)
                        for t in self.outputs
                    ),
                    *(
                        NewTopic(
                            t,
                            PARTITIONS,
                            1,
                            topic_configs={"cleanup.policy": "compact"}
                            if t == self.changelog
                            else {},
                        )
                        for t in self.internal
                    ),
                ]
            )
        finally:
            await admin.close()
        await asyncio.sleep(1)  # leaders elected

    async def delete(self, kafka: KafkaConnection) -> None:
        """Drop the phase's topics: a run writes about 600 MB that nobody reads again."""
        admin = AIOKafkaAdminClient(**kafka.client_args())
        await admin.start()
        try:
            await admin.delete_topics([self.input, *self.outputs, *self.internal])
        finally:
            await admin.close()


async def _preload(kafka: KafkaConnection, topic: str, values: list[bytes]) -> None:
    producer = AIOKafkaProducer(
        **kafka.client_args(), linger_ms=20, max_batch_size=512 * 1024, acks="all"
    )
    await producer.start()
    try:
        for index, value in enumerate(values):
            await producer.send(topic, value, partition=index % PARTITIONS)
        await producer.flush()
    finally:
        await producer.stop()


async def _committed_total(admin: AIOKafkaAdminClient, group: str) -> int:
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    except Exception:  # noqa: BLE001 - the group does not exist yet
        return 0
    return sum(meta.offset for meta in offsets.values() if meta.offset > 0)


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _log_file(phase: str) -> BinaryIO:
    """Where a phase's process writes its log lines, kept for a look after the run. A file, not
    a pipe: a pipe read by this process would take CPU from the measured process, and stall
    its logging whenever the reader fell behind."""
    LOGS.mkdir(parents=True, exist_ok=True)
    return (LOGS / f"{phase}.log").open("wb")


async def bench_drain(
    kafka: KafkaConnection,
    command: list[str],
    phase: str,
    values: list[bytes],
    extra_env: dict[str, str] | None = None,
    *,
    history: bool = False,
    after: Callable[[Topics], Awaitable[dict[str, float]]] | None = None,
) -> dict[str, float]:
    """Preload `values`, start `command`, and time it from its first commit to its last (of
    the scrubbing group: with `history` on, the one reading the input re-keyed by patient).
    `after` measures more on the phase's topics once the process has stopped."""
    topics = Topics(phase, history=history)
    measured: dict[str, float] = {}
    await topics.create(kafka)
    await _preload(kafka, topics.input, values)
    env = topics.env(kafka) | (extra_env or {})
    with _log_file(phase) as log:
        process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    admin = AIOKafkaAdminClient(**kafka.client_args())
    await admin.start()
    rss_max = 0.0
    first_at = first_count = None
    try:
        deadline = time.monotonic() + 600
        while True:
            committed = await _committed_total(admin, topics.scrubbing_group)
            now = time.monotonic()
            rss_max = max(rss_max, _rss_mb(process.pid))
            if committed and first_at is None:
                first_at, first_count = now, committed
            if committed >= len(values):
                done_at = now
                break
            if now > deadline or process.poll() is not None:
                raise RuntimeError(f"{phase}: stalled at {committed}/{len(values)}")
            await asyncio.sleep(0.05)
    finally:
        await admin.close()
        process.terminate()
        process.wait(timeout=60)
        try:
            if after is not None:
                measured = await after(topics)
        finally:
            await topics.delete(kafka)
    assert first_at is not None
    assert first_count is not None
    rate = (len(values) - first_count) / max(done_at - first_at, 1e-9)
    return {"rate": rate, "rss_max_mb": rss_max, "drain_s": done_at - first_at} | measured


async def bench_latency(
    kafka: KafkaConnection, rate: float, seconds: float, warmup_seconds: float
) -> dict[str, float]:
    """One worker under a steady offered load; latency input timestamp -> output timestamp.

    The first `warmup_seconds` of the load are not measured: a broker started for the run
    answers slower for its first minutes (its JIT compiles the transaction paths), which a
    steady state does not show.
    """
    topics = Topics("latency")
    await topics.create(kafka)
    with _log_file("latency") as log:
        process = subprocess.Popen(
            WORKER, env=topics.env(kafka), cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
        )
    consumer = AIOKafkaConsumer(
        *topics.outputs,
        **kafka.client_args(),
        isolation_level="read_committed",
        auto_offset_reset="earliest",
        group_id=None,
    )
    await consumer.start()
    producer = AIOKafkaProducer(**kafka.client_args(), linger_ms=0)
    await producer.start()
    sent: dict[bytes, int] = {}
    seen: dict[bytes, tuple[int, float]] = {}

    async def read() -> None:
        # Matched by the claim-id header: parsing every result here would take CPU from the
        # worker on the same two cores.
        while True:
            batches = await consumer.getmany(timeout_ms=100)
            received = time.time() * 1000
            for records in batches.values():
                for record in records:
                    claim_id = dict(record.headers)["claim-id"]
                    seen[claim_id] = (record.timestamp, received)

    reader = asyncio.create_task(read())
    try:
        await asyncio.sleep(8)  # the worker joins its group before the load starts
        values = _claim_values(int(rate * (warmup_seconds + seconds)), "lat")
        measured_from = int(rate * warmup_seconds)
        started = time.monotonic()
        pending = []
        for index, value in enumerate(values):
            delay = started + index / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            pending.append((f"lat-{index}".encode(), await producer.send(topics.input, value)))
        for index, (claim_id, future) in enumerate(pending):
            metadata = await future
            if index >= measured_from:
                sent[claim_id] = metadata.timestamp
        deadline = time.monotonic() + 60
        while len(seen) < len(sent) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
    finally:
        reader.cancel()
        await producer.stop()
        await consumer.stop()
        process.terminate()
        process.wait(timeout=60)
        await topics.delete(kafka)
    to_output = sorted(seen[key][0] - sent[key] for key in sent if key in seen)
    visible = sorted(seen[key][1] - sent[key] for key in sent if key in seen)

    def pct(values: Sequence[float], q: float) -> float:
        return round(values[min(len(values) - 1, int(q * len(values)))], 1)

    return {
        "offered_per_s": round(rate),
        "latency_warmup_s": warmup_seconds,
        "latency_samples": len(to_output),
        "p50_ms": pct(to_output, 0.50),
        "p99_ms": pct(to_output, 0.99),
        "p50_visible_ms": pct(visible, 0.50),
        "p99_visible_ms": pct(visible, 0.99),
    }


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _wait_for_quiet_broker(limit_s: float = 120.0) -> None:
    """A broker that just started recovers its logs, and one that just deleted a phase's topics
    cleans up, on the same 2 cores: let it finish before the next phase."""
    pid_file = ROOT / ".kafka" / "kafka.pid"
    if not pid_file.exists():
        return
    pid = int(pid_file.read_text().strip())
    os.sync()  # what the previous phase wrote goes to disk now, not during the next one
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        try:
            before = _cpu_seconds(pid)
            await asyncio.sleep(1)
            busy = _cpu_seconds(pid) - before
        except (OSError, IndexError, ValueError):
            return
        if busy < 0.15:
            return
        print(f"waiting for the broker to settle ({busy:.0%} of a core) ...", flush=True)


def _git_rev() -> str:
    result = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    return result.stdout.strip() or "unknown"


def _kafka_version() -> str:
    jars = sorted((ROOT / ".kafka" / "libs").glob("kafka-clients-*.jar"))
    return jars[0].stem.removeprefix("kafka-clients-") if jars else "unknown"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--claims", type=int, default=100_000)
    parser.add_argument("--core-seconds", type=float, default=10.0)
    parser.add_argument("--latency-seconds", type=float, default=20.0)
    parser.add_argument("--latency-warmup-seconds", type=float, default=30.0)
    arguments = parser.parse_args()
    kafka = connection(load_settings())

    results: dict[str, Any] = {
        "measured_at": datetime.now(UTC).date().isoformat(),
        "cpu_count": os.cpu_count(),
        "kafka_version": _kafka_version(),
        "git_rev": _git_rev(),
        "python": platform.python_version(),
        "claims": arguments.claims,
    }
    await _wait_for_quiet_broker()
    values = _claim_values(arguments.claims, "e2e")
    print(f"baseline: pass-through draining {arguments.claims} records ...", flush=True)
    baseline = await bench_drain(kafka, PASSTHROUGH, "baseline", values)
    await _wait_for_quiet_broker()
    print(f"worker: claim-scrubber worker draining {arguments.claims} claims ...", flush=True)
    worker = await bench_drain(kafka, WORKER, "worker", values)
    await _wait_for_quiet_broker()
    print(f"traced: the worker with tracing on, draining {arguments.claims} claims ...", flush=True)
    # Spans go to the phase's log through the console exporter: the cost of making and
    # exporting one span per batch and per transaction, with no collector to wait for.
    traced = await bench_drain(
        kafka, WORKER, "traced", values, extra_env={"OTEL_TRACES_EXPORTER": "console"}
    )
    await _wait_for_quiet_broker()
    print(f"history: the worker with claim history on, draining {arguments.claims} ...", flush=True)
    history = await bench_drain(
        kafka,
        WORKER,
        "history",
        values,
        history=True,
        after=lambda topics: restore_rate(kafka, topics.changelog, PARTITIONS, HISTORY_KEY),
    )
    results |= {
        "e2e_history_claims_per_s": round(history["rate"]),
        "history_ratio_to_off": round(history["rate"] / worker["rate"], 3),
        "history_worker_rss_max_mb": round(history["rss_max_mb"], 1),
        "history_restore_patients_per_s": round(history["patients_per_s"]),
        "history_restored_patients": round(history["patients"]),
        "history_mb_per_100k_patients": history_memory(100_000),
    }
    results |= {
        "baseline_msgs_per_s": round(baseline["rate"]),
        "e2e_claims_per_s": round(worker["rate"]),
        "e2e_traced_claims_per_s": round(traced["rate"]),
        "ratio": round(worker["rate"] / baseline["rate"], 3),
        "worker_rss_max_mb": round(worker["rss_max_mb"], 1),
        "baseline_rss_max_mb": round(baseline["rss_max_mb"], 1),
    }
    await _wait_for_quiet_broker()
    print(f"latency: {arguments.latency_seconds:g} s at half the worker's rate ...", flush=True)
    results |= await bench_latency(
        kafka,
        worker["rate"] / 2,
        arguments.latency_seconds,
        arguments.latency_warmup_seconds,
    )
    await _wait_for_quiet_broker()
    print(f"core: {arguments.core_seconds:g} s of the scrubber core ...", flush=True)
    results |= bench_core(arguments.core_seconds)
    print(f"convert: {arguments.core_seconds:g} s of intake's 837P reader (and FHIR) ...")
    results |= bench_convert(arguments.core_seconds)
    print("review: the worklist over 50,000 open items ...", flush=True)
    results |= bench_review()

    RESULTS.write_text(json.dumps(results, indent=2) + "\n", "utf-8")
    width = max(len(key) for key in results)
    print()
    for key, value in results.items():
        print(f"  {key:<{width}}  {value}")
    print(f"\nwritten to {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    asyncio.run(main())
