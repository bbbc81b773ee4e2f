"""FHIR R4 Claim intake on the real HL7 and Da Vinci examples (../shared/samples/claim-formats),
with fhir.resources' R4B models as the oracle, and our documentation profile."""

import json
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
from fhir.resources.R4B.claim import Claim as R4BClaim
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from claim_scrubber.adapters.ruleset_file import load_ruleset
from claim_scrubber.formats import (
    DOCUMENTATION_SYSTEM,
    WOUND_LOCATION_SYSTEM,
    Conversion,
    ConvertedClaim,
    RejectedClaim,
    read_fhir,
)
from claim_scrubber.models import ClaimEvent, DeadLetterKind
from tests.formats.samples import sample

CMS1500 = "fhir/claim-example-cms1500-medical.json"
PAS_CLAIM = "fhir/davinci-pas-claim-referral-authorization.json"
PAS_BUNDLE = "fhir/davinci-pas-request-bundle-referral-authorization.json"


def read(data: bytes, zone: str = "UTC") -> Conversion:
    return read_fhir(data, directory=load_ruleset().payer_directory, zone=ZoneInfo(zone))


def converted(data: bytes) -> dict[str, Any]:
    conversion = read(data)
    assert not conversion.rejected, conversion.rejected
    [claim] = conversion.converted
    event: dict[str, Any] = orjson.loads(claim.document)
    return event


def test_the_hl7_cms1500_example_converts_with_its_fields() -> None:
    event = converted(sample(CMS1500))
    claim = event["claim"]
    assert event["occurred_at"] == "2015-10-16T00:00:00-07:00"
    assert event["event_type"] == "claim.submitted"
    assert claim["claim_id"] == "MED-00050"
    assert claim["claim_type"] == "institutional"  # as the example says, though CMS-1500
    assert claim["payer"] == {"kind": "other", "payer_id": "123456", "name": "Humana Inc."}
    assert claim["billing_provider"] == {"npi": ""}  # Organization/1 does not resolve: CLM-001
    assert claim["patient"] == {
        "first_name": "Alvina",
        "last_name": "Ashcraft",
        "birth_date": "1954-06-11",
        "sex": "F",
    }
    assert claim["diagnoses"] == ["M96.1", "G89.4", "M53.88", "M47.816"]
    assert claim["place_of_service"] == "24"  # from the item: R4 has no claim-level POS
    assert claim["lines"] == [
        {
            "line_number": 1,
            "procedure_code": "62264",
            "modifiers": [],
            "units": 1,
            "unit_basis": "UN",
            "charge": "12500.00",
            "service_date": "2015-10-13",
            "diagnosis_pointers": [2, 4],
        }
    ]
    assert "documentation" not in claim


def test_our_mapping_agrees_with_fhir_resources_r4b_on_the_cms1500_example() -> None:
    data = sample(CMS1500)
    oracle = R4BClaim.model_validate_json(data).model_dump(mode="json", exclude_none=True)
    claim = converted(data)["claim"]
    assert claim["claim_id"] == oracle["identifier"][0]["value"]
    assert claim["diagnoses"] == [
        d["diagnosisCodeableConcept"]["coding"][0]["code"]
        for d in sorted(oracle["diagnosis"], key=lambda d: d["sequence"])
    ]
    for line, item in zip(claim["lines"], oracle["item"], strict=True):
        assert line["line_number"] == item["sequence"]
        assert line["procedure_code"] == item["productOrService"]["coding"][0]["code"]
        assert Decimal(line["charge"]) == Decimal(str(item["net"]["value"]))
        assert line["service_date"] == item["servicedDate"]
        assert line["diagnosis_pointers"] == item["diagnosisSequence"]
        assert claim["place_of_service"] == item["locationCodeableConcept"]["coding"][0]["code"]
    [patient] = [r for r in oracle["contained"] if r["resourceType"] == "Patient"]
    assert claim["patient"]["last_name"] == patient["name"][0]["family"]
    assert claim["patient"]["birth_date"] == patient["birthDate"]


def only_rejection(conversion: Conversion) -> RejectedClaim:
    [rejected] = conversion.claims
    assert isinstance(rejected, RejectedClaim)
    return rejected


@pytest.mark.parametrize("name", [PAS_CLAIM, PAS_BUNDLE])
def test_a_prior_authorization_request_is_an_unsupported_transaction(name: str) -> None:
    rejected = only_rejection(read(sample(name)))
    assert rejected.kind is DeadLetterKind.UNSUPPORTED_TRANSACTION
    assert "Claim.use is not 'claim'" in rejected.message


def pas_bundle_as_a_claim() -> dict[str, Any]:
    """The real Da Vinci bundle, its Claim turned into a claim for payment with a charge and a
    date of service (in memory; the file is unchanged)."""
    bundle: dict[str, Any] = json.loads(sample(PAS_BUNDLE))
    claim = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Claim")
    claim["use"] = "claim"
    claim["item"][0] |= {"net": {"value": 150, "currency": "USD"}, "servicedDate": "2005-05-02"}
    return bundle


def test_bundle_references_resolve_by_full_url_and_type_and_id() -> None:
    event = converted(json.dumps(pas_bundle_as_a_claim()).encode())
    claim = event["claim"]
    assert event["occurred_at"] == "2005-05-02T11:01:00+05:00"
    assert claim["billing_provider"] == {"npi": "8189991234", "name": "DR. JOE SMITH CORPORATION"}
    assert claim["payer"] == {
        "kind": "other",
        "payer_id": "789312",  # six digits: CLM rules judge it, intake keeps it
        "name": "MARYLAND CAPITAL INSURANCE COMPANY",
    }
    assert claim["patient"]["last_name"] == "SMITH"
    assert claim["diagnoses"] == ["G89.4"]
    [line] = claim["lines"]
    assert line["rendering_npi"] == "987654321"  # item.careTeamSequence -> Practitioner
    assert line["procedure_code"] == "3"  # X12 1365, not CPT: the rules say so
    assert claim["place_of_service"] == "11"


def documented_claim() -> dict[str, Any]:
    def info(sequence: int, code: str, **value: Any) -> dict[str, Any]:
        return {
            "sequence": sequence,
            "category": {"coding": [{"system": DOCUMENTATION_SYSTEM, "code": code}]},
            **value,
        }

    return {
        "resourceType": "Claim",
        "id": "q4390-1",
        "identifier": [{"use": "official", "value": "Q4390-CLAIM-1"}],
        "use": "claim",
        "type": {"coding": [{"code": "professional"}]},
        "created": "2026-11-27",
        "provider": {"reference": "#clinic"},
        "insurer": {"identifier": {"value": "04412"}, "display": "Novitas"},
        "contained": [
            {
                "resourceType": "Organization",
                "id": "clinic",
                "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": "1234567893"}],
                "name": "Wound Clinic",
            },
            {
                "resourceType": "Device",
                "id": "graft",
                "deviceName": [{"name": "Ascendion", "type": "user-friendly-name"}],
                "lotNumber": "LOT-7",
            },
        ],
        "supportingInfo": [
            info(1, "wound-area", valueQuantity={"value": 20.5, "unit": "cm2"}),
            info(2, "wound-laterality", valueString="right"),
            info(3, "standard-of-care-weeks", valueQuantity={"value": 4}),
            info(4, "application-number", valueQuantity={"value": 1}),
            info(5, "episode-start", timingDate="2026-11-01"),
            info(6, "product-applied", valueQuantity={"value": 20}),
            info(7, "product-wasted", valueQuantity={"value": 0}),
            info(8, "medical-necessity", valueString="CANARYNECESSITY"),
            {
                "sequence": 9,
                "category": {"coding": [{"code": "info"}]},
                "valueString": "CANARYNOTE",
            },
        ],
        "diagnosis": [
            {
                "sequence": 1,
                "diagnosisCodeableConcept": {
                    "coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "L97412"}]
                },
            },
        ],
        "item": [
            {
                "sequence": 1,
                "productOrService": {
                    "coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": "15275"}]
                },
                "servicedDate": "2026-11-20",
                "net": {"value": 300},
                "diagnosisSequence": [1],
                "locationCodeableConcept": {"coding": [{"code": "11"}]},
                "bodySite": {"coding": [{"system": WOUND_LOCATION_SYSTEM, "code": "foot"}]},
            },
            {
                "sequence": 2,
                "productOrService": {"coding": [{"code": "Q4390"}]},
                "modifier": [{"coding": [{"code": "JZ"}]}],
                "quantity": {"value": 20},
                "unitPrice": {"value": 112.14},
                "servicedDate": "2026-11-20",
                "diagnosisSequence": [1],
                "informationSequence": [9],
                "locationCodeableConcept": {"coding": [{"code": "22"}]},
                "udi": [{"reference": "#graft"}],
            },
        ],
    }


def test_our_profile_carries_the_wound_documentation() -> None:
    event = converted(json.dumps(documented_claim()).encode())
    claim = event["claim"]
    assert event["occurred_at"] == "2026-11-27T00:00:00+00:00"  # a date: midnight in the zone
    assert claim["documentation"] == {
        "wound": {
            "area_cm2": 20.5,
            "laterality": "right",
            "standard_of_care_weeks": 4,
            "application_number": 1,
            "episode_start_date": "2026-11-01",
            "location": "foot",
        },
        "product": {
            "quantity_applied_cm2": 20,
            "quantity_wasted_cm2": 0,
            "name": "Ascendion",
            "lot_numbers": ["LOT-7"],
        },
        "medical_necessity": "CANARYNECESSITY",
    }
    assert claim["payer"] == {
        "kind": "medicare",
        "payer_id": "04412",
        "name": "Novitas",
        "mac": "novitas",
    }
    assert claim["diagnoses"] == ["L97.412"]
    q4390 = claim["lines"][1]
    assert q4390["charge"] == "2242.80"  # unitPrice x quantity
    assert q4390["units"] == 20
    assert q4390["place_of_service"] == "22"  # differs from the claim's (the first item's)
    assert q4390["note"] == "CANARYNOTE"


def test_a_claim_without_our_profile_has_no_documentation() -> None:
    claim = documented_claim()
    for info in claim["supportingInfo"]:
        info["category"]["coding"][0]["system"] = "http://example.org/other"
    claim["item"][0].pop("bodySite")
    claim["item"][1].pop("udi")
    assert "documentation" not in converted(json.dumps(claim).encode())["claim"]


@pytest.mark.parametrize(
    ("change", "kind", "words"),
    [
        ({"created": "2026-11-27T10:00:00"}, DeadLetterKind.INVALID_FHIR, "no time zone"),
        ({"item": []}, DeadLetterKind.INVALID_FHIR, "at item"),
        (
            {"type": {"coding": [{"code": "oral"}]}},
            DeadLetterKind.UNSUPPORTED_TRANSACTION,
            "Claim.type",
        ),
        ({"use": "predetermination"}, DeadLetterKind.UNSUPPORTED_TRANSACTION, "Claim.use"),
        ({"identifier": [{"value": 12}]}, DeadLetterKind.INVALID_FHIR, "identifier.0.value"),
    ],
    ids=["time-without-zone", "no-items", "oral", "predetermination", "number-as-identifier"],
)
def test_an_unusable_claim_is_rejected_with_the_element_and_no_value(
    change: dict[str, Any], kind: DeadLetterKind, words: str
) -> None:
    claim = documented_claim() | change
    rejected = only_rejection(read(json.dumps(claim).encode()))
    assert rejected.kind is kind
    assert words in rejected.message
    assert "CANARY" not in rejected.message


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (b"not json", DeadLetterKind.INVALID_FHIR),
        (b"[1, 2]", DeadLetterKind.INVALID_FHIR),
        (b"\xff\xfe", DeadLetterKind.INVALID_FHIR),
        (b'{"resourceType": "Patient"}', DeadLetterKind.UNSUPPORTED_TRANSACTION),
        (b'{"resourceType": "Bundle", "entry": []}', DeadLetterKind.UNSUPPORTED_TRANSACTION),
    ],
    ids=["text", "array", "not-utf8", "a-patient", "empty-bundle"],
)
def test_an_unusable_document_is_one_rejection(data: bytes, kind: DeadLetterKind) -> None:
    rejected = only_rejection(read(data))
    assert rejected.index is None
    assert rejected.kind is kind


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)
CLAIM_ELEMENTS = sorted(documented_claim())


# Generating nested JSON is slow on a machine busy with the broker's tests; the health check
# would then fail the test for the machine's load, not for the mapping.
@settings(suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(CLAIM_ELEMENTS), json_values, max_size=4))
def test_any_json_in_a_claims_elements_never_makes_the_mapping_raise(
    changes: dict[str, Any],
) -> None:
    for outcome in read(json.dumps(documented_claim() | changes).encode()).claims:
        if isinstance(outcome, ConvertedClaim):
            ClaimEvent.model_validate_json(outcome.document)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_any_bundle_entries_give_valid_events_or_say_why_the_bundle_is_unusable(
    entries: Any,
) -> None:
    conversion = read(json.dumps({"resourceType": "Bundle", "entry": entries}).encode())

    assert conversion.claims, "every input gives its claims, or the reason it has none"
    for outcome in conversion.claims:
        if isinstance(outcome, ConvertedClaim):
            ClaimEvent.model_validate_json(outcome.document)
        elif isinstance(outcome, RejectedClaim):
            assert outcome.kind in {
                DeadLetterKind.INVALID_FHIR,
                DeadLetterKind.UNSUPPORTED_TRANSACTION,
            }


def test_an_item_without_net_or_date_takes_the_billable_period_and_has_no_charge() -> None:
    claim = documented_claim()
    claim["billablePeriod"] = {"start": "2026-11-19T13:55:57+00:00", "end": "2026-11-19"}
    for item in claim["item"]:
        for element in ("net", "unitPrice", "servicedDate"):
            item.pop(element, None)

    lines = converted(json.dumps(claim).encode())["claim"]["lines"]

    assert [line["service_date"] for line in lines] == ["2026-11-19", "2026-11-19"]
    assert all("charge" not in line for line in lines)


def test_a_diagnosis_reference_is_read_from_the_conditions_icd10cm_coding() -> None:
    claim = documented_claim()
    claim["contained"].append(
        {
            "resourceType": "Condition",
            "id": "ulcer",
            "code": {
                "coding": [
                    {"system": "http://snomed.info/sct", "code": "402863005"},
                    {"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "L97.412"},
                ]
            },
        }
    )
    claim["diagnosis"].append({"sequence": 2, "diagnosisReference": {"reference": "#ulcer"}})
    claim["diagnosis"].append(
        {"sequence": 3, "diagnosisCodeableConcept": {"coding": [{"code": "654456"}]}}
    )

    diagnoses = converted(json.dumps(claim).encode())["claim"]["diagnoses"]

    # ICD-10-CM coding first, else the first coding as sent, for CLM-005 to judge
    assert diagnoses == ["L97.412", "L97.412", "654456"]


def test_an_npi_is_read_from_a_references_identifier_whatever_its_style() -> None:
    claim = documented_claim()
    npi = {"system": "http://hl7.org/fhir/sid/us-npi", "value": "1245319599"}
    claim["provider"] = {"reference": "Organization/elsewhere", "identifier": npi}
    claim["careTeam"] = [{"sequence": 1, "provider": {"identifier": npi}, "responsible": True}]

    event = converted(json.dumps(claim).encode())["claim"]

    assert event["billing_provider"]["npi"] == "1245319599"
    assert event["rendering_provider"] == {"npi": "1245319599"}


def test_a_drugs_ndc_is_read_from_its_coding_or_its_first_detail() -> None:
    claim = documented_claim()
    ndc = "http://hl7.org/fhir/sid/ndc"
    claim["item"][0]["productOrService"]["coding"].append({"system": ndc, "code": "00338004938"})
    claim["item"][1]["detail"] = [
        {"sequence": 1, "productOrService": {"coding": [{"system": ndc, "code": "08290033010"}]}}
    ]

    lines = converted(json.dumps(claim).encode())["claim"]["lines"]

    assert [line["procedure_code"] for line in lines] == ["15275", "Q4390"]
    assert [line.get("ndc") for line in lines] == ["00338004938", "08290033010"]


def _event_id(claim: dict[str, Any]) -> str:
    return str(converted(json.dumps(claim).encode())["event_id"])


def test_a_corrected_claim_without_a_version_gets_a_new_event_id() -> None:
    original = documented_claim()
    corrected = documented_claim()
    corrected["item"][0]["net"] = {"value": 310}

    assert _event_id(original) == _event_id(documented_claim())  # the same claim, the same id
    assert _event_id(corrected) != _event_id(original)


def test_a_versioned_claim_is_identified_by_its_identifier_and_version() -> None:
    version_1 = documented_claim() | {"meta": {"versionId": "1"}}
    version_1_in_another_bundle_shape = version_1 | {"id": "another-resource-id"}
    version_2 = documented_claim() | {"meta": {"versionId": "2"}}

    assert _event_id(version_1) == _event_id(version_1_in_another_bundle_shape)
    assert _event_id(version_2) != _event_id(version_1)


def test_an_institutional_claim_carries_its_type_of_bill_and_each_items_revenue_code() -> None:
    claim = documented_claim()
    claim["type"] = {
        "coding": [
            {"system": "http://terminology.hl7.org/CodeSystem/claim-type", "code": "institutional"}
        ]
    }
    claim["supportingInfo"] = [
        *claim.get("supportingInfo", []),
        {
            "sequence": 90,
            "category": {
                "coding": [
                    {
                        "system": "http://hl7.org/fhir/us/carin-bb/CodeSystem/C4BBSupportingInfoType",
                        "code": "typeofbill",
                    }
                ]
            },
            "code": {
                "coding": [{"system": "https://www.nubc.org/CodeSystem/TypeOfBill", "code": "131"}]
            },
        },
    ]
    for item, revenue in zip(claim["item"], ("0360", "0636"), strict=True):
        item["revenue"] = {
            "coding": [{"system": "https://www.nubc.org/CodeSystem/RevenueCodes", "code": revenue}]
        }

    event = converted(json.dumps(claim).encode())["claim"]

    assert event["claim_type"] == "institutional"
    assert event["type_of_bill"] == "131"
    assert [line["revenue_code"] for line in event["lines"]] == ["0360", "0636"]


def test_a_type_of_bill_may_come_as_the_claims_sub_type_in_nubcs_system() -> None:
    claim = documented_claim()
    claim["type"] = {"coding": [{"code": "institutional"}]}
    claim["subType"] = {
        "coding": [{"system": "https://www.nubc.org/CodeSystem/TypeOfBill", "code": "851"}]
    }

    assert converted(json.dumps(claim).encode())["claim"]["type_of_bill"] == "851"
