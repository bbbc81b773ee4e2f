"""x12sdk's 837I model as the oracle of our institutional reader: on the real 837I it reads and
on 837I interchanges it generates itself (its own code, its own values), our ClaimEvents agree
with it field by field on everything both read."""

from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
from x12sdk.generate import build_837i
from x12sdk.generate._spec import ClaimSpec, PatientSpec, ServiceLineSpec, SubmissionSpec
from x12sdk.io import X12ModelReader

from claim_scrubber.adapters.ruleset_file import load_ruleset
from claim_scrubber.formats import read_x12

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "samples" / "realworld-corpus" / "837i"
_DIAGNOSIS_ORDER = {"ABK": 0, "BK": 0, "ABF": 1, "BF": 1, "ABN": 1, "BN": 1}


def _dotted(qualifier: str, code: str) -> str:
    return f"{code[:3]}.{code[3:]}" if qualifier.startswith("AB") and len(code) > 3 else code


def _iso(period: str) -> str:
    """x12sdk gives a D8 as a date, an RD8 as its CCYYMMDD-CCYYMMDD text (the start counts)."""
    if len(period) == 10 and period[4] == "-":
        return period
    start = period.split("-", maxsplit=1)[0]
    return f"{start[:4]}-{start[4:6]}-{start[6:8]}"


def _oracle(text: str) -> list[dict[str, Any]]:
    """The fields our ClaimEvent takes, read from x12sdk's 837I loop models."""
    found = []
    with X12ModelReader(text) as reader:
        for model in reader.models():
            transaction = model.model_dump(exclude_none=True)
            for billing in transaction["loop_2000a"]:
                provider = billing["loop_2010aa"]["nm1_segment"]
                for sub in billing.get("loop_2000b", []):
                    holders = [sub, *sub.get("loop_2000c", [])]
                    for holder in holders:
                        found += [
                            _claim(claim, provider, sub) for claim in holder.get("loop_2300", [])
                        ]
    return found


def _served(line: dict[str, Any], statement: dict[str, Any]) -> dict[str, Any]:
    """The line's DTP*472 (x12sdk gives one as a dict), else the claim's statement period."""
    found = line.get("dtp_segment", [])
    for date in [found] if isinstance(found, dict) else found:
        if date["date_time_qualifier"] == "472":
            return dict(date)
    return statement


def _claim(claim: dict[str, Any], provider: dict[str, Any], sub: dict[str, Any]) -> dict[str, Any]:
    clm = claim["clm_segment"]
    facility, _, frequency = clm["health_care_service_location_information"].split(":")
    statement = next(d for d in claim["dtp_segment"] if d["date_time_qualifier"] == "434")
    entries = [
        hi[name]
        for hi in claim.get("hi_segment", [])
        for name in sorted(n for n in hi if n.startswith("health_care_code_"))
    ]
    diagnoses = sorted(
        (e for e in entries if e[0] in _DIAGNOSIS_ORDER), key=lambda e: _DIAGNOSIS_ORDER[e[0]]
    )
    return {
        "claim_id": clm["patient_control_number"],
        "type_of_bill": facility + frequency,
        "billing_npi": provider["identification_code"],
        "payer_id": sub["loop_2010bb"]["nm1_segment"]["identification_code"],
        "member_id": sub["loop_2010ba"]["nm1_segment"]["identification_code"],
        "diagnoses": [_dotted(q, code) for q, code, *_ in diagnoses],
        "lines": [
            {
                "line_number": int(line["lx_segment"]["assigned_number"]),
                "revenue_code": line["sv2_segment"]["service_line_revenue_code"],
                "procedure_code": line["sv2_segment"][
                    "composite_medical_procedure_identifier"
                ].split(":")[1],
                "units": Decimal(str(line["sv2_segment"]["service_unit_count"])),
                "unit_basis": line["sv2_segment"]["measurement_code"],
                "charge": Decimal(str(line["sv2_segment"]["line_item_charge_amount"])),
                "service_date": _iso(str(_served(line, statement)["date_time_period"])),
            }
            for line in claim["loop_2400"]
        ],
    }


def _ours(data: bytes) -> list[dict[str, Any]]:
    conversion = read_x12(data, directory=load_ruleset().payer_directory, zone=ZoneInfo("UTC"))
    assert not conversion.rejected, conversion.rejected
    found = []
    for converted in conversion.converted:
        claim = orjson.loads(converted.document)["claim"]
        assert claim["claim_type"] == "institutional"
        assert claim["place_of_service"] == ""
        found.append(
            {
                "claim_id": claim["claim_id"],
                "type_of_bill": claim["type_of_bill"],
                "billing_npi": claim["billing_provider"]["npi"],
                "payer_id": claim["payer"]["payer_id"],
                "member_id": claim["patient"]["member_id"],
                "diagnoses": claim["diagnoses"],
                "lines": [
                    {
                        "line_number": line["line_number"],
                        "revenue_code": line["revenue_code"],
                        "procedure_code": line["procedure_code"],
                        "units": Decimal(str(line["units"])),
                        "unit_basis": line["unit_basis"],
                        "charge": Decimal(line["charge"]),
                        "service_date": line["service_date"],
                    }
                    for line in claim["lines"]
                ],
            }
        )
    return found


def _wrapped(transaction: str) -> str:
    """x12sdk builds the transaction set; the interchange and group envelopes are ours."""
    return (
        "ISA*00*          *00*          *ZZ*SUBMITTER01    *ZZ*RECEIVER01     *261128*1200*^*"
        "00501*000000101*0*P*:~GS*HC*SUBMITTER01*RECEIVER01*20261128*1200*101*X*005010X223A2~"
        f"{transaction}GE*1*101~IEA*1*000000101~"
    )


def _submission(seed: int) -> SubmissionSpec:
    """Outpatient facility bills: a skin-substitute application with Q4390, a clinic visit,
    patients who are subscribers and dependents."""
    q4390 = ClaimSpec(
        charge=Decimal("2542.80"),
        lines=[
            ServiceLineSpec(charge=Decimal("300.00"), procedure="15275"),
            ServiceLineSpec(charge=Decimal("2242.80"), procedure="Q4390", units=20),
        ],
    )
    visit = ClaimSpec(charge=Decimal("125.50"), lines=[ServiceLineSpec(charge=Decimal("125.50"))])
    return SubmissionSpec(
        patients=[
            PatientSpec(claims=[q4390, visit][: 1 + seed % 2]),
            PatientSpec(claims=[visit], dependent=True),
            PatientSpec(claims=[q4390, q4390]),
        ]
    )


@pytest.mark.parametrize("seed", range(6))
def test_our_reader_agrees_with_x12sdk_on_the_837i_it_generates(seed: int) -> None:
    text = _wrapped(build_837i(_submission(seed), seed=seed).x12())

    expected = _oracle(text)

    assert len(expected) >= 3, "the oracle found the claims"
    assert _ours(text.encode()) == expected


def test_our_reader_agrees_with_x12sdk_on_the_real_837i_it_reads() -> None:
    data = (CORPUS / "LinuxForHealth__x12__two-claims-single-provider.837i").read_bytes()

    expected = _oracle(data.decode())

    assert [claim["claim_id"] for claim in expected] == ["756048Q", "756049Q"]
    assert _ours(data) == expected


@pytest.mark.parametrize(
    "name",
    [
        "LinuxForHealth__x12__out-of-network-repriced-claim.837i",
        "LinuxForHealth__x12__ppo-repriced-claim.837i",
    ],
)
def test_where_the_sender_split_composites_with_another_separator_x12sdk_cannot_split_them_either(
    name: str,
) -> None:
    data = (CORPUS / name).read_bytes()
    (claim,) = _oracle_claims(data.decode())

    (entry,) = claim["hi_segment"][0]["health_care_code_1"]
    assert ">" in entry, "x12sdk keeps 'BK>53081' whole: ISA16 declares ':'"
    conversion = read_x12(data, directory=load_ruleset().payer_directory, zone=ZoneInfo("UTC"))
    (rejected,) = conversion.rejected
    assert "component separator (ISA16)" in rejected.message


def _oracle_claims(text: str) -> list[dict[str, Any]]:
    with X12ModelReader(text) as reader:
        return [
            claim
            for model in reader.models()
            for billing in model.model_dump(exclude_none=True)["loop_2000a"]
            for sub in billing.get("loop_2000b", [])
            for holder in [sub, *sub.get("loop_2000c", [])]
            for claim in holder.get("loop_2300", [])
        ]
