"""`claim-scrubber send` and `claim-scrubber tail`: put claims on the broker and watch what
the worker decides, from a terminal."""

import argparse
import asyncio
import io
import re
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

import orjson

from claim_scrubber.adapters.claim_files import NotClaimJsonError, read_claim_documents
from claim_scrubber.adapters.settings import Settings, SettingsError
from claim_scrubber.entrypoints._command import CommandError, add_command, kafka_settings

if TYPE_CHECKING:  # the Kafka stack is imported only by the commands that use it
    from claim_scrubber.adapters.kafka import KafkaConnection

__all__ = ["add_console_commands", "describe", "run_send", "run_tail"]

SendFormat = Literal["claims", "x12", "fhir"]

_KAFKA_SETTINGS: Final = "SCRUBBER_KAFKA_* (the broker and its security)"
_DURATION: Final = re.compile(r"^(\d+)([smhd])$")
_SECONDS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86_400}
_CONTENT_TYPES: Final = {
    "claims": b"application/json",
    "x12": b"application/edi-x12",
    "fhir": b"application/fhir+json",
}


def _since(text: str) -> float:
    """A duration back from now (90s, 15m, 2h, 7d) or an ISO 8601 time, as epoch seconds."""
    if (matched := _DURATION.match(text)) is not None:
        return time.time() - int(matched.group(1)) * _SECONDS[matched.group(2)]
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        message = f"not a duration (90s, 15m, 2h, 7d) or an ISO 8601 time: {text!r}"
        raise argparse.ArgumentTypeError(message) from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def add_console_commands(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    send = add_command(
        commands,
        "send",
        "publish the claims of a file to the topic that takes them, as the billing platform does",
        more="ClaimEvents (JSON Lines, a JSON array or one JSON document) go one record per "
        "event, keyed by claim_id, to the worker's input topic; an X12 837P/837I interchange "
        "or a FHIR Claim or Bundle goes whole, as one record, to intake's inbound topic for its "
        "format. The kind is read from the file unless --from says it. An event that is not "
        "valid is sent as it is: the worker dead-letters it, as it would the platform's.",
        reads="FILE ('-' or none: stdin)",
        writes="SCRUBBER_TOPIC_INPUT (claims.submitted), SCRUBBER_TOPIC_INBOUND_X12 "
        "(claims.inbound.x12) or SCRUBBER_TOPIC_INBOUND_FHIR (claims.inbound.fhir); a summary "
        "on stderr",
        settings=f"{_KAFKA_SETTINGS}, SCRUBBER_TOPIC_INPUT, SCRUBBER_TOPIC_INBOUND_X12, "
        "SCRUBBER_TOPIC_INBOUND_FHIR",
    )
    send.add_argument("file", nargs="?", metavar="FILE", help="the claims; '-' or none: stdin")
    send.add_argument(
        "--from",
        dest="format",
        choices=tuple(_CONTENT_TYPES),
        help="what FILE holds (default: read from the file)",
    )
    tail = add_command(
        commands,
        "tail",
        "follow the worker's results: one readable line per result, and one per finding",
        more="Reads committed records only (read_committed), in no consumer group, so it never "
        "moves the worker's offsets and sees only what the worker's transactions committed. "
        "Starts at --since and follows until interrupted, or until --max results.",
        reads="SCRUBBER_TOPIC_CLEAN (claims.clean), SCRUBBER_TOPIC_REVIEW "
        "(claims.needs-review) and SCRUBBER_TOPIC_DEAD_LETTER (claims.dead-letter)",
        writes="stdout: a line per result and per finding, or with --json the records' values "
        "as JSON Lines",
        settings=f"{_KAFKA_SETTINGS}, SCRUBBER_TOPIC_CLEAN, SCRUBBER_TOPIC_REVIEW, "
        "SCRUBBER_TOPIC_DEAD_LETTER",
    )
    tail.add_argument(
        "--since",
        type=_since,
        default="15m",
        help="results written since a duration ago (90s, 15m, 2h, 7d) or an ISO 8601 time "
        "(default: 15m)",
    )
    tail.add_argument("--max", type=int, help="stop after this many results")
    tail.add_argument("--json", action="store_true", help="the results as JSON Lines, unchanged")


def _connection(settings: Settings) -> "KafkaConnection":
    from claim_scrubber.adapters.kafka import connection  # noqa: PLC0415 - Kafka only here

    try:
        return connection(settings)
    except SettingsError as error:
        raise CommandError(str(error)) from None


def _format_of(data: bytes) -> SendFormat:
    head = data.lstrip(b"\xef\xbb\xbf \t\r\n")[:4096]
    if head.startswith(b"ISA"):
        return "x12"
    if head.startswith(b"{") and b'"resourceType"' in head:
        return "fhir"
    return "claims"


def _claim_key(document: bytes) -> bytes | None:
    try:
        parsed = orjson.loads(document)
        claim_id = parsed["claim"]["claim_id"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None
    return claim_id.encode("utf-8") if isinstance(claim_id, str) else None


def run_send(arguments: argparse.Namespace) -> int:
    """Publish FILE's claims; a summary on stderr."""
    from aiokafka.errors import KafkaError  # noqa: PLC0415 - the Kafka stack only here

    from claim_scrubber.adapters.kafka.send import Outgoing, send_records  # noqa: PLC0415

    settings = kafka_settings(log_stream=sys.stderr)
    kafka = _connection(settings)
    name = arguments.file or "-"
    try:
        data = sys.stdin.buffer.read() if name == "-" else Path(name).read_bytes()
    except OSError as error:
        raise CommandError(f"cannot read {name}: {error.strerror}") from None
    kind: SendFormat = arguments.format or _format_of(data)
    content_type = (("content-type", _CONTENT_TYPES[kind]),)
    if kind == "claims":
        try:
            documents = read_claim_documents(io.BytesIO(data)).documents
        except NotClaimJsonError as error:
            raise CommandError(str(error)) from None
        topic = settings.topic_input
        records = [Outgoing(topic, _claim_key(d), d, content_type) for _, d in documents]
    else:
        topic = settings.topic_inbound_x12 if kind == "x12" else settings.topic_inbound_fhir
        records = [Outgoing(topic, None, data, content_type)]
    try:
        asyncio.run(send_records(kafka, records))
    except KafkaError as error:
        raise CommandError(f"could not send to {topic}: {error}") from None
    unit = "claim events" if kind == "claims" else f"{kind} record"
    print(f"sent {len(records)} {unit} to {topic}", file=sys.stderr)
    return 0


def describe(where: str, record_value: bytes | None) -> list[str]:
    """A result as a person reads it: a line for the result, an indented line per finding;
    `where` is the record's topic, partition and offset."""
    try:
        value: dict[str, Any] = orjson.loads(record_value or b"")
    except orjson.JSONDecodeError:
        return [f"?            not a JSON record  ({where})"]
    if "error" in value:
        error = value["error"]
        key = value.get("source", {}).get("key") or "-"
        return [f"dead_letter  {error['kind']}  key {key}  ({where})", f"    {error['message']}"]
    findings = value.get("findings", [])
    lines = [
        f"{value['outcome']:<12} {value['claim_id']} v{value['claim_version']}  "
        f"{len(findings)} finding{'' if len(findings) == 1 else 's'}  ({where})"
    ]
    for finding in findings:
        line = finding["line_number"]
        at = "claim" if line is None else f"line {line}"
        lines.append(
            f"    {finding['severity']:<7} {finding['rule_id']:<9} {at:<8} {finding['field']}"
        )
        lines.append(f"        {finding['message']}")
    return lines


def run_tail(arguments: argparse.Namespace) -> int:
    """Print the results from --since on, following; stops after --max or on Ctrl-C."""
    from aiokafka.errors import KafkaError  # noqa: PLC0415 - the Kafka stack only here

    settings = kafka_settings(log_stream=sys.stderr)
    kafka = _connection(settings)
    topics = [settings.topic_clean, settings.topic_review, settings.topic_dead_letter]
    try:
        asyncio.run(_tail(kafka, topics, arguments))
    except KeyboardInterrupt:
        return 0
    except KafkaError as error:
        raise CommandError(f"cannot read the result topics: {error}") from None
    return 0


async def _tail(kafka: "KafkaConnection", topics: list[str], arguments: argparse.Namespace) -> None:
    from claim_scrubber.adapters.kafka.follow import UnreadableTopicsError, follow_topics  # noqa: PLC0415

    shown = 0
    out = sys.stdout
    try:
        async for records, _ in follow_topics(kafka, topics, since_s=arguments.since):
            for record in records:
                if arguments.json:
                    out.write((record.value or b"").decode("utf-8") + "\n")
                else:
                    where = f"{record.topic} {record.partition}:{record.offset}"
                    out.write("\n".join(describe(where, record.value)) + "\n")
                shown += 1
                if arguments.max is not None and shown >= arguments.max:
                    out.flush()
                    return
            out.flush()
    except UnreadableTopicsError as error:
        raise CommandError(str(error)) from None
