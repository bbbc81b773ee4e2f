"""Claim history of one partition: what each patient had billed, applied exactly once.

Pure: no clock (a change is dated by the event's `occurred_at`), no Kafka. The adapter
writes each change to the history changelog in the transaction of the records it belongs to,
and replays the changelog into a fresh table on assignment (docs/operating/history.md).
"""

import hashlib
import hmac
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, Final

import orjson

from claim_scrubber.models import ClaimEvent
from claim_scrubber.models.history import Application, ClaimMark, PatientHistory
from claim_scrubber.rules import ClaimFacts

__all__ = [
    "DEFAULT_RETENTION_DAYS",
    "ClaimSeen",
    "HistoryChange",
    "HistoryTable",
    "history_document",
    "patient_key",
    "read_history_document",
]

DEFAULT_RETENTION_DAYS: Final = 400


def _patient_key(secret: bytes, payer_kind: str, member_id: str | None) -> str | None:
    if member_id is None or not member_id.strip():
        return None
    text = f"{payer_kind}|{member_id.strip().upper()}"
    return hmac.digest(secret, text.encode("utf-8"), hashlib.sha256).hex()


def patient_key(secret: bytes, event: ClaimEvent) -> str | None:
    """Contract section 10: lowercase hex HMAC-SHA256 over `payer.kind|member_id` (trimmed,
    upper-cased); None when the claim names no member (it has no history)."""
    member = event.claim.patient.member_id if event.claim.patient else None
    return _patient_key(secret, event.claim.payer.kind.value, member)


@dataclass(frozen=True, slots=True)
class ClaimSeen:
    """What history takes of one claim event: its id, version, applications and latest
    service date."""

    claim_id: str
    version: int
    applications: tuple[Application, ...]
    last_service_date: date


@dataclass(frozen=True, slots=True)
class HistoryChange:
    """A patient's history after a change: the changelog record to write (an empty history
    is a tombstone)."""

    patient: str
    history: PatientHistory


class HistoryTable:
    """Patient key -> PatientHistory for the claims of one partition."""

    def __init__(self, secret: bytes, retention_days: int = DEFAULT_RETENTION_DAYS) -> None:
        self._secret = secret
        self._retention = timedelta(days=retention_days)
        self._patients: dict[str, PatientHistory] = {}
        self._applications = 0
        self._last: tuple[ClaimEvent, str | None] | None = None
        """The last event keyed and its key: a claim is keyed once, judged, then taken."""

    def patient_of(self, event: ClaimEvent) -> str | None:
        """The claim's patient key (None: no member id, so no history)."""
        last = self._last
        if last is not None and last[0] is event:
            return last[1]
        patient = patient_key(self._secret, event)
        self._last = (event, patient)
        return patient

    def seen_by(self, event: ClaimEvent) -> tuple[Application, ...] | None:
        """What a claim is judged against: the applications of its patient's other claims
        (None: the claim names no member, and the HIST rules do not run on it)."""
        patient = self.patient_of(event)
        if patient is None:
            return None
        return self.of(patient).of_other_claims(event.claim.claim_id)

    def took(self, facts: ClaimFacts) -> HistoryChange | None:
        """Take a judged claim (or a void) into its patient's history; the change, if any."""
        event = facts.event
        patient = self.patient_of(event)
        if patient is None:
            return None
        claim = ClaimSeen(
            event.claim.claim_id,
            event.claim.claim_version,
            facts.applications(),
            max(line.service_date for line in facts.lines),
        )
        on = event.occurred_at.date()
        if event.event_type == "claim.voided":
            return self.voided(patient, claim, on)
        return self.submitted(patient, claim, on)

    def __len__(self) -> int:
        return len(self._patients)

    @property
    def application_count(self) -> int:
        return self._applications

    def of(self, patient: str) -> PatientHistory:
        return self._patients.get(patient, _EMPTY)

    def restore(self, patient: str, history: PatientHistory) -> None:
        """Take a patient's history as the changelog holds it (empty: forget the patient)."""
        before = self._patients.get(patient)
        if history.is_empty:
            self._patients.pop(patient, None)
        else:
            self._patients[patient] = history
            self._applications += len(history.applications)
        if before is not None:
            self._applications -= len(before.applications)

    def submitted(self, patient: str, claim: ClaimSeen, occurred_on: date) -> HistoryChange | None:
        """A claim (or a new version of it) was scrubbed: its applications replace those of
        its earlier versions. A version already seen, older, or voided changes nothing."""
        current = self.of(patient)
        mark = current.claims.get(claim.claim_id)
        if mark is not None and mark.version >= claim.version:
            return None
        kept = tuple(entry for entry in current.applications if entry.claim_id != claim.claim_id)
        seen = ClaimMark(claim.version, voided=False, last_service_date=claim.last_service_date)
        updated = PatientHistory(
            tuple(sorted(kept + claim.applications)), current.claims | {claim.claim_id: seen}
        )
        return self._retain(patient, current, updated, occurred_on)

    def voided(self, patient: str, claim: ClaimSeen, occurred_on: date) -> HistoryChange | None:
        """A claim was voided: its applications go, and no version up to this one comes back."""
        current = self.of(patient)
        mark = current.claims.get(claim.claim_id)
        void = ClaimMark(
            max(claim.version, mark.version) if mark else claim.version,
            voided=True,
            last_service_date=(
                max(claim.last_service_date, mark.last_service_date)
                if mark
                else claim.last_service_date
            ),
        )
        updated = PatientHistory(
            tuple(entry for entry in current.applications if entry.claim_id != claim.claim_id),
            current.claims | {claim.claim_id: void},
        )
        return self._retain(patient, current, updated, occurred_on)

    def expire(self, occurred_on: date) -> list[HistoryChange]:
        """Drop, for every patient, what is older than the retention before `occurred_on`
        (the latest event time seen): history of patients no claim touches any more ends."""
        changes = []
        for patient, history in list(self._patients.items()):
            change = self._retain(patient, history, history, occurred_on)
            if change is not None:
                changes.append(change)
        return changes

    def _retain(
        self, patient: str, before: PatientHistory, after: PatientHistory, occurred_on: date
    ) -> HistoryChange | None:
        """Drop what is older than the retention before `occurred_on`; store and return the
        change, or None when nothing changed."""
        cutoff = occurred_on - self._retention
        if any(entry.service_date < cutoff for entry in after.applications) or any(
            mark.last_service_date < cutoff for mark in after.claims.values()
        ):
            after = PatientHistory(
                tuple(entry for entry in after.applications if entry.service_date >= cutoff),
                {
                    claim: mark
                    for claim, mark in after.claims.items()
                    if mark.last_service_date >= cutoff
                },
            )
        if after == before:
            return None
        self.restore(patient, after)
        return HistoryChange(patient, after)


_EMPTY: Final = PatientHistory()


def history_document(history: PatientHistory) -> bytes | None:
    """The changelog value of a patient's history (None: a tombstone)."""
    if history.is_empty:
        return None
    return orjson.dumps(
        {
            "schema_version": "1",
            "applications": [
                {
                    "claim_id": entry.claim_id,
                    "claim_version": entry.claim_version,
                    "line_number": entry.line_number,
                    "service_date": entry.service_date.isoformat(),
                    "procedure_code": entry.procedure_code,
                    "wound": entry.wound,
                }
                for entry in history.applications
            ],
            "claims": {
                claim: {
                    "version": mark.version,
                    "voided": mark.voided,
                    "last_service_date": mark.last_service_date.isoformat(),
                }
                for claim, mark in history.claims.items()
            },
        }
    )


def read_history_document(value: bytes | None) -> PatientHistory:
    """A changelog value back into a patient's history (a tombstone is an empty one)."""
    if value is None:
        return _EMPTY
    document: dict[str, Any] = orjson.loads(value)
    return PatientHistory(
        tuple(
            sorted(
                Application(
                    service_date=date.fromisoformat(entry["service_date"]),
                    wound=entry["wound"],
                    claim_id=entry["claim_id"],
                    claim_version=entry["claim_version"],
                    line_number=entry["line_number"],
                    procedure_code=entry["procedure_code"],
                )
                for entry in document["applications"]
            )
        ),
        {
            claim: ClaimMark(
                mark["version"], mark["voided"], date.fromisoformat(mark["last_service_date"])
            )
            for claim, mark in document["claims"].items()
        },
    )
