"""`claim-scrubber`: the Kafka worker and the offline commands on the same core."""

import argparse
import asyncio
import os
import secrets
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO, Final

import orjson
from structlog.typing import FilteringBoundLogger

from claim_scrubber import __version__
from claim_scrubber.adapters.claim_files import (
    ClaimDocuments,
    NotClaimJsonError,
    read_claim_documents,
)
from claim_scrubber.adapters.conversion import (
    FORMATS,
    Format,
    Intake,
    audit_fields,
    rejection_document,
)
from claim_scrubber.adapters.logging import configure_logging, get_logger
from claim_scrubber.adapters.published_docs import catalog_entries
from claim_scrubber.adapters.ruleset_file import RulesetError, load_ruleset
from claim_scrubber.adapters.settings import (
    OfflineSettings,
    SettingsError,
    load_offline_settings,
    load_settings,
    settings_report,
)
from claim_scrubber.entrypoints._command import CommandError, add_command
from claim_scrubber.entrypoints.console import add_console_commands, run_send, run_tail
from claim_scrubber.entrypoints.dead_letters import add_dead_letter_commands, run_dead_letters
from claim_scrubber.entrypoints.review import ReviewStartError, run_review
from claim_scrubber.formats import ConvertedClaim
from claim_scrubber.models import CONTRACT_VERSION, PayerKind, Ruleset
from claim_scrubber.rules import RETIRED_RULES, ruleset_gaps
from claim_scrubber.scrubber import Decision, Scrubber, timestamp_text
from claim_scrubber.scrubber.history import HistoryTable
from claim_scrubber.scrubber.impact import compare

__all__ = ["main"]

_PROGRAM = "claim-scrubber"
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


class _StartError(Exception):
    """A setting or the ruleset is unusable: one line on stderr, non-zero exit."""


def _fail(message: str) -> int:
    print(f"{_PROGRAM}: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def _offline() -> OfflineSettings:
    """The offline commands' settings, logging to stderr (stdout carries their results)."""
    try:
        settings = load_offline_settings()
    except SettingsError as error:
        raise _StartError(str(error)) from None
    configure_logging(log_format=settings.log_format, level=settings.log_level, stream=sys.stderr)
    return settings


def _ruleset(path: Path | None) -> Ruleset:
    try:
        return load_ruleset(path)
    except RulesetError as error:
        raise _StartError(str(error)) from None


def _consume(stage: str) -> int:
    """Run the worker or intake until stopped; exit 1 with one line if it cannot start or
    stops itself."""
    # The Kafka stack is imported here only: the offline commands never load it.
    from claim_scrubber.adapters.kafka import (  # noqa: PLC0415
        StageError,
        StageFailure,
        build_app,
        build_intake_app,
        connection,
    )

    try:
        settings = load_settings()
        configure_logging(log_format=settings.log_format, level=settings.log_level)
        kafka = connection(settings)
    except SettingsError as error:
        raise _StartError(str(error)) from None
    ruleset = _ruleset(settings.ruleset)
    log = get_logger(worker_id=settings.worker_id)
    failure = StageFailure()
    try:  # the history key file is read here
        if stage == "worker":
            scrubber = Scrubber(ruleset, max_message_bytes=settings.max_message_bytes)
            app = build_app(settings, scrubber, log, kafka=kafka, failure=failure)
        else:
            app = build_intake_app(settings, ruleset, log, kafka=kafka, failure=failure)
    except SettingsError as error:
        raise _StartError(str(error)) from None
    try:
        asyncio.run(app.run())
    except StageError as error:
        log.error(f"{stage}.start_failed", problem=str(error))  # noqa: TRY400 - no traceback
        print(f"{_PROGRAM}: error: {error}", file=sys.stderr)
        return EXIT_FAILED
    if failure.problem is not None:
        print(f"{_PROGRAM}: error: {failure.problem}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


@contextmanager
def _open_input(file: str | None) -> Iterator[tuple[str, BinaryIO]]:
    if file is None or file == "-":
        yield "-", sys.stdin.buffer
        return
    try:
        handle = Path(file).open("rb")  # noqa: SIM115 - closed by the with below
    except OSError as error:
        raise _StartError(f"cannot read {file}: {error.strerror}") from None
    with handle:
        yield file, handle


def _claim_documents(stream: BinaryIO) -> ClaimDocuments:
    try:
        return read_claim_documents(stream)
    except NotClaimJsonError as error:
        raise _StartError(str(error)) from None


def _audit(
    log: FilteringBoundLogger, decision: Decision, ruleset_version: str, **where: object
) -> None:
    """The offline audit line of one decision (docs/operating/monitoring.md), with its file
    position: a dead letter at warning, as the worker logs it."""
    fields = decision.audit_fields(ruleset_version) | where
    if decision.is_dead_letter:
        log.warning(decision.audit_event, **fields, dead_letter_kind=decision.dead_letter_kind)
    else:
        log.info(decision.audit_event, **fields)


def _scrub(
    file: str | None, format_name: Format | None, ruleset_file: Path | None, *, history: bool
) -> int:
    settings = _offline()
    ruleset = _ruleset(ruleset_file if ruleset_file is not None else settings.ruleset)
    scrubber = Scrubber(ruleset, max_message_bytes=settings.max_message_bytes)
    # this run's history only: a key of its own, kept nowhere
    table = HistoryTable(secrets.token_bytes(32)) if history else None
    if format_name is not None:
        return _convert(file, format_name, settings, scrubber, table)
    log = get_logger()
    counts: dict[str, int] = {}
    out = sys.stdout.buffer
    with _open_input(file) as (name, stream):
        for number, payload in _claim_documents(stream).documents:
            source = {"file": name, "line": number}
            decision = scrubber.decide(
                payload,
                result_source=source,
                dead_letter_source=source,
                decided_at=timestamp_text(datetime.now(UTC)),
                history=table,
            )
            if not decision.is_void:  # a void has no result (docs/sending-claims/index.md)
                out.write(decision.document + b"\n")
            counts[decision.outcome] = counts.get(decision.outcome, 0) + 1
            _audit(log, decision, scrubber.ruleset.version, source_file=name, source_line=number)
    out.flush()
    log.info("scrub.finished", source_file=name, lines=sum(counts.values()), outcomes=counts)
    return EXIT_OK


def _convert(
    file: str | None,
    format_name: Format,
    settings: OfflineSettings,
    scrubber: Scrubber | None = None,
    history: HistoryTable | None = None,
) -> int:
    """One file of 837P, 837I or FHIR to ClaimEvent JSON lines (or, with a scrubber, to their
    results), in file order; an unusable claim or file gives a DeadLetter line."""
    ruleset = scrubber.ruleset if scrubber is not None else _ruleset(settings.ruleset)
    intake = Intake(ruleset.payer_directory, settings.intake_zone)
    log = get_logger()
    with _open_input(file) as (name, handle):
        payload = handle.read()
    decided_at = timestamp_text(datetime.now(UTC))
    conversion = intake.convert(format_name, payload)
    out = sys.stdout.buffer
    letter = rejection_document(payload, conversion, {"file": name}, decided_at)
    for claim in conversion.claims:
        source = {"file": name, "claim_index": claim.index}
        if isinstance(claim, ConvertedClaim):
            if scrubber is None:
                out.write(claim.document + b"\n")
                continue
            decision = scrubber.decide(
                claim.document,
                result_source=source,
                dead_letter_source=source,
                decided_at=decided_at,
                history=history,
            )
            if not decision.is_void:
                out.write(decision.document + b"\n")
            _audit(log, decision, ruleset.version, source_file=name, claim_index=claim.index)
    if letter is not None:
        out.write(letter + b"\n")
    out.flush()
    fields = {"format": format_name, "source_file": name, **audit_fields(conversion)}
    if not conversion.converted:  # as intake on Kafka: nothing in the file was usable
        log.warning("intake.dead_lettered", **fields)
    elif conversion.rejected:
        log.warning("intake.converted", **fields)
    else:
        log.info("intake.converted", **fields)
    return EXIT_OK


def _rules(*, as_json: bool, ruleset_file: Path | None) -> int:
    """The catalog, with each rule's severity under the ruleset's overrides (`off`: it does
    not run) and the payer kinds whose own override differs."""
    settings = _offline()
    ruleset = _ruleset(ruleset_file if ruleset_file is not None else settings.ruleset)
    entries = catalog_entries()
    for entry in entries:
        override = ruleset.rules.get(entry["id"])
        entry["effective_severity"] = override.severity if override else entry["severity"]
        entry["payer_severity"] = {
            kind.value: found.severity
            for kind in PayerKind
            if (found := ruleset.payers[kind].rules.get(entry["id"])) is not None
        }
    if as_json:
        sys.stdout.buffer.write(orjson.dumps(entries, option=orjson.OPT_INDENT_2) + b"\n")
        return EXIT_OK
    print(f"ruleset {ruleset.version}")
    for code_set, releases in ruleset.code_sets.releases.items():
        for release in releases:
            print(f"  {code_set}: {release}")
    for gap in ruleset_gaps(ruleset, datetime.now(UTC).date()):
        print(f"  incomplete: {gap}")
    width = max(len(entry["id"]) for entry in entries)
    for entry in entries:
        scope = "Q4390" if entry["q4390_only"] else "all"
        scope += " (professional)" if entry["professional_only"] else ""
        severity = entry["effective_severity"]
        if severity != entry["severity"]:
            severity = f"{severity} (default {entry['severity']})"
        payers = ", ".join(f"{kind}: {level}" for kind, level in entry["payer_severity"].items())
        suffix = f"  [{payers}]" if payers else ""
        print(f"{entry['id']:<{width}}  {severity:<24}  {scope:<18}  {entry['title']}{suffix}")
    for rule_id, why in sorted(RETIRED_RULES.items()):
        print(f"{rule_id:<{width}}  {'retired':<24}  {'-':<18}  {why}")
    return EXIT_OK


def _impact(
    candidate_file: Path, baseline_file: Path | None, claims_file: str, *, history: bool
) -> int:
    """One JSON line per claim whose outcome or reported rule ids change; a summary on
    stderr. Never a patient field: event and claim ids, outcomes and rule ids only."""
    settings = _offline()
    in_use = baseline_file if baseline_file is not None else settings.ruleset
    baseline = Scrubber(_ruleset(in_use), max_message_bytes=settings.max_message_bytes)
    candidate = Scrubber(_ruleset(candidate_file), max_message_bytes=settings.max_message_bytes)
    with _open_input(claims_file) as (_, stream):
        report = compare(
            baseline,
            candidate,
            (payload for _, payload in _claim_documents(stream).documents),
            HistoryTable(secrets.token_bytes(32)) if history else None,
        )
    out = sys.stdout.buffer
    for change in report.changed:
        out.write(
            orjson.dumps(
                {
                    "event_id": change.event_id,
                    "claim_id": change.claim_id,
                    "before": change.before,
                    "after": change.after,
                    "added": list(change.added),
                    "removed": list(change.removed),
                }
                | ({"severity_changed": change.severity_changed} if change.severity_changed else {})
            )
            + b"\n"
        )
    out.flush()
    get_logger().info(
        "impact.finished",
        baseline_ruleset=baseline.ruleset.version,
        candidate_ruleset=candidate.ruleset.version,
        claims=report.claims,
        not_claims=report.not_claims,
        claims_changed=len(report.changed),
        outcomes_changed={f"{a}->{b}": n for (a, b), n in sorted(report.outcome_changes.items())},
        rules_started=dict(sorted(report.rules_started.items())),
        rules_stopped=dict(sorted(report.rules_stopped.items())),
        severities_changed=dict(sorted(report.severities_changed.items())),
    )
    return EXIT_OK


def _check() -> int:
    """What the worker checks before it connects, then the effective configuration."""
    from claim_scrubber.adapters.kafka import connection  # noqa: PLC0415 - the Kafka stack

    try:
        settings = load_settings()
        connection(settings)  # reads the secret files and builds the TLS context
        if settings.history_on:
            settings.history_secret()
    except SettingsError as error:
        raise _StartError(str(error)) from None
    ruleset = _ruleset(settings.ruleset)
    print(f"{_PROGRAM} {__version__} (contract {CONTRACT_VERSION}): settings and ruleset valid")
    where = settings.ruleset or "the shipped one"
    print(f"ruleset {ruleset.version} ({where})")
    for gap in ruleset_gaps(ruleset, datetime.now(UTC).date()):
        print(f"  incomplete: {gap}")
    for name, value, origin in settings_report(settings):
        print(f"{name}={value}  ({origin})")
    return EXIT_OK


def _schemas(out_dir: Path, *, check: bool) -> int:
    from claim_scrubber.adapters.published_docs import generated_documents  # noqa: PLC0415

    drifted = []
    for name, text in generated_documents().items():
        target = out_dir / name
        if check:
            if not target.exists() or target.read_text("utf-8") != text:
                drifted.append(name)
        else:
            out_dir.mkdir(parents=True, exist_ok=True)
            target.write_text(text, "utf-8")
    if drifted:
        return _fail(f"out of date in {out_dir}: {', '.join(drifted)} (run: {_PROGRAM} schemas)")
    return EXIT_OK


_OFFLINE_SETTINGS: Final = (
    "SCRUBBER_RULESET, SCRUBBER_LOG_FORMAT, SCRUBBER_LOG_LEVEL, SCRUBBER_MAX_MESSAGE_BYTES, "
    "SCRUBBER_INTAKE_TIMEZONE; offline, it connects to nothing and ignores the worker's other "
    "settings"
)
_WORKER_SETTINGS: Final = (
    "SCRUBBER_KAFKA_* (the broker and its security), SCRUBBER_GROUP_ID, SCRUBBER_TOPIC_*, "
    "SCRUBBER_RULESET, SCRUBBER_HISTORY*, SCRUBBER_BATCH_*, SCRUBBER_*_TIMEOUT_*, "
    "SCRUBBER_HTTP_PORT, SCRUBBER_WORKER_ID, SCRUBBER_LOG_*, OTEL_*; `claim-scrubber check` "
    "prints them all"
)


class _Version(argparse.Action):
    """`--version`: the package, the shipped ruleset's version and the contract's."""

    def __init__(self, option_strings: Sequence[str], dest: str, help: str) -> None:
        super().__init__(option_strings, dest, nargs=0, help=help)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> None:
        del namespace, values, option_string
        print(
            f"{_PROGRAM} {__version__} (shipped ruleset {load_ruleset().version}, "
            f"contract {CONTRACT_VERSION})"
        )
        parser.exit()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=_PROGRAM,
        description="Scrub claim events for HCPCS Q4390 and claim integrity. `make run` starts "
        "the worker, intake and the review page on a local broker; `send` and `tail` try them.",
    )
    parser.add_argument(
        "--version", action=_Version, help="the package, ruleset and contract versions"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_command(
        commands,
        "worker",
        "run the Kafka worker: scrub each claim event exactly once",
        reads="SCRUBBER_TOPIC_INPUT (claims.submitted); with history on also "
        "SCRUBBER_TOPIC_BY_PATIENT and SCRUBBER_TOPIC_HISTORY",
        writes="SCRUBBER_TOPIC_CLEAN, SCRUBBER_TOPIC_REVIEW, SCRUBBER_TOPIC_DEAD_LETTER (and "
        "the history topics when on); an audit line per decision on stdout; /metrics, /livez "
        "and /readyz on SCRUBBER_HTTP_PORT",
        settings=_WORKER_SETTINGS,
    )
    add_command(
        commands,
        "intake",
        "run Kafka intake: 837P, 837I and FHIR to ClaimEvents on the worker's input topic",
        reads="SCRUBBER_TOPIC_INBOUND_X12 (claims.inbound.x12) and SCRUBBER_TOPIC_INBOUND_FHIR "
        "(claims.inbound.fhir)",
        writes="SCRUBBER_TOPIC_INPUT, and SCRUBBER_TOPIC_DEAD_LETTER for what it cannot "
        "convert; an audit line per record on stdout; /metrics on SCRUBBER_HTTP_PORT",
        settings=_WORKER_SETTINGS + " (its group is SCRUBBER_GROUP_ID.intake)",
    )
    scrub = add_command(
        commands,
        "scrub",
        "scrub claim events from a file, offline",
        more="One output line per event, in order: a ScrubResult, or a DeadLetter for an "
        "unusable event; `source` is the file and the line the event starts on. Exit 0 once "
        "every event is decided; 2 when the input is not ClaimEvent JSON at all.",
        reads="FILE or stdin: ClaimEvent JSON Lines, a JSON array of events or one JSON "
        "document; with --from, one X12 837P/837I interchange or one FHIR Claim or Bundle; the "
        "ruleset (--ruleset, else SCRUBBER_RULESET, else the shipped one)",
        writes="stdout: ScrubResult and DeadLetter JSON lines; stderr: an audit line per decision",
        settings=_OFFLINE_SETTINGS,
    )
    scrub.add_argument("file", nargs="?", metavar="FILE", help="'-' or none: stdin")
    scrub.add_argument(
        "--from",
        dest="format",
        choices=FORMATS,
        help="FILE is one X12 837P or 837I interchange or one FHIR Claim/Bundle: convert, "
        "then scrub",
    )
    scrub.add_argument(
        "--history",
        action="store_true",
        help="keep claim history across the claims of this run (HIST rules; voids remove)",
    )
    scrub.add_argument(
        "--ruleset",
        type=Path,
        help="judge by this ruleset (default: SCRUBBER_RULESET, else shipped)",
    )
    convert = add_command(
        commands,
        "convert",
        "convert 837P, 837I or FHIR to ClaimEvents, offline, as intake does",
        reads="FILE or stdin: one X12 837P/837I interchange, or one FHIR Claim or Bundle",
        writes="stdout: a ClaimEvent JSON line per claim, a DeadLetter line for what is "
        "unusable; stderr: a summary line",
        settings=_OFFLINE_SETTINGS,
    )
    convert.add_argument(
        "--from",
        dest="format",
        choices=FORMATS,
        required=True,
        help="x12: an 837P or 837I interchange; fhir: a FHIR R4 Claim or Bundle",
    )
    convert.add_argument("file", nargs="?", metavar="FILE", help="'-' or none: stdin")
    rules = add_command(
        commands,
        "rules",
        "print the rule catalog under the ruleset in use",
        reads="the ruleset (--ruleset, else SCRUBBER_RULESET, else the shipped one)",
        writes="stdout: the ruleset's version and code-set releases, then one line per rule "
        "(id, severity, scope, title), or with --json each rule with its documentation",
        settings=_OFFLINE_SETTINGS,
    )
    rules.add_argument("--json", action="store_true", help="machine-readable, with the docs")
    rules.add_argument(
        "--ruleset", type=Path, help="show severities under this ruleset's overrides"
    )
    impact = add_command(
        commands,
        "impact",
        "what a ruleset change does to claims, before it is rolled out",
        reads="CLAIMS (ClaimEvent JSON Lines, a JSON array or one document; '-': stdin), the "
        "new ruleset and the one in use",
        writes="stdout: a JSON line per claim whose outcome, rules or severities change; "
        "stderr: a summary (impact.finished)",
        settings=_OFFLINE_SETTINGS,
    )
    impact.add_argument("--ruleset", type=Path, required=True, help="the new ruleset")
    impact.add_argument(
        "--baseline",
        type=Path,
        help="the ruleset in use (default: SCRUBBER_RULESET, else the shipped one)",
    )
    impact.add_argument(
        "--history",
        action="store_true",
        help="judge each claim against the claims before it (HIST rules), as scrub --history",
    )
    impact.add_argument("claims", metavar="CLAIMS", help="the claims; '-' for stdin")
    schemas = add_command(
        commands,
        "schemas",
        "write the JSON Schemas, AsyncAPI documents and RULES.md generated from the code",
        reads="the code and the shipped ruleset",
        writes="--out (default schemas/); with --check nothing, exit 2 naming what drifted",
        settings="none",
    )
    schemas.add_argument("--out", type=Path, default=Path("schemas"), help="default: schemas/")
    schemas.add_argument("--check", action="store_true", help="exit 2 if a file is out of date")
    add_command(
        commands,
        "check",
        "validate the settings and the ruleset without connecting, and print them",
        more="Exactly what the worker checks before it connects: every SCRUBBER_* variable, "
        "the secret files, the ruleset. Exit 0 and the effective configuration (secrets "
        "masked, each marked as set or default); else one line naming the problem, exit 2.",
        reads="the environment, the files it names, the ruleset",
        writes="stdout: the effective configuration",
        settings="every SCRUBBER_* variable",
    )
    add_console_commands(commands)
    add_dead_letter_commands(commands)
    add_command(
        commands,
        "review",
        "serve the review page for coders over the result topics",
        more="http://127.0.0.1:8081/ by default; every request needs the token of "
        "SCRUBBER_REVIEW_TOKEN_FILE (or SCRUBBER_REVIEW_OPEN=true on loopback for a demo).",
        reads="SCRUBBER_TOPIC_REVIEW and SCRUBBER_TOPIC_CLEAN (read_committed, no group), "
        "from SCRUBBER_REVIEW_WINDOW_DAYS ago",
        writes="nothing to Kafka; the page on SCRUBBER_REVIEW_BIND:SCRUBBER_REVIEW_PORT",
        settings="SCRUBBER_KAFKA_*, SCRUBBER_TOPIC_REVIEW, SCRUBBER_TOPIC_CLEAN, "
        "SCRUBBER_REVIEW_*, SCRUBBER_LOG_*",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = _parser().parse_args(argv)
    try:
        return _run(arguments)
    except BrokenPipeError:  # `… | head`: the reader has all it wants
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "worker": lambda _: _consume("worker"),
    "intake": lambda _: _consume("intake"),
    "scrub": lambda arguments: _scrub(
        arguments.file, arguments.format, arguments.ruleset, history=arguments.history
    ),
    "convert": lambda arguments: _convert(arguments.file, arguments.format, _offline()),
    "rules": lambda arguments: _rules(as_json=arguments.json, ruleset_file=arguments.ruleset),
    "impact": lambda arguments: _impact(
        arguments.ruleset, arguments.baseline, arguments.claims, history=arguments.history
    ),
    "schemas": lambda arguments: _schemas(arguments.out, check=arguments.check),
    "check": lambda _: _check(),
    "send": run_send,
    "tail": run_tail,
    "dead-letters": run_dead_letters,
    "review": lambda _: run_review(),
}


def _run(arguments: argparse.Namespace) -> int:
    try:
        return _COMMANDS[arguments.command](arguments)
    except _StartError as error:
        return _fail(str(error))
    except ReviewStartError as error:
        return _fail(str(error))
    except CommandError as error:
        print(f"{_PROGRAM}: error: {error}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
