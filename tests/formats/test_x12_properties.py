"""Whatever an interchange holds, the 837P reader answers with outcomes and never raises;
whatever it converts satisfies the ClaimEvent contract."""

from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from claim_scrubber.adapters.ruleset_file import load_ruleset
from claim_scrubber.formats import ConvertedClaim, RejectedClaim, read_x12
from claim_scrubber.models import ClaimEvent
from tests.formats.samples import Delimiters, interchange, q4390_claim, subscriber, transaction

DIRECTORY = load_ruleset().payer_directory
SEGMENTS = transaction(
    subscriber(2), q4390_claim("A"), subscriber(3), q4390_claim("B", frequency="7")
)

values = st.text(st.characters(codec="latin-1", exclude_characters="*:~"), max_size=12)


@st.composite
def mutated_segments(draw: st.DrawFn) -> list[str]:
    segments = list(SEGMENTS)
    for _ in range(draw(st.integers(0, 6))):
        position = draw(st.integers(0, len(segments) - 1))
        action = draw(st.sampled_from(["replace-element", "drop", "duplicate", "truncate"]))
        elements = segments[position].split("*")
        if action == "replace-element" and len(elements) > 1:
            elements[draw(st.integers(1, len(elements) - 1))] = draw(values)
            segments[position] = "*".join(elements)
        elif action == "drop":
            del segments[position]
        elif action == "duplicate":
            segments.insert(position, segments[position])
        else:
            segments[position] = segments[position][: draw(st.integers(0, 8))]
        if not segments:
            break
    return segments


def assert_outcomes_are_well_formed(data: bytes) -> None:
    conversion = read_x12(data, directory=DIRECTORY, zone=ZoneInfo("UTC"))
    for outcome in conversion.claims:
        assert isinstance(outcome, ConvertedClaim | RejectedClaim)
        if isinstance(outcome, ConvertedClaim):
            ClaimEvent.model_validate_json(outcome.document)


@given(
    mutated_segments(),
    st.sampled_from([Delimiters(), Delimiters(component=">", after_segment="\n")]),
)
def test_a_mutated_837p_never_makes_the_reader_raise(
    segments: list[str], delimiters: Delimiters
) -> None:
    assert_outcomes_are_well_formed(interchange(segments, delimiters))


@given(st.binary(max_size=300))
def test_arbitrary_bytes_after_an_isa_never_make_the_reader_raise(tail: bytes) -> None:
    assert_outcomes_are_well_formed(interchange([])[:106] + tail)


@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_make_the_reader_raise(data: bytes) -> None:
    assert_outcomes_are_well_formed(data)


def test_non_ascii_digits_in_numeric_elements_are_rejected_not_raised() -> None:
    segments = [s.replace("LX*1", "LX*\u00b2").replace("*1:2", "*\u00b9") for s in SEGMENTS]
    assert_outcomes_are_well_formed(interchange(segments))
