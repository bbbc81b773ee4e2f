"""Operators tune rules in the ruleset file: a severity per rule, globally or per payer kind."""

from pathlib import Path

import pytest

from claim_scrubber.adapters.ruleset_file import RulesetError, default_ruleset_text, load_ruleset
from claim_scrubber.models import Outcome
from claim_scrubber.scrubber import Accepted, Scrubber, Verdict, read_claim_event
from tests.claims import default_event, event_bytes, patched

BAD_NPI = {"claim.billing_provider.npi": "1245319598"}


def _ruleset_file(tmp_path: Path, overrides: str) -> Path:
    path = tmp_path / "ruleset.toml"
    path.write_text(default_ruleset_text() + "\n" + overrides, "utf-8")
    return path


def _verdict(scrubber: Scrubber, **patch: object) -> Verdict:
    read = read_claim_event(event_bytes(patched(default_event(), patch)), max_bytes=1 << 20)
    assert isinstance(read, Accepted)
    return scrubber.verdict(read)


class TestOverrides:
    def test_a_global_override_changes_the_outcome_of_every_payer(self, tmp_path: Path) -> None:
        ruleset = load_ruleset(_ruleset_file(tmp_path, '[rules."CLM-001"]\nseverity = "warning"\n'))
        before = _verdict(Scrubber(load_ruleset(), max_message_bytes=1 << 20), **BAD_NPI)

        after = _verdict(Scrubber(ruleset, max_message_bytes=1 << 20), **BAD_NPI)

        assert before.outcome is Outcome.NEEDS_REVIEW
        assert after.outcome is Outcome.CLEAN
        assert after.rule_ids == ("CLM-001",), "a warning is still reported"

    def test_a_payer_override_applies_to_that_payer_kind_only(self, tmp_path: Path) -> None:
        overrides = '[payers.medicare.rules."CLM-001"]\nseverity = "info"\n'
        scrubber = Scrubber(
            load_ruleset(_ruleset_file(tmp_path, overrides)), max_message_bytes=1 << 20
        )
        aetna = {"claim.payer.kind": "aetna", "claim.payer.mac": None, **BAD_NPI}

        assert _verdict(scrubber, **BAD_NPI).outcome is Outcome.CLEAN
        assert "CLM-001" in _verdict(scrubber, **aetna).rule_ids

    def test_a_payer_override_wins_over_the_global_one(self, tmp_path: Path) -> None:
        overrides = (
            '[rules."CLM-001"]\nseverity = "off"\n'
            '[payers.medicare.rules."CLM-001"]\nseverity = "error"\n'
        )
        scrubber = Scrubber(
            load_ruleset(_ruleset_file(tmp_path, overrides)), max_message_bytes=1 << 20
        )

        assert _verdict(scrubber, **BAD_NPI).outcome is Outcome.NEEDS_REVIEW
        other = {"claim.payer.kind": "other", "claim.payer.mac": None, **BAD_NPI}
        assert "CLM-001" not in [f.rule_id for f in _verdict(scrubber, **other).findings]

    def test_a_rule_turned_off_does_not_run(self, tmp_path: Path) -> None:
        overrides = '[rules."PRICE-001"]\nseverity = "off"\n'
        scrubber = Scrubber(
            load_ruleset(_ruleset_file(tmp_path, overrides)), max_message_bytes=1 << 20
        )

        assert "PRICE-001" not in [f.rule_id for f in _verdict(scrubber).findings]


class TestBadOverrides:
    @pytest.mark.parametrize(
        ("overrides", "expected"),
        [
            ('[rules."UNITS-999"]\nseverity = "off"\n', 'rules."UNITS-999": no rule has this id'),
            (
                '[payers.aetna.rules."PAY-999"]\nseverity = "info"\n',
                'payers.aetna.rules."PAY-999": no rule has this id',
            ),
            ('[rules."PRICE-001"]\nseverity = "quiet"\n', "rules.PRICE-001.severity: Input should"),
            ('[rules."ENGINE-001"]\nseverity = "off"\n', "ENGINE-001 cannot be overridden"),
            ('[rules."price-001"]\nseverity = "off"\n', "rules.price-001.[key]"),
            ('[rules."UNITS-005"]\nseverity = "off"\n', 'rules."UNITS-005": the rule is retired'),
        ],
    )
    def test_a_bad_override_stops_the_load_with_one_line_naming_the_entry(
        self, tmp_path: Path, overrides: str, expected: str
    ) -> None:
        with pytest.raises(RulesetError) as refused:
            load_ruleset(_ruleset_file(tmp_path, overrides))

        assert expected in str(refused.value)
        assert "\n" not in str(refused.value)
