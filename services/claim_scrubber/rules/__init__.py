"""Scrub rules: pure checks over one claim, each with an id, severity and documentation."""

from claim_scrubber.rules._engine import (
    ENGINE_FAILURE,
    Hit,
    Rule,
    RuleDoc,
    effective_rules,
    rule,
    run_rules,
)
from claim_scrubber.rules._facts import ClaimFacts, LineFacts
from claim_scrubber.rules.catalog import CATALOG, CHECKED_RULES, RETIRED_RULES
from claim_scrubber.rules.gaps import ruleset_gaps

__all__ = [
    "CATALOG",
    "CHECKED_RULES",
    "ENGINE_FAILURE",
    "RETIRED_RULES",
    "ClaimFacts",
    "Hit",
    "LineFacts",
    "Rule",
    "RuleDoc",
    "effective_rules",
    "rule",
    "ruleset_gaps",
    "run_rules",
]
