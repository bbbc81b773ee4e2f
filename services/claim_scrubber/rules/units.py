"""Units (UNITS): Q4390 is billed per cm² of product; application codes per wound area."""

import math
from collections.abc import Iterator, Mapping
from decimal import Decimal

from claim_scrubber.models import Severity
from claim_scrubber.rules._engine import Hit, rule
from claim_scrubber.rules._facts import (
    ClaimFacts,
    LineFacts,
    number_text,
    whole_units,
)

__all__ = [
    "application_codes_match_area",
    "applied_quantity_matches_units",
    "product_units_whole",
    "units_within_limit",
    "wasted_not_above_applied",
    "wasted_quantity_matches_jw_units",
]

_PRODUCT_SOURCE = (
    "Noridian/NGS skin-substitute billing: units = cm² of product; CMS JW/JZ policy for the "
    "discarded amount"
)


def _units_text(units: Decimal) -> str:
    return f"{units.normalize():f}"


def _sum_units(lines: tuple[LineFacts, ...]) -> Decimal:
    return sum((line.units for line in lines), start=Decimal(0))


@rule(
    "UNITS-001",
    Severity.ERROR,
    title="Q4390 units are not whole cm² units",
    source=_PRODUCT_SOURCE,
    fails='Q4390 line with "units": 20.5, or "unit_basis": "MJ"',
    passes='Q4390 line with "units": 20, "unit_basis": "UN"',
    q4390_only=True,
)
def product_units_whole(facts: ClaimFacts) -> Iterator[Hit]:
    """A Q4390 line bills whole units (1 unit = 1 cm²) with unit basis UN.

    HCPCS Q4390 is defined per square centimetre: fractions are rounded up to whole cm² in
    the units, and a basis other than UN (units) makes the quantity unreadable to the payer.
    """
    for line in facts.product_lines:
        if line.units > 0 and line.units != line.units.to_integral_value():
            yield Hit(
                line.number,
                line.field("units"),
                f"Q4390 line {line.number} bills {_units_text(line.units)} units; bill units "
                "equal to the cm² applied, rounded up to whole cm² "
                f"({whole_units(float(line.units))}).",
            )
        if line.unit_basis != "UN":
            yield Hit(
                line.number,
                line.field("unit_basis"),
                f"Q4390 line {line.number} uses unit basis {line.unit_basis}; use UN (units).",
            )


@rule(
    "UNITS-002",
    Severity.ERROR,
    title="Q4390 units differ from the cm² applied",
    source=_PRODUCT_SOURCE,
    fails="quantity_applied_cm2 20 and administered Q4390 units 18",
    passes="quantity_applied_cm2 19.2 and administered Q4390 units 20",
    q4390_only=True,
)
def applied_quantity_matches_units(facts: ClaimFacts) -> Iterator[Hit]:
    """When quantity_applied_cm2 is documented, the units of all administered Q4390 lines
    (without JW) must add up to it, rounded up to a whole cm².

    The payer pays per cm² applied; units that differ from the documented amount are
    either an overpayment or revenue left unbilled, and fail a records review.
    """
    product = facts.product
    if product is None or product.quantity_applied_cm2 is None:
        return
    expected = whole_units(product.quantity_applied_cm2)
    billed = _sum_units(facts.administered_product_lines)
    if billed != expected:
        first = (facts.administered_product_lines or facts.product_lines)[0]
        yield Hit(
            first.number,
            first.field("units"),
            f"Administered Q4390 units total {_units_text(billed)} but {expected} cm² were "
            "applied; bill units equal to the cm² applied, rounded up to whole cm².",
        )


@rule(
    "UNITS-003",
    Severity.ERROR,
    title="JW units differ from the cm² discarded",
    source=_PRODUCT_SOURCE,
    fails="a JW line of 4 units and quantity_wasted_cm2 2",
    passes="a JW line of 3 units and quantity_wasted_cm2 2.5",
    q4390_only=True,
)
def wasted_quantity_matches_jw_units(facts: ClaimFacts) -> Iterator[Hit]:
    """When Q4390 lines carry JW, their units must add up to quantity_wasted_cm2 rounded up
    (a missing quantity counts as 0).

    JW reports product discarded from a single-use package; its units must match the
    documented waste or the payer recovers the payment.
    """
    wasted_lines = facts.wasted_product_lines
    if not wasted_lines:
        return
    wasted = facts.product.quantity_wasted_cm2 if facts.product else None
    expected = whole_units(wasted) if wasted is not None else 0
    billed = _sum_units(wasted_lines)
    if billed != expected:
        yield Hit(
            None,
            "claim.documentation.product.quantity_wasted_cm2",
            f"JW Q4390 units total {_units_text(billed)} but {expected} cm² were documented "
            "as discarded (rounded up); make them match.",
        )


@rule(
    "UNITS-004",
    Severity.ERROR,
    title="Units over the limit for a code on one date",
    source="CMS Medically Unlikely Edits (operators load the MUE values into the ruleset)",
    fails="15275 with 2 units on one date (limit 1)",
    passes="15275 with 1 unit",
)
def units_within_limit(facts: ClaimFacts) -> Iterator[Hit]:
    """The units of one code on one service date must not add up to more than that code's
    unit limit in the ruleset; reported once per code and date, on its first line.

    Units above the medically unlikely edit are denied automatically; usually a line was
    entered twice or the units belong on an add-on code.
    """
    limits = facts.ruleset.unit_limits
    groups: dict[tuple[str, object], list[LineFacts]] = {}
    for line in facts.lines:
        if line.code in limits:
            groups.setdefault((line.code, line.service_date), []).append(line)
    for (code, _), lines in groups.items():
        total = _sum_units(tuple(lines))
        if total > limits[code]:
            first = lines[0]
            yield Hit(
                first.number,
                first.field("units"),
                f"Line {first.number}: {code} bills {_units_text(total)} units on "
                f"{first.service_date.isoformat()}; the limit is {limits[code]} per date.",
            )


def _expected_application_units(facts: ClaimFacts, area: float, location: str) -> dict[str, int]:
    ruleset = facts.ruleset
    family = ruleset.family_for(location)
    if family is None:
        return {}
    # Thresholds are multiples of whole cm²: float arithmetic is exact where ceil() turns.
    if area < ruleset.large_wound_threshold_cm2:
        primary, addon = family.small_primary, family.small_addon
        base = step = ruleset.small_wound_step_cm2
    else:
        primary, addon = family.large_primary, family.large_addon
        base, step = ruleset.large_wound_threshold_cm2, ruleset.large_wound_step_cm2
    expected = {primary: 1}
    if area > base:
        expected[addon] = math.ceil((area - base) / step)
    return expected


def _codes_text(units: Mapping[str, int | Decimal]) -> str:
    return " + ".join(f"{code} x {_units_text(Decimal(n))}" for code, n in sorted(units.items()))


@rule(
    "UNITS-006",
    Severity.ERROR,
    title="Application codes do not match the wound area",
    source="CPT 15271-15278 descriptors (first 25 / each additional 25 cm² under 100 cm²; "
    "first 100 / each additional 100 cm² from 100 cm²); Novitas L35041",
    fails="53 cm² on a leg billed as 15271 x 1 + 15272 x 1",
    passes="53 cm² on a leg billed as 15271 x 1 + 15272 x 2; 150 cm² on a foot as "
    "15277 x 1 + 15278 x 1",
    q4390_only=True,
)
def application_codes_match_area(facts: ClaimFacts) -> Iterator[Hit]:
    """With a documented wound area above 0 and a known location, the application codes
    billed (units summed per code) must be exactly the ones the area calls for: under
    100 cm² the small primary once plus its add-on for each further 25 cm²; from 100 cm²
    the large primary once plus its add-on for each further 100 cm².

    Application codes are priced by wound surface area and body site; codes that do not
    match the documented area are up- or down-coding.
    """
    wound = facts.wound
    if not facts.application_lines or wound is None or facts.location is None:
        return
    if wound.area_cm2 is None or wound.area_cm2 <= 0:
        return
    area = wound.area_cm2
    expected = _expected_application_units(facts, area, facts.location)
    if not expected:
        return
    billed: dict[str, Decimal] = {}
    for line in facts.application_lines:
        billed[line.code] = billed.get(line.code, Decimal(0)) + line.units
    if billed != {code: Decimal(n) for code, n in expected.items()}:
        yield Hit(
            None,
            "claim.lines",
            f"A {number_text(area)} cm² wound on the {facts.location} calls for "
            f"{_codes_text(expected)}; the claim bills {_codes_text(billed)}.",
        )


@rule(
    "UNITS-007",
    Severity.WARNING,
    title="More product discarded than applied",
    source="CMS JW/JZ policy: choose the package size that minimizes waste",
    fails="quantity_applied_cm2 4 and quantity_wasted_cm2 12",
    passes="quantity_applied_cm2 20 and quantity_wasted_cm2 0",
    q4390_only=True,
)
def wasted_not_above_applied(facts: ClaimFacts) -> Iterator[Hit]:
    """When both quantities are documented, the cm² discarded should not exceed the cm²
    applied.

    Medicare expects the package size that best fits the wound; discarding more than was
    applied invites a medical review of the package choice.
    """
    product = facts.product
    if product is None or product.quantity_applied_cm2 is None:
        return
    if product.quantity_wasted_cm2 is None:
        return
    if product.quantity_wasted_cm2 > product.quantity_applied_cm2:
        yield Hit(
            None,
            "claim.documentation.product.quantity_wasted_cm2",
            "More product was discarded than applied; check the package size chosen and "
            "document why a smaller one could not be used.",
        )
