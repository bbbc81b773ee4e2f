"""Claim history (HIST): what was billed before for the same patient (docs/operating/history.md).

These rules run only with history on and a member id on the claim (`facts.history` is not
None). History only ever knows less than was billed (it restarts with a new key, forgets
with retention), so each rule fires only on what history shows, never on what it lacks.
"""

from collections.abc import Iterator
from datetime import date, timedelta

from claim_scrubber.models import Severity
from claim_scrubber.rules._engine import Hit, rule
from claim_scrubber.rules._facts import ClaimFacts, LineFacts

__all__ = ["applications_billed_twice", "applications_per_episode", "documentation_matches_history"]

_SOURCE = (
    "Novitas LCD L35041 and its billing article A54117 (at most 10 applications per wound in "
    "a 12-week episode), Aetna CPB 0244 (10), UnitedHealthcare 'Skin and Soft Tissue "
    "Substitutes' (12); NCCI and payer duplicate-claim edits (the same service on two claims)"
)


def _site(wound: str) -> str:
    """A wound as a coder reads it: `the wound at L97.41`, never a full diagnosis."""
    if wound == "unspecified":
        return "the wound of unspecified site"
    location, _, side = wound.partition(":")
    return f"the wound at {location}" + (f" ({side})" if side else "")


def _window_dates(facts: ClaimFacts, wound: str, day: date, weeks: int) -> list[date]:
    """rules.md "Episode window": the distinct application dates of `wound` in the weeks
    ending on `day`, from history and this claim, in order."""
    assert facts.history is not None
    first = day - timedelta(days=weeks * 7 - 1)
    dates = {
        entry.service_date
        for entry in facts.history
        if entry.wound == wound and first <= entry.service_date <= day
    }
    dates.update(
        line.service_date
        for line in facts.q4390_applications
        if first <= line.service_date <= day and facts.wound_of(line) == wound
    )
    return sorted(dates)


@rule(
    "HIST-001",
    Severity.ERROR,
    title="More applications on the wound than the payer covers per episode",
    source=_SOURCE,
    fails="Medicare, a Q4390 application on L97.412 whose 12 weeks already hold 10 applications",
    passes="the same claim with 9 earlier applications in the 12 weeks",
    q4390_only=True,
    history_only=True,
)
def applications_per_episode(facts: ClaimFacts) -> Iterator[Hit]:
    """When the payer limits applications per episode, the distinct application dates of a
    line's wound in the episode window ending on the line's date (history and this claim)
    may not exceed the limit.

    Payers pay a fixed number of applications per wound per episode (10 in 12 weeks for
    Medicare and Aetna, 12 for UnitedHealthcare) and deny the rest, whatever the claim itself
    documents; only the claims billed before show how many there were.
    """
    limit, weeks = facts.profile.max_applications, facts.profile.episode_weeks
    if limit is None or weeks is None:
        return
    for line in facts.q4390_applications:
        wound = facts.wound_of(line)
        count = len(_window_dates(facts, wound, line.service_date, weeks))
        if count > limit:
            yield Hit(
                line.number,
                line.field("service_date"),
                f"Application {count} on {_site(wound)} in the {weeks} weeks ending "
                f"{line.service_date.isoformat()}; {facts.payer_name} covers at most {limit} per "
                "episode.",
            )


def _other_claims_on(facts: ClaimFacts, line: LineFacts) -> list[str]:
    assert facts.history is not None
    wound = facts.wound_of(line)
    return sorted(
        {
            entry.claim_id
            for entry in facts.history
            if entry.service_date == line.service_date and entry.wound == wound
        }
    )


@rule(
    "HIST-002",
    Severity.ERROR,
    title="The same application is billed on another claim",
    source=_SOURCE,
    fails="a Q4390 application on L97.412 on 2026-11-20 that claim CLM-7 already billed",
    passes="the same claim when the other claim's application is on another date or wound",
    q4390_only=True,
    history_only=True,
)
def applications_billed_twice(facts: ClaimFacts) -> Iterator[Hit]:
    """An application may be billed on one claim only: another claim of the patient with an
    application of the same wound on the same date is a possible duplicate.

    Payers deny the second claim for the same service and date as a duplicate, and repeated
    duplicates draw an audit; a corrected claim is sent as a replacement (a new version of
    the same claim), never as a second claim.
    """
    for line in facts.q4390_applications:
        others = _other_claims_on(facts, line)
        if others:
            named = ", ".join(others[:3]) + (f" and {len(others) - 3} more" if others[3:] else "")
            yield Hit(
                line.number,
                line.field("service_date"),
                f"Claim {named} already bills an application on "
                f"{_site(facts.wound_of(line))} on {line.service_date.isoformat()}: possible "
                "duplicate billing; send a correction as a replacement of that claim, or void "
                "one of them.",
            )


@rule(
    "HIST-003",
    Severity.WARNING,
    title="Documented application number or episode start disagrees with history",
    source=_SOURCE,
    fails="application_number 2 documented where history shows the 5th application in 12 weeks",
    passes="application_number 5 (or 4 or 6) for the 5th application",
    q4390_only=True,
    documented_only=True,
    history_only=True,
)
def documentation_matches_history(facts: ClaimFacts) -> Iterator[Hit]:
    """The documented application_number may be at most 1 below what history counts for the
    claim's latest application (distinct dates of its wound in the episode window, this one
    included), and the documented episode_start_date may not be after the wound's earliest
    application in that window.

    PAY-003 and PAY-004 trust these numbers; when the claims billed before contradict them,
    the episode limit is judged on the wrong count. History that knows fewer applications
    than documented (it restarted, or forgot them) is never a finding.
    """
    weeks = facts.profile.episode_weeks
    wound_doc = facts.wound
    if weeks is None or wound_doc is None or not facts.q4390_applications:
        return
    latest = max(facts.q4390_applications, key=lambda line: line.service_date)
    wound = facts.wound_of(latest)
    dates = _window_dates(facts, wound, latest.service_date, weeks)
    window = f"in the {weeks} weeks ending {latest.service_date.isoformat()}"
    number = wound_doc.application_number
    if number is not None and len(dates) > number + 1:
        yield Hit(
            None,
            "claim.documentation.wound.application_number",
            f"The documentation says application {number}; the claims billed show "
            f"{len(dates)} on {_site(wound)} {window}. Correct the application number.",
        )
    start = wound_doc.episode_start_date
    if start is not None and start > dates[0]:
        yield Hit(
            None,
            "claim.documentation.wound.episode_start_date",
            f"The episode is documented as starting {start.isoformat()}, but {_site(wound)} "
            f"has an application billed on {dates[0].isoformat()} {window}. Correct the "
            "episode start date.",
        )
