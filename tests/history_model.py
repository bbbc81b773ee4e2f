"""Claim history as a brute-force model: every claim of every patient as applied, the HIST
answers by scanning them all. The property test and the real-broker test judge the worker
against it."""

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from tests.claims import default_event, event_bytes, patched

WOUNDS = {"L97.412": "L97.41", "L89.153": "L89.15"}
"""The diagnoses a test claim may carry, and the wound each names."""


@dataclass(frozen=True)
class HistoryEvent:
    """One claim event of a test stream: a submission (or resubmission) or a void."""

    member: str
    claim: str
    version: int
    day: int
    diagnosis: str
    voided: bool
    late_by: int
    first_day: date = date(2026, 3, 1)
    payer_kind: str = "medicare"

    @property
    def service_date(self) -> date:
        return self.first_day + timedelta(days=self.day)

    @property
    def occurred_on(self) -> date:
        return self.service_date + timedelta(days=self.late_by)

    @property
    def event_id(self) -> str:
        return f"{self.claim}-v{self.version}-{'void' if self.voided else 'sub'}"

    def payload(self) -> bytes:
        occurred = datetime.combine(self.occurred_on, datetime.min.time())
        document = patched(
            default_event(),
            {
                "event_id": self.event_id,
                "event_type": "claim.voided" if self.voided else "claim.submitted",
                "occurred_at": occurred.isoformat() + "Z",
                "claim.claim_id": self.claim,
                "claim.claim_version": self.version,
                "claim.payer.kind": self.payer_kind,
                "claim.patient.member_id": self.member,
                "claim.diagnoses": ["E11.621", self.diagnosis],
                "claim.lines[0].service_date": self.service_date.isoformat(),
                "claim.lines[1].service_date": self.service_date.isoformat(),
            },
        )
        return event_bytes(document)


@dataclass
class _Claim:
    version: int
    voided: bool
    last_day: date
    applications: list[tuple[date, str]] = field(default_factory=list)


class HistoryModel:
    """Every claim of every patient as applied; the HIST answers by scanning them all."""

    def __init__(self, *, limit: int, weeks: int, retention_days: int) -> None:
        self.limit, self.weeks, self.retention_days = limit, weeks, retention_days
        self.claims: dict[str, dict[str, _Claim]] = {}

    def apply(self, event: HistoryEvent) -> None:
        claims = self.claims.setdefault(event.member, {})
        known = claims.get(event.claim)
        if event.voided:
            version = event.version if known is None else max(event.version, known.version)
            last = event.service_date if known is None else max(known.last_day, event.service_date)
            claims[event.claim] = _Claim(version, voided=True, last_day=last)
        elif known is None or known.version < event.version:
            claims[event.claim] = _Claim(
                event.version,
                voided=False,
                last_day=event.service_date,
                applications=[(event.service_date, WOUNDS[event.diagnosis])],
            )
        else:
            return
        cutoff = event.occurred_on - timedelta(days=self.retention_days)
        for claim_id, claim in list(claims.items()):
            claim.applications = [a for a in claim.applications if a[0] >= cutoff]
            if claim.last_day < cutoff:
                del claims[claim_id]

    def findings(self, event: HistoryEvent) -> set[str]:
        """The HIST-001 and HIST-002 this submission breaks, judged before it is applied."""
        wound = WOUNDS[event.diagnosis]
        others = [
            (day, claim_id)
            for claim_id, claim in self.claims.get(event.member, {}).items()
            if claim_id != event.claim
            for day, other_wound in claim.applications
            if other_wound == wound
        ]
        first = event.service_date - timedelta(days=self.weeks * 7 - 1)
        dates = {day for day, _ in others if first <= day <= event.service_date}
        found = set()
        if len(dates | {event.service_date}) > self.limit:
            found.add("HIST-001")
        if any(day == event.service_date for day, _ in others):
            found.add("HIST-002")
        return found

    def history_of(self, member: str) -> set[tuple[str, date, str]]:
        return {
            (claim_id, day, wound)
            for claim_id, claim in self.claims.get(member, {}).items()
            for day, wound in claim.applications
        }
