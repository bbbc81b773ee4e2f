"""The catalog itself: ids, order, documentation and cases for every rule."""

import json
import re
from pathlib import Path

import pytest

from claim_scrubber.rules import CATALOG, CHECKED_RULES, ENGINE_FAILURE, Rule
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


def test_the_catalog_has_the_fifty_rules_of_catalog_v1() -> None:
    assert len(CATALOG) == 50


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
