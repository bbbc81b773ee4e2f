"""Documentation (DOC): what must be on file for a Q4390 claim.

A claim without a documentation object gets one finding, DOC-008, naming everything the payer
needs on file (an 837P carries no clinical record: one root cause, one finding); DOC-001 to
DOC-007 judge a documentation object that is there. When the claim lists attachments sent
separately (837P PWK), each DOC message names them for the coder to check; they are never
taken as the documentation itself.
"""

from collections.abc import Iterator

from claim_scrubber.models import Severity
from claim_scrubber.rules._engine import Hit, rule
from claim_scrubber.rules._facts import ClaimFacts, code_range, is_missing

__all__ = [
    "applied_quantity_documented",
    "clinical_record_present",
    "indication_documented",
    "location_documented",
    "lot_number_documented",
    "medical_necessity_documented",
    "primary_procedure_documented",
    "wound_area_documented",
]

_SOURCE = "MAC articles A54117/A56696 and Novitas L35041: documentation requirements"


@rule(
    "DOC-001",
    Severity.ERROR,
    title="Wound area not documented",
    source=_SOURCE,
    fails='"wound": {"area_cm2": 0} or no wound',
    passes='"wound": {"area_cm2": 18.5}',
    q4390_only=True,
    documented_only=True,
)
def wound_area_documented(facts: ClaimFacts) -> Iterator[Hit]:
    """The wound's area_cm2 must be documented and above 0.

    The wound area decides the application codes and how much product is reasonable; it is
    the first thing a reviewer checks.
    """
    area = facts.wound.area_cm2 if facts.wound else None
    if area is None or area <= 0:
        yield Hit(
            None,
            "claim.documentation.wound.area_cm2",
            "Document the wound's surface area in cm² (above 0)." + facts.attachments_note,
        )


@rule(
    "DOC-002",
    Severity.ERROR,
    title="Wound indication not documented",
    source=_SOURCE,
    fails='"wound": {"indication": " "}',
    passes='"wound": {"indication": "chronic non-healing diabetic foot ulcer"}',
    q4390_only=True,
    documented_only=True,
)
def indication_documented(facts: ClaimFacts) -> Iterator[Hit]:
    """The wound's indication (why a skin substitute is used) must be documented.

    Skin substitutes are covered only for specific chronic wounds; the indication shows
    the wound is one of them.
    """
    if is_missing(facts.wound.indication if facts.wound else None):
        yield Hit(
            None,
            "claim.documentation.wound.indication",
            "Document the indication for the skin substitute (the type of chronic wound)."
            + facts.attachments_note,
        )


@rule(
    "DOC-003",
    Severity.ERROR,
    title="Primary procedure not documented",
    source=_SOURCE,
    fails='"primary_procedure_code": null',
    passes='"primary_procedure_code": "15275"',
    q4390_only=True,
    documented_only=True,
)
def primary_procedure_documented(facts: ClaimFacts) -> Iterator[Hit]:
    """documentation.primary_procedure_code must name the application procedure.

    The product is an add-on to a procedure; the record must say which one it was used in.
    """
    documentation = facts.documentation
    if is_missing(documentation.primary_procedure_code if documentation else None):
        yield Hit(
            None,
            "claim.documentation.primary_procedure_code",
            "Document the application procedure code the product was used with "
            f"({code_range(facts.ruleset.application_codes)})." + facts.attachments_note,
        )


@rule(
    "DOC-004",
    Severity.ERROR,
    title="Product lot number not documented",
    source=_SOURCE + "; FDA device/tissue traceability",
    fails='"lot_numbers": [] or [" "]',
    passes='"lot_numbers": ["ASC-24-0117"]',
    q4390_only=True,
    documented_only=True,
)
def lot_number_documented(facts: ClaimFacts) -> Iterator[Hit]:
    """At least one non-blank product lot number must be documented.

    Lot numbers trace the tissue product to its package; payers and recalls require them.
    """
    lots = facts.product.lot_numbers if facts.product else None
    if not any(not is_missing(lot) for lot in lots or ()):
        yield Hit(
            None,
            "claim.documentation.product.lot_numbers",
            "Document the lot number of the product applied." + facts.attachments_note,
        )


@rule(
    "DOC-005",
    Severity.ERROR,
    title="Quantity of product applied not documented",
    source=_SOURCE,
    fails='"quantity_applied_cm2": 0 or missing',
    passes='"quantity_applied_cm2": 20',
    q4390_only=True,
    documented_only=True,
)
def applied_quantity_documented(facts: ClaimFacts) -> Iterator[Hit]:
    """The product's quantity_applied_cm2 must be documented and above 0.

    Q4390 is paid per cm² applied; the billed units must be backed by the documented amount.
    """
    applied = facts.product.quantity_applied_cm2 if facts.product else None
    if applied is None or applied <= 0:
        yield Hit(
            None,
            "claim.documentation.product.quantity_applied_cm2",
            "Document how many cm² of product were applied (above 0)." + facts.attachments_note,
        )


@rule(
    "DOC-006",
    Severity.ERROR,
    title="Medical necessity not documented",
    source=_SOURCE,
    fails='"medical_necessity": null',
    passes='"medical_necessity": "Ulcer failed 6 weeks of offloading ..."',
    q4390_only=True,
    documented_only=True,
)
def medical_necessity_documented(facts: ClaimFacts) -> Iterator[Hit]:
    """A medical necessity statement must be documented.

    Coverage requires the record to show the wound failed standard care; without the
    statement the product is denied as not reasonable and necessary.
    """
    documentation = facts.documentation
    if is_missing(documentation.medical_necessity if documentation else None):
        yield Hit(
            None,
            "claim.documentation.medical_necessity",
            "Document medical necessity (response to standard care and why a skin substitute)."
            + facts.attachments_note,
        )


@rule(
    "DOC-007",
    Severity.ERROR,
    title="Wound location missing or unknown",
    source=_SOURCE + "; CPT 15271-15278 site groups",
    fails='"location": "toe" or missing',
    passes='"location": "foot" (one of trunk, arm, leg, face, scalp, eyelid, mouth, neck, '
    "ear, orbit, genitalia, hand, foot, digit)",
    q4390_only=True,
    documented_only=True,
)
def location_documented(facts: ClaimFacts) -> Iterator[Hit]:
    """The wound location must be one of the listed anatomic sites.

    The site decides which family of application codes applies (trunk/arm/leg or
    face/scalp/.../foot/digit).
    """
    location = facts.location
    if location is None or facts.ruleset.family_for(location) is None:
        sites = sorted(
            site
            for family in facts.ruleset.application_families.values()
            for site in family.locations
        )
        # The location is an anatomic site category, not a patient detail: echo it (briefly).
        instruction = (
            f"Wound location '{location[:40]}' is not a listed site; document it as one of"
            if location
            else "Document the wound location as one of"
        )
        yield Hit(
            None,
            "claim.documentation.wound.location",
            f"{instruction}: {', '.join(sites)}." + facts.attachments_note,
        )


@rule(
    "DOC-008",
    Severity.ERROR,
    title="No clinical documentation with the Q4390 claim",
    source=_SOURCE + "; X12 837P has no place for the clinical record (PWK only names "
    "attachments sent separately)",
    fails="a Q4390 claim without a documentation object (every claim read from an 837P)",
    passes="a Q4390 claim with a documentation object (DOC-001 to DOC-007 then judge it)",
    q4390_only=True,
)
def clinical_record_present(facts: ClaimFacts) -> Iterator[Hit]:
    """A Q4390 claim must come with its documentation object; without one, this single finding
    names everything the payer needs on file, instead of one finding per missing item.

    The MAC articles and payer policies require the wound's area and location, the
    indication, the product and lot, the quantity applied and the medical necessity on file.
    A claim fed from an 837P never carries them; an operator who keeps the record elsewhere
    sets this rule's severity per payer (warning, info or off).
    """
    if facts.documentation is not None:
        return
    yield Hit(
        None,
        "claim.documentation",
        "No clinical documentation came with this Q4390 claim; "
        f"{facts.profile.display_name or 'the payer'} needs on file the wound's area and "
        "location, the indication, the product and its lot number, the quantity applied, and "
        "the medical necessity." + facts.attachments_note,
    )
