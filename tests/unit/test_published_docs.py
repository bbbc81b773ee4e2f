"""The committed schemas/ files are exactly what the code generates."""

from pathlib import Path

import pytest

from claim_scrubber.adapters.published_docs import generated_documents

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
GENERATED = generated_documents()


@pytest.mark.parametrize("name", sorted(GENERATED))
def test_the_committed_document_matches_the_code(name: str) -> None:
    committed = SCHEMAS / name
    assert committed.exists(), f"schemas/{name} is missing: run `make schemas`"
    assert committed.read_text("utf-8") == GENERATED[name], (
        f"schemas/{name} drifted from the code: run `make schemas` and commit the result"
    )


def test_the_asyncapi_document_describes_the_input_and_all_three_outputs() -> None:
    text = GENERATED["asyncapi.json"]
    for topic in ("claims.submitted", "claims.clean", "claims.needs-review", "claims.dead-letter"):
        assert f'"address": "{topic}"' in text
    assert "#/components/schemas/ClaimEvent" in text
