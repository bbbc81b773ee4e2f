"""The real 837P samples (../shared/samples/claim-formats/837p, see its README): each converts,
and the converted fields, checked by hand against the file, are stated here."""

from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest

from claim_scrubber.adapters.ruleset_file import load_ruleset
from claim_scrubber.formats import Conversion, read_x12
from tests.formats.samples import sample

UTC = ZoneInfo("UTC")


def convert(name: str, zone: ZoneInfo = UTC) -> Conversion:
    return read_x12(sample(f"837p/{name}"), directory=load_ruleset().payer_directory, zone=zone)


def claims(name: str) -> list[dict[str, Any]]:
    conversion = convert(name)
    assert not conversion.rejected, conversion.rejected
    return [orjson.loads(claim.document) for claim in conversion.converted]


def test_drug_administered_in_the_office_gives_one_commercial_claim_with_two_lines() -> None:
    [event] = claims("X222-drug-administered-in-the-physician-office.edi")
    claim = event["claim"]
    assert event["event_type"] == "claim.submitted"
    assert event["occurred_at"] == "2004-08-01T12:00:00+00:00"  # BHT04/05 in UTC
    assert claim["claim_id"] == "CLMNO12345"
    assert claim["payer"] == {"kind": "other", "payer_id": "PLANID12345", "name": "R&R Health Plan"}
    assert claim["billing_provider"] == {
        "npi": "1234567893",
        "name": "Associates in Medicine",
        "tax_id": "587654321",
    }
    assert claim["rendering_provider"] == {"npi": "1122333341"}  # 2310B
    assert claim["place_of_service"] == "11"
    assert claim["diagnoses"] == ["03591"]  # BK (ICD-9) passes unchanged, for CLM-005
    assert claim["patient"] == {
        "member_id": "MBRID12345",
        "first_name": "Steve",
        "last_name": "Vaughn",
        "birth_date": "1943-05-01",
        "sex": "M",
    }
    first, second = claim["lines"]
    assert first == {
        "line_number": 1,
        "procedure_code": "90782",
        "modifiers": [],
        "units": 1,
        "unit_basis": "UN",
        "charge": "50.00",
        "service_date": "2004-07-11",
        "diagnosis_pointers": [1],
    }
    # SV105 is 11 like CLM05-1, so the line carries no place of its own; the 2410 NDC is ignored
    assert second["procedure_code"] == "J1550"
    assert second["charge"] == "53.37"
    assert "place_of_service" not in second
    assert "documentation" not in claim
    assert "attachments" not in claim


def test_a_dependent_patients_claim_is_found_under_the_patient_level() -> None:
    [event] = claims("X222-commercial-health-insurance.edi")
    claim = event["claim"]
    assert claim["claim_id"] == "26463774"
    # the patient is TED (2010CA); the member id is the subscriber's (2010BA)
    assert claim["patient"] == {
        "member_id": "JS00111223333",
        "first_name": "TED",
        "last_name": "SMITH",
        "birth_date": "1973-05-01",
        "sex": "M",
    }
    assert claim["payer"] == {
        "kind": "other",
        "payer_id": "999996666",
        "name": "KEY INSURANCE COMPANY",
    }
    assert claim["billing_provider"]["npi"] == "9876543210"
    assert "rendering_provider" not in claim  # no 2310B: the billing provider rendered
    assert claim["diagnoses"] == ["0340", "V7389"]
    assert [
        (
            line["line_number"],
            line["procedure_code"],
            line["charge"],
            line["service_date"],
            line["diagnosis_pointers"],
        )
        for line in claim["lines"]
    ] == [
        (1, "99213", "40.00", "2006-10-03", [1]),
        (2, "87070", "15.00", "2006-10-03", [1]),
        (3, "99214", "35.00", "2006-10-10", [2]),
        (4, "86663", "10.00", "2006-10-10", [2]),
    ]


def test_anesthesia_claim_is_medicare_with_minutes_and_three_modifiers() -> None:
    [event] = claims("X222-anesthesia.edi")
    claim = event["claim"]
    assert claim["claim_id"] == "153829140"
    assert claim["payer"] == {"kind": "medicare", "payer_id": "05440", "name": "ABC PAYER"}
    assert claim["place_of_service"] == "22"
    assert claim["rendering_provider"] == {"npi": "5678912345"}  # 2310B, not 2310C's NM1*77
    [line] = claim["lines"]
    assert line["procedure_code"] == "00142"
    assert line["modifiers"] == ["QK", "QS", "P1"]
    assert line["unit_basis"] == "MJ"
    assert line["units"] == 61
    assert line["charge"] == "827.00"
    assert line["service_date"] == "2005-01-12"


def test_wheelchair_claim_keeps_its_line_pwk_on_its_line_and_an_rd8_start() -> None:
    [event] = claims("lfh-demo.example8.837")
    claim = event["claim"]
    assert claim["claim_id"] == "SMI123"
    assert claim["payer"] == {"kind": "medicare", "payer_id": "99999", "name": "DMERC CARRIER"}
    assert claim["place_of_service"] == "12"
    assert claim["diagnoses"] == ["436", "3449"]
    assert "attachments" not in claim  # the PWK is in loop 2400: the line's (v1.2)
    assert "documentation" not in claim  # a PWK says documentation exists; it is not it
    [line] = claim["lines"]
    assert line["attachments"] == [{"report_type": "CT", "transmission": "AA"}]
    assert line["modifiers"] == ["RR", "KH", "BR"]
    assert line["units"] == 1  # 1.00
    assert line["charge"] == "75.00"
    assert line["service_date"] == "2005-03-21"  # RD8 20050321-20050321
    assert line["diagnosis_pointers"] == [1, 2]
    assert "rendering_npi" not in line  # 2420E NM1*DK is the ordering provider


def test_home_infusion_claim_has_six_lines_with_noc_notes_and_their_ndcs() -> None:
    [event] = claims("lfh-demo.drug.example10.3.837")
    claim = event["claim"]
    assert claim["billing_provider"]["tax_id"] == "10-1234567"
    lines = claim["lines"]
    assert [(line["procedure_code"], line["units"], line["charge"]) for line in lines] == [
        ("S9500", 7, "1400.00"),
        ("J0696", 56, "682.50"),
        ("J7051", 28, "15.12"),
        ("J3490", 7, "67.69"),
        ("J3490", 14, "57.12"),
        ("J3490", 7, "10.50"),
    ]
    assert {line["service_date"] for line in lines} == {"2004-02-01"}  # RD8 starts
    assert [line.get("note") for line in lines[3:]] == [
        "Sod Chl 0.9%see NDC#",
        "Sod Chl 0.9% see NDC#",
        "Hep Lock see NDC#",
    ]
    assert [line.get("ndc") for line in lines[3:]] == [  # 2410 LIN*N4: three different drugs
        "00338004938",
        "08290033010",
        "08290038005",
    ]
    assert all("place_of_service" not in line for line in lines)  # SV105 12 = CLM05-1


@pytest.mark.parametrize(
    "name",
    [
        "X222-anesthesia.edi",
        "X222-commercial-health-insurance.edi",
        "X222-drug-administered-in-the-physician-office.edi",
        "lfh-demo.example8.837",
        "lfh-demo.drug.example10.3.837",
    ],
)
def test_every_sample_converts_to_the_same_event_ids_twice(name: str) -> None:
    first = [claim.event_id for claim in convert(name).converted]
    assert first
    assert first == [claim.event_id for claim in convert(name).converted]


def test_the_intake_zone_gives_x12_times_their_offset() -> None:
    conversion = convert("X222-anesthesia.edi", ZoneInfo("America/Chicago"))
    event = orjson.loads(conversion.converted[0].document)
    assert event["occurred_at"] == "2005-01-17T10:23:00-06:00"
