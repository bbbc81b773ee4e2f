"""Q4390 facility claims of our own, written as 837I interchanges, converted and scrubbed: each
gets the findings the sources in docs/sending-claims/institutional-billing.md call for, and no
other INST or professional-only finding."""

from collections.abc import Sequence
from zoneinfo import ZoneInfo

import pytest

from claim_scrubber.adapters.ruleset_file import load_ruleset
from claim_scrubber.formats import read_x12
from claim_scrubber.scrubber import Accepted, Scrubber, read_claim_event
from tests.formats.samples import facility_claim, facility_transaction, interchange, subscriber

RULESET = load_ruleset()
SCRUBBER = Scrubber(RULESET, max_message_bytes=1 << 22)
PROFESSIONAL_ONLY = {"CLM-006", "CLM-009", "POS-001", "POS-002"}


def _findings(claim: Sequence[str]) -> set[tuple[str, int | None, str]]:
    data = interchange(facility_transaction(subscriber(2), claim))
    (converted,) = read_x12(data, directory=RULESET.payer_directory, zone=ZoneInfo("UTC")).converted
    read = read_claim_event(converted.document, max_bytes=1 << 22)
    assert isinstance(read, Accepted)
    return {(f.rule_id, f.line_number, f.field) for f in SCRUBBER.verdict(read).findings}


def _inst(found: set[tuple[str, int | None, str]]) -> set[tuple[str, int | None, str]]:
    assert not {rule for rule, *_ in found} & PROFESSIONAL_ONLY
    return {finding for finding in found if finding[0].startswith("INST-")}


@pytest.mark.parametrize(
    "bill",
    [("13", "hospital outpatient"), ("85", "critical access hospital"), ("12", "inpatient Part B")],
    ids=lambda bill: bill[1],
)
def test_the_product_on_an_outpatient_bill_under_0636_is_no_inst_finding(
    bill: tuple[str, str],
) -> None:
    assert _inst(_findings(facility_claim(bill=bill[0]))) == set()


def test_the_product_on_an_inpatient_stays_bill_is_reported_without_separate_payment() -> None:
    found = _inst(_findings(facility_claim(bill="11")))

    assert found == {("INST-002", None, "claim.type_of_bill")}


def test_the_product_under_a_general_supply_revenue_code_is_named_on_its_line() -> None:
    lines = [
        "LX*1",
        "SV2*0360*HC:15275:RT*300*UN*1",
        "DTP*472*D8*20261120",
        "LX*2",
        "SV2*0270*HC:Q4390:RT*2242.8*UN*20",
        "DTP*472*D8*20261120",
    ]

    found = _inst(_findings(facility_claim(lines=lines)))

    assert found == {("INST-003", 2, "claim.lines[1].revenue_code")}


def test_the_product_without_its_application_on_the_bill_is_addon_001_as_if_professional() -> None:
    lines = ["LX*1", "SV2*0636*HC:Q4390:RT*2242.8*UN*20", "DTP*472*D8*20261120"]

    found = _findings(facility_claim(lines=lines))

    assert ("ADDON-001", 1, "claim.lines[0].procedure_code") in found
    assert _inst(found) == set()
