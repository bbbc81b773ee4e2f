"""The definitions of rules.md, computed once per claim and shared by every rule.

Codes, modifiers, diagnoses, place of service and unit basis are trimmed and upper-cased;
MAC and wound location trimmed and lower-cased. "Today" is the UTC date of occurred_at,
never the wall clock.
"""

import math
import re
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from functools import lru_cache
from typing import Final

from claim_scrubber.models import ClaimEvent, PayerProfile, Ruleset
from claim_scrubber.models.code_sets import DatedCode
from claim_scrubber.models.event import Attachment, Documentation, Product, Wound
from claim_scrubber.models.history import Application
from claim_scrubber.models.ruleset import Icd10CmRelease

__all__ = [
    "PRODUCT_CODE",
    "ClaimFacts",
    "LineFacts",
    "Place",
    "code_range",
    "dated_code_problem",
    "icd10_shaped",
    "is_missing",
    "money_text",
    "npi_valid",
    "number_text",
    "whole_units",
]

PRODUCT_CODE: Final = "Q4390"
"""HCPCS Q4390, Ascendion per cm² (add-on): the product these rules are written for."""

NO_MODIFIER: Final = "00"
_NPI = re.compile(r"[0-9]{10}")
_LUHN_DOUBLED = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)
_ICD10_CM = re.compile(r"[A-Z][0-9][0-9A-Z](\.[0-9A-Z]{1,4})?")


@lru_cache(maxsize=8192)
def npi_valid(npi: str | None) -> bool:
    """Exactly 10 digits whose Luhn check over "80840" + npi passes (CMS NPI standard).

    Cached: claims name the same few thousand providers over and over.
    """
    if npi is None or not _NPI.fullmatch(npi):
        return False
    digits = "80840" + npi
    kept = sum(map(int, digits[-1::-2]))
    doubled = sum(_LUHN_DOUBLED[int(digit)] for digit in digits[-2::-2])
    return (kept + doubled) % 10 == 0


@lru_cache(maxsize=16384)
def icd10_shaped(code: str) -> bool:
    """Cached: claims carry the same few thousand diagnoses over and over."""
    return _ICD10_CM.fullmatch(code) is not None


def dated_code_problem(entry: DatedCode, days: list[date]) -> str | None:
    """Why a dated code is not in effect on any of `days` (None when it is on one of them)."""
    if any(entry.in_effect_on(day) for day in days):
        return None
    ended = entry.effective_through
    if ended is not None and min(days) > ended:
        return f"ended on {ended.isoformat()}, before the date of service {min(days).isoformat()}"
    starts = entry.effective_from
    return f"took effect on {starts}, after the date of service {max(days).isoformat()}"


def is_missing(text: str | None) -> bool:
    """Absent, null or only whitespace."""
    return text is None or not text.strip()


def whole_units(quantity: float) -> int:
    """A quantity compared with a whole count of units is rounded up."""
    return math.ceil(quantity)


def number_text(value: float | Decimal) -> str:
    """A number as a person writes it: no exponent, no float noise (1234567, 18.5)."""
    exact = value if isinstance(value, Decimal) else Decimal(repr(value))
    text = f"{exact.normalize():f}"
    return text.removesuffix(".0") if "." in text else text


def code_range(codes: frozenset[str]) -> str:
    """A set of codes as a coder reads it: 15271-15278 (or the one code)."""
    ordered = sorted(codes)
    return ordered[0] if len(ordered) == 1 else f"{ordered[0]}-{ordered[-1]}"


def money_text(amount: Decimal) -> str:
    """An amount of money with its currency and two decimals: USD 2,542.80."""
    return f"USD {amount:,.2f}"


def _code(text: str) -> str:
    return text.strip().upper()


def _type_of_bill(text: str | None) -> str | None:
    if text is None or not text.strip():
        return None
    code = text.strip()
    return code[1:] if len(code) == 4 and code.startswith("0") else code


def _lower(text: str | None) -> str | None:
    return None if text is None else text.strip().lower()


@dataclass(frozen=True, slots=True)
class Place:
    """A place of service as a rule reports it: its code, and where it stands in the event."""

    code: str
    line_number: int | None
    field: str


@dataclass(frozen=True, slots=True)
class LineFacts:
    """One service line with its values normalized as the definitions say."""

    index: int
    number: int
    code: str
    modifiers: tuple[str, ...]
    modifier_set: frozenset[str]
    units: Decimal
    unit_basis: str
    charge: Decimal | None
    service_date: date
    pointers: tuple[int, ...]
    own_rendering_npi: str | None
    rendering_npi: str | None
    pointed_diagnoses: tuple[str, ...]
    is_product: bool
    is_application: bool
    own_place_of_service: str | None
    """The line's own place of service (contract v1.1), normalized; None when not given."""
    ndc: str | None
    """The National Drug Code as sent (contract v1.2)."""
    description: str | None
    """The line's note as sent: the description of a not-otherwise-classified code."""
    revenue_code: str | None
    """An institutional line's revenue code (contract v1.2), four digits as sent."""

    def field(self, name: str) -> str:
        return f"claim.lines[{self.index}].{name}"

    @property
    def carries_jw(self) -> bool:
        return "JW" in self.modifier_set


class ClaimFacts:
    """Everything the rules ask of one claim event, derived once."""

    __slots__ = (
        "administered_product_lines",
        "application_lines",
        "attachments_note",
        "diagnoses",
        "diagnosis_release",
        "diagnosis_release_in_force",
        "documentation",
        "earliest_service_date",
        "event",
        "history",
        "is_professional",
        "is_q4390_claim",
        "lines",
        "location",
        "mac",
        "place_of_service",
        "product",
        "product_lines",
        "profile",
        "q4390_places",
        "ruleset",
        "today",
        "type_of_bill",
        "wasted_product_lines",
        "wound",
    )

    def __init__(
        self,
        event: ClaimEvent,
        ruleset: Ruleset,
        history: tuple[Application, ...] | None = None,
    ) -> None:
        claim = event.claim
        self.event = event
        self.ruleset = ruleset
        self.history = history
        """The applications of the patient's other claims (docs/operating/history.md); None when
        history is off or the claim names no member: the HIST rules do not run."""
        self.profile: PayerProfile = ruleset.payers[claim.payer.kind]
        self.today: date = event.occurred_at.date()
        self.diagnoses: tuple[str, ...] = tuple(_code(code) for code in claim.diagnoses)
        self.place_of_service = _code(claim.place_of_service)
        self.mac = _lower(claim.payer.mac)
        self.documentation: Documentation | None = claim.documentation
        self.wound: Wound | None = claim.documentation.wound if claim.documentation else None
        self.product: Product | None = claim.documentation.product if claim.documentation else None
        self.location = _lower(self.wound.location) if self.wound else None
        attachments = list(claim.attachments or ())
        self.is_professional = claim.claim_type == "professional"
        self.type_of_bill = _type_of_bill(claim.type_of_bill)
        """An institutional claim's type of bill, three characters as UB-04 FL 4 prints it
        without its leading zero (None: none sent)."""
        self.earliest_service_date: date = min([line.service_date for line in claim.lines])
        release, in_force = ruleset.code_sets.icd10cm_release_for(self.earliest_service_date)
        self.diagnosis_release: Icd10CmRelease = release
        """The ICD-10-CM release the diagnoses are judged by (rules.md v1.2 Definitions)."""
        self.diagnosis_release_in_force: bool = in_force

        claim_rendering = claim.rendering_provider.npi if claim.rendering_provider else None
        application_codes = ruleset.application_codes
        lines = []
        for index, line in enumerate(claim.lines):
            if line.attachments:
                attachments.extend(line.attachments)
            code = _code(line.procedure_code)
            modifiers = tuple(_code(modifier) for modifier in line.modifiers)
            lines.append(
                LineFacts(
                    index=index,
                    number=line.line_number,
                    code=code,
                    modifiers=modifiers,
                    modifier_set=(
                        frozenset() if modifiers == (NO_MODIFIER,) else frozenset(modifiers)
                    ),
                    units=line.units,
                    unit_basis="UN" if line.unit_basis is None else _code(line.unit_basis),
                    charge=line.charge,
                    service_date=line.service_date,
                    pointers=tuple(line.diagnosis_pointers),
                    own_rendering_npi=line.rendering_npi,
                    rendering_npi=(
                        line.rendering_npi if line.rendering_npi is not None else claim_rendering
                    ),
                    pointed_diagnoses=(
                        tuple(
                            self.diagnoses[pointer - 1]
                            for pointer in line.diagnosis_pointers
                            if 1 <= pointer <= len(self.diagnoses)
                        )
                        if self.is_professional
                        else self.diagnoses  # an institutional claim has no pointers
                    ),
                    is_product=code == PRODUCT_CODE,
                    is_application=code in application_codes,
                    own_place_of_service=(
                        None if line.place_of_service is None else _code(line.place_of_service)
                    ),
                    ndc=line.ndc,
                    description=line.note,
                    revenue_code=None if line.revenue_code is None else _code(line.revenue_code),
                ),
            )
        self.lines: tuple[LineFacts, ...] = tuple(lines)
        self.attachments_note = _attachments_note(attachments)
        self.product_lines = tuple(line for line in self.lines if line.is_product)
        self.administered_product_lines = tuple(
            line for line in self.product_lines if not line.carries_jw
        )
        self.wasted_product_lines = tuple(line for line in self.product_lines if line.carries_jw)
        self.application_lines = tuple(line for line in self.lines if line.is_application)
        self.is_q4390_claim = bool(self.product_lines)
        self.q4390_places = _q4390_places(self.place_of_service, self.product_lines)

    def application_lines_on(self, service_date: date) -> tuple[LineFacts, ...]:
        return tuple(line for line in self.application_lines if line.service_date == service_date)

    @property
    def payer_name(self) -> str:
        """The payer as the ruleset names it."""
        return self.profile.display_name or "this payer"

    @property
    def q4390_applications(self) -> tuple[LineFacts, ...]:
        """rules.md "Claim history": the Q4390 lines with units above 0 and without JW."""
        return tuple(line for line in self.administered_product_lines if line.units > 0)

    def wound_of(self, line: LineFacts) -> str:
        """rules.md "Wound of a line": the ulcer site of its first pointed-to L97./L89.
        diagnosis (6 characters), else the documented location and side, else `unspecified`."""
        for diagnosis in line.pointed_diagnoses:
            if diagnosis.startswith(("L97.", "L89.")):
                return diagnosis[:6]
        if self.location is None or not self.location:
            return "unspecified"
        side = _lower(self.wound.laterality) if self.wound else None
        if not side:
            side = (
                "right"
                if "RT" in line.modifier_set
                else "left"
                if "LT" in line.modifier_set
                else ""
            )
        return f"{self.location}:{side}"

    def applications(self) -> tuple[Application, ...]:
        """This claim's applications as history keeps them."""
        claim = self.event.claim
        return tuple(
            Application(
                service_date=line.service_date,
                wound=self.wound_of(line),
                claim_id=claim.claim_id,
                claim_version=claim.claim_version,
                line_number=line.number,
                procedure_code=line.code,
            )
            for line in self.q4390_applications
        )


def _q4390_places(claim_place: str, product_lines: tuple[LineFacts, ...]) -> tuple[Place, ...]:
    """rules.md "Places of service of a Q4390 claim": the claim's, once, when a Q4390 line has
    none of its own; and each Q4390 line's own."""
    places = []
    if any(line.own_place_of_service is None for line in product_lines):
        places.append(Place(claim_place, None, "claim.place_of_service"))
    places.extend(
        Place(line.own_place_of_service, line.number, line.field("place_of_service"))
        for line in product_lines
        if line.own_place_of_service is not None
    )
    return tuple(places)


def _attachments_note(attachments: list[Attachment]) -> str:
    """What DOC messages add when the claim lists attachments sent separately (PWK): each
    attachment's report type and control number, so a coder can find it."""
    if not attachments:
        return ""
    described = []
    for attachment in attachments:
        parts = []
        if attachment.report_type and attachment.report_type.strip():
            parts.append(f"report type {_code(attachment.report_type)}")
        if attachment.control_number and attachment.control_number.strip():
            parts.append(f"control number {attachment.control_number.strip()[:50]}")
        if parts:
            described.append(", ".join(parts))
    count = "an attachment" if len(attachments) == 1 else f"{len(attachments)} attachments"
    which = f" ({'; '.join(described)})" if described else ""
    return f" The claim lists {count} sent separately{which}: check whether it holds this."
