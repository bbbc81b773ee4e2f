"""The review queue's state (docs/consuming-results/review-page.md): the open needs-review
items, grouped by rule.

Pure: no Kafka, no clock, no web. Every scrub result read from `claims.needs-review` and
`claims.clean` goes through `take`: a needs-review result opens (or replaces) its claim's item;
a later clean result of the claim, or any result for a higher claim_version, closes it. Results
arrive per topic in order but the two topics interleave, so an item remembers the version and
the time it was scrubbed, and an older result never reopens or closes a newer one.
"""

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

__all__ = ["ReviewBoard", "ReviewItem", "RuleGroup"]


@dataclass(frozen=True, slots=True)
class ReviewItem:
    """One claim waiting for a coder: its latest needs-review result."""

    claim_id: str
    claim_version: int
    scrubbed_at: datetime
    payer_kind: str
    rule_ids: tuple[str, ...]
    document: bytes
    """The ScrubResult as published, kept as its bytes (a third of the parsed size); it holds
    PHI: shown, never logged."""

    @property
    def result(self) -> dict[str, Any]:
        parsed: dict[str, Any] = orjson.loads(self.document)
        return parsed


@dataclass(frozen=True, slots=True)
class RuleGroup:
    """The worklist's row of one rule: how many open items it is on, and the oldest."""

    rule_id: str
    count: int
    oldest: datetime


@dataclass(slots=True)
class _Seen:
    version: int
    scrubbed_at: datetime


@dataclass(slots=True)
class ReviewBoard:
    """Open items by claim id, and what was last seen of every claim."""

    items: dict[str, ReviewItem] = field(default_factory=dict)
    _seen: dict[str, _Seen] = field(default_factory=dict)

    def take(self, result: dict[str, Any], document: bytes | None = None) -> bool:
        """Take one scrub result (`document`: its bytes as published, when at hand); whether
        the board changed."""
        claim_id = result.get("claim_id")
        version = result.get("claim_version")
        outcome = result.get("outcome")
        scrubbed_at = _moment(result.get("scrubbed_at"))
        if not isinstance(claim_id, str) or not isinstance(version, int) or scrubbed_at is None:
            return False
        seen = self._seen.get(claim_id)
        if seen is not None and (version, scrubbed_at) <= (seen.version, seen.scrubbed_at):
            return False  # an older version, or the same one scrubbed earlier
        self._seen[claim_id] = _Seen(version, scrubbed_at)
        if outcome == "needs_review":
            claim = result.get("claim") or {}
            self.items[claim_id] = ReviewItem(
                claim_id=claim_id,
                claim_version=version,
                scrubbed_at=scrubbed_at,
                payer_kind=str((claim.get("payer") or {}).get("kind", "other")),
                rule_ids=tuple(
                    dict.fromkeys(str(f.get("rule_id")) for f in result.get("findings", []))
                ),
                document=orjson.dumps(result) if document is None else document,
            )
            return True
        return self.items.pop(claim_id, None) is not None

    def open_items(
        self, *, payer_kind: str | None = None, rule_id: str | None = None
    ) -> list[ReviewItem]:
        """The open items, newest first, of a payer kind and a rule when given."""
        chosen = [
            item
            for item in self.items.values()
            if (payer_kind is None or item.payer_kind == payer_kind)
            and (rule_id is None or rule_id in item.rule_ids)
        ]
        return sorted(chosen, key=lambda item: item.scrubbed_at, reverse=True)

    def groups(self, *, payer_kind: str | None = None) -> list[RuleGroup]:
        """The open items grouped by rule: count and oldest, the largest group first."""
        counts: Counter[str] = Counter()
        oldest: dict[str, datetime] = {}
        for item in self.items.values():
            if payer_kind is not None and item.payer_kind != payer_kind:
                continue
            for rule_id in item.rule_ids:
                counts[rule_id] += 1
                if rule_id not in oldest or item.scrubbed_at < oldest[rule_id]:
                    oldest[rule_id] = item.scrubbed_at
        return sorted(
            (RuleGroup(rule_id, count, oldest[rule_id]) for rule_id, count in counts.items()),
            key=lambda group: (-group.count, group.rule_id),
        )

    def payer_kinds(self) -> list[str]:
        return sorted({item.payer_kind for item in self.items.values()})


def _moment(text: object) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None
