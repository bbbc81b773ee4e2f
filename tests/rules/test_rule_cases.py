"""Every rule against its pass/fail cases (cases/<RULE-ID>.json): patches over the default claim.

A case names the findings the rule must give as [line_number, field] or
[line_number, field, text the message must contain]; [] means the rule must not fire. A case
may name the `severity` its findings must have, and the patient's `history`: the applications
of other claims (claim_id, service_date, wound), as claim history holds them. Every rule has
at least one failing case that states its message and severity, so a change of either is a
reviewed change.
"""

import json
import tomllib
from datetime import date
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from claim_scrubber.adapters.ruleset_file import default_ruleset_text
from claim_scrubber.models import Ruleset
from claim_scrubber.models.history import Application
from claim_scrubber.scrubber import Accepted, Scrubber, read_claim_event
from tests.claims import default_event, event_bytes, patched

CASES = Path(__file__).parent / "cases"


def _load_cases() -> list[tuple[str, dict[str, Any]]]:
    found: list[tuple[str, dict[str, Any]]] = []
    for path in sorted(CASES.glob("*.json")):
        document = json.loads(path.read_text("utf-8"))
        assert document["rule"] == path.stem, f"{path.name} names rule {document['rule']}"
        found.extend((path.stem, case) for case in document["cases"])
    return found


ALL_CASES = _load_cases()


@cache
def _default_ruleset_document() -> dict[str, Any]:
    return tomllib.loads(default_ruleset_text())


def _scrubber(ruleset_patch: dict[str, Any]) -> Scrubber:
    document = patched(_default_ruleset_document(), ruleset_patch)
    return Scrubber(Ruleset.model_validate(document), max_message_bytes=1024 * 1024)


def _history(case: dict[str, Any]) -> tuple[Application, ...] | None:
    if "history" not in case:
        return None
    return tuple(
        Application(
            service_date=date.fromisoformat(entry["service_date"]),
            wound=entry["wound"],
            claim_id=entry["claim_id"],
            claim_version=1,
            line_number=2,
            procedure_code="Q4390",
        )
        for entry in case["history"]
    )


@pytest.mark.parametrize(
    ("rule_id", "case"),
    ALL_CASES,
    ids=[f"{rule_id}: {case['name']}" for rule_id, case in ALL_CASES],
)
def test_rule_gives_exactly_the_findings_of_its_case(rule_id: str, case: dict[str, Any]) -> None:
    event = patched(default_event(), case["patch"])
    read = read_claim_event(event_bytes(event), max_bytes=1024 * 1024)
    assert isinstance(read, Accepted), f"the case's claim is not schema-valid: {read}"

    scrubber = _scrubber(case.get("ruleset_patch", {}))
    findings = [
        finding
        for finding in scrubber.verdict(read, _history(case)).findings
        if finding.rule_id == rule_id
    ]

    expected = case["findings"]
    assert [[f.line_number, f.field] for f in findings] == [e[:2] for e in expected]
    for finding, wanted in zip(findings, expected, strict=True):
        if len(wanted) > 2:
            assert wanted[2] in finding.message
        if "severity" in case:
            assert finding.severity.value == case["severity"]


def test_every_rule_has_a_failing_case_stating_its_message_and_severity() -> None:
    stated = {
        rule_id
        for rule_id, case in ALL_CASES
        if "severity" in case and any(len(wanted) > 2 for wanted in case["findings"])
    }

    assert stated == {rule_id for rule_id, _ in ALL_CASES}


def test_the_default_claim_is_clean_with_only_the_expected_notes() -> None:
    read = read_claim_event(event_bytes(default_event()), max_bytes=1024 * 1024)
    assert isinstance(read, Accepted)
    verdict = _scrubber({}).verdict(read)
    assert verdict.outcome == "clean"
    assert [f.rule_id for f in verdict.findings] == ["PRICE-001"]
