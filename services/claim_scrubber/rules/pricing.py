"""Pricing (PRICE): what the payer is expected to pay for the product."""

from collections.abc import Iterator
from decimal import ROUND_HALF_UP, Context, Decimal

from claim_scrubber.models import Severity
from claim_scrubber.rules._engine import Hit, rule
from claim_scrubber.rules._facts import ClaimFacts, money_text

__all__ = ["expected_payment"]

_CENT = Decimal("0.01")
_EXACT = Context(prec=1000)
"""Enough digits for any JSON number times a rate: the amount is exact, never rounded away."""


@rule(
    "PRICE-001",
    Severity.INFO,
    title="Expected payment for the product",
    source="CY2026 Physician Fee Schedule: non-BLA skin substitutes paid as incident-to "
    "supplies at $127.14 per cm²",
    fails="(informational) Medicare Q4390 x 20 on 2026-11-20: expected 2542.80",
    passes="(informational) no finding for a payer without a rate, or a date before the rate",
    q4390_only=True,
)
def expected_payment(facts: ClaimFacts) -> Iterator[Hit]:
    """When the payer profile has a rate per cm² for the date of service of an administered
    Q4390 line, the expected payment is stated: units x rate over those lines, to the cent.

    Billing staff compare the charge and the remittance with the expected amount to spot
    under-billing and underpayment.
    """
    total = Decimal(0)
    priced = False
    for line in facts.administered_product_lines:
        rate = facts.profile.rate_on(line.service_date)
        if rate is not None:
            total = _EXACT.add(total, _EXACT.multiply(line.units, rate))
            priced = True
    if priced:
        amount = total.quantize(_CENT, rounding=ROUND_HALF_UP, context=_EXACT)
        yield Hit(
            None,
            "claim.lines",
            f"Expected payment for Q4390 at the payer's rate: {money_text(amount)} "
            "(units x rate per cm²).",
        )
