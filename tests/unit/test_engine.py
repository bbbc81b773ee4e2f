"""The rule engine: ordering, severities, and no silent pass when a rule raises."""

from collections.abc import Iterator

from claim_scrubber.adapters.ruleset_file import load_ruleset
from claim_scrubber.models import Outcome, Severity
from claim_scrubber.rules import CATALOG, CHECKED_RULES, ClaimFacts, Hit, rule, run_rules
from claim_scrubber.scrubber import Accepted, Scrubber, read_claim_event
from tests.claims import default_event, event_bytes, patched

RULESET = load_ruleset()


def _accepted(**patch: object) -> Accepted:
    read = read_claim_event(event_bytes(patched(default_event(), patch)), max_bytes=1 << 20)
    assert isinstance(read, Accepted)
    return read


@rule(
    "CLM-999",
    Severity.ERROR,
    title="Always raises",
    source="test",
    fails="any claim",
    passes="none",
)
def _raising(facts: ClaimFacts) -> Iterator[Hit]:
    """Raises on purpose.

    To prove the engine turns a failure into a finding.
    """
    raise ZeroDivisionError(facts.event.claim.claim_id)


class TestEngineFailure:
    def test_a_rule_that_raises_yields_engine_001_naming_the_rule_and_needs_review(self) -> None:
        scrubber = Scrubber(RULESET, max_message_bytes=1 << 20, rules=(*CHECKED_RULES, _raising))
        verdict = scrubber.verdict(_accepted())

        failures = [f for f in verdict.findings if f.rule_id == "ENGINE-001"]
        assert len(failures) == 1
        assert failures[0].message == (
            f"Rule CLM-999 could not run on this claim (ruleset {RULESET.version}); it checks: "
            "Raises on purpose. Check that by hand before releasing the claim, and send the "
            "claim id to the scrubber team."
        )
        assert failures[0].title == "A rule could not be evaluated"
        assert verdict.outcome is Outcome.NEEDS_REVIEW

    def test_the_other_rules_still_run_after_one_raises(self) -> None:
        scrubber = Scrubber(RULESET, max_message_bytes=1 << 20, rules=(_raising, *CHECKED_RULES))
        ids = {f.rule_id for f in scrubber.verdict(_accepted()).findings}
        assert {"ENGINE-001", "PRICE-001"} <= ids


class TestTitles:
    def test_every_finding_carries_its_rules_catalog_title(self) -> None:
        titles = {entry.id: entry.title for entry in CATALOG}
        findings = (
            Scrubber(RULESET, max_message_bytes=1 << 20)
            .verdict(
                _accepted(**{"claim.billing_provider.npi": "1", "claim.lines[1].modifiers": ["22"]})
            )
            .findings
        )

        assert len({f.rule_id for f in findings}) > 1
        assert [f.title for f in findings] == [titles[f.rule_id] for f in findings]


class TestOrdering:
    def test_findings_are_claim_level_first_then_by_line_and_rule_id(self) -> None:
        facts = ClaimFacts(
            _accepted(
                **{
                    "claim.billing_provider.npi": "1",
                    "claim.lines[1].modifiers": ["22", "GA"],
                    "claim.lines[0].units": 0,
                }
            ).event,
            RULESET,
        )
        findings = run_rules(facts, CHECKED_RULES)
        keys = [(f.line_number is not None, f.line_number or 0, f.rule_id) for f in findings]
        assert keys == sorted(keys)
        assert findings[0].line_number is None

    def test_warnings_and_infos_alone_leave_a_claim_clean(self) -> None:
        more_wasted_than_applied = {"claim.documentation.product.quantity_wasted_cm2": 25}
        verdict = Scrubber(RULESET, max_message_bytes=1 << 20).verdict(
            _accepted(**more_wasted_than_applied)
        )
        assert verdict.outcome is Outcome.CLEAN
        assert {f.severity for f in verdict.findings} == {Severity.INFO, Severity.WARNING}
        assert verdict.rule_ids == ("UNITS-007",), "infos are not reported rule ids"
