"""The files under examples/ say what the docs say they do: each scrubs to its outcome."""

import json
import subprocess
from pathlib import Path

from claim_scrubber.models import ClaimEvent
from tests.kafka_harness import ROOT, WORKER

EXAMPLES = ROOT / "examples"


def _scrub(*args: str) -> list[dict[str, object]]:
    result = subprocess.run(
        [WORKER[0], "scrub", *args], capture_output=True, timeout=60, check=True
    )
    return [json.loads(line) for line in result.stdout.splitlines()]


def _outcome(output: dict[str, object]) -> object:
    error = output.get("error")
    return output["outcome"] if error is None else error["kind"]  # type: ignore[index]


def _rules(output: dict[str, object]) -> set[str]:
    return {f["rule_id"] for f in output["findings"] if f["severity"] == "error"}  # type: ignore[attr-defined]


def test_the_claims_file_holds_a_clean_claim_one_for_review_and_a_dead_letter() -> None:
    outputs = _scrub(str(EXAMPLES / "claims.jsonl"))

    assert [_outcome(o) for o in outputs] == ["clean", "needs_review", "schema_violation"]
    assert _rules(outputs[1]) == {"DOC-004", "UNITS-002"}


def test_every_example_event_but_the_broken_one_is_a_valid_claim_event() -> None:
    lines = (EXAMPLES / "claims.jsonl").read_bytes().splitlines()

    for line in lines[:2]:
        ClaimEvent.model_validate_json(line)


def test_the_837p_example_needs_review_for_its_missing_documentation_only() -> None:
    (output,) = _scrub("--from", "x12", str(EXAMPLES / "claim.837p"))

    assert _outcome(output) == "needs_review"
    assert _rules(output) == {"DOC-008"}


def test_the_fhir_example_carries_its_documentation_and_is_clean() -> None:
    (output,) = _scrub("--from", "fhir", str(EXAMPLES / "claim-bundle.fhir.json"))

    assert _outcome(output) == "clean"
    assert output["claim"]["documentation"]["product"]["lot_numbers"] == ["LOT-7"]  # type: ignore[index]


def test_the_examples_are_all_our_own() -> None:
    """Nothing under examples/ comes from ../shared/samples (never copied here)."""
    shared = ROOT.parent / "shared" / "samples"
    theirs = {p.read_bytes() for p in shared.rglob("*") if p.is_file()}
    assert not [p.name for p in EXAMPLES.iterdir() if p.read_bytes() in theirs]


def test_sent_one_after_another_with_history_on_no_example_is_flagged_against_another(
    tmp_path: Path,
) -> None:
    """`make run` keeps claim history: the docs send the examples in turn, and each must show
    what the docs say, not a duplicate of another example's patient, wound and date."""
    converted = [
        subprocess.run(
            [WORKER[0], "convert", "--from", kind, str(EXAMPLES / name)],
            capture_output=True,
            timeout=60,
            check=True,
        ).stdout
        for kind, name in (("x12", "claim.837p"), ("fhir", "claim-bundle.fhir.json"))
    ]
    together = tmp_path / "together.jsonl"
    together.write_bytes((EXAMPLES / "claims.jsonl").read_bytes() + b"".join(converted))

    outputs = _scrub("--history", str(together))

    assert len(outputs) == 5
    flagged = {
        str(o.get("claim_id")): f["rule_id"]
        for o in outputs
        for f in o.get("findings", [])  # type: ignore[attr-defined]
        if str(f["rule_id"]).startswith("HIST-")
    }
    assert flagged == {}
