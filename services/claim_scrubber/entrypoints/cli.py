"""`claim-scrubber`: the Kafka worker and the offline commands on the same core."""

import argparse
import asyncio
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

import orjson

from claim_scrubber.adapters.kafka import StartupError, WorkerFailure, build_app, connection
from claim_scrubber.adapters.logging import configure_logging, get_logger
from claim_scrubber.adapters.published_docs import catalog_entries, generated_documents
from claim_scrubber.adapters.ruleset_file import RulesetError, load_ruleset
from claim_scrubber.adapters.settings import Settings, SettingsError, load_settings
from claim_scrubber.scrubber import Scrubber, timestamp_text

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


def _prepare(*, log_stream_is_stderr: bool) -> tuple[Settings, Scrubber]:
    try:
        settings = load_settings()
        configure_logging(
            log_format=settings.log_format,
            level=settings.log_level,
            stream=sys.stderr if log_stream_is_stderr else sys.stdout,
        )
        ruleset = load_ruleset(settings.ruleset)
    except (SettingsError, RulesetError) as error:
        raise _StartError(str(error)) from None
    return settings, Scrubber(ruleset, max_message_bytes=settings.max_message_bytes)


def _worker() -> int:
    settings, scrubber = _prepare(log_stream_is_stderr=False)
    log = get_logger(worker_id=settings.worker_id)
    try:
        kafka = connection(settings)
    except SettingsError as error:
        raise _StartError(str(error)) from None
    failure = WorkerFailure()
    app = build_app(settings, scrubber, log, kafka=kafka, failure=failure)
    try:
        asyncio.run(app.run())
    except StartupError as error:
        log.error("worker.start_failed", problem=str(error))  # noqa: TRY400 - no traceback
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


def _scrub(file: str | None) -> int:
    _settings, scrubber = _prepare(log_stream_is_stderr=True)
    log = get_logger()
    counts: dict[str, int] = {}
    out = sys.stdout.buffer
    with _open_input(file) as (name, lines):
        for number, raw in enumerate(lines, start=1):
            payload = raw.rstrip(b"\r\n")
            source = {"file": name, "line": number}
            decision = scrubber.decide(
                payload,
                result_source=source,
                dead_letter_source=source,
                decided_at=timestamp_text(datetime.now(UTC)),
            )
            out.write(decision.document + b"\n")
            counts[decision.outcome] = counts.get(decision.outcome, 0) + 1
            log.info(
                "claim.dead_lettered" if decision.is_dead_letter else "claim.scrubbed",
                event_id=decision.event_id,
                claim_id=decision.claim_id,
                claim_version=decision.claim_version,
                outcome=decision.outcome,
                rule_ids=list(decision.rule_ids),
                ruleset_version=scrubber.ruleset.version,
                source_file=name,
                source_line=number,
                dead_letter_kind=decision.dead_letter_kind,
            )
    out.flush()
    log.info("scrub.finished", source_file=name, lines=sum(counts.values()), outcomes=counts)
    return EXIT_OK


def _rules(*, as_json: bool) -> int:
    entries = catalog_entries()
    if as_json:
        sys.stdout.buffer.write(orjson.dumps(entries, option=orjson.OPT_INDENT_2) + b"\n")
        return EXIT_OK
    width = max(len(entry["id"]) for entry in entries)
    for entry in entries:
        scope = "Q4390" if entry["q4390_only"] else "all"
        print(f"{entry['id']:<{width}}  {entry['severity']:<7}  {scope:<5}  {entry['title']}")
    return EXIT_OK


def _schemas(out_dir: Path, *, check: bool) -> int:
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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=_PROGRAM,
        description="Scrub claim events for HCPCS Q4390 and claim integrity.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("worker", help="run the Kafka worker (settings: SCRUBBER_* variables)")
    scrub = commands.add_parser(
        "scrub", help="scrub ClaimEvent JSON lines from FILE or stdin to stdout, offline"
    )
    scrub.add_argument("file", nargs="?", metavar="FILE", help="JSON lines; '-' or none: stdin")
    rules = commands.add_parser("rules", help="print the rule catalog")
    rules.add_argument("--json", action="store_true", help="machine-readable, with the docs")
    schemas = commands.add_parser(
        "schemas", help="write JSON Schemas, AsyncAPI and RULES.md generated from the code"
    )
    schemas.add_argument("--out", type=Path, default=Path("schemas"), help="default: schemas/")
    schemas.add_argument("--check", action="store_true", help="exit 2 if a file is out of date")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = _parser().parse_args(argv)
    try:
        if arguments.command == "worker":
            return _worker()
        if arguments.command == "scrub":
            return _scrub(arguments.file)
        if arguments.command == "rules":
            return _rules(as_json=arguments.json)
        return _schemas(arguments.out, check=arguments.check)
    except _StartError as error:
        return _fail(str(error))


if __name__ == "__main__":
    sys.exit(main())
