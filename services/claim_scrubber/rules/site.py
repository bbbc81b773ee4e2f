"""Site of service (POS): where Q4390 can be billed separately."""

from collections.abc import Iterator

from claim_scrubber.models import Severity
from claim_scrubber.rules._engine import Hit, rule
from claim_scrubber.rules._facts import ClaimFacts

__all__ = ["expected_site", "not_bundled_site"]


@rule(
    "POS-001",
    Severity.ERROR,
    title="Product bundled at an inpatient or skilled nursing site",
    source="CMS consolidated billing: supplies in inpatient (21) and SNF (31) stays are "
    "bundled into the facility payment",
    fails='"place_of_service": "21"',
    passes='"place_of_service": "11"',
    q4390_only=True,
    professional_only=True,
)
def not_bundled_site(facts: ClaimFacts) -> Iterator[Hit]:
    """Q4390 is not billed separately at place of service 21 (inpatient) or 31 (SNF).

    In those settings the facility is paid for supplies; a separate professional claim for
    the product is denied as bundled. Each place of service of the Q4390 lines is judged: the
    claim's, and a line's own where it has one.
    """
    for place in facts.q4390_places:
        if place.code in facts.ruleset.place_of_service.bundled:
            yield Hit(
                place.line_number,
                place.field,
                f"Place of service {place.code} bundles the product into the facility "
                "payment; do not bill Q4390 separately.",
            )


@rule(
    "POS-002",
    Severity.ERROR,
    title="Atypical place of service for Q4390",
    source="MAC skin-substitute articles: office (11), off-campus (19) and on-campus (22) "
    "outpatient hospital, ambulatory surgical center (24)",
    fails='"place_of_service": "12" (home)',
    passes='"place_of_service": "11", "19", "22" or "24"',
    q4390_only=True,
    professional_only=True,
)
def expected_site(facts: ClaimFacts) -> Iterator[Hit]:
    """The place of service must be one where skin substitutes are applied: 11, 19, 22, 24
    (or 21/31, which POS-001 reports).

    Skin-substitute application is a procedure done in an office, hospital outpatient or
    surgical setting; another setting is likely a keying error. Each place of service of the
    Q4390 lines is judged: the claim's, and a line's own where it has one.
    """
    sites = facts.ruleset.place_of_service
    usual = _either(sorted(sites.expected - sites.bundled))
    for place in facts.q4390_places:
        if place.code not in sites.expected and place.code not in sites.bundled:
            yield Hit(
                place.line_number,
                place.field,
                f"Place of service {place.code} is atypical for a skin-substitute "
                f"application; check it (expected {usual}).",
            )


def _either(codes: list[str]) -> str:
    return codes[0] if len(codes) == 1 else f"{', '.join(codes[:-1])} or {codes[-1]}"
