"""Intake's conversion rate: 837P and 837I interchanges (and FHIR Claims) to validated
ClaimEvent JSON, one process on one core, no broker."""

import json
import time
from zoneinfo import ZoneInfo

from claim_scrubber.adapters.conversion import Format, Intake
from claim_scrubber.adapters.ruleset_file import load_ruleset

CLAIMS_PER_INTERCHANGE = 500

_HEADER = (
    "ISA*00*          *00*          *ZZ*SUBMITTER      *ZZ*RECEIVER       *261128*1200*^*00501*"
    "{control:09d}*0*P*:~GS*HC*SUB*REC*20261128*1200*{control}*X*005010X222A1~"
    "ST*837*0001*005010X222A1~BHT*0019*00*B{control}*20261128*1200*CH~"
    "NM1*41*2*WOUND CARE BILLING*****46*S1~PER*IC*BILLING*TE*2145551212~"
    "NM1*40*2*CLEARINGHOUSE*****46*R1~HL*1**20*1~PRV*BI*PXC*207Y00000X~"
    "NM1*85*2*WOUND CARE CLINIC*****XX*1234567893~N3*1 MAIN ST~N4*DALLAS*TX*75001~"
    "REF*EI*123456789~"
)


_FACILITY_HEADER = (
    _HEADER.replace("005010X222A1", "005010X223A2")
    .replace("WOUND CARE CLINIC", "GENERAL HOSPITAL")
    .replace("PRV*BI*PXC*207Y00000X~", "PRV*BI*PXC*282N00000X~")
)


def _facility_claim(number: int) -> str:
    """A hospital outpatient Q4390 bill (837I, type 131) under its own subscriber: 15275 in
    the operating room, the product under 0636, a clinic visit."""
    return (
        f"HL*{number + 2}*1*22*0~SBR*P*18*******MB~"
        f"NM1*IL*1*DOE*JANE*Q***MI*1EG4TE5MK{number % 100:02d}~N3*2 ELM ST~N4*DALLAS*TX*75002~"
        f"DMG*D8*19500101*F~NM1*PR*2*NOVITAS SOLUTIONS*****PI*04412~"
        f"CLM*H{number:08d}*2668.30***13:A:1*Y*A*Y*Y~DTP*434*RD8*20261120-20261120~"
        "CL1*3**01~REF*G1*PA000001~HI*ABK:L97412*ABF:E11621~"
        "NM1*71*1*SMITH*ANN****XX*1245319599~"
        "LX*1~SV2*0360*HC:15275:RT*300*UN*1~DTP*472*D8*20261120~"
        "LX*2~SV2*0636*HC:Q4390:RT*2242.8*UN*20~DTP*472*D8*20261120~"
        "LX*3~SV2*0510*HC:G0463*125.5*UN*1~DTP*472*D8*20261120~"
    )


def _claim(number: int) -> str:
    """A realistic Q4390 claim under its own subscriber: 15275 and Q4390-JW on a foot ulcer."""
    return (
        f"HL*{number + 2}*1*22*0~SBR*P*18*******MB~"
        f"NM1*IL*1*DOE*JANE*Q***MI*1EG4TE5MK{number % 100:02d}~N3*2 ELM ST~N4*DALLAS*TX*75002~"
        f"DMG*D8*19500101*F~NM1*PR*2*NOVITAS SOLUTIONS*****PI*04412~"
        f"CLM*Q{number:08d}*2542.80***11:B:1*Y*A*Y*Y~REF*G1*PA{number:06d}~"
        "HI*ABK:L97412*ABF:E11621~NM1*82*1*SMITH*ANN****XX*1245319599~PRV*PE*PXC*207Y00000X~"
        "LX*1~SV1*HC:15275:RT*300*UN*1***1:2~DTP*472*D8*20261120~"
        "LX*2~SV1*HC:Q4390:JW:RT*2242.8*UN*20***1:2~DTP*472*D8*20261120~"
    )


def interchange(
    control: int, claims: int = CLAIMS_PER_INTERCHANGE, *, institutional: bool = False
) -> bytes:
    """An interchange of `claims` Q4390 claims: professional (837P), or facility bills (837I)."""
    header, claim = (_FACILITY_HEADER, _facility_claim) if institutional else (_HEADER, _claim)
    body = "".join(claim(control * claims + n) for n in range(claims))
    segments = header.count("~") - 2 + body.count("~") + 1
    trailer = f"SE*{segments}*0001~GE*1*{control}~IEA*1*{control:09d}~"
    return (header.format(control=control) + body + trailer).encode()


def fhir_claim(number: int) -> bytes:
    return json.dumps(
        {
            "resourceType": "Claim",
            "id": f"c{number}",
            "identifier": [{"use": "official", "value": f"F{number:08d}"}],
            "use": "claim",
            "type": {"coding": [{"code": "professional"}]},
            "created": "2026-11-28T12:00:00-06:00",
            "insurer": {"identifier": {"value": "04412"}, "display": "Novitas"},
            "provider": {"reference": "#org"},
            "contained": [
                {
                    "resourceType": "Organization",
                    "id": "org",
                    "identifier": [
                        {"system": "http://hl7.org/fhir/sid/us-npi", "value": "1234567893"}
                    ],
                    "name": "Wound Care Clinic",
                }
            ],
            "diagnosis": [
                {
                    "sequence": 1,
                    "diagnosisCodeableConcept": {
                        "coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": code}]
                    },
                }
                for code in ("L97.412",)
            ],
            "item": [
                {
                    "sequence": sequence,
                    "productOrService": {"coding": [{"code": code}]},
                    "quantity": {"value": units},
                    "net": {"value": charge},
                    "servicedDate": "2026-11-20",
                    "diagnosisSequence": [1],
                    "locationCodeableConcept": {"coding": [{"code": "11"}]},
                }
                for sequence, code, units, charge in (
                    (1, "15275", 1, 300),
                    (2, "Q4390", 20, 2242.8),
                )
            ],
        }
    ).encode()


def _rate(intake: Intake, format_name: Format, inputs: list[bytes], seconds: float) -> float:
    def convert_all() -> int:
        converted = 0
        for payload in inputs:
            conversion = intake.convert(format_name, payload)
            if conversion.rejected:  # the bench's own input must convert
                raise RuntimeError(conversion.rejected[0].message)
            converted += len(conversion.converted)
        return converted

    convert_all()  # warm-up
    done = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        done += convert_all()
    return done / (time.perf_counter() - started)


def bench_convert(seconds: float) -> dict[str, float]:
    """Claims/s converted to validated ClaimEvent JSON, for 837P, 837I and FHIR."""
    intake = Intake(load_ruleset().payer_directory, ZoneInfo("America/Chicago"))
    x12 = [interchange(control) for control in range(4)]
    facility = [interchange(control, institutional=True) for control in range(4)]
    fhir = [fhir_claim(number) for number in range(2000)]
    return {
        "convert_837p_claims_per_s": round(_rate(intake, "x12", x12, seconds)),
        "convert_837i_claims_per_s": round(_rate(intake, "x12", facility, seconds)),
        "convert_fhir_claims_per_s": round(_rate(intake, "fhir", fhir, seconds / 2)),
    }


if __name__ == "__main__":
    for name, value in bench_convert(5.0).items():
        print(f"  {name}  {value}")
