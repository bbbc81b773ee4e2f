"""Claim history on the real broker (contract section 10): the worker re-keys the input by
patient, judges each claim against the patient's earlier ones, and writes every change to the
compacted changelog in the transaction of the results; a worker killed and started afresh on
an empty working directory, or a partition moving to another worker, carries on from the
changelog, exactly once.

The findings are judged against the brute-force model (tests/history_model.py), replayed in
the order the scrubbing stage read the records: the order of claims.by-patient.
"""

import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import TopicPartition

from claim_scrubber.scrubber.history import read_history_document
from tests.history_model import WOUNDS, HistoryEvent, HistoryModel
from tests.kafka_harness import (
    Output,
    OutputWatcher,
    Tally,
    Topics,
    WorkerProcess,
    committed_reader,
    create_topics,
    delete_topics,
    input_ids,
    produce,
)

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

HIST_RULES = {"HIST-001", "HIST-002"}
MEDICARE_LIMIT, MEDICARE_WEEKS, RETENTION_DAYS = 10, 12, 400
"""The shipped ruleset's Medicare profile and the default retention."""
WOUND = "L97.412"


@pytest.fixture
async def history_topics(
    kafka_bootstrap: str, request: pytest.FixtureRequest
) -> AsyncIterator[Topics]:
    created = await create_topics(
        kafka_bootstrap, request.node.name[:40].replace("[", "-"), history=True
    )
    try:
        yield created
    finally:
        await delete_topics(kafka_bootstrap, created)


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
    worker = WorkerProcess(topics.env(kafka_bootstrap), "history-worker", cwd=tmp_path)
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
