"""x12sdk (an independent, typed 837P model) as the oracle: on every real sample, our reader
agrees with it field by field on everything both read."""

from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
from x12sdk.io import X12ModelReader

from claim_scrubber.adapters.ruleset_file import load_ruleset
from claim_scrubber.formats import read_x12
from tests.formats.samples import sample

SAMPLES = [
    "X222-anesthesia.edi",
    "X222-commercial-health-insurance.edi",
    "X222-drug-administered-in-the-physician-office.edi",
    "lfh-demo.example8.837",
    "lfh-demo.drug.example10.3.837",
]


def _dotted(qualifier: str, code: str) -> str:
    return f"{code[:3]}.{code[3:]}" if qualifier in {"ABK", "ABF"} and len(code) > 3 else code


def _line(line: dict[str, Any], claim_place: str) -> dict[str, Any]:
    sv1 = line["sv1_segment"]
    procedure = sv1["product_service_id_qualifier"].split(":")
    [service] = [d for d in line["dtp_segment"] if d["date_time_qualifier"] == "472"]
    served = str(service["date_time_period"])
    if service["date_time_period_format_qualifier"] == "RD8":
        start = served.split("-", maxsplit=1)[0]
        served = f"{start[:4]}-{start[4:6]}-{start[6:]}"
    place = sv1.get("place_of_service_code")
    rendering = line.get("loop_2420a", {}).get("nm1_segment", {}).get("identification_code")
    lin = line.get("loop_2410", {}).get("lin_segment", {})
    return {
        "line_number": int(line["lx_segment"]["assigned_number"]),
        "procedure_code": procedure[1],
        "modifiers": [code for code in procedure[2:6] if code],
        "units": Decimal(str(sv1["service_unit_count"])),
        "unit_basis": sv1["unit_basis_measurement_code"],
        "charge": Decimal(str(sv1["line_item_charge_amount"])),
        "service_date": served[:10],
        "diagnosis_pointers": [
            int(p) for p in str(sv1["composite_diagnosis_code_pointer"]).split(":")
        ],
        "place_of_service": place if place and place != claim_place else None,
        "rendering_npi": rendering,
        "note": (procedure[6] or None) if len(procedure) > 6 else None,
        "ndc": lin.get("national_drug_code_universal_product_number")
        if lin.get("product_service_id_qualifier") == "N4"
        else None,
        "attachments": [
            (p["report_type_code"], p["report_transmission_code"])
            for p in line.get("pwk_segment", [])
        ],
    }


def oracle(data: bytes) -> list[dict[str, Any]]:
    """The fields our ClaimEvent takes, read from x12sdk's loop models."""
    found = []
    with X12ModelReader(data.decode()) as reader:
        for model in reader.models():
            transaction = model.model_dump(exclude_none=True)
            for billing in transaction["loop_2000a"]:
                provider = billing["loop_2010aa"]["nm1_segment"]
                tax = [
                    r
                    for r in billing["loop_2010aa"].get("ref_segment", [])
                    if r["reference_identification_qualifier"] == "EI"
                ]
                for sub in billing.get("loop_2000b", []):
                    member = sub["loop_2010ba"]["nm1_segment"]
                    payer = sub["loop_2010bb"]["nm1_segment"]
                    holders = [(sub, sub["loop_2010ba"])] + [
                        (patient, patient["loop_2010ca"]) for patient in sub.get("loop_2000c", [])
                    ]
                    for holder, person in holders:
                        for claim in holder.get("loop_2300", []):
                            place = claim["clm_segment"][
                                "health_care_service_location_information"
                            ].split(":")[0]
                            diagnoses = [
                                _dotted(*hi[field])
                                for hi in claim.get("hi_segment", [])
                                for field in sorted(
                                    f for f in hi if f.startswith("health_care_code_")
                                )
                            ]
                            rendering = claim.get("loop_2310b", {}).get("nm1_segment", {})
                            found.append(
                                {
                                    "claim_id": claim["clm_segment"]["patient_control_number"],
                                    "place_of_service": place,
                                    "billing_npi": provider["identification_code"],
                                    "tax_id": tax[0]["reference_identification"] if tax else None,
                                    "payer_id": payer["identification_code"],
                                    "payer_name": payer["name_last_or_organization_name"],
                                    "member_id": member["identification_code"],
                                    "last_name": person["nm1_segment"][
                                        "name_last_or_organization_name"
                                    ],
                                    "first_name": person["nm1_segment"].get("name_first"),
                                    "birth_date": str(person["dmg_segment"]["date_time_period"]),
                                    "sex": person["dmg_segment"]["gender_code"],
                                    "rendering_npi": rendering.get("identification_code"),
                                    "diagnoses": diagnoses,
                                    "attachments": [
                                        (
                                            p["report_type_code"],
                                            p["report_transmission_code"],
                                        )
                                        for p in claim.get("pwk_segment", [])
                                    ],
                                    "lines": [_line(line, place) for line in claim["loop_2400"]],
                                }
                            )
    return found


def ours(data: bytes) -> list[dict[str, Any]]:
    conversion = read_x12(data, directory=load_ruleset().payer_directory, zone=ZoneInfo("UTC"))
    assert not conversion.rejected
    found = []
    for converted in conversion.converted:
        claim = orjson.loads(converted.document)["claim"]
        found.append(
            {
                "claim_id": claim["claim_id"],
                "place_of_service": claim["place_of_service"],
                "billing_npi": claim["billing_provider"]["npi"],
                "tax_id": claim["billing_provider"].get("tax_id"),
                "payer_id": claim["payer"]["payer_id"],
                "payer_name": claim["payer"]["name"],
                "member_id": claim["patient"]["member_id"],
                "last_name": claim["patient"]["last_name"],
                "first_name": claim["patient"].get("first_name"),
                "birth_date": claim["patient"]["birth_date"],
                "sex": claim["patient"]["sex"],
                "rendering_npi": claim.get("rendering_provider", {}).get("npi"),
                "diagnoses": claim["diagnoses"],
                "attachments": [
                    (a["report_type"], a["transmission"]) for a in claim.get("attachments", [])
                ],
                "lines": [
                    {
                        **line,
                        "units": Decimal(str(line["units"])),
                        "charge": Decimal(line["charge"]),
                        "place_of_service": line.get("place_of_service"),
                        "rendering_npi": line.get("rendering_npi"),
                        "note": line.get("note"),
                        "ndc": line.get("ndc"),
                        "attachments": [
                            (a["report_type"], a["transmission"])
                            for a in line.get("attachments", [])
                        ],
                    }
                    for line in claim["lines"]
                ],
            }
        )
    return found


@pytest.mark.parametrize("name", SAMPLES)
def test_our_reader_agrees_with_x12sdk_field_by_field(name: str) -> None:
    data = sample(f"837p/{name}")
    expected = oracle(data)
    assert expected, "the oracle found no claim"
    assert ours(data) == expected
