"""The X12 reader on the cases the samples do not cover: delimiters, COB loops, voids and
replacements, ICD-10, 837I facility claims, and the reasons it refuses an interchange or a
claim."""

import uuid
from collections.abc import Sequence
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest

from claim_scrubber.adapters.ruleset_file import load_ruleset
from claim_scrubber.formats import Conversion, read_x12
from claim_scrubber.models import DeadLetterKind
from tests.formats.samples import (
    PROVIDER,
    Delimiters,
    facility_claim,
    facility_transaction,
    interchange,
    q4390_claim,
    sample,
    subscriber,
    transaction,
)

UTC = ZoneInfo("UTC")


def read(data: bytes) -> Conversion:
    return read_x12(data, directory=load_ruleset().payer_directory, zone=UTC)


def only_claim(data: bytes) -> dict[str, Any]:
    conversion = read(data)
    assert not conversion.rejected, conversion.rejected
    [converted] = conversion.converted
    claim: dict[str, Any] = orjson.loads(converted.document)["claim"]
    return claim


def test_a_q4390_claim_maps_icd10_dots_medicare_mac_and_rendering_npi() -> None:
    claim = only_claim(interchange(transaction(subscriber(2), q4390_claim())))
    assert claim["diagnoses"] == ["L97.412", "E11.621"]
    assert claim["payer"] == {
        "kind": "medicare",
        "payer_id": "04412",
        "name": "NOVITAS SOLUTIONS",
        "mac": "novitas",
    }
    assert claim["rendering_provider"] == {"npi": "1245319599"}
    q4390 = claim["lines"][1]
    assert q4390["procedure_code"] == "Q4390"
    assert q4390["modifiers"] == ["JW", "RT"]
    assert q4390["units"] == 20
    assert q4390["charge"] == "2242.80"
    assert q4390["diagnosis_pointers"] == [1, 2]


@pytest.mark.parametrize(
    "delimiters",
    [
        Delimiters(),
        Delimiters(component=">"),
        Delimiters(after_segment="\r\n"),
        Delimiters(element="|", component="^", segment="\n"),
    ],
    ids=["star-colon", "component-gt", "crlf-after-terminator", "pipe-caret-newline"],
)
def test_delimiters_come_from_isa(delimiters: Delimiters) -> None:
    claim = only_claim(interchange(transaction(subscriber(2), q4390_claim()), delimiters))
    assert claim["lines"][1]["modifiers"] == ["JW", "RT"]
    assert claim["diagnoses"] == ["L97.412", "E11.621"]


def test_a_real_sample_reads_the_same_with_a_bom_and_gt_components() -> None:
    original = sample("837p/X222-anesthesia.edi").decode()
    isa_end = original.index("~")
    changed = original[: isa_end - 1] + ">" + original[isa_end:].replace(":", ">")
    converted = read(b"\xef\xbb\xbf" + changed.encode()).converted
    assert [orjson.loads(c.document) for c in converted] == [
        orjson.loads(c.document) for c in read(original.encode()).converted
    ]


def test_other_payer_loops_do_not_replace_the_claims_payer_or_rendering_provider() -> None:
    cob = [
        "SBR*S*18*******CI",
        "NM1*IL*1*OTHERLAST*OTHERFIRST****MI*OTHERMEMBER",
        "NM1*PR*2*OTHER PAYER*****PI*60054",
        "NM1*82*1*OTHER*RENDER****XX*1999999984",
    ]
    claim = only_claim(
        interchange(
            transaction(
                subscriber(2),
                q4390_claim(lines=[], extra=[])
                + cob
                + [
                    "LX*1",
                    "SV1*HC:15275*300*UN*1***1",
                    "DTP*472*D8*20261120",
                ],
            )
        )
    )
    assert claim["payer"]["payer_id"] == "04412"
    assert claim["payer"]["kind"] == "medicare"
    assert claim["rendering_provider"] == {"npi": "1245319599"}
    assert claim["patient"]["member_id"] == "CANARYMEMBER1"


def test_a_line_rendering_provider_and_line_place_of_service_are_kept() -> None:
    lines = [
        "LX*1",
        "SV1*HC:15275*300*UN*1*22**1",
        "DTP*472*D8*20261120",
        "NM1*82*1*LINE*RENDER****XX*1497758544",
        "NTE*ADD*CANARYNOTE",
    ]
    [line] = only_claim(interchange(transaction(subscriber(2), q4390_claim(lines=lines))))["lines"]
    assert line["place_of_service"] == "22"
    assert line["rendering_npi"] == "1497758544"
    assert line["note"] == "CANARYNOTE"


def test_a_void_is_forwarded_as_claim_voided_and_a_replacement_is_resubmitted() -> None:
    conversion = read(
        interchange(
            transaction(
                subscriber(2),
                q4390_claim("VOID-1", frequency="8"),
                q4390_claim("REPLACE-1", frequency="7"),
            )
        )
    )
    void, replacement = conversion.converted
    assert (void.index, void.claim_id, void.event_type) == (1, "VOID-1", "claim.voided")
    assert orjson.loads(void.document)["claim"]["lines"], "a void carries its claim"
    assert (replacement.index, replacement.event_type) == (2, "claim.resubmitted")
    assert conversion.voided == 1


def test_a_replacement_or_void_outranks_the_original_by_its_transactions_time() -> None:
    """837P carries no claim version, and claim history lets a higher version replace a
    claim's applications: an original is version 1, a replacement or void the BHT04+BHT05
    stamp of its transaction, so a later correction outranks what it corrects."""
    conversion = read(
        interchange(
            transaction(
                subscriber(2),
                q4390_claim("ORIGINAL-1"),
                q4390_claim("REPLACE-1", frequency="7"),
                q4390_claim("VOID-1", frequency="8"),
            )
        )
    )

    versions = [orjson.loads(c.document)["claim"]["claim_version"] for c in conversion.converted]
    assert versions == [1, 20261127153000, 20261127153000]


def test_claim_ids_with_spaces_and_hash_are_kept() -> None:
    claim = only_claim(interchange(transaction(subscriber(2), q4390_claim("R03996273 #01"))))
    assert claim["claim_id"] == "R03996273 #01"


def test_event_ids_are_uuid5_of_submitter_reference_claim_id_and_ordinal() -> None:
    data = interchange(transaction(subscriber(2), q4390_claim("A"), q4390_claim("A")))
    first, second = read(data).converted
    namespace = uuid.UUID("6f1c4f2e-5a7e-4c55-9d53-0c1f3c9b2a10")
    # contract section 7 v1.2: 1000A NM109 (submitter), BHT03, CLM01, ordinal among that CLM01
    assert first.event_id == str(uuid.uuid5(namespace, "837|S0001|BATCH01|A|1"))
    assert second.event_id == str(uuid.uuid5(namespace, "837|S0001|BATCH01|A|2"))


def test_commercial_payers_come_from_the_payer_id_table_and_bcbs_from_sbr09() -> None:
    aetna = only_claim(
        interchange(transaction(subscriber(2, indicator="CI", payer_id="60054"), q4390_claim()))
    )
    bcbs = only_claim(
        interchange(transaction(subscriber(2, indicator="BL", payer_id="00000"), q4390_claim()))
    )
    advantage = only_claim(
        interchange(transaction(subscriber(2, indicator="16", payer_id="87726"), q4390_claim()))
    )
    unknown = only_claim(
        interchange(transaction(subscriber(2, indicator="CI", payer_id="ZZ999"), q4390_claim()))
    )
    assert aetna["payer"]["kind"] == "aetna"
    assert bcbs["payer"]["kind"] == "bcbs"
    assert advantage["payer"]["kind"] == "medicare_advantage"
    assert unknown["payer"]["kind"] == "other"


def test_a_bad_claim_is_rejected_alone_and_its_message_quotes_no_value() -> None:
    bad_lines = ["LX*1", "SV1*HC:15275*CANARY12*UN*1***1", "DTP*472*D8*20261120"]
    conversion = read(
        interchange(
            transaction(subscriber(2), q4390_claim("GOOD-1"), q4390_claim("BAD-1", lines=bad_lines))
        )
    )
    assert [c.claim_id for c in conversion.converted] == ["GOOD-1"]
    [rejected] = conversion.rejected
    assert rejected.index == 2
    assert rejected.kind is DeadLetterKind.INVALID_X12
    assert "SV102" in rejected.message
    assert "not a number" in rejected.message
    assert "CANARY" not in rejected.message


@pytest.mark.parametrize(
    ("data", "kind", "words"),
    [
        (b"", DeadLetterKind.INVALID_X12, "does not start with an ISA"),
        (b'{"schema_version": "1"}', DeadLetterKind.INVALID_X12, "does not start with an ISA"),
        (b"ISA*00*", DeadLetterKind.INVALID_X12, "fewer than 16 elements"),
        (
            interchange(transaction(subscriber(2), q4390_claim()))[:-40],
            DeadLetterKind.INVALID_X12,
            "does not end with IEA",
        ),
        (
            interchange(["ST*835*0001*005010X221A1", "BPR*I", "SE*3*0001"]),
            DeadLetterKind.UNSUPPORTED_TRANSACTION,
            "not an 837",
        ),
        (
            interchange(
                ["ST*837*0001*005010X224A2", "BHT*0019*00*1*20261127*1530*CH", "SE*3*0001"]
            ),
            DeadLetterKind.UNSUPPORTED_TRANSACTION,
            "dental claims are not scrubbed",
        ),
    ],
    ids=["empty", "json", "short-isa", "cut-short", "an-835", "an-837d"],
)
def test_an_unusable_interchange_is_one_rejection_that_says_why(
    data: bytes, kind: DeadLetterKind, words: str
) -> None:
    [rejected] = read(data).claims
    assert rejected.index is None
    assert rejected.kind is kind
    assert words in rejected.message


def test_a_claim_outside_a_subscriber_level_is_rejected() -> None:
    segments = [*PROVIDER, *q4390_claim(), "SE*20*0001"]
    [rejected] = read(interchange(segments)).rejected
    assert "HL 22" in rejected.message


def test_a_claim_over_the_contracts_line_limit_is_rejected_with_the_models_reason() -> None:
    lines = []
    for number in range(1, 52):
        lines += [f"LX*{number}", "SV1*HC:15275*1*UN*1***1", "DTP*472*D8*20261120"]
    [rejected] = read(interchange(transaction(subscriber(2), q4390_claim(lines=lines)))).rejected
    assert "claim.lines" in rejected.message
    assert rejected.details


def test_a_4010_interchange_is_refused_as_unsupported_naming_gs08() -> None:
    current = interchange(transaction(subscriber(2), q4390_claim()))
    data = current.replace(b"*X*005010X222A1~", b"*X*004010X098A1~", 1).replace(
        b"ST*837*0001*005010X222A1", b"ST*837*0001"
    )

    [rejected] = read(data).claims

    assert rejected.index is None
    assert rejected.kind is DeadLetterKind.UNSUPPORTED_TRANSACTION
    assert "GS08" in rejected.message
    assert "4010" in rejected.message


@pytest.mark.parametrize(
    ("diagnoses", "words"),
    [
        ("HI*ABK:L97412*ABF", "HI02: the diagnosis entry has no code"),
        ("HI*ABK:L97412*BK*25000", "HI02: the diagnosis entry has no code"),
        ("HI*ABK:L97412*ZZ:CANARY99", "HI02: the qualifier is not one an 837P HI uses"),
    ],
    ids=["abf-without-code", "qualifier-and-code-in-separate-elements", "unknown-qualifier"],
)
def test_a_diagnosis_that_cannot_be_read_rejects_its_claim_never_drops_it(
    diagnoses: str, words: str
) -> None:
    bad = q4390_claim("BAD-1")
    bad[1] = diagnoses
    conversion = read(interchange(transaction(subscriber(2), bad, q4390_claim("GOOD-1"))))

    assert [c.claim_id for c in conversion.converted] == ["GOOD-1"]
    [rejected] = conversion.rejected
    assert rejected.index == 1
    assert words in rejected.message
    assert "CANARY" not in rejected.message


def test_anesthesia_procedures_and_condition_codes_in_hi_are_not_diagnoses() -> None:
    claim = q4390_claim(extra=["HI*BP:0HBJ0ZZ", "HI*BG:01"])

    assert only_claim(interchange(transaction(subscriber(2), claim)))["diagnoses"] == [
        "L97.412",
        "E11.621",
    ]


def test_a_line_pwk_stays_on_its_line_and_a_claim_pwk_on_the_claim() -> None:
    lines = [
        "LX*1",
        "SV1*HC:15275:RT*300*UN*1***1:2",
        "DTP*472*D8*20261120",
        "LX*2",
        "SV1*HC:Q4390*2242.8*UN*20***1:2",
        "PWK*PN*EL***AC*WOUND-PHOTO-2",
        "DTP*472*D8*20261120",
    ]
    claim = only_claim(
        interchange(
            transaction(subscriber(2), q4390_claim(extra=["PWK*OZ*FX***AC*CHART-1"], lines=lines))
        )
    )

    assert claim["attachments"] == [
        {"report_type": "OZ", "transmission": "FX", "control_number": "CHART-1"}
    ]
    assert "attachments" not in claim["lines"][0]
    assert claim["lines"][1]["attachments"] == [
        {"report_type": "PN", "transmission": "EL", "control_number": "WOUND-PHOTO-2"}
    ]


def test_a_drug_lines_ndc_comes_from_its_2410_lin() -> None:
    lines = [
        "LX*1",
        "SV1*HC:J3490*10*UN*1***1",
        "DTP*472*D8*20261120",
        "LIN**N4*00338004938",
        "CTP****7*UN",
        "LX*2",
        "SV1*HC:J3490*10*UN*1***1",
        "DTP*472*D8*20261120",
        "LIN**UP*012345678905",
    ]
    claim = only_claim(interchange(transaction(subscriber(2), q4390_claim(lines=lines))))

    assert claim["lines"][0]["ndc"] == "00338004938"
    assert "ndc" not in claim["lines"][1]  # a UPC is not an NDC


def test_a_level_whose_parent_is_not_defined_rejects_only_its_own_claims() -> None:
    orphan = ["HL*3*9*22*0", *subscriber(3)[1:]]
    conversion = read(
        interchange(
            transaction(subscriber(2), q4390_claim("GOOD-1"), orphan, q4390_claim("ORPHAN-1"))
        )
    )

    assert [c.claim_id for c in conversion.converted] == ["GOOD-1"]
    [rejected] = conversion.rejected
    assert rejected.index == 2
    assert "HL02): the parent level is not defined" in rejected.message


def _ids(data: bytes) -> list[str]:
    return [claim.event_id for claim in read(data).converted]


def test_event_ids_survive_a_re_sent_interchange_with_new_control_numbers() -> None:
    first = interchange(transaction(subscriber(2), q4390_claim("R-1"), q4390_claim("R-2")))
    re_sent = (
        first.replace(b"*000000101*", b"*000000777*")  # ISA13 / IEA02
        .replace(b"*101*X*", b"*777*X*")  # GS06
        .replace(b"GE*1*101", b"GE*1*777")
        .replace(b"ST*837*0001*", b"ST*837*0777*")  # ST02
    )
    assert re_sent != first

    assert _ids(re_sent) == _ids(first)
    assert len(set(_ids(first))) == 2


def test_event_ids_differ_for_another_submitter_reference_or_claim() -> None:
    base = interchange(transaction(subscriber(2), q4390_claim("R-1")))
    other_batch = base.replace(b"BHT*0019*00*BATCH01*", b"BHT*0019*00*BATCH02*")
    other_submitter = base.replace(b"*46*S0001", b"*46*S0002")
    other_claim = interchange(transaction(subscriber(2), q4390_claim("R-9")))

    ids = {tuple(_ids(data)) for data in (base, other_batch, other_submitter, other_claim)}

    assert len(ids) == 4


def test_two_claims_with_one_clm01_in_a_transaction_get_two_ids_by_their_ordinal() -> None:
    data = interchange(transaction(subscriber(2), q4390_claim("DUP-1"), q4390_claim("DUP-1")))

    first, second = _ids(data)

    assert first != second
    assert (first, second) == tuple(_ids(data))  # and the same ones every time


class TestInstitutional:
    """837I (005010X223A2): a facility's claim, read by the same reader."""

    @staticmethod
    def _claim(*parts: Sequence[str]) -> dict[str, Any]:
        conversion = read(interchange(facility_transaction(subscriber(2), *parts)))
        assert not conversion.rejected, conversion.rejected
        (converted,) = conversion.converted
        document: dict[str, Any] = orjson.loads(converted.document)
        return document

    def test_a_facility_claim_is_institutional_with_its_type_of_bill_and_revenue_codes(
        self,
    ) -> None:
        claim = self._claim(facility_claim())["claim"]

        assert claim["claim_type"] == "institutional"
        assert claim["type_of_bill"] == "131"
        assert claim["place_of_service"] == ""
        assert claim["diagnoses"] == ["L97.412", "E11.621"]
        lines = claim["lines"]
        assert [(x["revenue_code"], x["procedure_code"], x["units"]) for x in lines] == [
            ("0360", "15275", 1),
            ("0636", "Q4390", 20),
        ]
        assert all(line["diagnosis_pointers"] == [] for line in claim["lines"])
        assert claim["lines"][1]["modifiers"] == ["RT"]

    def test_the_principal_diagnosis_comes_first_and_admitting_or_condition_codes_are_left_out(
        self,
    ) -> None:
        hi = ("HI*ABF:E11621*ABJ:R52", "HI*ABK:L97412", "HI*BG:09*BH:A1:D8:20261101")

        claim = self._claim(facility_claim(hi=hi))["claim"]

        assert claim["diagnoses"] == ["L97.412", "E11.621"]

    def test_a_line_without_its_own_date_takes_the_statement_period_s_start(self) -> None:
        lines = ["LX*1", "SV2*0360*HC:15275*300*UN*1", "LX*2", "SV2*0250**12.5*UN*2"]

        claim = self._claim(facility_claim(lines=lines))["claim"]

        assert [line["service_date"] for line in claim["lines"]] == ["2026-11-20"] * 2
        assert claim["lines"][1]["procedure_code"] == "", "a revenue code alone: no HCPCS"
        assert claim["lines"][1]["revenue_code"] == "0250"

    def test_a_void_and_an_inpatient_bill_keep_their_frequency_in_the_type_of_bill(self) -> None:
        void = self._claim(facility_claim(bill="13", frequency="8"))
        inpatient = self._claim(facility_claim(bill="11", frequency="1"))

        assert void["event_type"] == "claim.voided"
        assert void["claim"]["type_of_bill"] == "138"
        assert inpatient["claim"]["type_of_bill"] == "111"

    def test_a_line_without_a_revenue_code_is_a_rejection_naming_sv201(self) -> None:
        lines = ["LX*1", "SV2**HC:15275*300*UN*1", "DTP*472*D8*20261120"]

        conversion = read(
            interchange(facility_transaction(subscriber(2), facility_claim(lines=lines)))
        )

        (rejected,) = conversion.rejected
        assert "SV201" in rejected.message
