"""Properties of the scrubber over generated schema-valid claims (hypothesis)."""

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from claim_scrubber.adapters.ruleset_file import load_ruleset
from claim_scrubber.models import DeadLetter, Outcome, ScrubResult, Severity
from claim_scrubber.scrubber import Accepted, DocumentLimits, Scrubber, read_claim_event
from tests.claims import default_event, event_bytes, patched

SCRUBBER = Scrubber(load_ruleset(), max_message_bytes=1 << 20)
CODES = [
    "Q4390",
    "15271",
    "15272",
    "15273",
    "15274",
    "15275",
    "15276",
    "15277",
    "15278",
    "99213",
    "q4390 ",
]
MODIFIERS = ["00", "22", "25", "JW", "JZ", "GA", "RT", "LT", "59", "ZZ", " rt", ""]
DIAGNOSES = ["E11.621", "L97.412", "I87.2", "L89.153", "I10", "E11621", "t20.311a", ""]
DATES = st.dates().map(lambda d: d.isoformat())
NUMBERS = st.one_of(
    st.integers(-5, 500),
    st.floats(-5, 500, allow_nan=False, allow_infinity=False),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
)
OFFSETS = [UTC, timezone(timedelta(hours=-5)), timezone(timedelta(hours=5, minutes=30))]
TEXT = st.one_of(st.none(), st.text(max_size=8))

lines = st.fixed_dictionaries(
    {
        "line_number": st.integers(1, 6),
        "procedure_code": st.sampled_from(CODES),
        "modifiers": st.lists(st.sampled_from(MODIFIERS), max_size=6),
        "units": NUMBERS,
        "unit_basis": st.sampled_from(["UN", "MJ", None, " un"]),
        "charge": st.decimals(0, 100000, places=2).map(str),
        "service_date": DATES,
        "diagnosis_pointers": st.lists(st.integers(-1, 14), max_size=6),
    },
    optional={"rendering_npi": st.sampled_from(["1003000126", "1234567893", "12", ""])},
)
documentation = st.fixed_dictionaries(
    {},
    optional={
        "wound": st.fixed_dictionaries(
            {},
            optional={
                "area_cm2": st.one_of(st.none(), NUMBERS),
                "location": st.sampled_from(["foot", "leg", "toe", " Hand", None]),
                "indication": TEXT,
                "standard_of_care_weeks": st.one_of(st.none(), NUMBERS),
                "application_number": st.one_of(st.none(), st.integers(0, 20)),
                "episode_start_date": st.one_of(st.none(), DATES),
            },
        ),
        "primary_procedure_code": st.sampled_from([None, "15275", "15271", " "]),
        "product": st.fixed_dictionaries(
            {},
            optional={
                "lot_numbers": st.one_of(st.none(), st.lists(st.text(max_size=4), max_size=2)),
                "quantity_applied_cm2": st.one_of(st.none(), NUMBERS),
                "quantity_wasted_cm2": st.one_of(st.none(), NUMBERS),
            },
        ),
        "medical_necessity": TEXT,
        "increased_services_justification": TEXT,
    },
)
events = st.fixed_dictionaries(
    {
        "schema_version": st.just("1"),
        "event_id": st.text(min_size=1, max_size=12),
        "event_type": st.sampled_from(["claim.submitted", "claim.resubmitted"]),
        # From year 2: a local time in year 1 east of UTC is before year 1 in UTC, which the
        # contract makes a schema violation (its own case in tests/unit/test_intake.py).
        "occurred_at": st.datetimes(
            min_value=datetime(2, 1, 1),  # noqa: DTZ001 - hypothesis bounds are naive
            timezones=st.sampled_from(OFFSETS),
        ).map(lambda moment: moment.isoformat(timespec="seconds")),
        "claim": st.fixed_dictionaries(
            {
                "claim_id": st.from_regex(r"[A-Za-z0-9._-]{1,20}", fullmatch=True),
                "claim_version": st.integers(1, 9),
                "claim_type": st.sampled_from(["professional", "institutional"]),
                "payer": st.fixed_dictionaries(
                    {
                        "kind": st.sampled_from(
                            [
                                "medicare",
                                "medicare_advantage",
                                "aetna",
                                "bcbs",
                                "cigna",
                                "uhc",
                                "other",
                            ]
                        ),
                        "mac": st.sampled_from([None, "ngs", "cgs", "novitas", " NGS "]),
                    }
                ),
                "billing_provider": st.fixed_dictionaries(
                    {"npi": st.sampled_from(["1245319599", "1245319598", "x"])}
                ),
                "rendering_provider": st.one_of(
                    st.none(), st.fixed_dictionaries({"npi": st.sampled_from(["1003000126", "1"])})
                ),
                "place_of_service": st.sampled_from(["11", "21", "12", "1", " 22 "]),
                "prior_authorization_number": st.sampled_from([None, "PA-1", " "]),
                "diagnoses": st.lists(st.sampled_from(DIAGNOSES), max_size=12),
                "lines": st.lists(lines, min_size=1, max_size=8),
                "documentation": st.one_of(st.none(), documentation),
            }
        ),
    }
)


def _verdict(event: dict[str, Any]) -> Any:
    read = read_claim_event(event_bytes(event), max_bytes=1 << 20)
    assert isinstance(read, Accepted), read
    return SCRUBBER.verdict(read)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events)
def test_every_schema_valid_claim_is_scrubbed_without_any_rule_failing(
    event: dict[str, Any],
) -> None:
    verdict = _verdict(event)
    assert [f for f in verdict.findings if f.rule_id == "ENGINE-001"] == []


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events)
def test_findings_are_deterministic_and_sorted(event: dict[str, Any]) -> None:
    first, second = _verdict(event), _verdict(event)
    assert first.findings == second.findings
    keys = [(f.line_number is not None, f.line_number or 0, f.rule_id) for f in first.findings]
    assert keys == sorted(keys)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events)
def test_the_outcome_is_needs_review_exactly_when_an_error_finding_exists(
    event: dict[str, Any],
) -> None:
    verdict = _verdict(event)
    has_error = any(f.severity is Severity.ERROR for f in verdict.findings)
    assert (verdict.outcome is Outcome.NEEDS_REVIEW) == has_error


NUMERIC_FIELDS = [
    "claim.lines[0].units",
    "claim.lines[1].units",
    "claim.documentation.wound.area_cm2",
    "claim.documentation.wound.standard_of_care_weeks",
    "claim.documentation.product.quantity_applied_cm2",
    "claim.documentation.product.quantity_wasted_cm2",
]


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(NUMERIC_FIELDS),
    st.one_of(
        st.integers(-(2**63), 2**63 - 1),
        st.floats(allow_nan=False, allow_infinity=False),
    ),
    st.sampled_from(["medicare", "aetna", "uhc"]),
)
def test_no_rule_fails_on_extreme_numbers_in_an_otherwise_valid_claim(
    field: str, number: float, payer: str
) -> None:
    event = patched(default_event(), {field: number, "claim.payer.kind": payer})
    assert [f.rule_id for f in _verdict(event).findings if f.rule_id == "ENGINE-001"] == []


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    events,
    st.sampled_from([None, 2_000, 200_000]),
    st.binary(max_size=64) | st.just(b"{not json"),
)
def test_every_published_document_validates_against_the_model_that_makes_its_schema(
    event: dict[str, Any], limit: int | None, garbage: bytes
) -> None:
    """The published schemas are generated from ScrubResult and DeadLetter: every document the
    scrubber publishes, bounded or not, must validate against them."""
    source = {"topic": "t", "partition": 0, "offset": 1}
    dead_letter_source = source | {"timestamp_ms": 1, "key": None}
    limits = DocumentLimits(result=limit, dead_letter=limit)
    for payload in (event_bytes(event), garbage):
        decision = SCRUBBER.decide(
            payload,
            result_source=source,
            dead_letter_source=dead_letter_source,
            decided_at="2026-11-20T15:04:05.120Z",
            limits=limits,
        )
        document = orjson.loads(decision.document)
        model = DeadLetter if decision.is_dead_letter else ScrubResult
        model.model_validate(document)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events)
def test_a_finding_whose_field_is_in_a_line_names_that_line(event: dict[str, Any]) -> None:
    read = read_claim_event(event_bytes(event), max_bytes=1 << 20)
    assert isinstance(read, Accepted)
    numbers = [line.line_number for line in read.event.claim.lines]

    for finding in SCRUBBER.verdict(read).findings:
        if finding.field.startswith("claim.lines["):
            index = int(finding.field.removeprefix("claim.lines[").split("]")[0])
            assert finding.line_number == numbers[index], finding
