"""What a ruleset change would do to claims already seen: the same claims under two rulesets.

Pure: claims in, the claims whose outcome or reported rule ids change out, with a summary.
A line that is not a usable claim event is not a claim: it is counted apart.
"""

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from claim_scrubber.models import Finding, Severity
from claim_scrubber.rules import ClaimFacts
from claim_scrubber.scrubber.core import Scrubber
from claim_scrubber.scrubber.event_reader import Accepted, read_claim_event
from claim_scrubber.scrubber.history import HistoryTable

__all__ = ["ImpactReport", "OutcomeChange", "compare"]


@dataclass(frozen=True, slots=True)
class OutcomeChange:
    """One claim whose outcome or reported (error and warning) rule ids differ."""

    event_id: str
    claim_id: str
    before: str
    after: str
    added: tuple[str, ...]
    removed: tuple[str, ...]
    severity_changed: dict[str, str]
    """Rule id → `before->after` for each rule that fired under both with another severity
    (what flips an outcome when no rule starts or stops)."""


@dataclass
class ImpactReport:
    claims: int = 0
    not_claims: int = 0
    changed: list[OutcomeChange] = field(default_factory=list)
    outcome_changes: Counter[tuple[str, str]] = field(default_factory=Counter)
    rules_started: Counter[str] = field(default_factory=Counter)
    rules_stopped: Counter[str] = field(default_factory=Counter)
    severities_changed: Counter[str] = field(default_factory=Counter)


def _severities(findings: Iterable[Finding]) -> dict[str, str]:
    """Each rule's highest severity among the findings (error over warning over info)."""
    rank = {Severity.ERROR: 0, Severity.WARNING: 1, Severity.INFO: 2}
    found: dict[str, Severity] = {}
    for finding in findings:
        held = found.get(finding.rule_id)
        if held is None or rank[finding.severity] < rank[held]:
            found[finding.rule_id] = finding.severity
    return {rule_id: severity.value for rule_id, severity in found.items()}


def compare(
    baseline: Scrubber,
    candidate: Scrubber,
    events: Iterable[bytes],
    history: HistoryTable | None = None,
) -> ImpactReport:
    """Scrub every event under both rulesets and report what differs; with `history`, each
    claim is judged against the claims before it (the same history under both rulesets) and a
    void only removes its claim's applications."""
    report = ImpactReport()
    for payload in events:
        read = read_claim_event(payload, max_bytes=baseline.max_message_bytes)
        if not isinstance(read, Accepted):
            report.not_claims += 1
            continue
        seen = None if history is None else history.seen_by(read.event)
        if history is not None:
            history.took(ClaimFacts(read.event, baseline.ruleset))
        if read.event.event_type == "claim.voided":  # never scrubbed: not a claim to compare
            continue
        report.claims += 1
        before, after = baseline.verdict(read, seen), candidate.verdict(read, seen)
        added = tuple(sorted(set(after.rule_ids) - set(before.rule_ids)))
        removed = tuple(sorted(set(before.rule_ids) - set(after.rule_ids)))
        if before.outcome is after.outcome and not added and not removed:
            continue
        was, now = _severities(before.findings), _severities(after.findings)
        reseverity = {
            rule_id: f"{was[rule_id]}->{now[rule_id]}"
            for rule_id in sorted(was.keys() & now.keys())
            if was[rule_id] != now[rule_id]
        }
        report.changed.append(
            OutcomeChange(
                event_id=read.event.event_id,
                claim_id=read.event.claim.claim_id,
                before=before.outcome.value,
                after=after.outcome.value,
                added=added,
                removed=removed,
                severity_changed=reseverity,
            )
        )
        if before.outcome is not after.outcome:
            report.outcome_changes[(before.outcome.value, after.outcome.value)] += 1
        report.rules_started.update(added)
        report.rules_stopped.update(removed)
        report.severities_changed.update(reseverity.keys())
    return report
