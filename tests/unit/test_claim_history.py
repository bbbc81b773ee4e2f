"""Claim history (contract section 10): the table of one partition, against a brute-force model.

The model keeps every claim event as it was applied and answers the HIST questions by
scanning everything; the table and the scrubber must give exactly its findings whatever the
order: resubmissions, voids, duplicate deliveries, late earlier dates, retention.
"""

import hashlib
import hmac
from datetime import date, timedelta
from typing import Any

import hypothesis
from hypothesis import given, settings
from hypothesis import strategies as st

from claim_scrubber.adapters.ruleset_file import load_ruleset
from claim_scrubber.models import PayerKind, Ruleset
from claim_scrubber.models.history import Application, PatientHistory
from claim_scrubber.scrubber import VOIDED, Accepted, Scrubber, read_claim_event
from claim_scrubber.scrubber.history import (
    HistoryTable,
    history_document,
    read_history_document,
)
from tests.claims import default_event, event_bytes, patched
from tests.history_model import WOUNDS, HistoryEvent, HistoryModel

SECRET = b"test-history-key"
RETENTION_DAYS = 30
LIMIT, WEEKS = 2, 4
FIRST_DAY = date(2026, 3, 1)
HIST_RULES = {"HIST-001", "HIST-002"}


def _ruleset() -> Ruleset:
    """Medicare with a small limit and window, so that short streams cross them."""
    shipped = load_ruleset()
    medicare = shipped.payers[PayerKind.MEDICARE].model_copy(
        update={"max_applications": LIMIT, "episode_weeks": WEEKS}
    )
    return shipped.model_copy(update={"payers": {**shipped.payers, PayerKind.MEDICARE: medicare}})


SCRUBBER = Scrubber(_ruleset(), max_message_bytes=1 << 20)


_events = st.builds(
    HistoryEvent,
    member=st.sampled_from(["M-1", "M-2"]),
    claim=st.sampled_from([f"C-{n}" for n in range(10)]),
    version=st.integers(1, 3),
    day=st.integers(0, 40),
    diagnosis=st.sampled_from(sorted(WOUNDS)),
    voided=st.sampled_from([False, False, False, True]),
    late_by=st.integers(0, 10),
)
_streams = st.lists(_events, min_size=8, max_size=40).flatmap(
    lambda events: st.lists(st.sampled_from(events), min_size=len(events), max_size=len(events) * 2)
)
"""Streams in which events repeat (a duplicate delivery is the same event again)."""


def _decide(table: HistoryTable, event: HistoryEvent) -> Any:
    return SCRUBBER.decide(
        event.payload(),
        result_source={"topic": "t", "partition": 0, "offset": 0},
        dead_letter_source={"topic": "t", "partition": 0, "offset": 0},
        decided_at="2026-12-06T00:00:00.000Z",
        history=table,
    )


@settings(max_examples=200)
@given(_streams)
def test_hist_findings_and_the_history_kept_equal_the_brute_force_models(
    stream: list[HistoryEvent],
) -> None:
    table = HistoryTable(SECRET, retention_days=RETENTION_DAYS)
    model = HistoryModel(limit=LIMIT, weeks=WEEKS, retention_days=RETENTION_DAYS)
    changelog: dict[str, bytes | None] = {}
    for event in stream:
        decision = _decide(table, event)
        if event.voided:
            assert decision.outcome == VOIDED
        else:
            found = model.findings(event)
            assert set(decision.rule_ids) & HIST_RULES == found, event
            for rule_id in found:
                hypothesis.event(rule_id)
        model.apply(event)
        if decision.history_change is not None:
            change = decision.history_change
            changelog[change.patient] = history_document(change.history)

    restored = HistoryTable(SECRET, retention_days=RETENTION_DAYS)
    for patient, value in changelog.items():  # what compaction keeps: the last value per key
        restored.restore(patient, read_history_document(value))
    for member in ("M-1", "M-2"):
        key = _patient(table, member)
        kept = {(a.claim_id, a.service_date, a.wound) for a in table.of(key).applications}
        assert kept == model.history_of(member)
        assert restored.of(key) == table.of(key), "the changelog restores the same history"
    counted = sum(len(table.of(_patient(table, m)).applications) for m in ("M-1", "M-2"))
    assert table.application_count == restored.application_count == counted


def _patient(table: HistoryTable, member: str) -> str:
    read = read_claim_event(
        HistoryEvent(member, "C-0", 1, 0, "L97.412", voided=False, late_by=0).payload(),
        max_bytes=1 << 20,
    )
    assert isinstance(read, Accepted)
    key = table.patient_of(read.event)
    assert key is not None
    return key


def _submission(claim: str, version: int = 1, day: int = 0, member: str = "M-1") -> HistoryEvent:
    return HistoryEvent(member, claim, version, day, "L97.412", voided=False, late_by=0)


def test_a_duplicate_delivery_changes_nothing_and_finds_no_duplicate_billing() -> None:
    table = HistoryTable(SECRET)
    first = _decide(table, _submission("C-1"))
    again = _decide(table, _submission("C-1"))

    assert first.history_change is not None
    assert again.history_change is None
    assert "HIST-002" not in again.rule_ids


def test_the_same_application_on_another_claim_is_duplicate_billing() -> None:
    table = HistoryTable(SECRET)
    _decide(table, _submission("C-1"))

    second = _decide(table, _submission("C-2"))

    assert "HIST-002" in second.rule_ids


def test_a_higher_version_replaces_the_claims_entries_and_an_older_one_changes_nothing() -> None:
    table = HistoryTable(SECRET)
    _decide(table, _submission("C-1", version=1, day=0))
    replaced = _decide(table, _submission("C-1", version=2, day=5))
    late_original = _decide(table, _submission("C-1", version=1, day=0))

    assert replaced.history_change is not None
    days = [a.service_date for a in replaced.history_change.history.applications]
    assert days == [FIRST_DAY + timedelta(days=5)]
    assert late_original.history_change is None


def test_a_void_removes_the_claims_applications_and_its_replay_does_not_bring_them_back() -> None:
    table = HistoryTable(SECRET)
    _decide(table, _submission("C-1"))
    void = _decide(table, HistoryEvent("M-1", "C-1", 1, 0, "L97.412", voided=True, late_by=0))
    replayed = _decide(table, _submission("C-1"))

    assert void.outcome == VOIDED
    assert void.document == b""
    assert void.history_change is not None
    assert void.history_change.history.applications == ()
    assert replayed.history_change is None
    assert "HIST-002" not in _decide(table, _submission("C-2")).rule_ids


def test_applications_older_than_the_retention_are_dropped_by_event_time() -> None:
    table = HistoryTable(SECRET, retention_days=30)
    _decide(table, _submission("C-1", day=0))
    _decide(table, _submission("C-2", day=31))

    key = _patient(table, "M-1")
    assert [a.claim_id for a in table.of(key).applications] == ["C-2"]
    assert table.expire(FIRST_DAY + timedelta(days=62)) != []
    assert table.of(key) == PatientHistory()


def test_a_claim_without_a_member_id_has_no_history_and_no_hist_rule_runs() -> None:
    table = HistoryTable(SECRET)
    payload = patched(default_event(), {"claim.patient.member_id": None})
    for _ in range(2):
        decision = SCRUBBER.decide(
            event_bytes(payload),
            result_source={},
            dead_letter_source={},
            decided_at="2026-12-06T00:00:00.000Z",
            history=table,
        )
        assert decision.history_change is None
        assert not set(decision.rule_ids) & HIST_RULES
    assert len(table) == 0


def test_the_patient_key_is_an_hmac_of_payer_kind_and_member_id_trimmed_and_upper_cased() -> None:
    table = HistoryTable(SECRET)
    lower = HistoryEvent(" m-1 ", "C-1", 1, 0, "L97.412", voided=False, late_by=0)
    read = read_claim_event(lower.payload(), max_bytes=1 << 20)
    assert isinstance(read, Accepted)

    key = table.patient_of(read.event)

    assert key == _patient(table, "M-1")
    assert key == hmac.new(SECRET, b"medicare|M-1", hashlib.sha256).hexdigest()
    assert key != _patient(HistoryTable(b"another key"), "M-1")


def test_the_changelog_value_round_trips_and_an_empty_history_is_a_tombstone() -> None:
    history = PatientHistory(
        (Application(FIRST_DAY, "L97.41", "C-1", 2, 2, "Q4390"),),
        {},
    )

    assert read_history_document(history_document(history)) == history
    assert history_document(PatientHistory()) is None
    assert read_history_document(None) == PatientHistory()
