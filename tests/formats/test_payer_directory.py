"""The ruleset's payer directory: how intake names an 837P or FHIR claim's payer family and
MAC, and how a bad entry stops start-up with one line."""

from pathlib import Path

import pytest

from claim_scrubber.adapters.ruleset_file import RulesetError, default_ruleset_text, load_ruleset
from claim_scrubber.models import PayerKind

DIRECTORY = load_ruleset().payer_directory


@pytest.mark.parametrize(
    ("indicator", "payer_id", "kind", "mac"),
    [
        ("MB", "12502", PayerKind.MEDICARE, "novitas"),  # Novitas JL Pennsylvania
        ("MB", "ZZZZZ", PayerKind.MEDICARE, None),  # Medicare, contractor unknown
        ("16", "12502", PayerKind.MEDICARE_ADVANTAGE, None),  # a MAC only for Medicare
        ("BL", "60054", PayerKind.BCBS, None),  # SBR09 decides before the table
        ("CI", "60054", PayerKind.AETNA, None),
        ("CI", " 62308 ", PayerKind.CIGNA, None),
        ("HM", "87726", PayerKind.UHC, None),
        ("CI", "999996666", PayerKind.OTHER, None),
        (None, "15102", PayerKind.MEDICARE, "cgs"),  # FHIR: no indicator, the id decides
        (None, None, PayerKind.OTHER, None),
    ],
)
def test_the_filing_indicator_decides_first_then_the_payer_id(
    indicator: str | None, payer_id: str | None, kind: PayerKind, mac: str | None
) -> None:
    assert DIRECTORY.resolve(indicator, payer_id) == (kind, mac)


@pytest.mark.parametrize(
    ("entry", "words"),
    [
        ('60054 = { kind = "aetna", mac = "novitas" }', "mac is given for medicare payer ids only"),
        ('60054 = { kind = "humana" }', "payer_directory.payer_ids.60054.kind"),
        ('"ab-1" = { kind = "other" }', "payer_directory.payer_ids"),
    ],
)
def test_a_bad_payer_directory_entry_stops_start_up_with_one_line(
    tmp_path: Path, entry: str, words: str
) -> None:
    text = default_ruleset_text().replace('60054 = { kind = "aetna" }', entry)
    path = tmp_path / "ruleset.toml"
    path.write_text(text)
    with pytest.raises(RulesetError) as raised:
        load_ruleset(path)
    assert words in str(raised.value)
    assert "\n" not in str(raised.value)
