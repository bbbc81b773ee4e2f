"""The review page under load: the worklist rendered over 50,000 open items (server time, no
browser), and the memory those items take."""

import gc
import statistics
import time
import tracemalloc
from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient
from tests.claims import default_event, event_bytes, patched

from claim_scrubber.adapters.review.app import ReviewState, review_app
from claim_scrubber.adapters.ruleset_file import load_ruleset
from claim_scrubber.scrubber import Scrubber

_TOKEN = "bench-review-token-0123456789"  # noqa: S105 - a bench token


def _results(scrubber: Scrubber, count: int) -> list[bytes]:
    """`count` real needs-review results (a bad modifier, a third without documentation)."""
    start = datetime(2026, 12, 1, tzinfo=UTC)
    found = []
    for n in range(count):
        changes: dict[str, object] = {"claim.claim_id": f"R-{n:06d}"}
        changes["claim.lines[1].modifiers"] = ["ZZ"]
        if n % 3 == 0:
            changes["claim.documentation"] = None
        decision = scrubber.decide(
            event_bytes(patched(default_event(), changes)),
            result_source={"topic": "claims.submitted", "partition": n % 6, "offset": n},
            dead_letter_source={},
            decided_at=(start + timedelta(seconds=n)).isoformat(),
        )
        found.append(decision.document)
    return found


def bench_review(open_items: int = 50_000) -> dict[str, float]:
    """Server time to render the worklist over `open_items`, and the RSS they take."""
    scrubber = Scrubber(load_ruleset(), max_message_bytes=1 << 20)
    gc.collect()
    # What the board and its documents hold once built (tracemalloc, not RSS: in `make bench`
    # this process has already grown and freed far more than this, and reuses it)
    tracemalloc.start()
    documents = _results(scrubber, open_items)
    state = ReviewState(ruleset_version="bench")
    for document in documents:
        state.take(document)
    del documents  # the board holds each document it keeps
    gc.collect()
    held_mb = tracemalloc.get_traced_memory()[0] / (1024 * 1024)
    tracemalloc.stop()
    client = TestClient(review_app(state, _TOKEN))
    headers = {"Authorization": f"Bearer {_TOKEN}"}
    timings = []
    for _ in range(10):
        started = time.perf_counter()
        response = client.get("/", headers=headers)
        timings.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200
    return {
        "review_open_items": len(state.board.items),
        "review_worklist_ms_median": round(statistics.median(timings), 1),
        "review_worklist_ms_max": round(max(timings), 1),
        "review_mb_for_open_items": round(held_mb, 1),
    }


if __name__ == "__main__":
    for name, value in bench_review().items():
        print(f"  {name}  {value}")
