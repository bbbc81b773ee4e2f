"""Claim history on the real broker (contract section 10): the worker re-keys the input by
patient, judges each claim against the patient's earlier ones, and writes every change to the
compacted changelog in the transaction of the results; a worker killed and started afresh on
an empty working directory, or a partition moving to another worker, carries on from the
changelog, exactly once.

The findings are judged against the brute-force model (tests/history_model.py), replayed in
the order the scrubbing stage read the records: the order of claims.by-patient.
"""

import asyncio
import signal
import time
from collections import Counter
from collections.abc import Sequence
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from claim_scrubber.scrubber.history import read_history_document
from tests.history_model import WOUNDS, HistoryEvent, HistoryModel
from tests.kafka_harness import (
    Output,
    OutputWatcher,
    Tally,
    Topics,
    WorkerProcess,
    committed_reader,
    free_port,
    http_get,
    input_ids,
    produce,
    produce_steadily,
)

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

HIST_RULES = {"HIST-001", "HIST-002"}
MEDICARE_LIMIT, MEDICARE_WEEKS, RETENTION_DAYS = 10, 12, 400
"""The shipped ruleset's Medicare profile and the default retention."""
WOUND = "L97.412"


def _weekly(member: str, week: int, *, claim: str | None = None, **change: Any) -> HistoryEvent:
    """The application of `member` in `week`, on its own claim unless `claim` names one."""
    fields: dict[str, Any] = {
        "member": member,
        "claim": claim or f"{member}-W{week}",
        "version": 1,
        "day": 7 * week,
        "diagnosis": WOUND,
        "voided": False,
        "late_by": 0,
    }
    return HistoryEvent(**(fields | change))


def _record(event: HistoryEvent) -> tuple[bytes, bytes]:
    """The input record of an event, keyed by claim id as the billing platform keys it."""
    return event.claim.encode(), event.payload()


def _rule_ids(output: Output) -> set[str]:
    return {finding["rule_id"] for finding in output.body.get("findings", [])}


async def _read_committed(
    bootstrap: str, topic: str, partitions: int
) -> list[tuple[int, int, bytes | None, bytes | None]]:
    """(partition, offset, key, value) of every committed record of `topic`, in order."""
    consumer = committed_reader(bootstrap)
    await consumer.start()
    found: list[tuple[int, int, bytes | None, bytes | None]] = []
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
        ends = await consumer.end_offsets(list(consumer.assignment()))
        deadline = time.monotonic() + 60
        for tp, end in ends.items():
            while await consumer.position(tp) < end:
                assert time.monotonic() < deadline, f"{tp} was not read to its end in time"
                batches = await consumer.getmany(tp, timeout_ms=500)
                found += [(tp.partition, r.offset, r.key, r.value) for r in batches.get(tp, [])]
    finally:
        await consumer.stop()
    return found


class _Replay:
    """The model replayed in the order of claims.by-patient: the HIST findings each
    (partition, offset) should have, and the history each patient should end with."""

    def __init__(self, events: Sequence[HistoryEvent]) -> None:
        self.by_id = {event.event_id: event for event in events}
        self.model = HistoryModel(
            limit=MEDICARE_LIMIT, weeks=MEDICARE_WEEKS, retention_days=RETENTION_DAYS
        )
        self.expected: dict[tuple[int, int], set[str]] = {}
        self.keys: dict[str, str] = {}
        """Patient key -> member, as the re-keying stage keyed each record."""

    def run(self, by_patient: list[tuple[int, int, bytes | None, bytes | None]]) -> None:
        for partition, offset, key, value in sorted(by_patient):
            assert value is not None
            event = self.by_id[orjson.loads(value)["event_id"]]
            assert key is not None
            self.keys[key.decode()] = event.member
            if not event.voided:
                self.expected[(partition, offset)] = self.model.findings(event)
            self.model.apply(event)

    def history(self) -> dict[str, set[tuple[str, date, str]]]:
        histories = {member: self.model.history_of(member) for member in self.keys.values()}
        return {member: kept for member, kept in histories.items() if kept}


def _changelog_state(
    changelog: list[tuple[int, int, bytes | None, bytes | None]], keys: dict[str, str]
) -> dict[str, set[tuple[str, date, str]]]:
    """What compaction keeps (the last value per key), read back as history, by member."""
    last: dict[str, bytes | None] = {}
    for _, _, key, value in sorted(changelog):
        assert key is not None
        last[key.decode()] = value
    state = {}
    for patient, value in last.items():
        history = read_history_document(value)
        kept = {(a.claim_id, a.service_date, a.wound) for a in history.applications}
        if kept:
            state[keys[patient]] = kept
    return state


async def _judge(
    bootstrap: str, topics: Topics, tally: Tally, events: Sequence[HistoryEvent]
) -> _Replay:
    """Every submission answered exactly once (voids: never), with the model's HIST
    findings at its place in claims.by-patient, and the changelog holding the model's
    history."""
    inputs = await input_ids(bootstrap, topics)
    submissions = Counter({i: n for i, n in inputs.items() if not i.endswith("-void")})
    assert tally.by_input_id(submissions) == (0, 0), "(duplicated, lost)"
    assert tally.by_topic()[topics.dead_letter] == 0

    by_patient = await _read_committed(bootstrap, topics.by_patient, topics.partitions)
    assert len(by_patient) == sum(inputs.values()), "every input re-keyed exactly once"
    replay = _Replay(events)
    replay.run(by_patient)
    found = {output.source: _rule_ids(output) & HIST_RULES for output in tally.outputs}
    assert found == replay.expected
    changelog = await _read_committed(bootstrap, topics.changelog, topics.partitions)
    assert _changelog_state(changelog, replay.keys) == replay.history()
    return replay


async def test_the_eleventh_application_and_a_duplicate_claim_are_found_in_history(
    kafka_bootstrap: str, history_topics: Topics, tmp_path: Path
) -> None:
    topics = history_topics
    events = [_weekly("M-1", week) for week in range(11)]
    events.append(_weekly("M-1", 3, claim="M-1-DUP"))  # week 3 billed again on another claim
    events.append(_weekly("M-1", 1, voided=True))  # week 1 voided: it no longer counts
    events.append(_weekly("M-1", 10, version=2))  # week 10 again: now application 10 of 10
    events.append(_weekly("M-1", 11))  # application 11 in the 12 weeks ending week 11
    events.append(_weekly("M-2", 0))  # another patient: nothing of M-1's counts for M-2
    port = free_port()
    env = topics.env(kafka_bootstrap) | {"SCRUBBER_HTTP_PORT": str(port)}
    worker = WorkerProcess(env, "history-worker", cwd=tmp_path)
    try:
        await worker.wait_for_event("worker.started")
        async with OutputWatcher(kafka_bootstrap, topics) as watcher:
            # keyed by member, so one input partition keeps them in the order written here
            await produce(
                kafka_bootstrap,
                topics.input,
                [(event.member.encode(), event.payload()) for event in events],
            )
            tally = await watcher.wait_for(len(events) - 1)
        replay = await _judge(kafka_bootstrap, topics, tally, events)
        status, metrics = http_get(port, "/metrics")
    finally:
        worker.kill()

    by_event = {output.body["event_id"]: output for output in tally.outputs}
    assert "HIST-001" in _rule_ids(by_event["M-1-W10-v1-sub"])  # 11 weekly dates in 12 weeks
    duplicate = by_event["M-1-DUP-v1-sub"]
    assert "HIST-002" in _rule_ids(duplicate)
    message = next(f["message"] for f in duplicate.body["findings"] if f["rule_id"] == "HIST-002")
    assert "M-1-W3" in message, message
    assert "HIST-001" not in _rule_ids(by_event["M-1-W10-v2-sub"]), "the void took week 1 out"
    assert "HIST-001" in _rule_ids(by_event["M-1-W11-v1-sub"])
    assert not _rule_ids(by_event["M-2-W0-v1-sub"]) & HIST_RULES
    assert replay.history()["M-1"] == {
        (f"M-1-W{w}", date(2026, 3, 1) + timedelta(days=7 * w), WOUNDS[WOUND])
        for w in [0, *range(2, 12)]
    } | {("M-1-DUP", date(2026, 3, 1) + timedelta(days=21), WOUNDS[WOUND])}
    assert worker.events("history.restored"), "each partition's history is restored first"
    assert status == 200
    applications = sum(len(kept) for kept in replay.history().values())
    for line in (
        "claim_scrubber_history_patients 2.0",
        f"claim_scrubber_history_applications {float(applications)}",
        f"claim_scrubber_history_restore_seconds_count {float(topics.partitions)}",
    ):
        assert line in metrics.splitlines(), line
    (size,) = [m for m in metrics.splitlines() if m.startswith("claim_scrubber_history_bytes ")]
    assert float(size.split()[1]) > 0


def _stream(patients: int, weeks: int) -> list[HistoryEvent]:
    """Weekly applications of every patient, week by week; every fifth patient's week 3 is
    billed again on another claim, every seventh's week 5 resubmitted a day later (version
    2), every eleventh's week 2 voided."""
    events = []
    for week in range(weeks):
        for patient in range(patients):
            member = f"P{patient:03d}"
            events.append(_weekly(member, week))
            if patient % 5 == 0 and week == 3:
                events.append(_weekly(member, 3, claim=f"{member}-DUP"))
            if patient % 7 == 0 and week == 6:
                events.append(_weekly(member, 5, version=2, day=7 * 5 + 1))
            if patient % 11 == 0 and week == 8:
                events.append(_weekly(member, 2, voided=True))
    return events


def _delivered_twice(events: Sequence[HistoryEvent], lag: int) -> list[HistoryEvent]:
    """Every event twice: again `lag` events later (the tail's copies at the end)."""
    delivered = []
    for index, event in enumerate(events):
        delivered.append(event)
        if index >= lag:
            delivered.append(events[index - lag])
    delivered.extend(events[len(events) - lag :])
    return delivered


async def test_with_history_on_a_broken_claim_is_dead_lettered_as_without_it(
    kafka_bootstrap: str, history_topics: Topics, tmp_path: Path
) -> None:
    """The re-keying stage answers a record that is not a claim event itself: the dead letter
    keeps the input's key and names its claims.submitted coordinates, never a patient key."""
    topics = history_topics
    broken = orjson.loads(_weekly("M-1", 0).payload())
    broken["claim"]["lines"][0]["units"] = "twenty"
    worker = WorkerProcess(topics.env(kafka_bootstrap), "history-worker", cwd=tmp_path)
    try:
        await worker.wait_for_event("worker.started")
        async with OutputWatcher(kafka_bootstrap, topics) as watcher:
            await produce(kafka_bootstrap, topics.input, [(b"CLM-BROKEN", orjson.dumps(broken))])
            tally = await watcher.wait_for(1)
    finally:
        worker.kill()

    [letter] = tally.outputs
    assert (letter.topic, letter.key) == (topics.dead_letter, b"CLM-BROKEN")
    assert letter.body["error"]["kind"] == "schema_violation"
    assert letter.body["source"]["topic"] == topics.input
    assert letter.body["source"]["key"] == "CLM-BROKEN"


async def test_history_is_exactly_once_while_workers_are_killed_and_start_on_empty_machines(
    kafka_bootstrap: str, history_topics: Topics, tmp_path: Path
) -> None:
    topics = history_topics
    events = _stream(patients=300, weeks=14)
    delivered = _delivered_twice(events, lag=97)
    env = topics.env(kafka_bootstrap)
    machines = iter(range(100))

    def fresh_worker(name: str) -> WorkerProcess:
        workdir = tmp_path / f"machine-{next(machines)}"  # an empty working directory
        workdir.mkdir()
        return WorkerProcess(env, name, cwd=workdir)

    workers = [fresh_worker("a"), fresh_worker("b")]
    try:
        for worker in workers:
            await worker.wait_for_event("worker.started")
        async with OutputWatcher(kafka_bootstrap, topics) as watcher:
            sending = asyncio.create_task(
                produce_steadily(
                    kafka_bootstrap,
                    topics.input,
                    [event.payload() for event in delivered],
                    duration_s=24,
                    keys=[event.claim.encode() for event in delivered],
                )
            )
            for victim, after_s in ((0, 6), (1, 5)):  # each killed mid-stream, then replaced
                await asyncio.sleep(after_s)
                workers[victim].process.send_signal(signal.SIGKILL)
                await asyncio.sleep(2)
                workers.append(fresh_worker(f"{workers[victim].name}-replaced"))
            await sending
            submissions = sum(1 for event in delivered if not event.voided)
            tally = await watcher.wait_for(submissions, timeout_s=240)
        replay = await _judge(kafka_bootstrap, topics, tally, events)
        found = Counter(rule for output in tally.outputs for rule in _rule_ids(output))
        assert found["HIST-001"], found
        assert found["HIST-002"], found
    finally:
        for worker in workers:
            worker.kill()

    restored = fresh_worker("restores-everything")
    try:
        await restored.wait_for_event("worker.started")
        deadline = time.monotonic() + 60
        while len(restored.events("history.restored")) < topics.partitions:
            assert time.monotonic() < deadline, "not every partition was restored in time"
            await asyncio.sleep(0.2)
    finally:
        restored.kill()
    lines = restored.events("history.restored")
    assert sum(line["applications"] for line in lines) == sum(
        len(kept) for kept in replay.history().values()
    )


async def test_a_partition_that_moves_to_another_worker_takes_its_history_along(
    kafka_bootstrap: str, history_topics: Topics, tmp_path: Path
) -> None:
    topics = history_topics
    members = [f"R{n:02d}" for n in range(30)]
    earlier = [_weekly(member, week) for week in range(11) for member in members]
    later = [_weekly(member, 11) for member in members]
    env = topics.env(kafka_bootstrap)
    first = WorkerProcess(env, "first", cwd=tmp_path)
    second: WorkerProcess | None = None
    try:
        await first.wait_for_event("worker.started")
        async with OutputWatcher(kafka_bootstrap, topics) as watcher:
            await produce(kafka_bootstrap, topics.input, [_record(e) for e in earlier])
            await watcher.wait_for(len(earlier))
            second = WorkerProcess(env, "second", cwd=tmp_path)
            await second.wait_for_event("history.restored")  # it took partitions over
            await produce(kafka_bootstrap, topics.input, [_record(e) for e in later])
            tally = await watcher.wait_for(len(earlier) + len(later))
        await _judge(kafka_bootstrap, topics, tally, [*earlier, *later])
    finally:
        first.kill()
        if second is not None:
            second.kill()

    by_event = {output.body["event_id"]: output for output in tally.outputs}
    for event in later:  # application 12 in 12 weeks, whoever scrubbed it
        assert "HIST-001" in _rule_ids(by_event[event.event_id]), event.member
    scrubbed_by_second = {line["event_id"] for line in second.events("claim.scrubbed")}
    assert scrubbed_by_second, "the new owner scrubbed the claims of the partitions it took"
    assert scrubbed_by_second <= {event.event_id for event in later}


@pytest.mark.parametrize(
    ("configs", "extra_partitions", "expected"),
    [
        ({"cleanup.policy": "delete"}, 0, "cleanup.policy=delete; the history changelog must"),
        ({"cleanup.policy": "compact,delete"}, 0, "must be compacted and never deleted"),
        ({"cleanup.policy": "compact"}, 1, "needs exactly as many partitions"),
    ],
)
async def test_a_changelog_that_cannot_hold_history_stops_the_worker_with_one_line(
    kafka_bootstrap: str,
    history_topics: Topics,
    tmp_path: Path,
    configs: dict[str, str],
    extra_partitions: int,
    expected: str,
) -> None:
    topics = history_topics
    wrong = f"{topics.prefix}.history-wrong"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(wrong, topics.partitions + extra_partitions, 1, topic_configs=configs)]
        )
        worker = WorkerProcess(
            topics.env(kafka_bootstrap) | {"SCRUBBER_TOPIC_HISTORY": wrong}, "wrong", cwd=tmp_path
        )
        try:
            assert await worker.wait() == 1
        finally:
            worker.kill()
    finally:
        await admin.delete_topics([wrong])
        await admin.close()
    (line,) = [line for line in worker.stderr_lines if line.strip()]
    assert expected in line, line
