"""The catalog itself: ids, order, documentation and cases for every rule."""

import json
import re
from datetime import date
from pathlib import Path
from typing import Final

import pytest

from claim_scrubber.adapters.ruleset_file import load_ruleset
from claim_scrubber.rules import (
    CATALOG,
    CHECKED_RULES,
    ENGINE_FAILURE,
    RETIRED_RULES,
    Rule,
    ruleset_gaps,
)
from claim_scrubber.rules._engine import RULE_ID_PATTERN

CASES = Path(__file__).parent / "cases"


def _cases(rule_id: str) -> list[dict[str, object]]:
    path = CASES / f"{rule_id}.json"
    if not path.exists():
        return []
    cases: list[dict[str, object]] = json.loads(path.read_text("utf-8"))["cases"]
    return cases


def test_rule_ids_are_unique_well_formed_and_sorted() -> None:
    ids = [entry.id for entry in CATALOG]
    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(RULE_ID_PATTERN, rule_id) for rule_id in ids)
    assert ids == sorted(ids)


def test_a_retired_id_is_never_a_rule_again() -> None:
    assert set(RETIRED_RULES) == {"UNITS-005"}
    assert not {entry.id for entry in CATALOG} & set(RETIRED_RULES)


@pytest.mark.parametrize("entry", CATALOG, ids=lambda entry: entry.id)
def test_every_rule_has_a_complete_doc(entry: Rule) -> None:
    doc = entry.doc
    assert entry.title
    assert len(entry.title) <= 70
    assert doc.what.endswith("."), "what: one or more sentences"
    assert doc.why.endswith("."), "why: the reason, as sentences"
    assert doc.source
    assert doc.fails
    assert doc.passes


@pytest.mark.parametrize("entry", CHECKED_RULES, ids=lambda entry: entry.id)
def test_every_rule_has_a_passing_and_a_failing_case(entry: Rule) -> None:
    cases = _cases(entry.id)
    assert any(case["findings"] == [] for case in cases), f"{entry.id}: no passing case"
    assert any(case["findings"] for case in cases), f"{entry.id}: no failing case"


def test_no_case_file_names_a_rule_outside_the_catalog() -> None:
    ids = {entry.id for entry in CATALOG}
    assert {path.stem for path in CASES.glob("*.json")} <= ids


def test_engine_failure_is_the_only_rule_without_cases_and_is_proven_in_the_engine_tests() -> None:
    assert [entry for entry in CATALOG if not _cases(entry.id)] == [ENGINE_FAILURE]


SPEC = Path(__file__).resolve().parents[3] / "shared" / "spec" / "rules.md"
_SPEC_ROW = re.compile(r"^\| ([A-Z]+-[0-9]{3}) \| (error|warning|info) \|", re.MULTILINE)
_SPEC_RETIRED = re.compile(r"^\| ([A-Z]+-[0-9]{3}) \| — \| \*\*retired", re.MULTILINE)


BEYOND_THE_SPEC: Final = {"INST-001": "error", "INST-002": "warning", "INST-003": "warning"}
"""Rules of issue 20 (a facility's bill) that rules.md does not list yet: they are its
additions, named here so that any other difference from the spec still fails."""


def test_the_catalog_is_the_specs_every_rule_with_its_default_severity() -> None:
    if not SPEC.exists():
        pytest.fail(f"the rule catalog spec is missing: {SPEC}")
    specified = dict(_SPEC_ROW.findall(SPEC.read_text("utf-8")))

    catalog = {entry.id: entry.severity.value for entry in CATALOG}

    assert catalog == specified | BEYOND_THE_SPEC | {ENGINE_FAILURE.id: "error"}


def test_the_retired_rules_are_those_the_spec_retires() -> None:
    if not SPEC.exists():
        pytest.fail(f"the rule catalog spec is missing: {SPEC}")

    assert set(_SPEC_RETIRED.findall(SPEC.read_text("utf-8"))) == set(RETIRED_RULES)


def test_a_ruleset_without_a_q4390_unit_limit_is_reported_as_incomplete() -> None:
    shipped = load_ruleset()
    completed = shipped.model_copy(update={"unit_limits": {**shipped.unit_limits, "Q4390": 100}})
    inside_the_window = date(2026, 9, 30)

    (gap,) = ruleset_gaps(shipped, inside_the_window)

    assert gap.startswith('unit_limits."Q4390"')
    assert ruleset_gaps(completed, inside_the_window) == ()


def test_a_day_past_the_newest_icd10cm_window_is_reported_as_incomplete() -> None:
    shipped = load_ruleset()
    completed = shipped.model_copy(update={"unit_limits": {**shipped.unit_limits, "Q4390": 100}})

    (gap,) = ruleset_gaps(completed, date(2026, 10, 1))

    assert gap.startswith("code_sets.icd10cm: the newest release (ICD-10-CM FY2026")
    assert "ended 2026-09-30" in gap
