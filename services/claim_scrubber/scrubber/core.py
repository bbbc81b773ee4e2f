"""The scrubber: one record in, one decision out, with its document ready to publish.

Pure: the clock's reading and the record's origin are passed in by the adapter.
"""

import binascii
import hashlib
import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import orjson

from claim_scrubber.models import DeadLetterKind, Finding, Outcome, PayerKind, Ruleset, Severity
from claim_scrubber.models.documents import json_document
from claim_scrubber.models.history import Application
from claim_scrubber.rules import CHECKED_RULES, ClaimFacts, Rule, effective_rules, run_rules
from claim_scrubber.scrubber.event_reader import Accepted, read_claim_event
from claim_scrubber.scrubber.history import HistoryChange, HistoryTable

__all__ = [
    "DEAD_LETTER",
    "UNBOUNDED",
    "VOIDED",
    "Decision",
    "DocumentLimits",
    "Scrubber",
    "Verdict",
    "dead_letter_document",
    "timestamp_text",
]

DEAD_LETTER: Final = "dead_letter"
"""The outcome header value of a dead letter (results use Outcome)."""

VOIDED: Final = "voided"
"""The outcome of a `claim.voided` event: never scrubbed, no result."""

_REPORTED_SEVERITIES: Final = frozenset({Severity.ERROR, Severity.WARNING})


def timestamp_text(moment: datetime) -> str:
    """UTC ISO 8601 with milliseconds and a Z, as in the contract's examples."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@dataclass(frozen=True, slots=True)
class DocumentLimits:
    """The largest document, in bytes, that each output can carry (None: no limit)."""

    result: int | None = None
    dead_letter: int | None = None


UNBOUNDED: Final = DocumentLimits()


_PAYLOAD_FIELD: Final = b'"payload_base64":"'
_BASE64_CHUNK: Final = 3 * 64 * 1024
"""Payload bytes encoded at a time (a multiple of 3: the chunks' base64 joins without padding)."""


def _spliced(envelope: bytes, payload: memoryview) -> bytes:
    """The envelope (whose payload_base64 is "") with the payload written into it in base64,
    a chunk at a time: the encoded payload exists once, in the document (a dead letter is
    built beside the whole record it carries, so each copy counts)."""
    at = envelope.index(_PAYLOAD_FIELD) + len(_PAYLOAD_FIELD)  # a key: never inside a string
    document = io.BytesIO()
    document.write(envelope[:at])
    for start in range(0, len(payload), _BASE64_CHUNK):
        document.write(binascii.b2a_base64(payload[start : start + _BASE64_CHUNK], newline=False))
    document.write(envelope[at:])
    return document.getvalue()  # the buffer itself, trimmed, not a copy


def _dead_letter_document(
    payload: bytes,
    error: dict[str, object],
    source: dict[str, Any],
    received_at: str,
    limit: int | None,
    *,
    extra: dict[str, object] | None = None,
) -> bytes:
    """The DeadLetter JSON, with the whole payload when it fits `limit`, else cut to fit and
    marked `payload_truncated` with the whole payload's length and SHA-256."""
    document: dict[str, object] = {
        "schema_version": "1",
        "error": error,
        "source": source,
        "payload_base64": "",
        "received_at": received_at,
        **(extra or {}),
    }
    envelope = orjson.dumps(document)
    if limit is None or len(envelope) + -(-len(payload) // 3) * 4 <= limit:
        return _spliced(envelope, memoryview(payload))
    document["payload_truncated"] = True
    document["payload_bytes"] = len(payload)
    document["payload_sha256"] = hashlib.sha256(payload).hexdigest()
    envelope = orjson.dumps(document)
    if len(envelope) > limit and source.get("key") is not None:
        # The record's own key still carries the input key; the copy in source is dropped.
        document["source"] = source | {"key": None}
        envelope = orjson.dumps(document)
    kept = max(0, limit - len(envelope)) // 4 * 3
    return _spliced(envelope, memoryview(payload)[:kept])


def dead_letter_document(
    payload: bytes,
    kind: DeadLetterKind,
    message: str,
    source: dict[str, Any],
    received_at: str,
    *,
    details: Sequence[tuple[str, str]] = (),
    limit: int | None = None,
    extra: dict[str, object] | None = None,
) -> bytes:
    """A DeadLetter of `payload` (docs/operating/delivery.md): whole when it fits `limit`, else cut
    to fit with the whole payload's length and SHA-256; `extra` adds top-level fields."""
    error: dict[str, object] = {
        "kind": kind.value,
        "message": message,
        "details": [{"loc": loc, "msg": msg} for loc, msg in details],
    }
    return _dead_letter_document(payload, error, source, received_at, limit, extra=extra)


@dataclass(frozen=True, slots=True)
class Verdict:
    outcome: Outcome
    findings: list[Finding]

    @property
    def rule_ids(self) -> tuple[str, ...]:
        """Error and warning rule ids, each once, sorted."""
        return tuple(
            sorted({f.rule_id for f in self.findings if f.severity in _REPORTED_SEVERITIES})
        )


@dataclass(frozen=True, slots=True)
class Decision:
    """Where one record goes and the JSON document to send there."""

    outcome: str
    document: bytes
    event_id: str | None = None
    claim_id: str | None = None
    claim_version: int | None = None
    rule_ids: tuple[str, ...] = ()
    findings: tuple[tuple[str, str], ...] = ()
    """(rule id, severity) of every finding, for counting."""
    dead_letter_kind: DeadLetterKind | None = None
    history_change: HistoryChange | None = None
    """What the record changed in claim history, to write to the changelog with it."""

    @property
    def is_dead_letter(self) -> bool:
        return self.dead_letter_kind is not None

    @property
    def is_void(self) -> bool:
        return self.outcome == VOIDED

    @property
    def audit_event(self) -> str:
        """The name of its audit line (docs/operating/monitoring.md)."""
        if self.is_dead_letter:
            return "claim.dead_lettered"
        return "claim.voided" if self.is_void else "claim.scrubbed"

    def audit_fields(self, ruleset_version: str) -> dict[str, object]:
        """What its audit line says of the claim: ids, outcome and rule ids, never PHI."""
        return {
            "event_id": self.event_id,
            "claim_id": self.claim_id,
            "claim_version": self.claim_version,
            "outcome": self.outcome,
            "rule_ids": list(self.rule_ids),
            "ruleset_version": ruleset_version,
        }


class Scrubber:
    """Applies one validated ruleset's rules to claim events."""

    def __init__(
        self,
        ruleset: Ruleset,
        *,
        max_message_bytes: int,
        rules: Sequence[Rule] = CHECKED_RULES,
    ) -> None:
        self.ruleset = ruleset
        self.max_message_bytes = max_message_bytes
        self._rules = tuple(rules)
        self._plans = {kind: effective_rules(ruleset, self._rules, kind) for kind in PayerKind}

    def verdict(
        self, accepted: Accepted, history: tuple[Application, ...] | None = None
    ) -> Verdict:
        """The claim's findings; `history` is the applications of the patient's other claims
        (None: history is off or the claim names no member, and the HIST rules do not run)."""
        return self._judged(ClaimFacts(accepted.event, self.ruleset, history))

    def _judged(self, facts: ClaimFacts) -> Verdict:
        findings = run_rules(facts, self._plans[facts.event.claim.payer.kind])
        blocked = any(finding.severity is Severity.ERROR for finding in findings)
        return Verdict(Outcome.NEEDS_REVIEW if blocked else Outcome.CLEAN, findings)

    def admit(
        self,
        payload: bytes,
        *,
        dead_letter_source: dict[str, Any],
        decided_at: str,
        limits: DocumentLimits = UNBOUNDED,
    ) -> Accepted | Decision:
        """The record read as a valid ClaimEvent, or its dead-letter decision; never raises
        for bad input. Claim history's re-keying stage admits each record before it keys it
        by patient, so a dead letter keeps the input's key and coordinates."""
        read = read_claim_event(payload, max_bytes=self.max_message_bytes)
        if isinstance(read, Accepted):
            return read
        error: dict[str, object] = {
            "kind": read.kind.value,
            "message": read.message,
            "details": [{"loc": loc, "msg": msg} for loc, msg in read.details],
        }
        return Decision(
            DEAD_LETTER,
            _dead_letter_document(
                payload, error, dead_letter_source, decided_at, limits.dead_letter
            ),
            event_id=read.event_id,
            claim_id=read.claim_id,
            dead_letter_kind=read.kind,
        )

    def decide(
        self,
        payload: bytes,
        *,
        result_source: dict[str, Any],
        dead_letter_source: dict[str, Any],
        decided_at: str,
        limits: DocumentLimits = UNBOUNDED,
        history: HistoryTable | None = None,
    ) -> Decision:
        """Read, scrub and render one record; never raises for bad input.

        `decided_at` is the time to stamp, already as `timestamp_text` (a batch shares one).
        A result larger than `limits.result` becomes a `processing_error` dead letter; a dead
        letter larger than `limits.dead_letter` carries its payload cut to fit. With
        `history` (the table of the record's partition) the claim is judged against what its
        patient had billed before, and the table takes the claim (or the void).
        """
        read = self.admit(
            payload, dead_letter_source=dead_letter_source, decided_at=decided_at, limits=limits
        )
        if isinstance(read, Decision):
            return read

        event = read.event
        if event.event_type == "claim.voided":
            return self._voided(read, history)
        facts = ClaimFacts(event, self.ruleset, None if history is None else history.seen_by(event))
        verdict = self._judged(facts)
        change = None if history is None else history.took(facts)
        document: dict[str, object] = {
            "schema_version": "1",
            "event_id": event.event_id,
            "claim_id": event.claim.claim_id,
            "claim_version": event.claim.claim_version,
            "outcome": verdict.outcome.value,
            "findings": verdict.findings,  # orjson writes the dataclasses field by field
            "ruleset_version": self.ruleset.version,
            "scrubbed_at": decided_at,
            "source": result_source,
            "claim": read.claim_document,
        }
        rendered = json_document(document)
        if limits.result is not None and len(rendered) > limits.result:
            return self._processing_error(
                payload,
                f"the scrub result is {len(rendered)} bytes, more than the result topic "
                f"accepts ({limits.result} bytes)",
                dead_letter_source,
                decided_at,
                limits,
                event_id=event.event_id,
                claim_id=event.claim.claim_id,
            )
        return Decision(
            verdict.outcome.value,
            rendered,
            event_id=event.event_id,
            claim_id=event.claim.claim_id,
            claim_version=event.claim.claim_version,
            rule_ids=verdict.rule_ids,
            findings=tuple((f.rule_id, f.severity.value) for f in verdict.findings),
            history_change=change,
        )

    def _voided(self, accepted: Accepted, history: HistoryTable | None) -> Decision:
        """A void: no result; with history, the claim's applications are removed."""
        event = accepted.event
        change = None if history is None else history.took(ClaimFacts(event, self.ruleset))
        return Decision(
            VOIDED,
            b"",
            event_id=event.event_id,
            claim_id=event.claim.claim_id,
            claim_version=event.claim.claim_version,
            history_change=change,
        )

    def processing_error(
        self,
        payload: bytes,
        *,
        attempts: int,
        error_type: str,
        dead_letter_source: dict[str, Any],
        decided_at: str,
        limits: DocumentLimits = UNBOUNDED,
    ) -> Decision:
        """The dead letter of a record the worker failed on `attempts` times for a reason that
        is not a rule's (`error_type` names the exception class, never its text)."""
        return self._processing_error(
            payload,
            f"the worker failed on this record {attempts} times ({error_type}); "
            "it is not retried again",
            dead_letter_source,
            decided_at,
            limits,
        )

    def _processing_error(
        self,
        payload: bytes,
        message: str,
        source: dict[str, Any],
        decided_at: str,
        limits: DocumentLimits,
        *,
        event_id: str | None = None,
        claim_id: str | None = None,
    ) -> Decision:
        kind = DeadLetterKind.PROCESSING_ERROR
        error: dict[str, object] = {"kind": kind.value, "message": message, "details": []}
        return Decision(
            DEAD_LETTER,
            _dead_letter_document(payload, error, source, decided_at, limits.dead_letter),
            event_id=event_id,
            claim_id=claim_id,
            dead_letter_kind=kind,
        )
