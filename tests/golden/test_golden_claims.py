"""Whole-claim golden tests: one realistic claim per payer profile and its committed result.

The expected files are reviewed snapshots. To change them on purpose after a rule change:
UPDATE_GOLDEN=1 pytest tests/golden (every test then fails, saying what it rewrote), review
the diff, and run again without UPDATE_GOLDEN before committing.
"""

import json
import os
from pathlib import Path

import pytest

from claim_scrubber.adapters.ruleset_file import load_ruleset
from claim_scrubber.scrubber import Scrubber

HERE = Path(__file__).parent
CLAIMS = sorted((HERE / "claims").glob("*.json"))
SCRUBBER = Scrubber(load_ruleset(), max_message_bytes=1 << 20)
FIXED_NOW = "2026-11-27T00:00:00.000Z"


def _result(claim_file: Path) -> dict[str, object]:
    source = {"file": claim_file.name, "line": 1}
    payload = json.dumps(json.loads(claim_file.read_text("utf-8"))).encode()
    decision = SCRUBBER.decide(
        payload, result_source=source, dead_letter_source=source, decided_at=FIXED_NOW
    )
    document = json.loads(decision.document)
    return {key: document[key] for key in ("outcome", "findings", "ruleset_version")}


@pytest.mark.parametrize("claim_file", CLAIMS, ids=[path.stem for path in CLAIMS])
def test_the_claim_scrubs_to_its_reviewed_result(claim_file: Path) -> None:
    expected_file = HERE / "expected" / claim_file.name
    actual = _result(claim_file)
    if os.environ.get("UPDATE_GOLDEN") == "1":
        expected_file.parent.mkdir(exist_ok=True)
        expected_file.write_text(json.dumps(actual, indent=2, ensure_ascii=False) + "\n", "utf-8")
        # Never green while rewriting: a run with UPDATE_GOLDEN set cannot pass silently.
        pytest.fail(f"{expected_file.name} rewritten: review the diff, run again without it")
    assert expected_file.exists(), f"no reviewed result: UPDATE_GOLDEN=1 pytest {__file__}"
    assert actual == json.loads(expected_file.read_text("utf-8"))


def test_there_is_a_golden_claim_for_every_payer_kind() -> None:
    kinds = {json.loads(path.read_text("utf-8"))["claim"]["payer"]["kind"] for path in CLAIMS}
    assert kinds == {"medicare", "medicare_advantage", "aetna", "bcbs", "cigna", "uhc", "other"}
