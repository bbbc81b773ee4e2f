"""The real 837P and FHIR files in ../shared/samples/claim-formats (never copied here), and a
builder of 837P interchanges for the cases no sample has."""

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "samples" / "claim-formats"


def sample(relative: str) -> bytes:
    path = SAMPLES / relative
    if not path.is_file():
        pytest.fail(f"sample {path} is missing: the tests read ../shared beside the clone")
    return path.read_bytes()


@dataclass(frozen=True)
class Delimiters:
    element: str = "*"
    component: str = ":"
    segment: str = "~"
    after_segment: str = ""


def interchange(segments: Sequence[str], delimiters: Delimiters = Delimiters()) -> bytes:
    """An interchange from segments written with `*` and `:`, re-delimited as asked; ISA,
    GS, GE and IEA are added around the transaction(s)."""
    isa = (
        "ISA*00*          *00*          *ZZ*SUBMITTER01    *ZZ*RECEIVER01     *261128*1200*^*"
        "00501*000000101*0*P*:"
    )
    body = [isa, "GS*HC*SUBMITTER01*RECEIVER01*20261128*1200*101*X*005010X222A1", *segments]
    body += ["GE*1*101", "IEA*1*000000101"]
    text = (delimiters.segment + delimiters.after_segment).join(
        segment.replace(":", "\x00")
        .replace("*", delimiters.element)
        .replace("\x00", delimiters.component)
        for segment in body
    )
    return (text + delimiters.segment + delimiters.after_segment).encode()


PROVIDER = [
    "ST*837*0001*005010X222A1",
    "BHT*0019*00*BATCH01*20261127*1530*CH",
    "NM1*41*2*WOUND CARE BILLING*****46*S0001",
    "NM1*40*2*CLEARINGHOUSE*****46*R0001",
    "HL*1**20*1",
    "NM1*85*2*WOUND CARE CLINIC*****XX*1234567893",
    "N3*1 MAIN ST",
    "N4*DALLAS*TX*75001",
    "REF*EI*123456789",
]


def subscriber(number: int, *, indicator: str = "MB", payer_id: str = "04412") -> list[str]:
    return [
        f"HL*{number}*1*22*0",
        f"SBR*P*18*******{indicator}",
        "NM1*IL*1*CANARYLAST*CANARYFIRST****MI*CANARYMEMBER1",
        "DMG*D8*19230405*F",
        f"NM1*PR*2*NOVITAS SOLUTIONS*****PI*{payer_id}",
    ]


def q4390_claim(
    claim_id: str = "Q4390-0001",
    *,
    frequency: str = "1",
    place: str = "11",
    extra: Sequence[str] = (),
    lines: Sequence[str] | None = None,
) -> list[str]:
    """A Q4390 claim: 15275 for the first 25 cm² of a foot ulcer and 20 cm² of Q4390."""
    return [
        f"CLM*{claim_id}*2542.80***{place}:B:{frequency}*Y*A*Y*Y",
        "HI*ABK:L97412*ABF:E11621",
        *extra,
        "NM1*82*1*RENDER*ANN****XX*1245319599",
        *(
            lines
            if lines is not None
            else [
                "LX*1",
                "SV1*HC:15275:RT*300*UN*1***1:2",
                "DTP*472*D8*20261120",
                "LX*2",
                "SV1*HC:Q4390:JW:RT*2242.8*UN*20***1:2",
                "DTP*472*D8*20261120",
            ]
        ),
    ]


def transaction(*parts: Sequence[str]) -> list[str]:
    segments = [*PROVIDER]
    for part in parts:
        segments.extend(part)
    return [*segments, f"SE*{len(segments) + 1}*0001"]


FACILITY = [
    "ST*837*0001*005010X223A2",
    "BHT*0019*00*BATCH01*20261127*1530*CH",
    "NM1*41*2*HOSPITAL BILLING*****46*S0001",
    "NM1*40*2*CLEARINGHOUSE*****46*R0001",
    "HL*1**20*1",
    "NM1*85*2*GENERAL HOSPITAL*****XX*1245319599",
    "N3*1 MAIN ST",
    "N4*DALLAS*TX*75001",
    "REF*EI*123456789",
]
"""An 837I transaction's header and billing provider (a hospital)."""


def facility_claim(
    claim_id: str = "F-0001",
    *,
    bill: str = "13",
    frequency: str = "1",
    hi: Sequence[str] = ("HI*ABK:L97412*ABF:E11621",),
    lines: Sequence[str] | None = None,
) -> list[str]:
    """A hospital outpatient Q4390 claim (837I): 15275 in the operating room, 20 cm² of Q4390
    as a detailed-coding supply, on type of bill `bill` + `frequency`."""
    return [
        f"CLM*{claim_id}*2542.80***{bill}:A:{frequency}*Y*A*Y*Y",
        "DTP*434*RD8*20261120-20261120",
        "CL1*3**01",
        *hi,
        "NM1*71*1*ATTEND*ANN****XX*1245319599",
        *(
            lines
            if lines is not None
            else [
                "LX*1",
                "SV2*0360*HC:15275:RT*300*UN*1",
                "DTP*472*D8*20261120",
                "LX*2",
                "SV2*0636*HC:Q4390:RT*2242.8*UN*20",
                "DTP*472*D8*20261120",
            ]
        ),
    ]


def facility_transaction(*parts: Sequence[str]) -> list[str]:
    segments = [*FACILITY]
    for part in parts:
        segments.extend(part)
    return [*segments, f"SE*{len(segments) + 1}*0001"]
