"""`claim-scrubber impact`: what a ruleset change would do to a replay file of claims."""

import json
import os
import subprocess
import sys
from pathlib import Path

from claim_scrubber.adapters.ruleset_file import default_ruleset_text, load_ruleset
from claim_scrubber.scrubber import Accepted, Scrubber, read_claim_event
from tests.claims import canary_event, event_bytes, patched, phi_strings

CLI = str(Path(sys.executable).with_name("claim-scrubber"))
GOLDEN = sorted((Path(__file__).parents[1] / "golden" / "claims").glob("*.json"))


def _replay_file(tmp_path: Path) -> Path:
    lines = [event_bytes(json.loads(path.read_text("utf-8"))) for path in GOLDEN]
    lines.append(event_bytes(patched(canary_event(), {"claim.billing_provider.npi": "1"})))
    lines.append(b"{not a claim")
    replay = tmp_path / "claims.jsonl"
    replay.write_bytes(b"\n".join(lines) + b"\n")
    return replay


def _impact(tmp_path: Path, overrides: str) -> subprocess.CompletedProcess[str]:
    candidate = tmp_path / "candidate.toml"
    candidate.write_text(default_ruleset_text() + "\n" + overrides, "utf-8")
    return subprocess.run(
        [CLI, "impact", "--ruleset", str(candidate), str(_replay_file(tmp_path))],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )


def test_turning_a_rule_off_reports_exactly_the_claims_it_had_put_in_review(
    tmp_path: Path,
) -> None:
    scrubber = Scrubber(load_ruleset(), max_message_bytes=1 << 20)
    expected = {}
    for raw in _replay_file(tmp_path).read_bytes().splitlines():
        read = read_claim_event(raw, max_bytes=1 << 20)
        if isinstance(read, Accepted) and "CLM-001" in scrubber.verdict(read).rule_ids:
            errors = {
                f.rule_id for f in scrubber.verdict(read).findings if f.severity.value == "error"
            }
            expected[read.event.event_id] = "clean" if errors == {"CLM-001"} else "needs_review"
    assert expected, "the replay file has claims that CLM-001 puts in review"

    result = _impact(tmp_path, '[rules."CLM-001"]\nseverity = "off"\n')

    changes = [json.loads(line) for line in result.stdout.splitlines()]
    assert {change["event_id"]: change["after"] for change in changes} == expected
    assert all(change["removed"] == ["CLM-001"] and change["added"] == [] for change in changes)
    assert all(change["before"] == "needs_review" for change in changes)
    (summary,) = [
        json.loads(line) for line in result.stderr.splitlines() if "impact.finished" in line
    ]
    assert summary["claims"] == len(GOLDEN) + 1
    assert summary["not_claims"] == 1
    assert summary["rules_stopped"] == {"CLM-001": len(expected)}
    assert all(secret not in result.stdout + result.stderr for secret in phi_strings())


def test_a_ruleset_that_changes_nothing_reports_no_claim(tmp_path: Path) -> None:
    result = _impact(tmp_path, "")

    assert result.stdout == ""
    assert '"claims_changed":0' in result.stderr


def test_rules_shows_the_severities_a_ruleset_sets(tmp_path: Path) -> None:
    ruleset = tmp_path / "ruleset.toml"
    ruleset.write_text(
        default_ruleset_text()
        + '\n[rules."PRICE-001"]\nseverity = "off"\n'
        + '[payers.aetna.rules."PAY-001"]\nseverity = "warning"\n',
        "utf-8",
    )

    shown = subprocess.run(
        [CLI, "rules", "--ruleset", str(ruleset)], capture_output=True, text=True, check=True
    ).stdout.splitlines()

    assert any(line.startswith("PRICE-001") and "off (default info)" in line for line in shown)
    assert any(line.startswith("PAY-001") and "[aetna: warning]" in line for line in shown)


def test_the_baseline_is_the_ruleset_in_use_when_scrubber_ruleset_names_one(
    tmp_path: Path,
) -> None:
    in_use = tmp_path / "in-use.toml"
    in_use.write_text(
        default_ruleset_text().replace('version = "2026.12.0"', 'version = "ops-7"'), "utf-8"
    )
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SCRUBBER_")}

    result = subprocess.run(
        [CLI, "impact", "--ruleset", str(in_use), str(_replay_file(tmp_path))],
        env=environment | {"SCRUBBER_RULESET": str(in_use)},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )

    (summary,) = [
        json.loads(line) for line in result.stderr.splitlines() if "impact.finished" in line
    ]
    assert summary["baseline_ruleset"] == "ops-7"
    assert result.stdout == ""


def test_an_outcome_that_flips_because_a_severity_changed_names_the_rule(
    tmp_path: Path,
) -> None:
    result = _impact(tmp_path, '[payers.aetna.rules."PAY-001"]\nseverity = "warning"\n')

    changes = [json.loads(line) for line in result.stdout.splitlines()]
    aetna = [change for change in changes if change["claim_id"] == "CLM-2026-020003"]
    assert aetna == [
        {
            "event_id": "golden-aetna",
            "claim_id": "CLM-2026-020003",
            "before": "needs_review",
            "after": "clean",
            "added": [],
            "removed": [],
            "severity_changed": {"PAY-001": "error->warning"},
        }
    ]
    (summary,) = [
        json.loads(line) for line in result.stderr.splitlines() if "impact.finished" in line
    ]
    assert summary["severities_changed"] == {"PAY-001": 1}


def test_with_history_impact_shows_the_claims_a_hist_rule_change_affects(
    tmp_path: Path,
) -> None:
    """The same application on a second claim is HIST-002 only when claims are judged against
    the ones before them; a void between takes the first claim out of history."""
    original = patched(canary_event(), {"event_id": "h-1", "claim.claim_id": "H-1"})
    duplicate = patched(original, {"event_id": "h-2", "claim.claim_id": "H-2"})
    void = patched(original, {"event_id": "h-3", "event_type": "claim.voided"})
    after_void = patched(original, {"event_id": "h-4", "claim.claim_id": "H-4"})
    claims = tmp_path / "history.jsonl"
    claims.write_bytes(
        b"\n".join(event_bytes(doc) for doc in (original, duplicate, void, after_void)) + b"\n"
    )
    candidate = tmp_path / "candidate.toml"
    candidate.write_text(default_ruleset_text() + '\n[rules."HIST-002"]\nseverity = "off"\n')

    def impact(*flags: str) -> list[dict[str, object]]:
        result = subprocess.run(
            [CLI, "impact", *flags, "--ruleset", str(candidate), str(claims)],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        return [json.loads(line) for line in result.stdout.splitlines()]

    changed = impact("--history")

    assert [c["claim_id"] for c in changed] == ["H-2", "H-4"]
    assert all(c["removed"] == ["HIST-002"] for c in changed)
    assert impact() == []  # without history the rule never ran
