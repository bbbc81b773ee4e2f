"""What a ruleset lacks for the claims of a given day: said once by the worker at start
(`ruleset.incomplete`) and by `claim-scrubber rules`, never as a finding on a claim."""

from datetime import date

from claim_scrubber.models import Ruleset
from claim_scrubber.rules._facts import PRODUCT_CODE

__all__ = ["ruleset_gaps"]


def ruleset_gaps(ruleset: Ruleset, today: date) -> tuple[str, ...]:
    """Reference data the ruleset lacks on `today`, each with what the lack costs (for the
    start-up `ruleset.incomplete` warning and `claim-scrubber rules`: it concerns the
    configuration, not any claim)."""
    gaps = []
    if PRODUCT_CODE not in ruleset.unit_limits:
        gaps.append(
            f'unit_limits."{PRODUCT_CODE}": {PRODUCT_CODE} units are checked against no limit '
            "(load the payer's medically unlikely edit)"
        )
    newest = ruleset.code_sets.icd10cm[-1]
    if today > newest.effective_through:
        gaps.append(
            f"code_sets.icd10cm: the newest release ({newest.release}) ended "
            f"{newest.effective_through.isoformat()}; claims served after it get CLM-011 "
            "warnings instead of CLM-010 errors until the next release is added"
        )
    return tuple(gaps)
