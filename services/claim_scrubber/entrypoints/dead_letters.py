"""`claim-scrubber dead-letters list|replay` (docs/operating/dead-letters.md): the operator's
view of the dead-letter topic, and exactly-once replay of what a fix has made usable."""

import argparse
import asyncio
import sys
from datetime import UTC, datetime
from typing import Final

import orjson

from claim_scrubber.adapters.dead_letters import DeadLetterFilter
from claim_scrubber.adapters.logging import get_logger
from claim_scrubber.adapters.settings import SettingsError
from claim_scrubber.entrypoints._command import CommandError, add_command, kafka_settings

__all__ = ["add_dead_letter_commands", "run_dead_letters"]

_FILTERS_HELP: Final = (
    "Filters combine with AND: --kind (repeatable), --since/--until (received_at, ISO 8601), "
    "--source-topic, --partition, --offset-from/--offset-to (the source record's offset), "
    "--claim-id, --limit."
)
_SETTINGS: Final = "SCRUBBER_KAFKA_*, SCRUBBER_TOPIC_DEAD_LETTER, SCRUBBER_GROUP_ID, SCRUBBER_LOG_*"


def _moment(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 date or time: {text!r}") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"not a positive number: {text!r}")
    return value


def _filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kind", action="append", default=[], help="error.kind, repeatable")
    parser.add_argument("--since", type=_moment, help="received_at at or after (UTC if no zone)")
    parser.add_argument("--until", type=_moment, help="received_at before (UTC if no zone)")
    parser.add_argument("--source-topic", help="the topic the dead letter's record came from")
    parser.add_argument("--partition", type=int, help="the source record's partition")
    parser.add_argument("--offset-from", type=int, help="source offset at least")
    parser.add_argument("--offset-to", type=int, help="source offset at most")
    parser.add_argument("--claim-id", help="a claim id the dead letter names")
    parser.add_argument("--limit", type=int, help="at most this many dead letters")


def add_dead_letter_commands(
    commands: "argparse._SubParsersAction[argparse.ArgumentParser]",
) -> None:
    """`dead-letters list` and `dead-letters replay` under the program's commands."""
    dead_letters = add_command(
        commands,
        "dead-letters",
        "list dead letters, or replay them exactly once after a fix",
        more=_FILTERS_HELP,
        reads="SCRUBBER_TOPIC_DEAD_LETTER (claims.dead-letter) and its replay ledger "
        "(<dead-letter topic>.replayed), read_committed, in no consumer group",
        writes="list: stdout; replay --execute: the source topics (or --to) and the ledger",
        settings=_SETTINGS,
    )
    actions = dead_letters.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = add_command(
        actions,
        "list",
        "one JSON line per matching dead letter, never its payload; a count by kind on stderr",
        more="Each line: its coordinates, kind, message, claim ids, payload size, whether "
        "truncated, received_at and whether replayed. " + _FILTERS_HELP,
        reads="SCRUBBER_TOPIC_DEAD_LETTER and the replay ledger (read_committed, no group)",
        writes="stdout: JSON lines; stderr: the count by kind",
        settings=_SETTINGS,
    )
    _filters(listing)
    replaying = add_command(
        actions,
        "replay",
        "publish each matching dead letter's original record again, exactly once",
        more="A dry run unless --execute: says what it would publish. With --execute, "
        "publishes each matching dead letter's original key, headers and bytes to its source "
        "topic (or --to), with the headers replay-of and replay-count, and records it in the "
        "ledger in the same transaction: a dead letter already replayed is skipped, across "
        "crashes and concurrent runs. A truncated payload is never replayed. " + _FILTERS_HELP,
        reads="SCRUBBER_TOPIC_DEAD_LETTER and the replay ledger (read_committed, no group)",
        writes="with --execute: the source topics (or --to) and the ledger, transactionally "
        "(transactional id SCRUBBER_GROUP_ID.replay); an audit line per dead letter on stdout; "
        "a summary on stderr",
        settings=_SETTINGS,
    )
    _filters(replaying)
    replaying.add_argument("--to", help="publish to this topic instead of the source topic")
    replaying.add_argument("--execute", action="store_true", help="publish (without it: a dry run)")
    replaying.add_argument(
        "--rate", type=_positive, default=500.0, help="records per second at most (default 500)"
    )


def _wanted(arguments: argparse.Namespace) -> DeadLetterFilter:
    return DeadLetterFilter(
        kinds=frozenset(arguments.kind),
        since=arguments.since,
        until=arguments.until,
        source_topic=arguments.source_topic,
        partition=arguments.partition,
        offset_from=arguments.offset_from,
        offset_to=arguments.offset_to,
        claim_id=arguments.claim_id,
        limit=arguments.limit,
    )


def run_dead_letters(arguments: argparse.Namespace) -> int:
    """Run `dead-letters list|replay`; 0 when done, CommandError when it cannot."""
    # The Kafka stack is imported here only: the offline commands never load it.
    from claim_scrubber.adapters.kafka import connection  # noqa: PLC0415
    from claim_scrubber.adapters.kafka.replay import (  # noqa: PLC0415
        ReplayError,
        list_dead_letters,
        replay,
    )

    settings = kafka_settings()
    try:
        kafka = connection(settings)
    except SettingsError as error:
        raise CommandError(str(error)) from None
    wanted = _wanted(arguments)
    try:
        if arguments.action == "list":
            found = asyncio.run(list_dead_letters(kafka, settings, wanted))
            kinds: dict[str, int] = {}
            for letter, replayed in found:
                sys.stdout.write(orjson.dumps(letter.summary(replayed=replayed)).decode() + "\n")
                kinds[letter.kind] = kinds.get(letter.kind, 0) + 1
            for kind, count in sorted(kinds.items()):
                print(f"{count:>8}  {kind}", file=sys.stderr)
            print(f"{len(found):>8}  dead letters", file=sys.stderr)
            return 0
        summary = asyncio.run(
            replay(
                kafka,
                settings,
                wanted,
                to=arguments.to,
                execute=arguments.execute,
                rate=arguments.rate,
                log=get_logger(),
                progress=_progress if sys.stderr.isatty() else None,
            )
        )
    except ReplayError as error:
        raise CommandError(str(error)) from None
    if sys.stderr.isatty() and summary.replayed:
        print(file=sys.stderr)
    if arguments.execute:
        print(f"replayed {summary.replayed}", file=sys.stderr)
    else:
        print(
            f"dry run: would replay {summary.would_replay} (--execute publishes)", file=sys.stderr
        )
    print(f"already replayed {summary.already_replayed}", file=sys.stderr)
    for why, count in sorted(summary.not_replayable.items()):
        print(f"not replayable {count}: {why}", file=sys.stderr)
    if not (summary.replayed or summary.would_replay):
        print("nothing to replay", file=sys.stderr)
    return 0


def _progress(done: int, total: int) -> None:
    width = 30
    filled = width * done // max(1, total)
    print(
        f"\rreplaying [{'#' * filled}{'.' * (width - filled)}] {done}/{total}",
        end="",
        file=sys.stderr,
    )
