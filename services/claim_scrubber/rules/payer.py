"""Payer policy (PAY): coverage, prior authorization and episode limits per payer profile."""

from collections.abc import Iterator
from datetime import timedelta

from claim_scrubber.models import Severity
from claim_scrubber.rules._engine import Hit, rule
from claim_scrubber.rules._facts import (
    PRODUCT_CODE,
    ClaimFacts,
    is_missing,
    number_text,
)

__all__ = [
    "applications_within_limit",
    "episode_within_length",
    "minimum_wound_area",
    "prior_authorization_present",
    "product_covered",
    "standard_care_tried",
]

_SOURCE = (
    "Payer policies: Aetna CPB 0244, Cigna MM 0068, UnitedHealthcare 'Skin and Soft Tissue "
    "Substitutes', Anthem/BCBS prior-authorization notices, Novitas L35041"
)


@rule(
    "PAY-001",
    Severity.ERROR,
    title="Q4390 is not on the payer's covered-product list",
    source=_SOURCE,
    fails="Aetna claim for Q4390 with the shipped ruleset",
    passes="Medicare claim for Q4390 (no product list), or an operator ruleset listing Q4390",
    q4390_only=True,
)
def product_covered(facts: ClaimFacts) -> Iterator[Hit]:
    """When the payer profile lists the skin substitutes it covers, Q4390 must be on it.

    Commercial payers cover a named list of products and deny the rest as experimental;
    the claim needs a coverage check (or an exception request) before it goes out.
    """
    covered = facts.profile.covered_products
    if covered is not None and PRODUCT_CODE not in covered:
        first = facts.product_lines[0]
        yield Hit(
            first.number,
            first.field("procedure_code"),
            f"The configured coverage list for {facts.payer_name} (ruleset "
            f"{facts.ruleset.version}) does not include Q4390; verify coverage or request an "
            "exception before submitting (an operator adds Q4390 to the payer's "
            "covered_products once the payer covers it).",
        )


@rule(
    "PAY-002",
    Severity.ERROR,
    title="Prior authorization number missing",
    source=_SOURCE,
    fails="Medicare Advantage claim billing 15275 with no prior_authorization_number",
    passes='the same claim with "prior_authorization_number": "PA-778812"',
    q4390_only=True,
)
def prior_authorization_present(facts: ClaimFacts) -> Iterator[Hit]:
    """When the payer requires prior authorization for a billed code, the claim must carry
    a prior_authorization_number.

    Without the authorization number the payer denies the service even if it was
    authorized; the number must be on the claim.
    """
    required = facts.profile.prior_authorization_codes
    codes = sorted({line.code for line in facts.lines if line.code in required})
    if codes and is_missing(facts.event.claim.prior_authorization_number):
        yield Hit(
            None,
            "claim.prior_authorization_number",
            f"{facts.payer_name} requires prior authorization for {', '.join(codes)}; add the "
            "authorization number.",
        )


@rule(
    "PAY-003",
    Severity.ERROR,
    title="Application number missing or over the payer's limit",
    source=_SOURCE,
    fails="Medicare claim with application_number 11 (limit 10) or none",
    passes="Medicare claim with application_number 2",
    q4390_only=True,
    documented_only=True,
)
def applications_within_limit(facts: ClaimFacts) -> Iterator[Hit]:
    """When the payer limits applications per episode, wound.application_number must be
    documented and not above the limit.

    Payers cover a fixed number of applications per wound episode; later applications are
    denied unless a new episode is documented.
    """
    limit = facts.profile.max_applications
    if limit is None:
        return
    number = facts.wound.application_number if facts.wound else None
    if number is None:
        message = (
            f"Document which application this is; {facts.payer_name} allows {limit} per episode."
        )
    elif number > limit:
        message = f"Application {number} exceeds the {limit} {facts.payer_name} allows per episode."
    else:
        return
    yield Hit(None, "claim.documentation.wound.application_number", message)


@rule(
    "PAY-004",
    Severity.ERROR,
    title="Episode start missing or episode too long",
    source=_SOURCE,
    fails="Medicare, episode_start_date 2026-08-01 and Q4390 on 2026-11-20 (more than 12 weeks)",
    passes="Medicare, episode_start_date 2026-11-06 and Q4390 on 2026-11-20",
    q4390_only=True,
    documented_only=True,
)
def episode_within_length(facts: ClaimFacts) -> Iterator[Hit]:
    """When the payer limits the episode length, wound.episode_start_date must be documented
    and the latest Q4390 date of service may be at most weeks x 7 days after it.

    Coverage ends with the episode (12 weeks for most payers); applications after that
    need a new episode with its own documentation.
    """
    weeks = facts.profile.episode_weeks
    if weeks is None:
        return
    start = facts.wound.episode_start_date if facts.wound else None
    if start is None:
        message = (
            f"Document the episode start date; {facts.payer_name} limits episodes to {weeks} weeks."
        )
    else:
        latest = max(line.service_date for line in facts.product_lines)
        if latest - start <= timedelta(days=weeks * 7):
            return
        message = (
            f"Q4390 on {latest.isoformat()} is {(latest - start).days} days into the episode "
            f"started {start.isoformat()}; {facts.payer_name} covers {weeks} weeks "
            f"({weeks * 7} days)."
        )
    yield Hit(None, "claim.documentation.wound.episode_start_date", message)


@rule(
    "PAY-005",
    Severity.ERROR,
    title="Standard of care too short or not documented",
    source=_SOURCE,
    fails="Medicare claim with standard_of_care_weeks 3 (minimum 4)",
    passes="Medicare claim with standard_of_care_weeks 6",
    q4390_only=True,
    documented_only=True,
)
def standard_care_tried(facts: ClaimFacts) -> Iterator[Hit]:
    """When the payer requires a minimum of standard wound care first,
    wound.standard_of_care_weeks must be documented and at least that minimum.

    Skin substitutes are covered only for wounds that failed standard care (offloading,
    compression, moist dressings) for the required weeks.
    """
    minimum = facts.profile.min_standard_care_weeks
    if minimum is None:
        return
    weeks = facts.wound.standard_of_care_weeks if facts.wound else None
    if weeks is not None and weeks >= minimum:
        return
    yield Hit(
        None,
        "claim.documentation.wound.standard_of_care_weeks",
        f"{facts.payer_name} requires at least {number_text(minimum)} weeks of documented "
        "standard wound care before a skin substitute; document it.",
    )


@rule(
    "PAY-006",
    Severity.ERROR,
    title="Wound smaller than the payer's minimum",
    source=_SOURCE,
    fails="Medicare claim with area_cm2 0.5 (minimum 1.0)",
    passes="Medicare claim with area_cm2 18.5",
    q4390_only=True,
)
def minimum_wound_area(facts: ClaimFacts) -> Iterator[Hit]:
    """When the payer has a minimum wound area, a documented area_cm2 above 0 must be at
    least that minimum (a missing area is DOC-001).

    Very small wounds are expected to heal with standard care; payers do not cover skin
    substitutes for them.
    """
    minimum = facts.profile.min_wound_area_cm2
    area = facts.wound.area_cm2 if facts.wound else None
    if minimum is None or area is None or area <= 0 or area >= minimum:
        return
    yield Hit(
        None,
        "claim.documentation.wound.area_cm2",
        f"The wound is {number_text(area)} cm²; {facts.payer_name} covers skin substitutes from "
        f"{number_text(minimum)} cm².",
    )
