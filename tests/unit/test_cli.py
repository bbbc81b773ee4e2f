"""The `claim-scrubber` commands as a user runs them: scrub, rules, check, --version, --help."""

import argparse
import base64
import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from claim_scrubber import __version__
from claim_scrubber.adapters.ruleset_file import load_ruleset
from claim_scrubber.adapters.settings import Settings
from claim_scrubber.entrypoints.cli import _parser
from claim_scrubber.models import CONTRACT_VERSION
from tests.claims import canary_event, default_event, event_bytes, patched, phi_strings
from tests.kafka_harness import ROOT as ROOT_DIR
from tests.kafka_harness import WORKER

CLI = [WORKER[0]]


def _run(*args: str, stdin: bytes = b"", **env: str) -> subprocess.CompletedProcess[bytes]:
    clean_env = {k: v for k, v in os.environ.items() if not k.startswith("SCRUBBER_")}
    return subprocess.run(
        [*CLI, *args],
        input=stdin,
        env=clean_env | env,
        capture_output=True,
        timeout=60,
        check=False,
    )


class TestScrub:
    def test_each_input_line_gives_one_output_line_in_order_with_a_file_source(
        self, tmp_path: Path
    ) -> None:
        claims = tmp_path / "claims.jsonl"
        claims.write_bytes(
            event_bytes(default_event())
            + b"\n"
            + b"not json\n"
            + event_bytes(patched(default_event(), {"claim.billing_provider.npi": "1"}))
            + b"\n"
        )
        result = _run("scrub", str(claims))

        assert result.returncode == 0
        outputs = [json.loads(line) for line in result.stdout.splitlines()]
        assert [o.get("outcome", o.get("error", {}).get("kind")) for o in outputs] == [
            "clean",
            "invalid_json",
            "needs_review",
        ]
        assert [o["source"] for o in outputs] == [
            {"file": str(claims), "line": n} for n in (1, 2, 3)
        ]

    def test_stdin_is_read_when_no_file_is_given_and_logs_go_to_stderr_only(self) -> None:
        result = _run("scrub", stdin=event_bytes(default_event()) + b"\n")

        (line,) = result.stdout.splitlines()
        assert json.loads(line)["source"] == {"file": "-", "line": 1}
        assert b"claim.scrubbed" in result.stderr
        assert b"claim.scrubbed" not in result.stdout

    def test_stderr_carries_no_phi_for_any_kind_of_line(self) -> None:
        lines = [
            canary_event(),
            canary_event(**{"claim.patient.last_name": 7}),
            canary_event(schema_version="PHICANARY-FIRST"),
        ]
        result = _run(
            "scrub",
            stdin=b"\n".join(event_bytes(doc) for doc in lines) + b"\n",
            SCRUBBER_LOG_LEVEL="debug",
        )
        stderr = result.stderr.decode()
        assert len(result.stdout.splitlines()) == 3
        assert [canary for canary in [*phi_strings(), "PHICANARY"] if canary in stderr] == []

    def test_a_missing_file_is_one_error_line_and_a_non_zero_exit(self, tmp_path: Path) -> None:
        result = _run("scrub", str(tmp_path / "absent.jsonl"))
        assert result.returncode == 2
        assert result.stderr.decode().count("\n") == 1
        assert b"cannot read" in result.stderr

    def test_with_history_a_second_claim_of_the_same_application_is_a_duplicate_and_a_void_is_quiet(
        self,
    ) -> None:
        first = default_event()
        second = patched(first, {"event_id": "e-2", "claim.claim_id": "CLM-OTHER"})
        void = patched(first, {"event_id": "e-3", "event_type": "claim.voided"})
        third = patched(first, {"event_id": "e-4", "claim.claim_id": "CLM-THIRD"})
        stdin = b"\n".join(event_bytes(doc) for doc in (first, second, void, third)) + b"\n"

        with_history = _run("scrub", "--history", stdin=stdin)
        without = _run("scrub", stdin=stdin)

        results = [json.loads(line) for line in with_history.stdout.splitlines()]
        assert [r["claim_id"] for r in results] == ["CLM-2026-000123", "CLM-OTHER", "CLM-THIRD"]
        hist = [{f["rule_id"] for f in r["findings"]} & {"HIST-002"} for r in results]
        # the void took the first claim's application out: the third duplicates only the second
        assert hist == [set(), {"HIST-002"}, {"HIST-002"}]
        [duplicate] = [f for f in results[2]["findings"] if f["rule_id"] == "HIST-002"]
        assert duplicate["message"].startswith("Claim CLM-OTHER already bills")
        assert all(
            f["rule_id"] != "HIST-002"
            for line in without.stdout.splitlines()
            for f in json.loads(line)["findings"]
        )
        audit = [json.loads(line)["event"] for line in with_history.stderr.splitlines()]
        assert audit.count("claim.voided") == 1


class TestScrubRuleset:
    def test_scrub_judges_by_the_ruleset_it_is_given(self, tmp_path: Path) -> None:
        shipped = (ROOT_DIR / "services/claim_scrubber/rulesets/default.toml").read_text()
        tuned = tmp_path / "tuned.toml"
        tuned.write_text(shipped + '\n[rules."PRICE-001"]\nseverity = "off"\n')
        (tmp_path / "code_sets").symlink_to(ROOT_DIR / "services/claim_scrubber/rulesets/code_sets")
        stdin = event_bytes(default_event()) + b"\n"

        shipped_run = json.loads(_run("scrub", stdin=stdin).stdout)
        tuned_run = json.loads(_run("scrub", "--ruleset", str(tuned), stdin=stdin).stdout)

        assert "PRICE-001" in {f["rule_id"] for f in shipped_run["findings"]}
        assert "PRICE-001" not in {f["rule_id"] for f in tuned_run["findings"]}


class TestSendAndTailWithoutABroker:
    @pytest.mark.parametrize(
        ("command", "problem"),
        [
            (("send", "examples/claims.jsonl"), "could not send to claims.submitted"),
            (("tail", "--max", "1"), "cannot read the result topics"),
        ],
        ids=["send", "tail"],
    )
    def test_an_unreachable_broker_is_one_error_line_and_exit_1(
        self, command: tuple[str, ...], problem: str
    ) -> None:
        result = subprocess.run(
            [*CLI, *command],
            cwd=ROOT_DIR,
            env={k: v for k, v in os.environ.items() if not k.startswith("SCRUBBER_")}
            | {"SCRUBBER_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

        assert result.returncode == 1
        errors = [line for line in result.stderr.splitlines() if line.startswith("claim-scrubber:")]
        assert errors == [errors[0]]
        assert problem in errors[0]
        assert "Unclosed" not in result.stderr


class TestScrubAuditLines:
    def test_a_dead_letter_is_a_warning_and_a_result_names_no_dead_letter_kind(self) -> None:
        stdin = event_bytes(default_event()) + b"\n{broken\n"
        lines = [json.loads(line) for line in _run("scrub", stdin=stdin).stderr.splitlines()]

        scrubbed, dead = (line for line in lines if line["event"].startswith("claim."))
        assert (scrubbed["event"], scrubbed["level"]) == ("claim.scrubbed", "info")
        assert "dead_letter_kind" not in scrubbed
        assert (dead["event"], dead["level"]) == ("claim.dead_lettered", "warning")
        assert dead["dead_letter_kind"] == "invalid_json"

    def test_an_unusable_file_converted_offline_is_an_intake_dead_lettered_warning(self) -> None:
        result = _run("scrub", "--from", "fhir", stdin=b'{"resourceType": "Patient"}')

        (line,) = [json.loads(line) for line in result.stderr.splitlines()]
        assert (line["event"], line["level"]) == ("intake.dead_lettered", "warning")


class TestDeadLetterMessages:
    def test_a_bad_claim_id_is_explained_in_words_not_as_a_pattern(self) -> None:
        bad = event_bytes(patched(default_event(), {"claim.claim_id": " CLM-1"}))

        (line,) = _run("scrub", stdin=bad + b"\n").stdout.splitlines()

        message = json.loads(line)["error"]["message"]
        assert message == (
            "claim.claim_id: should be 1-64 printable ASCII characters, not starting or ending "
            "with a space"
        )


class TestScrubInputShapes:
    def test_a_pretty_printed_event_is_one_claim_not_a_dead_letter_per_line(self) -> None:
        pretty = json.dumps(default_event(), indent=2).encode()
        result = _run("scrub", stdin=b"\n" + pretty + b"\n")

        assert result.returncode == 0
        (line,) = result.stdout.splitlines()
        assert json.loads(line)["outcome"] == "clean"
        assert json.loads(line)["source"] == {"file": "-", "line": 2}

    def test_a_json_array_gives_one_output_per_element_with_the_line_it_starts_on(self) -> None:
        broken = patched(default_event(), {"claim.billing_provider.npi": "1"})
        array = json.dumps([default_event(), broken, 7], indent=2).encode()

        result = _run("scrub", stdin=array)

        outputs = [json.loads(line) for line in result.stdout.splitlines()]
        assert [o.get("outcome", o.get("error", {}).get("kind")) for o in outputs] == [
            "clean",
            "needs_review",
            "not_an_object",
        ]
        lines = array.decode().splitlines()
        starts = [n for n, text in enumerate(lines, 1) if text in {"  {", "  7"}]
        assert [o["source"]["line"] for o in outputs] == starts

    def test_a_dead_letter_of_an_array_element_keeps_that_elements_bytes(self) -> None:
        array = b'[\n  {"schema_version": "9"}\n]\n'
        (line,) = _run("scrub", stdin=array).stdout.splitlines()

        letter = json.loads(line)
        assert letter["error"]["kind"] == "unsupported_schema_version"
        assert base64.b64decode(letter["payload_base64"]) == b'{"schema_version": "9"}'

    def test_json_lines_with_a_broken_first_line_are_still_json_lines(self) -> None:
        stdin = b"{broken\n" + event_bytes(default_event()) + b"\n\n"
        outputs = [json.loads(line) for line in _run("scrub", stdin=stdin).stdout.splitlines()]

        assert [o.get("outcome", o.get("error", {}).get("kind")) for o in outputs] == [
            "invalid_json",
            "clean",
        ]

    @pytest.mark.parametrize(
        ("stdin", "hint"),
        [
            (b"claim_id,units\nCLM-1,20\n", ""),
            (b"ISA*00*          *00*~GS*HC~ST*837~", "use --from x12"),
            (b'{\n  "resourceType": "Claim",\n', "use --from fhir"),
        ],
        ids=["csv", "x12", "broken-fhir"],
    )
    def test_input_of_another_kind_is_one_line_saying_what_scrub_expected(
        self, stdin: bytes, hint: str
    ) -> None:
        result = _run("scrub", stdin=stdin)

        assert result.returncode == 2
        assert result.stdout == b""
        (line,) = result.stderr.decode().splitlines()
        assert "JSON Lines (one event per line), a JSON array of events, or one JSON" in line
        assert hint in line


class TestRules:
    def test_the_catalog_lists_id_severity_and_title(self) -> None:
        result = _run("rules")
        assert result.returncode == 0
        assert b"CLM-001" in result.stdout
        assert b"ENGINE-001" in result.stdout

    def test_the_json_catalog_carries_each_rules_documentation(self) -> None:
        entries = json.loads(_run("rules", "--json").stdout)
        assert {"id", "severity", "title", "what", "why", "source", "fails", "passes"} <= set(
            entries[0]
        )
        assert [entry["id"] for entry in entries] == sorted(entry["id"] for entry in entries)


class TestOfflineCommands:
    def test_offline_commands_ignore_worker_only_settings_even_invalid_ones(self) -> None:
        worker_only: dict[str, str] = {
            "SCRUBBER_KAFKA_SASL_MECHANISM": "PLAIN",
            "SCRUBBER_SESSION_TIMEOUT_MS": "1",
            "SCRUBBER_TOPIC_CLEAN": "claims.submitted",
        }

        scrubbed = _run("scrub", stdin=event_bytes(default_event()) + b"\n", **worker_only)
        listed = _run("rules", stdin=b"", **worker_only)

        assert (scrubbed.returncode, listed.returncode) == (0, 0), scrubbed.stderr
        assert json.loads(scrubbed.stdout)["outcome"] == "clean"

    def test_offline_commands_still_refuse_a_bad_setting_of_their_own(self) -> None:
        result = _run("scrub", stdin=b"", SCRUBBER_MAX_MESSAGE_BYTES="lots")

        assert result.returncode == 2
        assert b"invalid setting SCRUBBER_MAX_MESSAGE_BYTES" in result.stderr

    def test_a_mistyped_setting_stops_every_command_naming_the_closest_known_one(
        self, tmp_path: Path
    ) -> None:
        claims = tmp_path / "claims.jsonl"
        claims.write_bytes(event_bytes(default_event()) + b"\n")
        commands = [
            ("rules",),
            ("scrub", str(claims)),
            ("convert", "--from", "x12", str(claims)),
            ("impact", "--ruleset", str(claims), str(claims)),
            ("worker",),
        ]

        for command in commands:
            result = _run(*command, SCRUBBER_RULSET="tuned.toml")

            assert result.returncode == 2, command
            [line] = result.stderr.decode().splitlines()
            assert "unknown setting SCRUBBER_RULSET" in line, command
            assert "did you mean SCRUBBER_RULESET?" in line, command

    def test_offline_commands_do_not_import_the_kafka_stack(self) -> None:
        probe = (
            "import sys, io\n"
            "from claim_scrubber.entrypoints.cli import main\n"
            "sys.stdin = io.TextIOWrapper(io.BytesIO(b''))\n"
            "for command in (['rules'], ['rules', '--json'], ['scrub']):\n"
            "    main(command)\n"
            "loaded = sorted(m for m in ('aiokafka', 'faststream') if m in sys.modules)\n"
            "print('loaded:', loaded, file=sys.stderr)\n"
        )
        result = subprocess.run(
            [str(Path(WORKER[0]).with_name("python")), "-c", probe],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )

        assert "loaded: []" in result.stderr


def _subcommands(parser: argparse.ArgumentParser) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    for action in parser._actions:  # argparse keeps its subparsers here only
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield name, sub
                for inner, deeper in _subcommands(sub):
                    yield f"{name} {inner}", deeper


class TestCommandsExplainThemselves:
    def test_version_names_the_package_the_shipped_ruleset_and_the_contract(self) -> None:
        result = _run("--version")

        assert result.returncode == 0
        assert result.stdout.decode() == (
            f"claim-scrubber {__version__} (shipped ruleset {load_ruleset().version}, "
            f"contract {CONTRACT_VERSION})\n"
        )

    def test_every_subcommands_help_says_what_it_reads_writes_and_which_settings(self) -> None:
        commands = dict(_subcommands(_parser()))

        assert {"worker", "send", "tail", "check", "dead-letters replay"} <= set(commands)
        for name, sub in commands.items():
            text = " ".join(sub.format_help().split())
            for part in ("Reads:", "Writes:", "Settings:"):
                assert part in text, (name, part)

    def test_the_settings_a_help_text_names_exist(self) -> None:
        known = [
            field.validation_alias or f"SCRUBBER_{name.upper()}"
            for name, field in Settings.model_fields.items()
        ]
        for name, sub in _subcommands(_parser()):
            for named in re.findall(r"\b(?:SCRUBBER|OTEL)_[A-Z0-9_*]+", sub.format_help()):
                pattern = re.compile(named.rstrip("_").replace("*", "[A-Z0-9_]*") + r"\Z")
                assert any(pattern.match(str(k)) for k in known), (name, named)


class TestCheck:
    def test_valid_settings_print_the_configuration_with_secrets_masked(
        self, tmp_path: Path
    ) -> None:
        key = tmp_path / "history.key"
        key.write_text("a-history-secret-of-some-length")
        result = _run(
            "check",
            SCRUBBER_KAFKA_BOOTSTRAP_SERVERS="broker.example:9093",
            SCRUBBER_KAFKA_SECURITY_PROTOCOL="SASL_PLAINTEXT",
            SCRUBBER_KAFKA_SASL_MECHANISM="SCRAM-SHA-512",
            SCRUBBER_KAFKA_SASL_USERNAME="scrubber",
            SCRUBBER_KAFKA_SASL_PASSWORD="hunter2-secret",  # noqa: S106 - must be masked
            SCRUBBER_HISTORY="on",
            SCRUBBER_HISTORY_KEY_FILE=str(key),
        )

        assert result.returncode == 0, result.stderr
        out = result.stdout.decode()
        assert "SCRUBBER_KAFKA_BOOTSTRAP_SERVERS=broker.example:9093  (set)" in out
        assert "SCRUBBER_KAFKA_SASL_PASSWORD=********  (set)" in out
        assert "SCRUBBER_GROUP_ID=claim-scrubber  (default)" in out
        assert f"ruleset {load_ruleset().version}" in out
        assert "hunter2" not in out + result.stderr.decode()

    @pytest.mark.parametrize(
        ("env", "problem"),
        [
            ({"SCRUBBER_BATCH_MAX_RECORDS": "0"}, "invalid setting SCRUBBER_BATCH_MAX_RECORDS"),
            ({"SCRUBBER_HISTORY": "on"}, "SCRUBBER_HISTORY=on needs exactly one of"),
            (
                {"SCRUBBER_HISTORY": "on", "SCRUBBER_HISTORY_KEY_FILE": "/nonexistent/key"},
                "SCRUBBER_HISTORY_KEY_FILE",
            ),
            ({"SCRUBBER_RULESET": "/nonexistent/ruleset.toml"}, "ruleset"),
        ],
        ids=["bad-value", "history-without-key", "unreadable-key-file", "missing-ruleset"],
    )
    def test_a_bad_setting_or_ruleset_is_one_line_and_exit_2_without_connecting(
        self, env: dict[str, str], problem: str
    ) -> None:
        # the broker named does not exist: check must not try it
        unreachable = {"SCRUBBER_KAFKA_BOOTSTRAP_SERVERS": "198.51.100.1:9092"}
        result = _run("check", stdin=b"", **cast("dict[str, Any]", unreachable | env))

        assert result.returncode == 2
        assert result.stdout == b""
        (line,) = result.stderr.decode().splitlines()
        assert problem in line
