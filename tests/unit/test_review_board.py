"""The review queue's state without a browser: items open and close by version and outcome,
and group by rule."""

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from claim_scrubber.adapters.review_board import ReviewBoard

START = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def _result(
    claim: str,
    version: int,
    outcome: str,
    rules: tuple[str, ...] = (),
    *,
    minute: int = 0,
    payer: str = "medicare",
) -> dict[str, Any]:
    return {
        "claim_id": claim,
        "claim_version": version,
        "outcome": outcome,
        "scrubbed_at": (START + timedelta(minutes=minute)).isoformat(),
        "findings": [{"rule_id": rule} for rule in rules],
        "claim": {"payer": {"kind": payer}},
    }


def test_a_needs_review_result_opens_an_item_under_each_of_its_rules() -> None:
    board = ReviewBoard()

    board.take(_result("A", 1, "needs_review", ("DOC-008", "PAY-001")))
    board.take(_result("B", 1, "needs_review", ("DOC-008",), minute=1, payer="uhc"))

    assert [(g.rule_id, g.count) for g in board.groups()] == [("DOC-008", 2), ("PAY-001", 1)]
    assert board.groups()[0].oldest == START
    assert [i.claim_id for i in board.open_items()] == ["B", "A"], "newest first"
    assert [i.claim_id for i in board.open_items(payer_kind="uhc")] == ["B"]
    assert [i.claim_id for i in board.open_items(rule_id="PAY-001")] == ["A"]


def test_a_later_clean_result_or_a_higher_version_closes_the_item() -> None:
    board = ReviewBoard()
    board.take(_result("A", 1, "needs_review", ("DOC-008",)))
    board.take(_result("B", 1, "needs_review", ("DOC-008",)))

    assert board.take(_result("A", 1, "clean", minute=5))
    assert board.take(_result("B", 2, "needs_review", ("MOD-002",), minute=5))

    assert list(board.items) == ["B"]
    assert board.items["B"].rule_ids == ("MOD-002",)


def test_an_older_result_arriving_late_neither_reopens_nor_closes() -> None:
    board = ReviewBoard()
    board.take(_result("A", 2, "needs_review", ("DOC-008",), minute=5))

    assert not board.take(_result("A", 1, "clean", minute=9))  # version 1 is older
    assert not board.take(_result("A", 2, "clean", minute=1))  # scrubbed before
    assert "A" in board.items

    board.take(_result("C", 3, "clean", minute=5))
    assert not board.take(_result("C", 2, "needs_review", ("DOC-008",), minute=7))
    assert "C" not in board.items


_events = st.lists(
    st.tuples(
        st.sampled_from(["A", "B", "C"]),
        st.integers(1, 3),
        st.sampled_from(["clean", "needs_review"]),
        st.integers(0, 20),
    ),
    max_size=40,
)


@given(_events)
def test_the_open_items_are_each_claims_latest_result_whenever_it_is_needs_review(
    events: list[tuple[str, int, str, int]],
) -> None:
    board = ReviewBoard()
    for claim, version, outcome, minute in events:
        board.take(_result(claim, version, outcome, ("DOC-008",), minute=minute))

    latest: dict[str, tuple[int, int, str]] = {}
    for claim, version, outcome, minute in events:
        if claim not in latest or (version, minute) > latest[claim][:2]:
            latest[claim] = (version, minute, outcome)
    assert set(board.items) == {c for c, (_, _, o) in latest.items() if o == "needs_review"}
