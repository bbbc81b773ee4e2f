"""A worker that cannot start says why in one line and exits non-zero, consuming nothing."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.kafka_harness import ROOT, WORKER


def _run_worker(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean_env = {k: v for k, v in os.environ.items() if not k.startswith("SCRUBBER_")}
    return subprocess.run(
        WORKER,
        env=clean_env | {"SCRUBBER_HTTP_PORT": "0"} | env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


def _shipped_ruleset_with(folder: Path, old: str, new: str) -> Path:
    """A copy of the shipped ruleset with one change, its code sets beside it."""
    rulesets = ROOT / "services/claim_scrubber/rulesets"
    copy = folder / "ruleset.toml"
    copy.write_text((rulesets / "default.toml").read_text().replace(old, new))
    (folder / "code_sets").symlink_to(rulesets / "code_sets")
    return copy


class TestBadStart:
    @pytest.mark.parametrize(
        ("env", "expected"),
        [
            ({"SCRUBBER_MAX_MESSAGE_BYTES": "lots"}, "invalid setting SCRUBBER_MAX_MESSAGE_BYTES"),
            ({"SCRUBBER_LOG_FORMAT": "xml"}, "invalid setting SCRUBBER_LOG_FORMAT"),
            ({"SCRUBBER_TOPIC_INPTU": "claims"}, "unknown setting SCRUBBER_TOPIC_INPTU"),
            ({"SCRUBBER_RULESET": "/nonexistent/ruleset.toml"}, "cannot read it"),
            (
                {"SCRUBBER_TOPIC_CLEAN": "claims.submitted"},
                "SCRUBBER_TOPIC_CLEAN names the same topic as SCRUBBER_TOPIC_INPUT",
            ),
            (
                {"SCRUBBER_TOPIC_DEAD_LETTER": "claims.needs-review"},
                "SCRUBBER_TOPIC_DEAD_LETTER names the same topic as SCRUBBER_TOPIC_REVIEW",
            ),
            (
                {"SCRUBBER_SESSION_TIMEOUT_MS": "5999"},
                "invalid setting SCRUBBER_SESSION_TIMEOUT_MS",
            ),
            ({"SCRUBBER_BATCH_MAX_RECORDS": "0"}, "invalid setting SCRUBBER_BATCH_MAX_RECORDS"),
            (
                {"SCRUBBER_HISTORY": "on"},
                "SCRUBBER_HISTORY=on needs exactly one of SCRUBBER_HISTORY_KEY and "
                "SCRUBBER_HISTORY_KEY_FILE",
            ),
            (
                {"SCRUBBER_HISTORY": "on", "SCRUBBER_HISTORY_KEY_FILE": "/nonexistent/key"},
                "cannot read SCRUBBER_HISTORY_KEY_FILE /nonexistent/key",
            ),
            ({"SCRUBBER_HISTORY": "yes"}, "invalid setting SCRUBBER_HISTORY"),
            (
                {"SCRUBBER_INTAKE_TIMEZONE": "Mars/Base"},
                "invalid setting SCRUBBER_INTAKE_TIMEZONE: not an IANA time zone name",
            ),
            (
                {"SCRUBBER_TOPIC_HISTORY": "claims.clean"},
                "SCRUBBER_TOPIC_HISTORY names the same topic as SCRUBBER_TOPIC_CLEAN",
            ),
        ],
    )
    def test_a_bad_setting_stops_the_worker_with_one_line_naming_it(
        self, tmp_path: Path, env: dict[str, str], expected: str
    ) -> None:
        # A reachable-looking broker that is not there: a setting that passed would retry it.
        result = _run_worker(
            tmp_path,
            SCRUBBER_KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:1",
            SCRUBBER_STARTUP_TIMEOUT_S="2",
            **env,
        )

        assert result.returncode == 2
        lines = _error_lines(result)
        assert len(lines) == 1, result.stderr
        assert expected in lines[0]
        assert result.stdout == ""

    def test_a_broken_ruleset_stops_the_worker_with_the_bad_entry_named(
        self, tmp_path: Path
    ) -> None:
        broken = _shipped_ruleset_with(tmp_path, "max_applications = 12", "max_applications = -1")

        result = _run_worker(tmp_path, SCRUBBER_RULESET=str(broken))

        assert result.returncode == 2
        (line,) = _error_lines(result)
        assert "payers.uhc.max_applications" in line
        assert "greater than 0" in line

    def test_a_misspelt_table_of_the_ruleset_is_named_with_the_name_it_should_have(
        self, tmp_path: Path
    ) -> None:
        typo = _shipped_ruleset_with(tmp_path, "[unit_limits]", "[unit_limit]")

        result = _run_worker(tmp_path, SCRUBBER_RULESET=str(typo))

        assert result.returncode == 2
        (line,) = _error_lines(result)
        assert line.endswith("unit_limit: not a ruleset entry (did you mean unit_limits?)"), line

    def test_no_broker_stops_the_worker_after_retrying_with_backoff(self, tmp_path: Path) -> None:
        result = _run_worker(
            tmp_path,
            SCRUBBER_KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:1",
            SCRUBBER_STARTUP_TIMEOUT_S="3",
        )

        assert result.returncode == 1
        (line,) = _error_lines(result)
        assert "cannot reach Kafka at 127.0.0.1:1" in line
        retries = [entry for entry in result.stdout.splitlines() if "broker.unreachable" in entry]
        assert 2 <= len(retries) <= 10, "retried with backoff, not in a hot loop"


def test_the_console_script_runs_from_this_interpreter() -> None:
    assert Path(WORKER[0]).exists(), (
        f"{WORKER[0]} missing: is the package installed in {sys.prefix}?"
    )
