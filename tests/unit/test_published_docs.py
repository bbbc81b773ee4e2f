"""The committed schemas/ files are exactly what the code generates, and describe what is
sent: every field, every header, every key."""

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from claim_scrubber.adapters.published_docs import generated_documents
from tests.claims import default_event, event_bytes, patched
from tests.unit.test_scrub_mapping import Record, mapping

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


def _properties(node: object, where: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        for name, schema in node.get("properties", {}).items():
            yield f"{where}.{name}", schema
        for name, child in node.items():
            yield from _properties(child, f"{where}/{name}")
    elif isinstance(node, list):
        for child in node:
            yield from _properties(child, where)


@pytest.mark.parametrize("name", sorted(n for n in GENERATED if n.endswith(".json")))
def test_every_field_of_a_published_schema_is_described(name: str) -> None:
    document = json.loads(GENERATED[name])

    undescribed = [where for where, schema in _properties(document) if "description" not in schema]

    assert undescribed == []


def _asyncapi_message(document: str, address: str) -> dict[str, Any]:
    spec = json.loads(GENERATED[document])
    [channel] = [c for c in spec["channels"].values() if c["address"] == address]
    [reference] = channel["messages"].values()
    message: dict[str, Any] = spec["components"]["messages"][reference["$ref"].rsplit("/", 1)[1]]
    return message


@pytest.mark.parametrize(
    ("record", "address"),
    [
        (Record(event_bytes(default_event())), "claims.clean"),
        (
            Record(event_bytes(patched(default_event(), {"claim.lines[0].units": 0}))),
            "claims.needs-review",
        ),
        (
            Record(
                b"{not json",
                headers=[("traceparent", b"00-" + b"1" * 32 + b"-" + b"2" * 16 + b"-01")],
            ),
            "claims.dead-letter",
        ),
    ],
    ids=["clean", "needs-review", "dead-letter"],
)
def test_the_asyncapi_headers_of_an_output_are_those_the_worker_writes(
    record: Record, address: str
) -> None:
    [output] = mapping().route(record, "2026-12-06T12:00:00.000Z").outputs
    message = _asyncapi_message("asyncapi.json", address)

    declared = message["headers"]
    written = {name for name, _ in output.headers}
    assert output.topic == address
    assert set(declared["required"]) <= written <= set(declared["properties"])
    assert "correlationId" not in message
    assert "key" in message["bindings"]["kafka"]


def test_no_asyncapi_message_declares_a_header_nobody_sends() -> None:
    for document in ("asyncapi.json", "asyncapi-intake.json"):
        spec = json.loads(GENERATED[document])
        for message in spec["components"]["messages"].values():
            assert "correlationId" not in message
            assert set(message["headers"]["properties"]) <= {
                "content-type",
                "event-id",
                "claim-id",
                "outcome",
                "ruleset-version",
                "traceparent",
            }
