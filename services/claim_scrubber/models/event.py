"""ClaimEvent, schema_version "1": the input of the scrubber (contract section 2).

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
    payer_id: str | None = None
    name: str | None = None
    mac: str | None = Field(default=None, description="Medicare administrative contractor")


class Patient(BaseModel):
    """PHI: validated for shape only, never read by a rule, never logged."""

    model_config = CONTRACT_MODEL

    member_id: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    birth_date: str | None = None
    sex: str | None = None


class Provider(BaseModel):
    model_config = CONTRACT_MODEL

    npi: str
    name: str | None = None
    tax_id: str | None = None


class RenderingProvider(BaseModel):
    model_config = CONTRACT_MODEL

    npi: str | None = None


class Attachment(BaseModel):
    """Documentation sent separately (837P PWK): named in DOC findings, never taken as the
    documentation itself (contract v1.1)."""

    model_config = CONTRACT_MODEL

    report_type: str | None = None
    transmission: str | None = None
    control_number: str | None = None


class ClaimLine(BaseModel):
    model_config = CONTRACT_MODEL

    line_number: PositiveWholeNumber
    procedure_code: str
    modifiers: list[str]
    units: Units
    unit_basis: str | None = Field(default="UN", description="absent or null means UN")
    charge: Money | None = Field(
        default=None, description="absent when the source sent none (FHIR item.net is optional)"
    )
    service_date: IsoDate
    diagnosis_pointers: list[WholeNumber]
    rendering_npi: str | None = None
    note: str | None = Field(default=None, description="SV101-7 / NTE free text (PHI)")
    place_of_service: str | None = Field(
        default=None,
        description="the line's own place of service (837P SV105) when it differs from the "
        "claim's; rules use it where given, else the claim's (contract v1.1)",
    )
    ndc: str | None = Field(
        default=None,
        description="the drug or product's National Drug Code as sent (837P 2410 LIN03, FHIR "
        "NDC coding); lines that differ in NDC are different services (contract v1.2)",
    )
    attachments: list[Attachment] | None = Field(
        default=None, description="the line's own documentation sent separately (837P 2400 PWK)"
    )
    revenue_code: str | None = Field(
        default=None,
        description="institutional: the line's revenue code as sent, four digits (837I SV201, "
        "FHIR item.revenue); value checked by a rule (contract v1.2)",
    )


class Wound(BaseModel):
    model_config = CONTRACT_MODEL

    area_cm2: JsonNumber | None = None
    location: str | None = None
    laterality: str | None = None
    indication: str | None = None
    depth: str | None = None
    standard_of_care_weeks: JsonNumber | None = None
    application_number: WholeNumber | None = None
    episode_start_date: IsoDate | None = None


class Product(BaseModel):
    model_config = CONTRACT_MODEL

    name: str | None = None
    lot_numbers: list[str] | None = None
    quantity_applied_cm2: JsonNumber | None = None
    quantity_wasted_cm2: JsonNumber | None = None


class Documentation(BaseModel):
    model_config = CONTRACT_MODEL

    wound: Wound | None = None
    primary_procedure_code: str | None = None
    product: Product | None = None
    medical_necessity: str | None = None
    increased_services_justification: str | None = None


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
    claim_type: Literal["professional", "institutional"]
    payer: Payer
    patient: Patient | None = None
    billing_provider: Provider
    rendering_provider: RenderingProvider | None = None
    place_of_service: str = Field(
        description="professional: the place of service; (v1.2) empty on an institutional claim"
    )
    type_of_bill: str | None = Field(
        default=None,
        description="institutional: the type of bill as sent, e.g. 131 (837I CLM05-1 facility "
        "code + CLM05-3 frequency; FHIR the type-of-bill supportingInfo or Claim.subType); "
        "value checked by a rule (contract v1.2)",
    )
    prior_authorization_number: str | None = None
    diagnoses: Annotated[list[str], Field(max_length=12)]
    lines: Annotated[list[ClaimLine], Field(min_length=1, max_length=50)]
    attachments: list[Attachment] | None = None
    documentation: Documentation | None = None


class ClaimEvent(BaseModel):
    """One claim event from the billing platform (topic `claims.submitted`)."""

    model_config = CONTRACT_MODEL

    schema_version: Literal["1"]
    event_id: Annotated[str, Field(min_length=1, max_length=128)]
    event_type: Literal["claim.submitted", "claim.resubmitted", "claim.voided"]
    occurred_at: Rfc3339Time
    claim: Claim
