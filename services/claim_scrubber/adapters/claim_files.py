"""ClaimEvents from a file as people write them: JSON Lines (one event per line), a JSON array
of events, or one (pretty-printed) JSON document.

Each event keeps its own bytes, so an unusable one becomes a dead letter holding exactly what
the user gave, and its 1-based line number says where it starts. JSON Lines is read as a
stream; the other two shapes are read whole.
"""

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO, Final, Literal

import orjson

__all__ = ["ClaimDocuments", "NotClaimJsonError", "read_claim_documents"]

Shape = Literal["json-lines", "json-array", "json-document"]

_EXPECTED: Final = (
    "ClaimEvent JSON: JSON Lines (one event per line), a JSON array of events, or one JSON document"
)


class NotClaimJsonError(Exception):
    """The input is none of the three shapes: one line saying what was expected."""


@dataclass(frozen=True, slots=True)
class ClaimDocuments:
    shape: Shape
    documents: Iterator[tuple[int, bytes]]
    """(1-based line where the event starts, its bytes)"""


def _parses(line: bytes) -> bool:
    try:
        orjson.loads(line)
    except orjson.JSONDecodeError:
        return False
    return True


def _lines(first: bytes, first_number: int, rest: Iterable[bytes]) -> Iterator[tuple[int, bytes]]:
    """JSON Lines: each non-blank line is an event (a blank line is none)."""
    yield first_number, first.rstrip(b"\r\n")
    for number, raw in enumerate(rest, start=first_number + 1):
        if raw.strip():
            yield number, raw.rstrip(b"\r\n")


def _array_items(text: str, start: int, first_line: int) -> Iterator[tuple[int, bytes]]:
    """The elements of the array opening at `start`, each as its own bytes and start line."""
    decoder = json.JSONDecoder()
    position = start + 1
    length = len(text)

    def skip(at: int) -> int:
        while at < length and text[at] in " \t\r\n":
            at += 1
        return at

    position = skip(position)
    if position < length and text[position] == "]":
        return
    while True:
        _, end = decoder.raw_decode(text, position)
        yield first_line + text.count("\n", 0, position), text[position:end].encode("utf-8")
        position = skip(end)
        if text[position] == "]":
            return
        position = skip(position + 1)  # the comma


def _hint(head: bytes) -> str:
    if head.startswith(b"ISA"):
        return "; this looks like X12 (837P/837I): use --from x12"
    if b'"resourceType"' in head:
        return "; this looks like FHIR: use --from fhir"
    return ""


def read_claim_documents(stream: BinaryIO) -> ClaimDocuments:
    """The events of `stream`, whichever of the three shapes it is.

    JSON Lines whenever the first non-blank line is JSON on its own (a later line that is
    not becomes that line's dead letter), or whenever any line is; otherwise an array or one
    document if the whole input parses; else NotClaimJsonError naming what was expected.
    """
    skipped = 0
    first = b""
    for first in stream:
        skipped += 1
        if first.strip():
            break
    else:
        return ClaimDocuments("json-lines", iter(()))
    stripped = first.strip()
    if _parses(stripped) and not stripped.startswith(b"["):
        return ClaimDocuments("json-lines", _lines(first, skipped, stream))
    whole = first + stream.read()
    text = whole.decode("utf-8", errors="replace")
    try:
        parsed = orjson.loads(whole)
    except orjson.JSONDecodeError:
        parsed = None
        if any(_parses(line) for line in whole.splitlines()[1:]):
            rest = whole.splitlines(keepends=True)[1:]
            return ClaimDocuments("json-lines", _lines(first, skipped, rest))
        raise NotClaimJsonError(f"expected {_EXPECTED}{_hint(whole[:512])}") from None
    begin = len(text) - len(text.lstrip())
    line = skipped + text.count("\n", 0, begin)  # `whole` starts at line `skipped`
    if isinstance(parsed, list):
        return ClaimDocuments("json-array", _array_items(text, begin, skipped))
    return ClaimDocuments("json-document", iter(((line, whole.strip()),)))
