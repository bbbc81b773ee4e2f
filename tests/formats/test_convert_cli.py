"""`claim-scrubber convert` and `scrub --from`, as a user runs them, on 837P and FHIR files;
no PHI canary ever reaches a log line."""

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from tests.formats.samples import (
    SAMPLES,
    interchange,
    q4390_claim,
    subscriber,
    transaction,
)
from tests.formats.test_fhir import documented_claim
from tests.kafka_harness import WORKER

CANARIES = [
    b"CANARYFIRST",
    b"CANARYLAST",
    b"CANARYMEMBER1",
    b"1923-04-05",
    b"19230405",
    b"CANARYNOTE",
    b"CANARYNECESSITY",
    b"L97.412",
    b"L97412",
    b"E11.621",
    b"E11621",
]


def run(*args: str, stdin: bytes = b"", **env: str) -> subprocess.CompletedProcess[bytes]:
    clean_env = {k: v for k, v in os.environ.items() if not k.startswith("SCRUBBER_")}
    return subprocess.run(
        [WORKER[0], *args],
        input=stdin,
        env=clean_env | {"SCRUBBER_LOG_LEVEL": "debug"} | env,
        capture_output=True,
        timeout=60,
        check=False,
    )


def lines(output: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.splitlines()]


def q4390_file(tmp_path: Path) -> Path:
    noted = [
        "LX*1",
        "SV1*HC:15275:RT*300*UN*1***1:2",
        "DTP*472*D8*20261120",
        "LX*2",
        "SV1*HC:Q4390:JW*2242.8*UN*20***1:2",
        "DTP*472*D8*20261120",
        "NTE*ADD*CANARYNOTE",
    ]
    bad = ["LX*1", "SV1*HC:Q4390*X*UN*20***1", "DTP*472*D8*20261120"]
    path = tmp_path / "batch.837"
    path.write_bytes(
        interchange(
            transaction(
                subscriber(2),
                q4390_claim("Q-1", lines=noted),
                q4390_claim("Q-2", frequency="8"),
                q4390_claim("Q-3", lines=bad),
                q4390_claim("Q 4 #7", frequency="7"),
            ),
        )
    )
    return path


def test_convert_writes_the_claims_in_file_order_voids_too_then_one_dead_letter(
    tmp_path: Path,
) -> None:
    result = run("convert", "--from", "x12", str(q4390_file(tmp_path)))
    assert result.returncode == 0
    first, void, replacement, dead_letter = lines(result.stdout)
    assert first["claim"]["claim_id"] == "Q-1"
    assert dead_letter["error"]["kind"] == "invalid_x12"
    assert dead_letter["source"] == {"file": str(tmp_path / "batch.837"), "claim_index": 3}
    assert "SV102" in dead_letter["error"]["message"]
    [rejected] = dead_letter["rejected_claims"]
    assert (rejected["claim_index"], rejected["claim_id"]) == (3, "Q-3")
    assert (void["event_type"], void["claim"]["claim_id"]) == ("claim.voided", "Q-2")
    assert replacement["event_type"] == "claim.resubmitted"
    assert replacement["claim"]["claim_id"] == "Q 4 #7"
    [summary] = [log for log in lines(result.stderr) if log["event"] == "intake.converted"]
    assert summary["claims_converted"] == 3
    assert summary["claims_voided"] == 1
    assert summary["claims_dead_lettered"] == 1


def test_convert_piped_to_scrub_gives_the_findings_of_a_bare_837p_q4390_claim(
    tmp_path: Path,
) -> None:
    converted = run("convert", "--from", "x12", str(q4390_file(tmp_path)))
    scrubbed = run("scrub", stdin=converted.stdout)
    result = lines(scrubbed.stdout)[0]
    assert result["claim_id"] == "Q-1"
    assert result["outcome"] == "needs_review"
    rule_ids = {f["rule_id"] for f in result["findings"]}
    # no documentation in an 837P: one finding says so, not one per missing item (v1.2)
    assert "DOC-008" in rule_ids
    assert not {rule_id for rule_id in rule_ids if rule_id.startswith("DOC-00")} - {"DOC-008"}
    in_one = lines(run("scrub", "--from", "x12", str(q4390_file(tmp_path))).stdout)[0]
    assert in_one["source"] == {"file": str(tmp_path / "batch.837"), "claim_index": 1}
    assert in_one["findings"] == result["findings"]


def test_with_history_an_837p_replacement_moves_its_claims_application(tmp_path: Path) -> None:
    """The original bills Q4390 on the 20th, its replacement (CLM05-3 = 7) moves it to the
    21st: another claim on the 20th is no duplicate any more, one on the 21st is."""

    def on(day: str) -> list[str]:
        return [
            "LX*1",
            "SV1*HC:15275:RT*300*UN*1***1:2",
            f"DTP*472*D8*{day}",
            "LX*2",
            "SV1*HC:Q4390:RT*2242.8*UN*20***1:2",
            f"DTP*472*D8*{day}",
        ]

    path = tmp_path / "history.837"
    path.write_bytes(
        interchange(
            transaction(
                subscriber(2),
                q4390_claim("ORIG", lines=on("20261120")),
                q4390_claim("ORIG", frequency="7", lines=on("20261121")),
                q4390_claim("OTHER-A", lines=on("20261120")),
                q4390_claim("OTHER-B", lines=on("20261121")),
            )
        )
    )

    results = lines(run("scrub", "--from", "x12", "--history", str(path)).stdout)

    duplicates = {
        r["claim_id"]: [f["message"] for f in r["findings"] if f["rule_id"] == "HIST-002"]
        for r in results[2:]
    }
    assert duplicates["OTHER-A"] == []
    [message] = duplicates["OTHER-B"]
    assert message.startswith("Claim ORIG already bills an application on the wound at L97.41")


def test_a_fhir_claim_of_our_profile_scrubs_with_its_documentation(tmp_path: Path) -> None:
    path = tmp_path / "claim.json"
    path.write_text(json.dumps(documented_claim()))
    [result] = lines(run("scrub", "--from", "fhir", str(path)).stdout)
    rule_ids = {f["rule_id"] for f in result["findings"]}
    assert "DOC-001" not in rule_ids  # the wound area came from our profile
    assert result["claim"]["documentation"]["wound"]["area_cm2"] == 20.5


def test_every_real_sample_converts_or_is_refused_with_a_reason() -> None:
    outcomes = {}
    for path in sorted((SAMPLES / "837p").glob("*.*")) + sorted((SAMPLES / "fhir").glob("*.json")):
        if path.name == "README.md":
            continue
        kind = "x12" if path.parent.name == "837p" else "fhir"
        result = run("convert", "--from", kind, str(path))
        assert result.returncode == 0
        outcomes[path.name] = [
            doc.get("error", {}).get("kind", "converted") for doc in lines(result.stdout)
        ]
    assert outcomes == {
        "X222-anesthesia.edi": ["converted"],
        "X222-commercial-health-insurance.edi": ["converted"],
        "X222-drug-administered-in-the-physician-office.edi": ["converted"],
        "lfh-demo.example8.837": ["converted"],
        "lfh-demo.drug.example10.3.837": ["converted"],
        "claim-example-cms1500-medical.json": ["converted"],
        "davinci-pas-claim-referral-authorization.json": ["unsupported_transaction"],
        "davinci-pas-request-bundle-referral-authorization.json": ["unsupported_transaction"],
    }


def test_no_phi_canary_reaches_a_log_line(tmp_path: Path) -> None:
    fhir = tmp_path / "claim.json"
    fhir.write_text(
        json.dumps(
            documented_claim()
            | {
                "contained": [
                    *documented_claim()["contained"],
                    {
                        "resourceType": "Patient",
                        "id": "p",
                        "name": [{"family": "CANARYLAST", "given": ["CANARYFIRST"]}],
                        "birthDate": "1923-04-05",
                    },
                ],
                "patient": {"reference": "#p"},
            }
        )
    )
    broken_fhir = tmp_path / "broken.json"
    broken_fhir.write_text(json.dumps(documented_claim() | {"created": "CANARYNOTE"}))
    x12 = q4390_file(tmp_path)
    runs = [
        run("convert", "--from", "x12", str(x12)),
        run("scrub", "--from", "x12", str(x12)),
        run("convert", "--from", "fhir", str(fhir)),
        run("scrub", "--from", "fhir", str(fhir)),
        run("convert", "--from", "fhir", str(broken_fhir)),
        run("convert", "--from", "x12", stdin=x12.read_bytes()[:-30]),
    ]
    assert all(r.returncode == 0 for r in runs)
    stdout = b"".join(r.stdout for r in runs)
    assert b"CANARYFIRST" in stdout  # the canaries are in the data ...
    for result in runs:
        for canary in CANARIES:
            assert canary not in result.stderr, canary  # ... and never in a log line


def test_an_unreadable_file_stops_with_one_line(tmp_path: Path) -> None:
    result = run("convert", "--from", "x12", str(tmp_path / "missing.837"))
    assert result.returncode == 2
    assert result.stderr.decode().count("\n") == 1
    assert "cannot read" in result.stderr.decode()


def test_an_unknown_intake_timezone_stops_with_one_line_naming_it(tmp_path: Path) -> None:
    result = run(
        "convert",
        "--from",
        "x12",
        str(q4390_file(tmp_path)),
        SCRUBBER_INTAKE_TIMEZONE="Mars/Olympus",
    )
    assert result.returncode == 2
    [line] = result.stderr.decode().splitlines()
    assert "SCRUBBER_INTAKE_TIMEZONE" in line
    assert result.stdout == b""


def test_the_intake_timezone_dates_x12_claims(tmp_path: Path) -> None:
    result = run(
        "convert",
        "--from",
        "x12",
        str(q4390_file(tmp_path)),
        SCRUBBER_INTAKE_TIMEZONE="America/Chicago",
    )
    assert lines(result.stdout)[0]["occurred_at"] == "2026-11-27T15:30:00-06:00"
