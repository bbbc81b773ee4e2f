"""Claim integrity (CLM): checks every claim must pass, whatever it bills."""

from collections.abc import Iterator

from claim_scrubber.models import Severity
from claim_scrubber.rules._engine import Hit, rule
from claim_scrubber.rules._facts import ClaimFacts, npi_valid

__all__ = ["billing_npi_valid"]


@rule(
    "CLM-001",
    Severity.ERROR,
    title="Billing provider NPI is not valid",
    source="CMS NPI standard (45 CFR 162.406): 10 digits, Luhn check digit with prefix 80840",
    fails='"billing_provider": {"npi": "1245319598"} (check digit wrong)',
    passes='"billing_provider": {"npi": "1245319599"}',
)
def billing_npi_valid(facts: ClaimFacts) -> Iterator[Hit]:
    """The billing provider's NPI must be 10 digits that pass the NPI check-digit test.

    Payers reject a claim whose billing NPI is malformed before any review of the services,
    so the claim would come back unpaid; a typo is cheapest to fix before submission.
    """
    if not npi_valid(facts.event.claim.billing_provider.npi):
        yield Hit(
            None,
            "claim.billing_provider.npi",
            "Billing provider NPI is not a valid NPI (10 digits with a correct check digit); "
            "correct it from the provider's NPPES record.",
        )
