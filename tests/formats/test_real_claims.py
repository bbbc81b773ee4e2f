"""Every real claim file under ../shared/samples scrubbed, and every finding judged as a coder
would judge it (files read in place, never copied).

Nobody here wrote these files: they are the TR3 examples, parser test files and HL7/Synthea/CMS
FHIR examples listed in the samples' READMEs. Each expected finding carries its judgement:

- TRUE: a coder agrees the claim as sent has this problem, and the message says what to do;
- PLACEHOLDER: right only because the file holds invented or era data (the TR3 examples' NPIs
  fail the NPI check digit; their ICD-9 codes predate ICD-10-CM, which a claim sent today must
  use).

Each refusal (a dead letter) carries its reason. No finding here is one a coder would call
wrong; a change that adds, removes or moves one fails this test and must be judged again.
"""

from collections import Counter
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Final, Literal
from zoneinfo import ZoneInfo

import orjson
import pytest

from claim_scrubber.adapters.ruleset_file import load_ruleset
from claim_scrubber.formats import ConvertedClaim, RejectedClaim, read_fhir, read_x12
from claim_scrubber.scrubber import Accepted, Scrubber, read_claim_event

SHARED: Final = Path(__file__).resolve().parents[3] / "shared" / "samples"
RULESET: Final = load_ruleset()
SCRUBBER: Final = Scrubber(RULESET, max_message_bytes=1 << 22)

Judgement = Literal["TRUE", "PLACEHOLDER"]
TRUE: Final = "TRUE"
PLACEHOLDER: Final = "PLACEHOLDER"

Finding = tuple[str, int | None, str, Judgement]


@dataclass(frozen=True)
class Scrubbed:
    claim_id: str
    findings: tuple[Finding, ...]


@dataclass(frozen=True)
class Refused:
    kind: str
    why: str
    """Why refusing it is right."""


Expected = Scrubbed | Refused

BAD_BILLING_NPI: Final = ("CLM-001", None, "claim.billing_provider.npi", PLACEHOLDER)
"""The TR3 examples' billing NPIs (e.g. 9876543210) are invented and fail the check digit."""
BAD_RENDERING_NPI: Final = ("CLM-002", None, "claim.rendering_provider.npi", PLACEHOLDER)
NO_BILLING_NPI: Final = ("CLM-001", None, "claim.billing_provider.npi", TRUE)
"""The provider is referenced without an NPI (unresolvable, or only a local identifier): the
claim has none, and the message says so (v1.2), not that a check digit is wrong."""


NO_TYPE_OF_BILL: Final = ("INST-001", None, "claim.type_of_bill", TRUE)
"""A Claim typed institutional with no type of bill (R4 has no element for it; CARIN Blue
Button carries it as supportingInfo `typeofbill`): a UB-04 without form locator 4 is returned
unprocessed. Synthea types its encounter claims institutional; HL7's CMS-1500 example is typed
institutional too, though its form is the professional one."""


def icd9(*positions: int) -> tuple[Finding, ...]:
    """CLM-005 on the ICD-9 codes (BK/BF) of pre-2015 examples: a claim sent today must carry
    ICD-10-CM, so the finding is right for today's claims, and only the era makes it so."""
    return tuple(("CLM-005", None, f"claim.diagnoses[{i}]", PLACEHOLDER) for i in positions)


def not_icd10(*positions: int) -> tuple[Finding, ...]:
    """CLM-005 on codes that are not ICD-10-CM at all (SNOMED CT in Synthea, an HL7 example's
    made-up code): a US claim must carry ICD-10-CM diagnoses."""
    return tuple(("CLM-005", None, f"claim.diagnoses[{i}]", TRUE) for i in positions)


SEPARATOR_837I: Final = Refused(
    "invalid_x12",
    "ISA16 declares ':' but the HI and SV2 composites are split by '>': no diagnosis can be "
    "read as sent (x12sdk reads 'BK>53081' as one value too)",
)

EXPECTED: Final[dict[str, list[Expected]]] = {
    "claim-formats/837p/X222-anesthesia.edi": [
        # QK, QS and P1 (anesthesia modifiers) are valid and no longer reported (v1.2).
        Scrubbed("153829140", (BAD_BILLING_NPI, BAD_RENDERING_NPI, *icd9(0))),
    ],
    "claim-formats/837p/X222-commercial-health-insurance.edi": [
        Scrubbed("26463774", (BAD_BILLING_NPI, *icd9(0, 1))),
    ],
    "claim-formats/837p/X222-drug-administered-in-the-physician-office.edi": [
        Scrubbed("CLMNO12345", icd9(0)),
    ],
    "claim-formats/837p/lfh-demo.drug.example10.3.837": [
        # Lines 4-6 are J3490 with three different NDCs and descriptions: three drugs, no
        # duplicate (v1.2 MOD-011).
        Scrubbed("CLMNO12345", icd9(0)),
    ],
    "claim-formats/837p/lfh-demo.example8.837": [
        # RR, KH, BR (DME) are valid modifiers.
        Scrubbed("SMI123", icd9(0, 1)),
    ],
    "claim-formats/fhir/claim-example-cms1500-medical.json": [
        Scrubbed("MED-00050", (NO_BILLING_NPI, NO_TYPE_OF_BILL)),  # Organization/1: absent
    ],
    "claim-formats/fhir/davinci-pas-claim-referral-authorization.json": [
        Refused("unsupported_transaction", "a prior-authorization request, not a claim"),
    ],
    "claim-formats/fhir/davinci-pas-request-bundle-referral-authorization.json": [
        Refused("unsupported_transaction", "a prior-authorization request, not a claim"),
    ],
    "realworld-corpus/837p/Inteligenz__X12Parser__MedicaidExample.txt": [
        Refused("invalid_x12", "BHT05 is 9999, not a time of day (placeholder envelope)"),
    ],
    "realworld-corpus/837p/Inteligenz__X12Parser__ProfessionalClaim1.txt": [
        Scrubbed(
            "26463774",
            (
                BAD_BILLING_NPI,
                BAD_RENDERING_NPI,
                *icd9(0, 1),
                # AA, CC and DD (an ambulance pair) are valid; BB is no modifier at all.
                ("MOD-002", 1, "claim.lines[0].modifiers[1]", TRUE),
                ("CLM-002", 2, "claim.lines[1].rendering_npi", PLACEHOLDER),
                # SV107 1:2:3 with two diagnoses on the claim.
                ("CLM-006", 2, "claim.lines[1].diagnosis_pointers", TRUE),
                # 87070 and 99214 billed again, same date, no modifier (91 or 59 would say
                # why): the payer's duplicate edit denies them.
                ("MOD-011", 6, "claim.lines[5].procedure_code", TRUE),
                ("MOD-011", 7, "claim.lines[6].procedure_code", TRUE),
            ),
        ),
    ],
    "realworld-corpus/837p/Inteligenz__X12Parser__ST1309-XX.txt": [
        Scrubbed("B330004Y", (BAD_BILLING_NPI, BAD_RENDERING_NPI, *icd9(0))),
    ],
    "realworld-corpus/837p/LinuxForHealth__x12__demo.autoaccident.837": [
        Scrubbed("900000032", (BAD_BILLING_NPI, BAD_RENDERING_NPI, *icd9(0))),
    ],
    "realworld-corpus/837p/LinuxForHealth__x12__demo.example11.837": [
        Refused("invalid_x12", "ISA16 declares ':' but the file writes '>' inside HI and SV1"),
    ],
    "realworld-corpus/837p/LinuxForHealth__x12__demo.example12.837": [
        Refused("invalid_x12", "ISA16 declares ':' but the file writes '>' inside HI and SV1"),
    ],
    "realworld-corpus/837p/LinuxForHealth__x12__demo.example2.837": [
        Scrubbed("26462967", (BAD_BILLING_NPI, *icd9(0, 1))),
    ],
    "realworld-corpus/837p/LinuxForHealth__x12__demo.example6.837": [
        Refused("invalid_x12", "ISA16 declares ':' but the file writes '>' inside HI and SV1"),
    ],
    "realworld-corpus/837p/UHIN__x12-parser-library__837.edi": [
        # BHT04 says 2022-01-18 and the service is dated 2024-08-15: a date is keyed wrong.
        Scrubbed("1606", (("CLM-003", 1, "claim.lines[0].service_date", TRUE),)),
    ],
    "realworld-corpus/837p/albmarin__badX12__X222-COB-claim-from-billing-provider-to-payer-a.edi": [
        Scrubbed("26407789", (BAD_BILLING_NPI, BAD_RENDERING_NPI, *icd9(0, 1, 2, 3))),
    ],
    "realworld-corpus/837p/albmarin__badX12__X222-COB-claim-from-billing-provider-to-payer-b.edi": [
        Scrubbed("26407789", (BAD_BILLING_NPI, BAD_RENDERING_NPI, *icd9(0, 1, 2, 3))),
    ],
    "realworld-corpus/837p/"
    "albmarin__badX12__X222-COB-claim-from-payer-a-to-payer-b-in-payer-to-payer.edi": [
        Scrubbed("26407789", (BAD_BILLING_NPI, BAD_RENDERING_NPI, *icd9(0, 1, 2, 3))),
    ],
    "realworld-corpus/837p/albmarin__badX12__X222-ambulance.edi": [
        # RH (residence to hospital) on every line is a valid ambulance modifier.
        Scrubbed("051068", (BAD_BILLING_NPI, *icd9(0, 1, 2, 3))),
    ],
    "realworld-corpus/837p/albmarin__badX12__X222-chiropractic.edi": [
        Scrubbed("125WILL", (BAD_BILLING_NPI, *icd9(0))),
    ],
    "realworld-corpus/837p/albmarin__badX12__X222-home-infusion-therapy-pharmacy-"
    "(adjudicated-with-HCPCS-in-loop-2400-or-NDC-in-loop-2410).edi": [
        Scrubbed("CLMNO12345", icd9(0)),  # three J3490 drugs told apart by NDC
    ],
    "realworld-corpus/837p/albmarin__badX12__X222-medicare-secondary-payer-COB.edi": [
        Scrubbed("101KEN6055", (BAD_BILLING_NPI, BAD_RENDERING_NPI, *icd9(0, 1))),
    ],
    "realworld-corpus/837p/albmarin__badX12__X222-out-of-network-repriced-claim.edi": [
        Scrubbed("TS234H3", (BAD_RENDERING_NPI, *icd9(0))),
    ],
    "realworld-corpus/837p/albmarin__badX12__X222-oxygen.edi": [
        Scrubbed("R03996273 #01", (BAD_BILLING_NPI, *icd9(0, 1, 2))),  # RR: valid rental
    ],
    "realworld-corpus/837p/albmarin__badX12__X222-ppo-repriced-claim.edi": [
        Scrubbed("ABC123-RI", (BAD_BILLING_NPI, *icd9(0, 1))),  # RR and NU: valid
    ],
    "realworld-corpus/837p/imsweb__x12-parser__x12_complex.txt": [
        Refused("invalid_x12", "HI*BK*8901: the qualifier stands without its code"),
        Refused("invalid_x12", "HL*2*3: parent level 3 is never defined"),
        Refused("invalid_x12", "HL*2*3: parent level 3 is never defined"),
        Refused("invalid_x12", "HI*BK*8901: the qualifier stands without its code"),
        Refused("invalid_x12", "HL*2*3: parent level 3 is never defined"),
        Refused("invalid_x12", "HL*2*3: parent level 3 is never defined"),
    ],
    "realworld-corpus/837p/imsweb__x12-parser__x12_no_errors.txt": [
        Refused("invalid_x12", "HI*BK*8901: the qualifier stands without its code"),
        Refused("invalid_x12", "HI*BK*8901: the qualifier stands without its code"),
    ],
    "realworld-corpus/837p/imsweb__x12-parser__x12_valid.txt": [
        Refused("invalid_x12", "HI*BK*8901: the qualifier stands without its code"),
        Refused("invalid_x12", "HL*2*3: parent level 3 is never defined"),
    ],
    "realworld-corpus/837p/owgreen-dev__x12sdk__generated-mixed-patients.837": [
        # Two 99213 visits on one day without a modifier, and 85025 twice without 91: the
        # payer denies the second as a duplicate.
        Scrubbed("PCN000001", (*icd9(0), ("MOD-011", 3, "claim.lines[2].procedure_code", TRUE))),
        Scrubbed("PCN000002", (*icd9(0), ("MOD-011", 3, "claim.lines[2].procedure_code", TRUE))),
        Scrubbed("PCN000003", icd9(0)),
        Scrubbed("PCN000004", icd9(0)),
        Scrubbed("PCN000005", icd9(0)),
        Scrubbed("PCN000006", icd9(0)),
    ],
    "realworld-corpus/837p/xlate__staedi__sample837-original.edi": [
        Scrubbed("945405", (BAD_BILLING_NPI, *icd9(0))),
    ],
    "realworld-corpus/837i/LinuxForHealth__x12__institutional-claim.837i": [
        Refused(
            "invalid_x12",
            "'HI:BF:4019': the second HI is written with ':' after its id, so its two "
            "diagnoses cannot be read (x12sdk refuses the segment too); never dropped",
        )
    ],
    "realworld-corpus/837i/LinuxForHealth__x12__out-of-network-repriced-claim.837i": [
        SEPARATOR_837I
    ],
    "realworld-corpus/837i/LinuxForHealth__x12__ppo-repriced-claim.837i": [SEPARATOR_837I],
    "realworld-corpus/837i/LinuxForHealth__x12__two-claims-single-provider.837i": [
        # Outpatient bills (TOB 131) of lab and EKG lines: nothing about them is a finding
        # beyond the example's invented billing NPI and its ICD-9 era codes.
        Scrubbed("756048Q", (BAD_BILLING_NPI, *icd9(0, 1, 2))),
        Scrubbed("756049Q", (BAD_BILLING_NPI, *icd9(0))),
    ],
    "realworld-corpus/fhir/CMSgov__beneficiary-fhir-data__claimSearch.json": [
        Refused("invalid_fhir", "item 2 has no productOrService, which R4 requires (1..1)"),
        Refused("invalid_fhir", "Claim.created is 'IGNORED_FIELD', not an R4 dateTime"),
    ],
    "realworld-corpus/fhir/alysivji__fhir-zod__claim-example-institutional-rich.json": [
        # Institutional: no pointer or place-of-service findings (v1.2).
        Scrubbed("96123451", (NO_BILLING_NPI, NO_TYPE_OF_BILL, *not_icd10(0))),
    ],
    "realworld-corpus/fhir/alysivji__fhir-zod__claim-example-institutional.json": [
        Scrubbed("9612345", (NO_BILLING_NPI, NO_TYPE_OF_BILL, *not_icd10(0))),
    ],
    "realworld-corpus/fhir/alysivji__fhir-zod__claim-example-pharmacy.json": [
        Refused(
            "unsupported_transaction", "a pharmacy claim is neither professional nor institutional"
        ),
    ],
    "realworld-corpus/fhir/alysivji__fhir-zod__claim-example-professional.json": [
        Scrubbed(
            "8612345",
            (
                NO_BILLING_NPI,
                *not_icd10(0),
                # A professional claim needs a place of service (CMS-1500 24B) and each line
                # a diagnosis pointer (24E); the example gives neither.
                ("CLM-009", None, "claim.place_of_service", TRUE),
                ("CLM-006", 1, "claim.lines[0].diagnosis_pointers", TRUE),
            ),
        ),
    ],
    "realworld-corpus/fhir/alysivji__fhir-zod__claim-example-vision.json": [
        Refused("unsupported_transaction", "a vision claim is not scrubbed"),
    ],
    "realworld-corpus/fhir/alysivji__fhir-zod__claim-example.json": [
        Refused("unsupported_transaction", "an oral (dental) claim is not scrubbed"),
    ],
    # Synthea's R4 claims leave out net and serviced[x] (v1.2 reads them: no charge, the
    # billablePeriod's date), code diagnoses in SNOMED CT through diagnosisReference, and name
    # organizations without NPIs.
    "realworld-corpus/fhir/smart-on-fhir__generated-sample-data__"
    "Buster_Hoeger_ad2e3fc5-2b5d-4cb9-8d03-9ea0f4ac8423.json": [
        Scrubbed(
            "f5596efd-4bd9-4584-83fe-753bfacc206c", (NO_BILLING_NPI, NO_TYPE_OF_BILL, *not_icd10(0))
        ),
        Scrubbed(
            "241a7359-6285-4f36-a00d-137f59cbf269", (NO_BILLING_NPI, NO_TYPE_OF_BILL, *not_icd10(0))
        ),
        Scrubbed("2e4e788f-ae8c-4bef-9b82-53cf7b6fa2bc", (NO_BILLING_NPI, NO_TYPE_OF_BILL)),
        Scrubbed("e6523f7b-203b-4e4f-80c8-1f25ffe23514", (NO_BILLING_NPI, NO_TYPE_OF_BILL)),
        Refused("unsupported_transaction", "a Synthea pharmacy claim"),
        Scrubbed(
            "044f68df-d6b3-4479-94b9-25d0f0ed8a14", (NO_BILLING_NPI, NO_TYPE_OF_BILL, *not_icd10(0))
        ),
        Scrubbed("212f5d4c-8b57-4a5f-a5ea-be210dcba3aa", (NO_BILLING_NPI, NO_TYPE_OF_BILL)),
    ],
    "realworld-corpus/fhir/smart-on-fhir__generated-sample-data__"
    "Clemente_Kreiger_1484a42d-0eaf-4654-9cbf-6b050a5cd73b.json": [
        Scrubbed("a93b70f2-c9a6-4dbd-9ed6-8f7c350f85af", (NO_BILLING_NPI, NO_TYPE_OF_BILL)),
        Scrubbed("991b73e3-6ba9-4ba7-9c39-a526351fc9cf", (NO_BILLING_NPI, NO_TYPE_OF_BILL)),
        Scrubbed(
            "9006a35a-ea75-4666-bbfc-ca48a7ddb5fe", (NO_BILLING_NPI, NO_TYPE_OF_BILL, *not_icd10(0))
        ),
    ],
}


def _read(relative: str) -> list[ConvertedClaim | RejectedClaim]:
    path = SHARED / relative
    if not path.is_file():
        pytest.fail(f"sample {path} is missing: the tests read ../shared beside the clone")
    reader = read_fhir if path.suffix == ".json" else read_x12
    conversion = reader(path.read_bytes(), directory=RULESET.payer_directory, zone=ZoneInfo("UTC"))
    return [c for c in conversion.claims if isinstance(c, ConvertedClaim | RejectedClaim)]


def _scrubbed(claim: ConvertedClaim) -> tuple[str, Counter[tuple[str, int | None, str]]]:
    read = read_claim_event(claim.document, max_bytes=1 << 22)
    assert isinstance(read, Accepted), f"intake built an event the worker refuses: {read}"
    verdict = SCRUBBER.verdict(read)
    found = Counter((f.rule_id, f.line_number, f.field) for f in verdict.findings)
    return read.event.claim.claim_id, found


@pytest.mark.parametrize("relative", sorted(EXPECTED), ids=lambda relative: Path(relative).name)
def test_every_finding_on_a_real_claim_is_one_a_coder_agrees_with(relative: str) -> None:
    outcomes = _read(relative)
    expected = EXPECTED[relative]

    assert len(outcomes) == len(expected)
    for outcome, wanted in zip(outcomes, expected, strict=True):
        if isinstance(wanted, Refused):
            assert isinstance(outcome, RejectedClaim), f"{wanted.why}: but it was converted"
            assert outcome.kind.value == wanted.kind
            continue
        assert isinstance(outcome, ConvertedClaim), f"refused: {outcome}"
        claim_id, found = _scrubbed(outcome)
        assert claim_id == wanted.claim_id
        assert found == Counter((rule, line, field) for rule, line, field, _ in wanted.findings)


def test_the_judged_files_are_every_real_claim_file_there_is() -> None:
    on_disk = {
        str(path.relative_to(SHARED))
        for folder in ("claim-formats/837p", "claim-formats/fhir", "realworld-corpus")
        for path in (SHARED / folder).rglob("*")
        if path.is_file() and path.name != "README.md"
    }

    assert on_disk == set(EXPECTED)


def _every_converted_line() -> list[tuple[str, date, dict[str, object]]]:
    found: list[tuple[str, date, dict[str, object]]] = []
    for relative in EXPECTED:
        for outcome in _read(relative):
            if isinstance(outcome, ConvertedClaim):
                claim = orjson.loads(outcome.document)["claim"]
                found.extend(
                    (relative, date.fromisoformat(line["service_date"]), claim | {"line": line})
                    for line in claim["lines"]
                )
    return found


NOT_MODIFIERS: Final = {"BB"}
"""Modifiers in the real files that are no modifier at all (judged above: MOD-002)."""


def test_every_modifier_in_the_real_files_is_known_on_its_date_but_the_placeholders() -> None:
    table = RULESET.code_sets.modifier_table
    unknown = set()
    for relative, served, claim in _every_converted_line():
        line = claim["line"]
        assert isinstance(line, dict)
        for modifier in line["modifiers"]:
            entry = table.entry(modifier)
            known = table.is_ambulance_pair(modifier) or (
                entry is not None and entry.in_effect_on(served)
            )
            if not known:
                unknown.add((relative, modifier))

    assert {modifier for _, modifier in unknown} == NOT_MODIFIERS


def test_every_place_of_service_in_the_real_files_is_known_on_its_date() -> None:
    codes = RULESET.code_sets.place_of_service_table.codes
    for relative, served, claim in _every_converted_line():
        line = claim["line"]
        assert isinstance(line, dict)
        for place in (claim["place_of_service"], line.get("place_of_service")):
            if place and claim["claim_type"] == "professional":
                entry = codes.get(str(place))
                assert entry is not None, (relative, place)
                assert entry.in_effect_on(served), (relative, place, served)
