"""The documentation says what the code does: every example validates against the models,
every setting is documented, and nothing points at planning documents outside the repository."""

import json
import re
from pathlib import Path

import pytest
from pydantic import BaseModel

from claim_scrubber.adapters.settings import Settings
from claim_scrubber.models import ClaimEvent, DeadLetter, ScrubResult
from tests.kafka_harness import ROOT

DOCS = ROOT / "docs"
PAGES = sorted(DOCS.rglob("*.md"))
READER_PAGES = [*PAGES, ROOT / "README.md"]
MODELS: dict[str, type[BaseModel]] = {
    "ClaimEvent": ClaimEvent,
    "ScrubResult": ScrubResult,
    "DeadLetter": DeadLetter,
}
_BLOCK = re.compile(r"^```json(?P<info>[^\n]*)\n(?P<body>.*?)^```", re.MULTILINE | re.DOTALL)


def _json_blocks() -> list[tuple[str, str | None, str]]:
    """(where, model title or None, text) of every JSON code block of the docs and README."""
    found = []
    for page in READER_PAGES:
        for number, match in enumerate(_BLOCK.finditer(page.read_text("utf-8")), start=1):
            title = re.search(r'title="([^"]+)"', match.group("info"))
            where = f"{page.relative_to(ROOT)} block {number}"
            found.append((where, title.group(1) if title else None, match.group("body")))
    return found


BLOCKS = _json_blocks()


def test_the_docs_show_a_full_example_of_each_message() -> None:
    assert {title for _, title, _ in BLOCKS} >= set(MODELS)
    assert sum(title == "ClaimEvent" for _, title, _ in BLOCKS) >= 3  # one per event type


@pytest.mark.parametrize(("where", "title", "text"), BLOCKS, ids=[b[0] for b in BLOCKS])
def test_every_json_example_parses_and_a_titled_one_validates_against_its_model(
    where: str, title: str | None, text: str
) -> None:
    if title is None:  # one document, or JSON Lines
        try:
            json.loads(text)
        except json.JSONDecodeError:
            for line in filter(str.strip, text.splitlines()):
                json.loads(line)
        return
    assert title in MODELS, f"{where}: no model named {title}"
    MODELS[title].model_validate_json(text)


def test_the_claim_event_examples_cover_every_event_type() -> None:
    types = {json.loads(text)["event_type"] for _, title, text in BLOCKS if title == "ClaimEvent"}
    assert types == {"claim.submitted", "claim.resubmitted", "claim.voided"}


def _setting_names() -> set[str]:
    return {
        str(field.validation_alias or f"SCRUBBER_{name.upper()}")
        for name, field in Settings.model_fields.items()
    }


def test_the_settings_page_documents_every_setting() -> None:
    page = (DOCS / "operating" / "settings.md").read_text("utf-8")
    documented = set(re.findall(r"`((?:SCRUBBER|OTEL)_[A-Z0-9_]+)`", page))

    assert _setting_names() - documented == set()


def test_no_page_names_a_setting_that_does_not_exist() -> None:
    known = _setting_names() | {"SCRUBBER_RULSET"}  # the typo the settings page shows refused
    for page in READER_PAGES:
        for named in re.findall(r"\bSCRUBBER_[A-Z0-9_]*[A-Z0-9]\b", page.read_text("utf-8")):
            assert any(k == named or k.startswith(named + "_") for k in known), (
                f"{page.relative_to(ROOT)} names {named}"
            )


@pytest.mark.parametrize("page", READER_PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_page_cites_the_planning_documents(page: Path) -> None:
    text = page.read_text("utf-8")
    for outside in (r"contract §", r"\(contract\b", r"\brules\.md\b", r"\bissue \d+", "../shared"):
        assert not re.search(outside, text), f"{page.relative_to(ROOT)} cites {outside}"


def test_every_example_file_the_docs_name_exists() -> None:
    for page in READER_PAGES:
        for named in re.findall(r"\bexamples/[\w.-]+", page.read_text("utf-8")):
            assert (ROOT / named).is_file(), f"{page.relative_to(ROOT)} names {named}"


def test_the_readme_fits_on_a_few_screens() -> None:
    assert len((ROOT / "README.md").read_text("utf-8").splitlines()) <= 100
