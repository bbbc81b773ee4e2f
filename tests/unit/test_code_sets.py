"""The published code sets a ruleset names: read once at load, validated, dated, and replaceable
by an operator without touching the code."""

import os
import subprocess
from datetime import date
from pathlib import Path

import pytest

from claim_scrubber.adapters.ruleset_file import RulesetError, default_ruleset_text, load_ruleset
from claim_scrubber.models.code_sets import parse_icd10cm
from tests.kafka_harness import WORKER

SHIPPED_MODIFIERS = "package:claim_scrubber/rulesets/code_sets/modifiers.toml"
SHIPPED_PLACES = "package:claim_scrubber/rulesets/code_sets/places-of-service.toml"


def _ruleset(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "ruleset.toml"
    path.write_text(text, "utf-8")
    return path


class TestIcd10CmFiles:
    def test_a_tabular_list_and_a_billable_only_list_give_the_same_answers(self) -> None:
        tabular = "1\nA00-A09\nA00\nA000\nA001\nA009\nL97\nL974\nL9740\nL97401\nL97402\n"
        billable_only = "A000 Cholera due to ...\nA001\nA009\nL97.401\nL97.402\n"

        for text in (tabular, billable_only):
            table = parse_icd10cm(text)
            assert table.status("A00.0") == "billable"
            assert table.status("L97.4") == "category"
            assert table.status("L97.40") == "category"
            assert table.characters_needed("L97.4") == 6
            assert table.status("L97.409") == "unknown"

    def test_a_file_without_a_code_is_refused(self) -> None:
        with pytest.raises(ValueError, match="no ICD-10-CM code"):
            parse_icd10cm("chapter one\n")

    def test_the_shipped_release_knows_u_codes_and_seventh_characters(self) -> None:
        release, in_force = load_ruleset().code_sets.icd10cm_release_for(date(2026, 5, 1))

        assert in_force
        assert release.table.status("U07.1") == "billable"
        assert release.table.status("T20.011A") == "billable"
        assert release.table.status("E11.62") == "category"


class TestOperatorCodeSets:
    def test_a_code_set_beside_the_operators_ruleset_is_read_from_there(
        self, tmp_path: Path
    ) -> None:
        (tmp_path / "tables").mkdir()
        (tmp_path / "tables" / "places.toml").write_text(
            'release = "our own list"\n[codes]\n"11" = { name = "Office" }\n', "utf-8"
        )
        text = default_ruleset_text().replace(SHIPPED_PLACES, "tables/places.toml")

        ruleset = load_ruleset(_ruleset(tmp_path, text))

        assert ruleset.code_sets.place_of_service_table.release == "our own list"
        assert list(ruleset.code_sets.place_of_service_table.codes) == ["11"]

    def test_a_second_icd10cm_release_judges_the_dates_of_its_own_window(
        self, tmp_path: Path
    ) -> None:
        (tmp_path / "fy2027.txt").write_text("L97412\nL9741\n", "utf-8")
        text = default_ruleset_text() + (
            '\n[[code_sets.icd10cm]]\nrelease = "FY2027 (test)"\neffective_from = 2026-10-01\n'
            'effective_through = 2027-09-30\ncodes = "fy2027.txt"\n'
        )

        code_sets = load_ruleset(_ruleset(tmp_path, text)).code_sets

        release, in_force = code_sets.icd10cm_release_for(date(2026, 11, 20))
        assert (release.release, in_force) == ("FY2027 (test)", True)
        assert code_sets.icd10cm_release_for(date(2026, 9, 30))[0].release.startswith("ICD-10")

    @pytest.mark.parametrize(
        ("change", "named"),
        [
            (
                (SHIPPED_MODIFIERS, "missing.toml"),
                "code_sets: missing.toml: cannot read it",
            ),
            (
                (SHIPPED_PLACES, "package:no_such_package/places.toml"),
                "no installed package no_such_package",
            ),
            (
                (SHIPPED_PLACES, "bad-dates.toml"),
                "bad-dates.toml: codes.11: through is before from",
            ),
            (
                ("effective_through = 2026-09-30", "effective_through = 2025-09-30"),
                "effective_through is before effective_from",
            ),
            (
                ("code-list-April-2026.txt", "no-such-release.txt"),
                "no-such-release.txt",
            ),
        ],
        ids=["missing-file", "missing-package", "dates-reversed", "window-reversed", "no-icd"],
    )
    def test_a_bad_code_set_stops_the_load_with_one_line_naming_it(
        self, tmp_path: Path, change: tuple[str, str], named: str
    ) -> None:
        (tmp_path / "bad-dates.toml").write_text(
            'release = "x"\n[codes]\n"11" = { from = 2020-01-01, through = 2019-01-01, '
            'name = "Office" }\n',
            "utf-8",
        )
        text = default_ruleset_text().replace(*change)

        with pytest.raises(RulesetError) as refused:
            load_ruleset(_ruleset(tmp_path, text))

        assert named in str(refused.value)
        assert "\n" not in str(refused.value)

    def test_overlapping_icd10cm_windows_are_refused(self, tmp_path: Path) -> None:
        text = default_ruleset_text() + (
            '\n[[code_sets.icd10cm]]\nrelease = "overlap"\neffective_from = 2026-09-01\n'
            "effective_through = 2027-09-30\n"
            'codes = "package:simple_icd_10_cm/data/code-list-April-2026.txt"\n'
        )

        with pytest.raises(RulesetError, match="windows that do not overlap"):
            load_ruleset(_ruleset(tmp_path, text))


def test_rules_names_each_code_set_release_and_the_retired_rule() -> None:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SCRUBBER_")}
    shown = subprocess.run(
        [WORKER[0], "rules"], env=environment, capture_output=True, text=True, check=True
    ).stdout.splitlines()

    assert (
        "  modifiers: HCPCS Level II modifiers through the 2026 annual file; CPT 2026 "
        "Appendix A" in shown
    )
    assert any(line.startswith("  icd10cm: ICD-10-CM FY2026") for line in shown)
    assert any(line.startswith("  places_of_service: CMS Place of Service") for line in shown)
    assert any(line.startswith("UNITS-005") and "retired" in line for line in shown)
