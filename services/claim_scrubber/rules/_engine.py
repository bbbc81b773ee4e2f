"""How a rule is declared and run: frozen metadata around a pure check function."""

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Final

from claim_scrubber.models import Finding, PayerKind, Ruleset, Severity
from claim_scrubber.rules._facts import ClaimFacts

__all__ = ["ENGINE_FAILURE", "Hit", "Rule", "RuleDoc", "effective_rules", "rule", "run_rules"]

RULE_ID_PATTERN: Final = r"^(CLM|ADDON|UNITS|MOD|DOC|POS|DX|PAY|HIST|INST|PRICE|ENGINE)-[0-9]{3}$"


@dataclass(frozen=True, slots=True)
class Hit:
    """Where a rule fired: the line (None for the claim), the field path and the message."""

    line_number: int | None
    field: str
    message: str


@dataclass(frozen=True, slots=True)
class RuleDoc:
    """The user documentation of a rule, shown by `claim-scrubber rules` and schemas/RULES.md."""

    what: str
    why: str
    source: str
    fails: str
    passes: str


Check = Callable[[ClaimFacts], Iterable[Hit]]


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    title: str
    severity: Severity
    q4390_only: bool
    doc: RuleDoc
    check: Check
    professional_only: bool = False
    """It judges fields an institutional claim does not have (rules.md v1.2 Definitions)."""
    documented_only: bool = False
    """It judges the documentation object, and a claim without one is DOC-008's alone."""
    history_only: bool = False
    """It judges claim history: it runs only with history on and a member id (HIST)."""
    institutional_only: bool = False
    """It judges what only a facility's bill has: its type of bill, revenue codes (INST)."""


def rule(
    rule_id: str,
    severity: Severity,
    *,
    title: str,
    source: str,
    fails: str,
    passes: str,
    q4390_only: bool = False,
    professional_only: bool = False,
    documented_only: bool = False,
    history_only: bool = False,
    institutional_only: bool = False,
) -> Callable[[Check], Rule]:
    """Declare a rule: the check's docstring is 'what' and, after a blank line, 'why'."""

    def declare(check: Check) -> Rule:
        what, _, why = (check.__doc__ or "").strip().partition("\n\n")
        doc = RuleDoc(
            what=" ".join(what.split()),
            why=" ".join(why.split()),
            source=source,
            fails=fails,
            passes=passes,
        )
        return Rule(
            rule_id,
            title,
            severity,
            q4390_only,
            doc,
            check,
            professional_only,
            documented_only,
            history_only,
            institutional_only,
        )

    return declare


def _engine_failure_check(facts: ClaimFacts) -> Iterator[Hit]:
    """A rule raised while checking the claim; the claim is held for a person to check.

    A rule that cannot run must never count as a pass: the claim would reach the payer
    unchecked. The finding names the rule so the team can reproduce it from the claim id.
    """
    del facts
    return iter(())


ENGINE_FAILURE: Final = rule(
    "ENGINE-001",
    Severity.ERROR,
    title="A rule could not be evaluated",
    source="Scrubber engine: no silent pass",
    fails="a rule raises on an unexpected combination of values",
    passes="every rule runs to completion",
)(_engine_failure_check)


def _engine_failure(failed: Rule, ruleset_version: str) -> Finding:
    what = failed.doc.what.rstrip(".")
    return Finding(
        rule_id=ENGINE_FAILURE.id,
        severity=ENGINE_FAILURE.severity,
        line_number=None,
        field="claim",
        message=(
            f"Rule {failed.id} could not run on this claim (ruleset {ruleset_version}); it "
            f"checks: {what}. Check that by hand before releasing the claim, and send the "
            "claim id to the scrubber team."
        ),
        title=ENGINE_FAILURE.title,
    )


def effective_rules(
    ruleset: Ruleset, rules: Iterable[Rule], payer_kind: PayerKind
) -> tuple[Rule, ...]:
    """The rules as they run for a payer kind under the ruleset's overrides: each with its
    overridden severity, and without the rules turned `off`."""
    plan = []
    for entry in rules:
        override = ruleset.override_for(entry.id, payer_kind)
        if override is None:
            plan.append(entry)
        elif override.severity != "off":
            plan.append(replace(entry, severity=Severity(override.severity)))
    return tuple(plan)


def _finding_order(finding: Finding) -> tuple[int, int, str]:
    if finding.line_number is None:
        return (0, 0, finding.rule_id)
    return (1, finding.line_number, finding.rule_id)


def run_rules(facts: ClaimFacts, rules: Iterable[Rule]) -> list[Finding]:
    """Every applicable rule's findings, claim-level first, then by line number and rule id.

    A rule that raises keeps what it found before raising and adds ENGINE-001.
    """
    findings: list[Finding] = []
    add = findings.append
    q4390_claim = facts.is_q4390_claim
    professional = facts.is_professional
    documented = facts.documentation is not None
    without_history = facts.history is None
    for entry in rules:
        if (
            (entry.q4390_only and not q4390_claim)
            or (entry.professional_only and not professional)
            or (entry.institutional_only and professional)
            or (entry.documented_only and not documented)
            or (entry.history_only and without_history)
        ):
            continue
        try:
            for hit in entry.check(facts):
                add(
                    Finding(
                        entry.id,
                        entry.severity,
                        hit.line_number,
                        hit.field,
                        hit.message,
                        entry.title,
                    )
                )
        except Exception:  # noqa: BLE001 - any failure of a rule becomes ENGINE-001, never a pass
            add(_engine_failure(entry, facts.ruleset.version))
    findings.sort(key=_finding_order)
    return findings
