"""The rule catalog: every rule the scrubber runs, sorted by id. Registration is explicit."""

from typing import Final

from claim_scrubber.rules import (
    addon,
    diagnosis,
    documentation,
    history,
    institutional,
    integrity,
    modifiers,
    payer,
    pricing,
    site,
    units,
)
from claim_scrubber.rules._engine import ENGINE_FAILURE, Rule

__all__ = ["CATALOG", "CHECKED_RULES", "RETIRED_RULES"]


def _by_id(rules: tuple[Rule, ...]) -> tuple[Rule, ...]:
    return tuple(sorted(rules, key=lambda entry: entry.id))


CHECKED_RULES: Final[tuple[Rule, ...]] = _by_id(
    (
        addon.addon_has_primary,
        addon.primary_code_billed,
        addon.product_has_application,
        addon.product_rendered_by_applier,
        diagnosis.dual_diagnosis,
        diagnosis.wound_diagnosis,
        documentation.applied_quantity_documented,
        documentation.clinical_record_present,
        documentation.indication_documented,
        documentation.location_documented,
        documentation.lot_number_documented,
        documentation.medical_necessity_documented,
        documentation.primary_procedure_documented,
        documentation.wound_area_documented,
        history.applications_billed_twice,
        history.applications_per_episode,
        history.documentation_matches_history,
        institutional.product_on_a_stay_bill,
        institutional.product_revenue_code,
        institutional.type_of_bill_present,
        integrity.billing_npi_valid,
        integrity.charge_within_limit,
        integrity.diagnoses_billable,
        integrity.diagnoses_billable_nearest_release,
        integrity.diagnoses_icd10_shaped,
        integrity.line_numbers_unique,
        integrity.place_of_service_known,
        integrity.pointers_valid,
        integrity.rendering_npi_valid,
        integrity.service_date_not_future,
        integrity.units_positive,
        modifiers.discarded_modifier_window,
        modifiers.duplicate_line,
        modifiers.increased_services_justified,
        modifiers.jw_and_jz_exclusive,
        modifiers.known_modifiers,
        modifiers.modifier_count,
        modifiers.no_e_m_modifier,
        modifiers.no_jw_jz_after_window,
        modifiers.no_modifier_alone,
        modifiers.no_noncoverage_modifier,
        modifiers.no_procedure_modifier_on_product,
        payer.applications_within_limit,
        payer.episode_within_length,
        payer.minimum_wound_area,
        payer.prior_authorization_present,
        payer.product_covered,
        payer.standard_care_tried,
        pricing.expected_payment,
        site.expected_site,
        site.not_bundled_site,
        units.application_codes_match_area,
        units.applied_quantity_matches_units,
        units.product_units_whole,
        units.units_within_limit,
        units.wasted_not_above_applied,
        units.wasted_quantity_matches_jw_units,
    )
)
"""The rules run on every claim (ENGINE-001 is emitted by the engine itself)."""

CATALOG: Final[tuple[Rule, ...]] = _by_id((*CHECKED_RULES, ENGINE_FAILURE))
"""Every rule id a finding can carry, for `claim-scrubber rules` and the rules page."""

RETIRED_RULES: Final[dict[str, str]] = {
    "UNITS-005": "retired in catalog v1.2: it described the ruleset, not the claim; the "
    "worker's start-up warning ruleset.incomplete and `claim-scrubber rules` say what the "
    "ruleset lacks",
}
"""Ids no finding carries any more, with why; an id is never reused."""
