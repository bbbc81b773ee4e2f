"""What a ruleset change would do to claims already seen: the same claims under two rulesets.

Pure: claims in, the claims whose outcome or reported rule ids change out, with a summary.
A line that is not a usable claim event is not a claim: it is counted apart.
"""

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from claim_scrubber.scrubber.core import Scrubber
from claim_scrubber.scrubber.intake import Accepted, read_claim_event

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


@dataclass
class ImpactReport:
    claims: int = 0
    not_claims: int = 0
    changed: list[OutcomeChange] = field(default_factory=list)
    outcome_changes: Counter[tuple[str, str]] = field(default_factory=Counter)
    rules_started: Counter[str] = field(default_factory=Counter)
    rules_stopped: Counter[str] = field(default_factory=Counter)


def compare(baseline: Scrubber, candidate: Scrubber, events: Iterable[bytes]) -> ImpactReport:
    """Scrub every event under both rulesets and report what differs."""
    report = ImpactReport()
    for payload in events:
        read = read_claim_event(payload, max_bytes=baseline.max_message_bytes)
        if not isinstance(read, Accepted):
            report.not_claims += 1
            continue
        report.claims += 1
        before, after = baseline.verdict(read), candidate.verdict(read)
        added = tuple(sorted(set(after.rule_ids) - set(before.rule_ids)))
        removed = tuple(sorted(set(before.rule_ids) - set(after.rule_ids)))
        if before.outcome is after.outcome and not added and not removed:
            continue
        report.changed.append(
            OutcomeChange(
                event_id=read.event.event_id,
                claim_id=read.event.claim.claim_id,
                before=before.outcome.value,
                after=after.outcome.value,
                added=added,
                removed=removed,
            )
        )
        if before.outcome is not after.outcome:
            report.outcome_changes[(before.outcome.value, after.outcome.value)] += 1
        report.rules_started.update(added)
        report.rules_stopped.update(removed)
    return report
