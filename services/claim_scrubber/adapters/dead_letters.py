"""Dead letters as an operator sees them (docs/operating/dead-letters.md): which ones match a
filter, what one says without its payload, and the record it gives back.

Pure: no Kafka client, no clock. The Kafka side (reading the topic, the ledger, publishing
exactly once) is adapters/kafka/replay.py.
"""

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import orjson

__all__ = [
    "REPLAY_COUNT",
    "REPLAY_OF",
    "DeadLetterFilter",
    "Original",
    "StoredDeadLetter",
    "read_stored",
]

REPLAY_OF: Final = "replay-of"
"""Header of a replayed record: the dead letter's `topic/partition/offset`."""
REPLAY_COUNT: Final = "replay-count"
"""Header of a replayed record: how many times its input has been replayed (1 the first)."""


@dataclass(frozen=True, slots=True)
class Original:
    """The input record a dead letter gives back, byte for byte."""

    topic: str
    key: bytes | None
    headers: list[tuple[str, bytes | None]]
    value: bytes


@dataclass(frozen=True, slots=True)
class StoredDeadLetter:
    """One record of the dead-letter topic: where it is, and its document."""

    topic: str
    partition: int
    offset: int
    document: dict[str, Any]
    claim_id: str | None
    """The record's `claim-id` header (empty: none)."""

    @property
    def coordinates(self) -> str:
        """`topic/partition/offset` of the dead letter itself: its ledger key and the
        `replay-of` header of its replay."""
        return f"{self.topic}/{self.partition}/{self.offset}"

    @property
    def kind(self) -> str:
        return str(self.document.get("error", {}).get("kind", ""))

    @property
    def source(self) -> dict[str, Any]:
        source: dict[str, Any] = self.document.get("source") or {}
        return source

    @property
    def truncated(self) -> bool:
        return bool(self.document.get("payload_truncated"))

    @property
    def received_at(self) -> datetime | None:
        text = self.document.get("received_at")
        try:
            return datetime.fromisoformat(text) if isinstance(text, str) else None
        except ValueError:
            return None

    @property
    def claim_ids(self) -> list[str]:
        """The claim ids it names: its header's, and intake's rejected claims' (not PHI)."""
        found = [self.claim_id] if self.claim_id else []
        for rejected in self.document.get("rejected_claims") or []:
            claim_id = rejected.get("claim_id")
            if claim_id and claim_id not in found:
                found.append(claim_id)
        return found

    @property
    def payload_bytes(self) -> int:
        declared = self.document.get("payload_bytes")
        if isinstance(declared, int):
            return declared
        return len(self.document.get("payload_base64", "")) * 3 // 4

    def why_not_replayable(self) -> str | None:
        """Why this dead letter cannot give back its record (None: it can)."""
        if self.truncated:
            return "its payload was truncated to fit the dead-letter topic (payload_truncated)"
        source = self.source
        if not isinstance(source.get("topic"), str):
            return "it names no source topic"
        if "headers" not in source or "key_base64" not in source:
            return "it predates replayable dead letters (no source.headers or key_base64)"
        return None

    def original(self) -> Original:
        """The input record, byte for byte (call only when `why_not_replayable` is None)."""
        source = self.source
        if source.get("key_base64") is not None:
            key: bytes | None = base64.b64decode(source["key_base64"])
        elif source.get("key") is not None:
            key = str(source["key"]).encode("utf-8")
        else:
            key = None
        headers = [
            (
                str(header["name"]),
                None if header.get("value_base64") is None else _decoded(header["value_base64"]),
            )
            for header in source.get("headers") or []
        ]
        return Original(
            str(source["topic"]), key, headers, _decoded(self.document["payload_base64"])
        )

    def summary(self, *, replayed: bool) -> dict[str, Any]:
        """What `dead-letters list` prints of it: never the payload, the key or a header."""
        source = self.source
        return {
            "dead_letter": {
                "topic": self.topic,
                "partition": self.partition,
                "offset": self.offset,
            },
            "source": {
                "topic": source.get("topic"),
                "partition": source.get("partition"),
                "offset": source.get("offset"),
            },
            "kind": self.kind,
            "message": self.document.get("error", {}).get("message"),
            "claim_ids": self.claim_ids,
            "payload_bytes": self.payload_bytes,
            "truncated": self.truncated,
            "received_at": self.document.get("received_at"),
            "replayed": replayed,
        }


def _decoded(text: str) -> bytes:
    return binascii.a2b_base64(text)


def read_stored(
    topic: str,
    partition: int,
    offset: int,
    value: bytes | None,
    headers: Sequence[tuple[str, bytes]],
) -> StoredDeadLetter | None:
    """A dead-letter topic's record as a StoredDeadLetter (None: not a dead letter we wrote)."""
    if value is None:
        return None
    try:
        document = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(document, dict) or "payload_base64" not in document:
        return None
    claim_id = next((v for k, v in headers if k == "claim-id"), b"").decode("utf-8", "replace")
    return StoredDeadLetter(topic, partition, offset, document, claim_id or None)


@dataclass(frozen=True, slots=True)
class DeadLetterFilter:
    """The filters of `dead-letters list|replay`; they combine with AND."""

    kinds: frozenset[str] = frozenset()
    since: datetime | None = None
    until: datetime | None = None
    source_topic: str | None = None
    partition: int | None = None
    offset_from: int | None = None
    offset_to: int | None = None
    claim_id: str | None = None
    limit: int | None = None

    def matches(self, letter: StoredDeadLetter) -> bool:  # noqa: PLR0911 - one test per filter
        if self.kinds and letter.kind not in self.kinds:
            return False
        received = letter.received_at
        if self.since is not None and (received is None or received < self.since):
            return False
        if self.until is not None and (received is None or received >= self.until):
            return False
        source = letter.source
        if self.source_topic is not None and source.get("topic") != self.source_topic:
            return False
        if self.partition is not None and source.get("partition") != self.partition:
            return False
        offset = source.get("offset")
        if self.offset_from is not None and (
            not isinstance(offset, int) or offset < self.offset_from
        ):
            return False
        if self.offset_to is not None and (not isinstance(offset, int) or offset > self.offset_to):
            return False
        return self.claim_id is None or self.claim_id in letter.claim_ids
