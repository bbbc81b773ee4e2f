"""The review page without a browser or a broker: the token guards every request, the worklist
counts the open items by rule, a claim's findings sit beside their lines, and no page is cached
or allows inline script."""

import os
import subprocess
from datetime import UTC, datetime

import orjson
import pytest
from fastapi.testclient import TestClient

from claim_scrubber.adapters.review.app import ReviewState, review_app
from claim_scrubber.adapters.ruleset_file import load_ruleset
from claim_scrubber.scrubber import Scrubber
from tests.claims import default_event, event_bytes, patched
from tests.kafka_harness import WORKER

TOKEN = "review-token-for-tests-0123456789"  # noqa: S105 - a test token
SCRUBBER = Scrubber(load_ruleset(), max_message_bytes=1 << 20)


def _result(claim_id: str, **changes: object) -> dict[str, object]:
    """A real needs-review result of the scrubber (a bad modifier on the Q4390 line)."""
    event = patched(default_event(), {"claim.claim_id": claim_id, **changes})
    decision = SCRUBBER.decide(
        event_bytes(event),
        result_source={"topic": "claims.submitted", "partition": 1, "offset": 7},
        dead_letter_source={},
        decided_at=datetime.now(UTC).isoformat(),
    )
    result: dict[str, object] = orjson.loads(decision.document)
    return result


@pytest.fixture
def client() -> TestClient:
    state = ReviewState(ruleset_version="2026.12.0")
    for n in range(3):
        state.take(orjson.dumps(_result(f"R-{n}", **{"claim.lines[1].modifiers": ["ZZ"]})))
    return TestClient(review_app(state, TOKEN))


def test_without_the_token_every_page_answers_401(client: TestClient) -> None:
    for path in ("/", "/worklist", "/claims/R-0", "/events", "/static/review.css"):
        assert client.get(path).status_code == 401, path
    assert client.get("/", headers={"Authorization": "Bearer wrong"}).status_code == 401


def test_the_login_link_sets_a_cookie_that_opens_the_worklist(client: TestClient) -> None:
    assert client.get("/login", params={"token": "wrong"}).status_code == 401

    login = client.get("/login", params={"token": TOKEN}, follow_redirects=False)
    page = client.get("/")

    assert login.status_code == 303
    assert page.status_code == 200
    assert 'data-rule="MOD-002"' in page.text
    assert page.headers["cache-control"] == "no-store"
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert "<script>" not in page.text, "no inline script"


def test_the_worklist_counts_open_items_per_rule(client: TestClient) -> None:
    page = client.get("/worklist", headers={"Authorization": f"Bearer {TOKEN}"}).text

    row = page.split('data-rule="MOD-002"')[1].split("</tr>")[0]
    assert '<td class="count">3</td>' in row
    assert page.count("data-claim=") == 3


def test_a_claims_finding_sits_beside_its_line_with_the_rules_why_and_source(
    client: TestClient,
) -> None:
    page = client.get("/claims/R-1", headers={"Authorization": f"Bearer {TOKEN}"}).text

    line_two = page.split('data-line="2"')[1].split("</tr>")[0]
    assert 'data-rule="MOD-002"' in line_two
    assert "Why:" in line_two
    assert "Source:" in line_two
    assert 'data-rule="MOD-002"' not in page.split('data-line="1"')[1].split("</tr>")[0]


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, "the review page shows PHI: set SCRUBBER_REVIEW_TOKEN_FILE"),
        (
            {"SCRUBBER_REVIEW_OPEN": "true", "SCRUBBER_REVIEW_BIND": "0.0.0.0"},  # noqa: S104
            "SCRUBBER_REVIEW_OPEN is for a local demo",
        ),
        ({"SCRUBBER_REVIEW_TOKEN_FILE": "/nonexistent/token"}, "cannot read"),
    ],
    ids=["no-token", "open-beyond-loopback", "unreadable-token"],
)
def test_the_page_refuses_to_start_without_a_token_with_one_line(
    env: dict[str, str], expected: str
) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SCRUBBER_")}
    result = subprocess.run(
        [WORKER[0], "review"],
        env=clean | {"SCRUBBER_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"} | env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 2
    (line,) = [line for line in result.stderr.splitlines() if line.strip()]
    assert expected in line
