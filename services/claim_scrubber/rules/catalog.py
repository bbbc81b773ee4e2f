"""The rule catalog: every rule the scrubber runs, sorted by id. Registration is explicit."""

from typing import Final

from claim_scrubber.rules import addon, integrity
from claim_scrubber.rules._engine import ENGINE_FAILURE, Rule

__all__ = ["CATALOG", "CHECKED_RULES"]

CHECKED_RULES: Final[tuple[Rule, ...]] = tuple(
    sorted(
        (
            addon.product_has_application,
            integrity.billing_npi_valid,
        ),
        key=lambda entry: entry.id,
    )
)
"""The rules run on every claim (ENGINE-001 is emitted by the engine itself)."""

CATALOG: Final[tuple[Rule, ...]] = tuple(
    sorted((*CHECKED_RULES, ENGINE_FAILURE), key=lambda entry: entry.id)
)
"""Every rule id a finding can carry, for `claim-scrubber rules` and the rules page."""
