"""Diagnosis (DX): a Q4390 line must point to a covered chronic wound."""

from collections.abc import Iterator

from claim_scrubber.models import Severity
from claim_scrubber.rules._engine import Hit, rule
from claim_scrubber.rules._facts import ClaimFacts

__all__ = ["dual_diagnosis", "wound_diagnosis"]


@rule(
    "DX-001",
    Severity.ERROR,
    title="Q4390 does not point to a wound diagnosis",
    source="Novitas L35041 / MAC article A56696 covered ICD-10 codes (diabetic and venous "
    "ulcers, pressure ulcers, burns)",
    fails="Q4390 pointing only to I10 (hypertension)",
    passes="Q4390 pointing to L97.412 (ulcer of right ankle, fat layer exposed)",
    q4390_only=True,
)
def wound_diagnosis(facts: ClaimFacts) -> Iterator[Hit]:
    """At least one diagnosis a Q4390 line points to must be a wound diagnosis of the
    ruleset (L97., L89., diabetic and venous ulcer codes, burns ...).

    Skin substitutes are covered for chronic wounds only; the pointed diagnosis is what
    shows the payer which wound was treated.
    """
    prefixes = facts.ruleset.wound_diagnoses
    for line in facts.product_lines:
        if not any(code.startswith(prefixes) for code in line.pointed_diagnoses):
            yield Hit(
                line.number,
                line.field("diagnosis_pointers"),
                f"Q4390 line {line.number} points to no covered wound diagnosis; point it to "
                "the ulcer or burn being treated.",
            )


@rule(
    "DX-002",
    Severity.ERROR,
    title="Q4390 lacks the dual diagnosis the payer requires",
    source="Novitas L35041 / MAC article A56696: report the underlying condition (diabetes "
    "with ulcer, venous insufficiency) and the ulcer site (L97.-)",
    fails="Medicare Q4390 pointing to L97.412 only",
    passes="Medicare Q4390 pointing to E11.621 and L97.412",
    q4390_only=True,
)
def dual_diagnosis(facts: ClaimFacts) -> Iterator[Hit]:
    """When the payer profile requires a dual diagnosis, each Q4390 line must point to both
    an underlying-condition code and an ulcer-site code.

    Medicare contractors pay for diabetic and venous ulcers only when the claim shows both
    the cause and the site of the ulcer.
    """
    if not facts.profile.dual_diagnosis_required:
        return
    underlying = facts.ruleset.underlying_condition_diagnoses
    ulcer_site = facts.ruleset.ulcer_site_diagnoses
    for line in facts.product_lines:
        missing = []
        if not any(code.startswith(underlying) for code in line.pointed_diagnoses):
            missing.append("the underlying condition (e.g. E11.621, I83.0)")
        if not any(code.startswith(ulcer_site) for code in line.pointed_diagnoses):
            missing.append("the ulcer site (L97.-)")
        if missing:
            yield Hit(
                line.number,
                line.field("diagnosis_pointers"),
                f"Q4390 line {line.number} must also point to {' and '.join(missing)}.",
            )
