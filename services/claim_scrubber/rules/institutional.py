"""A facility's bill (837I / UB-04): what differs from the professional claim for Q4390.

The facts behind these rules, with their sources and where the sources leave room, are in
docs/sending-claims/institutional-billing.md. Where the sources do not settle a point the rule
warns.
"""

from collections.abc import Iterator
from typing import Final

from claim_scrubber.models import Severity
from claim_scrubber.rules._engine import Hit, rule
from claim_scrubber.rules._facts import ClaimFacts

__all__ = ["product_on_a_stay_bill", "product_revenue_code", "type_of_bill_present"]

_STAY_BILLS: Final = {
    "11": "a hospital inpatient (Part A) stay, paid by its MS-DRG",
    "18": "a swing-bed stay, paid per day as a skilled nursing stay",
    "21": "a skilled nursing (Part A) stay, under consolidated billing",
}
"""Type-of-bill prefixes (facility type + bill classification) whose stay payment covers
supplies: no per-cm² payment follows for a product billed on them."""

_PRODUCT_REVENUE_CODES: Final = frozenset({"0636", "0278"})
"""Revenue codes CMS names for a skin substitute's own line (Transmittal 4204: 0278 other
implants, or 0636 drugs requiring detailed coding)."""


@rule(
    "INST-001",
    Severity.ERROR,
    title="Facility claim without a usable type of bill",
    source="NUBC UB-04 form locator 4 and the 837I TR3 (005010X223A2) CLM05-1/CLM05-3: every "
    "institutional claim states its type of bill; Medicare returns one without it",
    fails='"claim_type": "institutional" without "type_of_bill", or "type_of_bill": "13"',
    passes='"type_of_bill": "131" (or "0131")',
    institutional_only=True,
)
def type_of_bill_present(facts: ClaimFacts) -> Iterator[Hit]:
    """An institutional claim carries a type of bill of three digits: facility type, bill
    classification and frequency (UB-04 prints a leading zero, which is accepted).

    The type of bill says what kind of facility billed what kind of stay or visit, and which
    payment system pays it: without it the payer cannot process the bill at all, and the rules
    that depend on it (INST-002) cannot judge it.
    """
    code = facts.type_of_bill
    if code is None:
        yield Hit(
            None,
            "claim.type_of_bill",
            "No type of bill on this facility claim; add it (UB-04 form locator 4, 837I "
            "CLM05-1 and CLM05-3), e.g. 131 for a hospital outpatient claim.",
        )
    elif len(code) != 3 or not code.isascii() or not code.isdigit():
        yield Hit(
            None,
            "claim.type_of_bill",
            f"Type of bill {code} is not three digits (facility type, bill classification, "
            "frequency); correct it, e.g. 131 for a hospital outpatient claim.",
        )


@rule(
    "INST-002",
    Severity.WARNING,
    title="Q4390 billed on an inpatient or skilled nursing stay's bill",
    source="CMS CY2026 OPPS final rule (CMS-1834-FC, 90 FR 53448): skin substitutes are paid "
    "separately under the OPPS (outpatient bills); an inpatient stay is paid by its MS-DRG "
    "(IPPS, 42 CFR 412) and a Part A SNF stay under consolidated billing (Pub. 100-04 ch. 6)",
    fails='"type_of_bill": "111" with a Q4390 line',
    passes='"type_of_bill": "131" (hospital outpatient) or "851" (critical access hospital)',
    q4390_only=True,
    institutional_only=True,
)
def product_on_a_stay_bill(facts: ClaimFacts) -> Iterator[Hit]:
    """A Q4390 line on an inpatient (11x), swing-bed (18x) or skilled nursing (21x) bill is
    reported but not paid per cm².

    The stay's payment covers its supplies: the product on such a bill adds charges without a
    separate payment. That is right when the patient was an inpatient; a product applied in an
    outpatient visit belongs on the outpatient bill (13x, or 85x for a critical access
    hospital). A warning, not an error: hospitals report supplies of a stay on its bill.
    """
    code = facts.type_of_bill
    stay = _STAY_BILLS.get(code[:2]) if code is not None else None
    if stay is not None:
        yield Hit(
            None,
            "claim.type_of_bill",
            f"Q4390 is on type of bill {code}, {stay}: no per-cm2 payment follows for it. "
            "If it was applied in an outpatient visit, bill it on the outpatient bill (13x, "
            "or 85x at a critical access hospital).",
        )


@rule(
    "INST-003",
    Severity.WARNING,
    title="Q4390 line without the revenue code for a separately coded product",
    source="CMS Pub. 100-04 Transmittal 4204 (January 2019 OPPS update): a skin substitute "
    "HCPCS code is reported under revenue code 0278 or 0636",
    fails='a Q4390 line with "revenue_code": "0250" (or none)',
    passes='a Q4390 line with "revenue_code": "0636" or "0278"',
    q4390_only=True,
    institutional_only=True,
)
def product_revenue_code(facts: ClaimFacts) -> Iterator[Hit]:
    """Each Q4390 line of a facility claim carries revenue code 0636 or 0278.

    Revenue codes group a hospital's charges for its cost report and tell the payer's editor
    what kind of item a line is; a product under a general supply or pharmacy code (027x,
    025x) can be treated as a packaged supply. Payers may direct otherwise: a warning.
    """
    for line in facts.product_lines:
        if line.revenue_code in _PRODUCT_REVENUE_CODES:
            continue
        sent = (
            "no revenue code" if line.revenue_code is None else f"revenue code {line.revenue_code}"
        )
        yield Hit(
            line.number,
            line.field("revenue_code"),
            f"Q4390 line {line.number} has {sent}; report the product under 0636 (drugs "
            "requiring detailed coding) or 0278 (other implants) unless the payer directs "
            "otherwise.",
        )
