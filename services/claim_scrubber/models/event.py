"""ClaimEvent, schema_version "1": the input of the scrubber (docs/sending-claims/index.md).

Type and shape are checked here; a violation makes the record a dead letter. Values inside
a well-formed claim (a bad NPI, zero units, a missing document) are left to the rules.
"""

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, Field

from claim_scrubber.models._types import (
    CONTRACT_MODEL,
    IsoDate,
    JsonNumber,
    Money,
    PositiveWholeNumber,
    Rfc3339Time,
    Units,
    WholeNumber,
)

__all__ = [
    "Attachment",
    "ClaimEvent",
    "ClaimLine",
    "Documentation",
    "Patient",
    "Payer",
    "PayerKind",
    "Product",
    "Provider",
    "Wound",
]


class PayerKind(StrEnum):
    """The payer family; it selects the payer profile of the ruleset."""

    MEDICARE = "medicare"
    MEDICARE_ADVANTAGE = "medicare_advantage"
    AETNA = "aetna"
    BCBS = "bcbs"
    CIGNA = "cigna"
    UHC = "uhc"
    OTHER = "other"


class Payer(BaseModel):
    model_config = CONTRACT_MODEL

    kind: Annotated[PayerKind, Field(strict=False)]  # the enum accepts its JSON string values
    """The payer family: it selects the payer profile of the ruleset (other: general rules only)."""
    payer_id: str | None = None
    """The payer's id as the billing platform knows it (837P NM109 of loop 2010BB)."""
    name: str | None = None
    """The payer's name, shown in findings."""
    mac: str | None = Field(default=None, description="Medicare administrative contractor")


class Patient(BaseModel):
    """PHI: validated for shape only, never read by a rule, never logged."""

    model_config = CONTRACT_MODEL

    member_id: str | None = None
    """The patient's member id with the payer (PHI). With history on, the patient key is an
    HMAC of it and the payer."""
    first_name: str | None = None
    """PHI."""
    last_name: str | None = None
    """PHI."""
    birth_date: str | None = None
    """PHI; as sent."""
    sex: str | None = None
    """PHI; as sent."""


class Provider(BaseModel):
    model_config = CONTRACT_MODEL

    npi: str
    """The 10-digit National Provider Identifier; a rule checks it, the schema does not."""
    name: str | None = None
    """The provider's name, as sent."""
    tax_id: str | None = None
    """The provider's tax id (EIN or SSN), as sent."""


class RenderingProvider(BaseModel):
    model_config = CONTRACT_MODEL

    npi: str | None = None
    """The rendering provider's NPI; a rule checks it."""


class Attachment(BaseModel):
    """Documentation sent separately (837P PWK): named in DOC findings, never taken as the
    documentation itself (since contract 1.1)."""

    model_config = CONTRACT_MODEL

    report_type: str | None = None
    """What the attachment is (837P PWK01, e.g. OZ support data, 09 progress report)."""
    transmission: str | None = None
    """How it was sent (PWK02, e.g. FX fax, EL electronic, BM mail)."""
    control_number: str | None = None
    """The attachment control number that ties it to the claim (PWK06)."""


class ClaimLine(BaseModel):
    model_config = CONTRACT_MODEL

    line_number: PositiveWholeNumber
    """The line's number on the claim, 1-based (837P LX01); findings name it."""
    procedure_code: str
    """The HCPCS or CPT code of the service (e.g. 15275, Q4390); empty on an institutional line
    billed by revenue code only."""
    modifiers: list[str]
    """Up to four HCPCS/CPT modifiers, in order; "00" means no modifier."""
    units: Units
    """Units of service: for Q4390, square centimetres of product; an integer or a decimal."""
    unit_basis: str | None = Field(default="UN", description="absent or null means UN")
    charge: Money | None = Field(
        default=None, description="absent when the source sent none (FHIR item.net is optional)"
    )
    service_date: IsoDate
    """The date of service (ISO 8601 date)."""
    diagnosis_pointers: list[WholeNumber]
    """1-based positions in claim.diagnoses that this line treats, first the primary."""
    rendering_npi: str | None = None
    """The line's own rendering provider NPI, when it differs from the claim's."""
    note: str | None = Field(default=None, description="SV101-7 / NTE free text (PHI)")
    place_of_service: str | None = Field(
        default=None,
        description="the line's own place of service (837P SV105) when it differs from the "
        "claim's; rules use it where given, else the claim's (since contract 1.1)",
    )
    ndc: str | None = Field(
        default=None,
        description="the drug or product's National Drug Code as sent (837P 2410 LIN03, FHIR "
        "NDC coding); lines that differ in NDC are different services (since contract 1.2)",
    )
    attachments: list[Attachment] | None = Field(
        default=None, description="the line's own documentation sent separately (837P 2400 PWK)"
    )
    revenue_code: str | None = Field(
        default=None,
        description="institutional: the line's revenue code as sent, four digits (837I SV201, "
        "FHIR item.revenue); value checked by a rule (since contract 1.2)",
    )


class Wound(BaseModel):
    model_config = CONTRACT_MODEL

    area_cm2: JsonNumber | None = None
    """Total wound surface area of the site group, in cm²."""
    location: str | None = None
    """Where the wound is: trunk, arm, leg, face, scalp, eyelid, mouth, neck, ear, orbit,
    genitalia, hand, foot or digit."""
    laterality: str | None = None
    """Which side: left, right or bilateral."""
    indication: str | None = None
    """The kind of chronic wound (e.g. diabetic foot ulcer, venous leg ulcer)."""
    depth: str | None = None
    """The wound's depth, e.g. full_thickness."""
    standard_of_care_weeks: JsonNumber | None = None
    """Weeks of documented standard wound care before the first application."""
    application_number: WholeNumber | None = None
    """This application is the n-th on this wound in the episode."""
    episode_start_date: IsoDate | None = None
    """The date of the episode's first application (ISO 8601 date)."""


class Product(BaseModel):
    model_config = CONTRACT_MODEL

    name: str | None = None
    """The product applied, e.g. Ascendion."""
    lot_numbers: list[str] | None = None
    """The lot number of each package of product applied."""
    quantity_applied_cm2: JsonNumber | None = None
    """Square centimetres of product applied to the wound."""
    quantity_wasted_cm2: JsonNumber | None = None
    """Square centimetres of product opened and discarded."""


class Documentation(BaseModel):
    model_config = CONTRACT_MODEL

    wound: Wound | None = None
    """The wound the product was applied to."""
    primary_procedure_code: str | None = None
    """The application procedure billed with the product (15271-15278)."""
    product: Product | None = None
    """The skin substitute applied."""
    medical_necessity: str | None = None
    """Why the product was needed (free text, PHI)."""
    increased_services_justification: str | None = None
    """Why a modifier 22 (increased procedural services) applies (free text, PHI)."""


class Claim(BaseModel):
    model_config = CONTRACT_MODEL

    claim_id: Annotated[
        str,
        Field(
            pattern=r"^[!-~](?:[ -~]{0,62}[!-~])?$",
            description="1-64 printable ASCII characters, not starting or ending with a space "
            "(X12 CLM01 allows spaces and #)",
        ),
    ]
    claim_version: PositiveWholeNumber
    """1 for the first submission; each correction raises it (837P CLM05-3 7 or 8 come as later
    versions)."""
    claim_type: Literal["professional", "institutional"]
    """professional (837P, CMS-1500) or institutional (837I, UB-04)."""
    payer: Payer
    """Who pays the claim."""
    patient: Patient | None = None
    """The patient (PHI): every field optional, never logged, never read by a rule but HIST's
    key."""
    billing_provider: Provider
    """The provider who bills (837P loop 2010AA)."""
    rendering_provider: RenderingProvider | None = None
    """The provider who performed the services (837P loop 2310B)."""
    place_of_service: str = Field(
        description="professional: the place of service; (v1.2) empty on an institutional claim"
    )
    type_of_bill: str | None = Field(
        default=None,
        description="institutional: the type of bill as sent, e.g. 131 (837I CLM05-1 facility "
        "code + CLM05-3 frequency; FHIR the type-of-bill supportingInfo or Claim.subType); "
        "value checked by a rule (since contract 1.2)",
    )
    prior_authorization_number: str | None = None
    """The payer's prior authorization number (837P REF*G1), if any."""
    diagnoses: Annotated[list[str], Field(max_length=12)]
    """ICD-10-CM codes, at most 12 (PHI); a line's diagnosis_pointers are 1-based positions
    here. On an institutional claim the principal diagnosis comes first."""
    lines: Annotated[list[ClaimLine], Field(min_length=1, max_length=50)]
    """The service lines, 1 to 50."""
    attachments: list[Attachment] | None = None
    """Documentation sent separately (837P PWK of loop 2300); named in DOC findings, never
    taken as the documentation itself."""
    documentation: Documentation | None = None
    """The clinical documentation of a Q4390 application; its absence on a Q4390 claim is a
    finding."""


class ClaimEvent(BaseModel):
    """One claim event from the billing platform (topic `claims.submitted`)."""

    model_config = CONTRACT_MODEL

    schema_version: Literal["1"]
    """Always "1"; anything else is a dead letter (unsupported_schema_version)."""
    event_id: Annotated[str, Field(min_length=1, max_length=128)]
    """The event's idempotency key, 1-128 characters: the same claim sent again gets a new one."""
    event_type: Literal["claim.submitted", "claim.resubmitted", "claim.voided"]
    """claim.submitted, claim.resubmitted (a corrected claim, with a higher claim_version) or
    claim.voided (never scrubbed; with history on it removes the claim's applications)."""
    occurred_at: Rfc3339Time
    """When the event happened: an RFC 3339 time with an offset. Its UTC date is "today" for
    every date rule."""
    claim: Claim
    """The claim."""
