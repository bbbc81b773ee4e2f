"""Shared fixtures. Real-Kafka tests use SCRUBBER_KAFKA_BOOTSTRAP_SERVERS (set by `make test`),
else a broker started with testcontainers where a Docker engine answers; otherwise they fail,
never skip."""

import json
import os
import socket
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, Protocol

import pytest
from hypothesis import settings

from tests.kafka_harness import Topics, WorkerProcess, create_topics, delete_topics

# No example has a deadline: speed is the benchmark's to measure, and a busy machine made a slow
# example fail (DeadlineExceeded) where nothing was wrong. CI explores the same examples on every
# run, so a landing is not decided by chance; local runs keep drawing new ones (which is how an
# occurred_at before year 1 in UTC was found).
settings.register_profile("local", deadline=None)
settings.register_profile("ci", deadline=None, derandomize=True)
settings.load_profile("ci" if os.environ.get("CI") else "local")


def _docker_answers() -> bool:
    try:
        import docker  # type: ignore[import-untyped]  # noqa: PLC0415 - only with testcontainers

        docker.from_env().ping()
    except Exception:  # noqa: BLE001 - any failure means no usable engine
        return False
    return True


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    configured = os.environ.get("SCRUBBER_KAFKA_BOOTSTRAP_SERVERS")
    if configured:
        yield configured
        return
    if _docker_answers():
        from testcontainers.kafka import KafkaContainer  # noqa: PLC0415

        with KafkaContainer("apache/kafka:4.1.1").with_kraft() as container:
            yield container.get_bootstrap_server()
        return
    pytest.fail(
        "no Kafka broker: run `make test` (starts the local broker), set "
        "SCRUBBER_KAFKA_BOOTSTRAP_SERVERS, or start Docker; real-Kafka tests never skip"
    )


@pytest.fixture(autouse=True)
def _broker_accepts_connections(request: pytest.FixtureRequest) -> None:
    """A real-Kafka test starts on a broker that accepts connections: one that an earlier test
    stopped and started again gets a minute to come back; past that, the test fails saying so
    (rather than with the first client's "Unable to bootstrap")."""
    if "kafka_bootstrap" not in request.fixturenames:
        return  # no broker, or one `make run` starts itself (the README's try-it)
    bootstrap: str = request.getfixturevalue("kafka_bootstrap")
    host, _, port = bootstrap.split(",", maxsplit=1)[0].strip().rpartition(":")
    deadline = time.monotonic() + 60
    while True:
        try:
            with socket.create_connection((host, int(port)), timeout=5):
                return
        except OSError as error:
            if time.monotonic() > deadline:
                pytest.fail(f"the broker at {bootstrap} has refused connections for 60 s: {error}")
            time.sleep(0.5)


@pytest.fixture
async def topics(kafka_bootstrap: str, request: pytest.FixtureRequest) -> AsyncIterator[Topics]:
    """Fresh topics for the test, deleted after it (its workers are stopped by then)."""
    created = await create_topics(kafka_bootstrap, request.node.name[:40].replace("[", "-"))
    yield created
    await delete_topics(kafka_bootstrap, created)


@pytest.fixture
async def history_topics(
    kafka_bootstrap: str, request: pytest.FixtureRequest
) -> AsyncIterator[Topics]:
    """A test's own topics with claim history's internal ones, deleted after the test."""
    created = await create_topics(
        kafka_bootstrap, request.node.name[:40].replace("[", "-"), history=True
    )
    try:
        yield created
    finally:
        await delete_topics(kafka_bootstrap, created)


@pytest.fixture
def workers() -> Iterator[list[WorkerProcess]]:
    """Every worker a test starts; all are killed when the test ends, pass or fail."""
    started: list[WorkerProcess] = []
    yield started
    for worker in started:
        worker.kill()


class WorkerStarter(Protocol):
    def __call__(self, name: str = "w1", **extra_env: str) -> WorkerProcess: ...


def _starter(
    kafka_bootstrap: str, topics: Topics, workers: list[WorkerProcess], command: str
) -> WorkerStarter:
    def start(name: str = "w1", **extra_env: str) -> WorkerProcess:
        env = topics.env(kafka_bootstrap) | {
            "SCRUBBER_SESSION_TIMEOUT_MS": "6000",
            "SCRUBBER_BATCH_TIMEOUT_MS": "50",
        }
        env.update(extra_env)
        worker = WorkerProcess(env, name, command)
        workers.append(worker)
        return worker

    return start


@pytest.fixture
def start_worker(
    kafka_bootstrap: str, topics: Topics, workers: list[WorkerProcess]
) -> WorkerStarter:
    return _starter(kafka_bootstrap, topics, workers, "worker")


@pytest.fixture
def start_intake(
    kafka_bootstrap: str, topics: Topics, workers: list[WorkerProcess]
) -> WorkerStarter:
    """`claim-scrubber intake` processes on the test's topics (killed when the test ends)."""
    return _starter(kafka_bootstrap, topics, workers, "intake")


REPORT_ROWS = Path(__file__).resolve().parents[1] / "build" / "delivery-report.jsonl"
"""One JSON line per fault-scenario row, written as each scenario ends, by whichever process
ran it (the tests may run in several: pytest-xdist)."""
REPORT_FILE = REPORT_ROWS.with_suffix(".md")
REPORT_COLUMNS = (
    "scenario",
    "inputs",
    "clean",
    "needs_review",
    "dead_letter",
    "duplicates",
    "lost",
    "recovery_s",
    "drain_s",
)


class ReportRows:
    """Where a scenario adds its row of the table printed at the end of the run."""

    def append(self, row: dict[str, object]) -> None:
        REPORT_ROWS.parent.mkdir(exist_ok=True)
        with REPORT_ROWS.open("a", encoding="utf-8") as rows:
            rows.write(json.dumps(row) + "\n")


@pytest.fixture
def delivery_report() -> ReportRows:
    return ReportRows()


def _is_xdist_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def pytest_sessionstart(session: pytest.Session) -> None:
    """A run starts a new table, unless DELIVERY_REPORT=append continues the previous run's
    (`make test` runs the tests that stop a broker in a run of their own, after the others)."""
    if not _is_xdist_worker(session.config) and os.environ.get("DELIVERY_REPORT") != "append":
        REPORT_ROWS.unlink(missing_ok=True)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    if _is_xdist_worker(config) or not REPORT_ROWS.exists():
        return
    rows = {}
    for line in REPORT_ROWS.read_text("utf-8").splitlines():
        row = json.loads(line)
        rows[row["scenario"]] = row
    lines = [
        "| " + " | ".join(REPORT_COLUMNS) + " |",
        "|" + "---|" * len(REPORT_COLUMNS),
        *(
            "| " + " | ".join(str(row.get(c, "")) for c in REPORT_COLUMNS) + " |"
            for row in rows.values()
        ),
    ]
    REPORT_FILE.write_text("\n".join(lines) + "\n", "utf-8")
    terminalreporter.section("delivery under faults (read_committed)")
    for line in lines:
        terminalreporter.write_line(line)
