"""Add-on pairing (ADDON): an add-on code is paid only with its primary procedure."""

from collections.abc import Iterator

from claim_scrubber.models import Severity
from claim_scrubber.rules._engine import Hit, rule
from claim_scrubber.rules._facts import ClaimFacts

__all__ = ["product_has_application"]


@rule(
    "ADDON-001",
    Severity.ERROR,
    title="Q4390 billed without a same-day application procedure",
    source="CMS NCCI add-on code policy; Noridian/NGS skin-substitute billing (product needs "
    "an application code on the same claim)",
    fails="Q4390 on 2026-11-20 and no 15271-15278 line dated 2026-11-20",
    passes="Q4390 and 15275 both dated 2026-11-20",
    q4390_only=True,
)
def product_has_application(facts: ClaimFacts) -> Iterator[Hit]:
    """Each Q4390 line needs an application-code line (15271-15278) with the same service date.

    Q4390 is an add-on supply: it is paid only together with the skin-substitute application
    procedure it was used in. Without that procedure on the same date the payer denies it.
    """
    for line in facts.product_lines:
        if not facts.application_lines_on(line.service_date):
            yield Hit(
                line.number,
                line.field("procedure_code"),
                f"Q4390 on {line.service_date.isoformat()} has no skin-substitute application "
                "line (15271-15278) on the same date; add the application procedure.",
            )
