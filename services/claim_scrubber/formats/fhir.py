"""FHIR R4 `Claim` → ClaimEvent: a Claim resource, or every Claim of a Bundle.

The models below are the R4 elements the mapping reads (unknown elements are ignored), so a
Claim that breaks them is `invalid_fhir` with the element's path and never its value.
References resolve to `contained` resources (`#id`), to Bundle entries by `fullUrl`, or by
`Type/id`; an unresolvable one leaves the field empty for the rules to report (CLM-001 for a
billing NPI), never a crash.

A Claim whose `status` is `cancelled` is a void (`claim.voided`, contract v1.2); one related
to a `prior` claim is `claim.resubmitted`.

Documentation is read only from this project's profile (docs/sending-claims/x12-and-fhir.md):
`supportingInfo` whose category is a code of DOCUMENTATION_SYSTEM, `item.bodySite` coded in
WOUND_LOCATION_SYSTEM, and `item.udi` → Device (name, lot numbers). Any other Claim has no
documentation, exactly like an 837P claim.
"""

import hashlib
import json
from datetime import date, datetime, time
from decimal import Decimal
from typing import Annotated, Any, Final
from zoneinfo import ZoneInfo

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from claim_scrubber.formats._conversion import (
    Conversion,
    RejectedClaim,
    event_id,
    finish_claim,
)
from claim_scrubber.models import DeadLetterKind, PayerDirectory

__all__ = ["DOCUMENTATION_SYSTEM", "WOUND_LOCATION_SYSTEM", "read_fhir"]

DOCUMENTATION_SYSTEM: Final = "urn:claim-scrubber:fhir:documentation"
"""Our CodeSystem of `supportingInfo.category` codes for the wound documentation."""
WOUND_LOCATION_SYSTEM: Final = "urn:claim-scrubber:fhir:wound-location"
"""Our CodeSystem of `item.bodySite` codes: the ruleset's wound locations (`foot`, `leg`...)."""

_NPI: Final = "http://hl7.org/fhir/sid/us-npi"
_NDC: Final = frozenset({"http://hl7.org/fhir/sid/ndc"})
_ICD10: Final = frozenset({"http://hl7.org/fhir/sid/icd-10-cm", "http://hl7.org/fhir/sid/icd-10"})
_PROCEDURES: Final = frozenset(
    {
        "http://www.ama-assn.org/go/cpt",
        "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets",
        "http://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets",
    }
)
_CLAIM_TYPES: Final = frozenset({"professional", "institutional"})
_SEX: Final = {"male": "M", "female": "F", "other": "U", "unknown": "U"}
_CENT: Final = Decimal("0.01")
_TYPE_OF_BILL: Final = frozenset({"https://www.nubc.org/CodeSystem/TypeOfBill"})
"""NUBC's type-of-bill code system (CARIN Blue Button: supportingInfo `typeofbill`)."""

_FHIR = ConfigDict(extra="ignore", frozen=True, hide_input_in_errors=True)


class _Coding(BaseModel):
    model_config = _FHIR
    system: str | None = None
    code: str | None = None


class _Concept(BaseModel):
    model_config = _FHIR
    coding: list[_Coding] = []

    def code(self, systems: frozenset[str] | None = None) -> str | None:
        for coding in self.coding:
            if coding.code and (systems is None or coding.system in systems):
                return coding.code
        return None


class _Identifier(BaseModel):
    model_config = _FHIR
    system: str | None = None
    value: str | None = None
    use: str | None = None
    type: _Concept | None = None


class _Reference(BaseModel):
    model_config = _FHIR
    reference: str | None = None
    identifier: _Identifier | None = None
    display: str | None = None


class _Quantity(BaseModel):
    model_config = _FHIR
    value: Decimal | None = None


class _Period(BaseModel):
    model_config = _FHIR
    start: str | None = None
    end: str | None = None

    def first_day(self) -> str | None:
        return self.start or self.end


class _Name(BaseModel):
    model_config = _FHIR
    family: str | None = None
    given: list[str] = []


class _Party(BaseModel):
    """The elements read from a referenced Patient, Organization, Practitioner, Coverage or
    Device."""

    model_config = _FHIR
    resourceType: str  # noqa: N815 - FHIR's element name
    id: str | None = None
    identifier: list[_Identifier] = []
    name: list[_Name] | str | None = None
    birthDate: str | None = None  # noqa: N815
    gender: str | None = None
    subscriberId: str | None = None  # noqa: N815
    deviceName: list[dict[str, Any]] = []  # noqa: N815
    lotNumber: str | None = None  # noqa: N815
    code: _Concept | None = None  # a Condition's diagnosis

    def npi(self) -> str | None:
        return next((i.value for i in self.identifier if i.system == _NPI and i.value), None)

    def identifier_of_type(self, code: str) -> str | None:
        """The value of the first identifier whose type is coded `code` (TAX, MB, ...)."""
        return next(
            (
                i.value
                for i in self.identifier
                if i.value and i.type is not None and i.type.code() == code
            ),
            None,
        )

    def display_name(self) -> str | None:
        if isinstance(self.name, str):
            return self.name
        if self.name:
            first = self.name[0]
            return " ".join([*first.given[:1], first.family or ""]).strip() or None
        return None


class _CareTeam(BaseModel):
    model_config = _FHIR
    sequence: int
    provider: _Reference
    responsible: bool | None = None
    role: _Concept | None = None


class _SupportingInfo(BaseModel):
    model_config = _FHIR
    sequence: int
    category: _Concept
    code: _Concept | None = None
    timingDate: str | None = None  # noqa: N815
    valueString: str | None = None  # noqa: N815
    valueQuantity: _Quantity | None = None  # noqa: N815


class _Diagnosis(BaseModel):
    model_config = _FHIR
    sequence: int
    diagnosisCodeableConcept: _Concept | None = None  # noqa: N815
    diagnosisReference: _Reference | None = None  # noqa: N815


class _Insurance(BaseModel):
    model_config = _FHIR
    focal: bool = False
    coverage: _Reference | None = None
    preAuthRef: list[str] = []  # noqa: N815


class _Related(BaseModel):
    model_config = _FHIR
    relationship: _Concept | None = None


class _Detail(BaseModel):
    model_config = _FHIR
    productOrService: _Concept | None = None  # noqa: N815


class _Item(BaseModel):
    model_config = _FHIR
    sequence: int
    careTeamSequence: list[int] = []  # noqa: N815
    diagnosisSequence: list[int] = []  # noqa: N815
    informationSequence: list[int] = []  # noqa: N815
    productOrService: _Concept  # noqa: N815
    revenue: _Concept | None = None
    modifier: list[_Concept] = []
    servicedDate: str | None = None  # noqa: N815
    servicedPeriod: _Period | None = None  # noqa: N815
    locationCodeableConcept: _Concept | None = None  # noqa: N815
    quantity: _Quantity | None = None
    unitPrice: _Quantity | None = None  # noqa: N815
    factor: Decimal | None = None
    net: _Quantity | None = None
    bodySite: _Concept | None = None  # noqa: N815
    udi: list[_Reference] = []
    detail: list[_Detail] = []

    def ndc(self) -> str | None:
        """The item's NDC: a productOrService coding, else its first detail's."""
        found = self.productOrService.code(_NDC)
        for detail in self.detail:
            if found is None and detail.productOrService is not None:
                found = detail.productOrService.code(_NDC)
        return found


class _Claim(BaseModel):
    model_config = _FHIR
    resourceType: str  # noqa: N815
    id: str | None = None
    meta: dict[str, Any] | None = None
    identifier: list[_Identifier] = []
    status: str | None = None
    type: _Concept | None = None
    subType: _Concept | None = None  # noqa: N815
    use: str | None = None
    created: str | None = None
    billablePeriod: _Period | None = None  # noqa: N815
    patient: _Reference | None = None
    insurer: _Reference | None = None
    provider: _Reference | None = None
    related: list[_Related] = []
    careTeam: list[_CareTeam] = []  # noqa: N815
    supportingInfo: list[_SupportingInfo] = []  # noqa: N815
    diagnosis: list[_Diagnosis] = []
    insurance: list[_Insurance] = []
    item: Annotated[list[_Item], Field(min_length=1)]
    contained: list[dict[str, Any]] = []


class _ClaimIdentity(BaseModel):
    """Just the elements that name a claim, read from any resource for its dead letter."""

    model_config = _FHIR
    id: str | None = None
    identifier: list[_Identifier] = []


_CLAIM_ID_CHARS: Final = 64


class _UnusableError(Exception):
    def __init__(self, message: str, kind: DeadLetterKind = DeadLetterKind.INVALID_FHIR) -> None:
        super().__init__(message)
        self.kind = kind


class _Resolver:
    """Finds the resource a Reference points at: contained, by fullUrl, or by Type/id."""

    def __init__(self, entries: list[tuple[str | None, dict[str, Any]]]) -> None:
        self._by_url: dict[str, dict[str, Any]] = {}
        for full_url, resource in entries:
            type_and_id = f"{resource.get('resourceType')}/{resource.get('id')}"
            self._by_url[type_and_id] = resource
            if full_url:
                self._by_url[full_url] = resource

    def find(self, reference: _Reference | None, claim: _Claim, where: str) -> _Party | None:
        target = reference.reference if reference is not None else None
        if not target:
            return None
        if target.startswith("#"):
            resource = next((r for r in claim.contained if r.get("id") == target[1:]), None)
        else:
            resource = self._by_url.get(target) or self._by_url.get(
                "/".join(target.rsplit("/", 2)[-2:])
            )
        if not isinstance(resource, dict):
            return None
        try:
            return _Party.model_validate(resource)
        except ValidationError as error:
            raise _UnusableError(
                f"{where}: the referenced resource {_first_problem(error)}"
            ) from None


def _type_of_bill(claim: "_Claim") -> str | None:
    """An institutional Claim's type of bill: the supportingInfo of category `typeofbill`
    (CARIN Blue Button), else a Claim.subType coded in NUBC's type-of-bill system."""
    for info in claim.supportingInfo:
        if info.category.code() == "typeofbill" and info.code is not None:
            found = info.code.code()
            if found:
                return found
    return claim.subType.code(_TYPE_OF_BILL) if claim.subType is not None else None


def _claim_identifier(claim: "_Claim | _ClaimIdentity") -> str | None:
    """The claim's id: its official identifier's value, else its first identifier's, else
    the resource id."""
    official = [i for i in claim.identifier if i.value and i.use == "official"]
    identifiers = official or [i for i in claim.identifier if i.value]
    return identifiers[0].value if identifiers else claim.id


def _identifier_of(resource: dict[str, Any]) -> str | None:
    """The claim id of a resource that may not even be a valid Claim (for dead letters)."""
    try:
        claim_id = _claim_identifier(_ClaimIdentity.model_validate(resource))
    except ValidationError:
        return None
    return claim_id if claim_id and len(claim_id) <= _CLAIM_ID_CHARS else None


def _content_hash(resource: dict[str, Any]) -> str:
    """SHA-256 of the Claim's canonical JSON (sorted keys): a corrected claim without a
    meta.versionId still gets a new event id."""
    canonical = orjson.dumps(resource, option=orjson.OPT_SORT_KEYS, default=str)
    return hashlib.sha256(canonical).hexdigest()


def _reference_npi(reference: _Reference | None) -> str | None:
    """An NPI the reference itself carries as a logical identifier."""
    identifier = reference.identifier if reference is not None else None
    if identifier is not None and identifier.system == _NPI and identifier.value:
        return identifier.value
    return None


def _first_problem(error: ValidationError) -> str:
    first = error.errors(include_url=False, include_input=False, include_context=False)[0]
    return f"at {'.'.join(str(part) for part in first['loc'])}: {first['msg']}"


def _money(value: Decimal) -> str:
    if value < 0:
        raise _UnusableError("a negative amount")
    return str(value.quantize(_CENT))


def _number(value: Decimal) -> int | float:
    return int(value) if value == value.to_integral_value() else float(value)


def _dotted(code: str) -> str:
    return f"{code[:3]}.{code[3:]}" if len(code) > 3 and "." not in code else code


class _Mapper:
    def __init__(self, directory: PayerDirectory, zone: ZoneInfo) -> None:
        self._directory = directory
        self._zone = zone

    def read(self, data: bytes) -> Conversion:
        conversion = Conversion()
        try:
            document = self._document(data)
            claims, resolver = self._claims(document)
        except _UnusableError as problem:
            conversion.add(RejectedClaim(None, problem.kind, str(problem)))
            return conversion
        for index, (where, resource) in enumerate(claims, start=1):
            try:
                claim = _Claim.model_validate(resource)
                conversion.add(self._event(claim, index, where, resource, resolver))
            except ValidationError as error:
                conversion.add(
                    RejectedClaim(
                        index,
                        DeadLetterKind.INVALID_FHIR,
                        f"{where}: not a usable R4 Claim {_first_problem(error)}",
                        claim_id=_identifier_of(resource),
                    )
                )
            except _UnusableError as problem:
                conversion.add(
                    RejectedClaim(
                        index,
                        problem.kind,
                        f"{where}: {problem}",
                        claim_id=_identifier_of(resource),
                    )
                )
        return conversion

    @staticmethod
    def _document(data: bytes) -> dict[str, Any]:
        try:
            document = json.loads(data.decode("utf-8-sig"), parse_float=Decimal)
        except UnicodeDecodeError:
            raise _UnusableError("not UTF-8 text") from None
        except json.JSONDecodeError as error:
            raise _UnusableError(f"not JSON: {error.msg} at line {error.lineno}") from None
        if not isinstance(document, dict):
            raise _UnusableError("not a FHIR resource: the JSON is not an object")
        return document

    @staticmethod
    def _claims(
        document: dict[str, Any],
    ) -> tuple[list[tuple[str, dict[str, Any]]], _Resolver]:
        kind = document.get("resourceType")
        if kind == "Claim":
            return [("Claim", document)], _Resolver([])
        if kind != "Bundle":
            raise _UnusableError(
                "not a FHIR Claim or Bundle (resourceType)", DeadLetterKind.UNSUPPORTED_TRANSACTION
            )
        listed = document.get("entry")
        if listed is not None and not isinstance(listed, list):
            raise _UnusableError("Bundle.entry is not an array")
        entries = []
        for entry in listed or []:
            resource = entry.get("resource") if isinstance(entry, dict) else None
            if isinstance(resource, dict):
                full_url = entry.get("fullUrl")
                entries.append((full_url if isinstance(full_url, str) else None, resource))
        claims = [
            (f"Bundle.entry[{number}]", resource)
            for number, (_, resource) in enumerate(entries)
            if resource.get("resourceType") == "Claim"
        ]
        if not claims:
            raise _UnusableError(
                "the Bundle holds no Claim", DeadLetterKind.UNSUPPORTED_TRANSACTION
            )
        return claims, _Resolver(entries)

    def _occurred_at(self, created: str | None) -> str:
        if not created:
            raise _UnusableError("Claim.created is missing")
        try:
            if "T" not in created:
                day = date.fromisoformat(created)
                return datetime.combine(day, time(), tzinfo=self._zone).isoformat()
            moment = datetime.fromisoformat(created)
        except ValueError:
            raise _UnusableError("Claim.created is not a FHIR date or dateTime") from None
        if moment.tzinfo is None:
            raise _UnusableError("Claim.created has a time but no time zone")
        return moment.isoformat()

    def _event(
        self,
        claim: _Claim,
        index: int,
        where: str,
        resource: dict[str, Any],
        resolver: _Resolver,
    ) -> Any:  # noqa: ANN401 - ConvertedClaim | RejectedClaim
        if claim.use != "claim":
            raise _UnusableError(
                "Claim.use is not 'claim' (preauthorizations and predeterminations are not "
                "claims for payment)",
                DeadLetterKind.UNSUPPORTED_TRANSACTION,
            )
        claim_type = claim.type.code() if claim.type is not None else None
        if claim_type not in _CLAIM_TYPES:
            raise _UnusableError(
                "Claim.type is not professional or institutional",
                DeadLetterKind.UNSUPPORTED_TRANSACTION,
            )
        claim_id = _claim_identifier(claim)
        if not claim_id:
            raise _UnusableError("the Claim has neither an identifier value nor an id")
        version_text = str((claim.meta or {}).get("versionId") or "")
        numeric = version_text.isascii() and version_text.isdigit()
        version = int(version_text) if numeric and int(version_text) > 0 else 1
        resubmitted = any(
            related.relationship is not None and related.relationship.code() == "prior"
            for related in claim.related
        )
        body: dict[str, Any] = {
            "claim_id": claim_id,
            "claim_version": version,
            "claim_type": claim_type,
            "payer": self._payer(claim, resolver, where),
            "billing_provider": self._billing(claim, resolver, where),
            "diagnoses": self._diagnoses(claim, resolver, where),
        }
        patient = self._patient(claim, resolver, where)
        if patient:
            body["patient"] = patient
        rendering = self._care_team_npi(claim, resolver, where, None)
        if rendering:
            body["rendering_provider"] = {"npi": rendering}
        focal = [i for i in claim.insurance if i.focal] or claim.insurance
        if focal and focal[0].preAuthRef:
            body["prior_authorization_number"] = focal[0].preAuthRef[0]
        lines = [self._line(claim, item, resolver, where) for item in claim.item]
        places = [line.pop("place_of_service", None) for line in lines]
        claim_place = next((place for place in places if place), "")
        for line, place in zip(lines, places, strict=True):
            if place and place != claim_place:
                line["place_of_service"] = place
        body["place_of_service"] = claim_place
        body["lines"] = lines
        type_of_bill = _type_of_bill(claim) if claim_type == "institutional" else None
        if type_of_bill:
            body["type_of_bill"] = type_of_bill
        documentation = self._documentation(claim, resolver, where)
        if documentation:
            body["documentation"] = documentation
        document = {
            "schema_version": "1",
            "event_id": event_id("fhir", claim_id, version_text or _content_hash(resource)),
            "event_type": (
                "claim.voided"
                if claim.status == "cancelled"
                else "claim.resubmitted"
                if resubmitted
                else "claim.submitted"
            ),
            "occurred_at": self._occurred_at(claim.created),
            "claim": body,
        }
        return finish_claim(index, document, DeadLetterKind.INVALID_FHIR, where)

    def _payer(self, claim: _Claim, resolver: _Resolver, where: str) -> dict[str, Any]:
        insurer = resolver.find(claim.insurer, claim, f"{where} insurer")
        payer_id = None
        if claim.insurer is not None and claim.insurer.identifier is not None:
            payer_id = claim.insurer.identifier.value
        if payer_id is None and insurer is not None:
            payer_id = next((i.value for i in insurer.identifier if i.value), None)
        kind, mac = self._directory.resolve(None, payer_id)
        name = (claim.insurer.display if claim.insurer is not None else None) or (
            insurer.display_name() if insurer is not None else None
        )
        given = {"payer_id": payer_id, "name": name, "mac": mac}
        return {"kind": kind.value} | {field: v for field, v in given.items() if v is not None}

    @staticmethod
    def _billing(claim: _Claim, resolver: _Resolver, where: str) -> dict[str, Any]:
        provider = resolver.find(claim.provider, claim, f"{where} provider")
        npi = _reference_npi(claim.provider) or (provider.npi() if provider else None)
        billing: dict[str, Any] = {"npi": npi or ""}
        if provider is None:
            return billing
        name = provider.display_name()
        if name:
            billing["name"] = name
        tax_id = provider.identifier_of_type("TAX")
        if tax_id:
            billing["tax_id"] = tax_id
        return billing

    @staticmethod
    def _patient(claim: _Claim, resolver: _Resolver, where: str) -> dict[str, Any]:
        patient = resolver.find(claim.patient, claim, f"{where} patient")
        fields: dict[str, Any] = {}
        focal = [i for i in claim.insurance if i.focal] or claim.insurance
        coverage = resolver.find(focal[0].coverage, claim, f"{where} coverage") if focal else None
        if coverage is not None and coverage.subscriberId:
            fields["member_id"] = coverage.subscriberId
        if patient is None:
            return fields
        member = patient.identifier_of_type("MB")
        if member and "member_id" not in fields:
            fields["member_id"] = member
        if isinstance(patient.name, list) and patient.name:
            name = patient.name[0]
            if name.given:
                fields["first_name"] = name.given[0]
            if name.family:
                fields["last_name"] = name.family
        if patient.birthDate:
            fields["birth_date"] = patient.birthDate
        if patient.gender:
            fields["sex"] = _SEX.get(patient.gender, "U")
        return fields

    @staticmethod
    def _care_team_npi(
        claim: _Claim, resolver: _Resolver, where: str, sequences: list[int] | None
    ) -> str | None:
        """The NPI of the claim's rendering practitioner (the responsible or primary member)
        or, given sequences, of an item's first care-team member."""
        if sequences is None:
            members = [
                m
                for m in claim.careTeam
                if m.responsible or (m.role is not None and m.role.code() == "primary")
            ]
        else:
            members = [m for m in claim.careTeam if m.sequence in sequences[:1]]
        for member in members:
            npi = _reference_npi(member.provider)
            if npi:
                return npi
            practitioner = resolver.find(member.provider, claim, f"{where} careTeam")
            if practitioner is not None and practitioner.npi():
                return practitioner.npi()
        return None

    @staticmethod
    def _diagnoses(claim: _Claim, resolver: _Resolver, where: str) -> list[str]:
        """Each diagnosis in sequence order: its ICD-10-CM coding (dotted), else its first
        coding as sent, for the rules to judge; a diagnosisReference is resolved to the
        Condition's code. A diagnosis with no code at all stays an empty entry (CLM-005)."""
        found = []
        for diagnosis in sorted(claim.diagnosis, key=lambda d: d.sequence):
            concept = diagnosis.diagnosisCodeableConcept
            if concept is None and diagnosis.diagnosisReference is not None:
                condition = resolver.find(
                    diagnosis.diagnosisReference, claim, f"{where} diagnosis {diagnosis.sequence}"
                )
                concept = condition.code if condition is not None else None
            icd10 = concept.code(_ICD10) if concept is not None else None
            other = concept.code() if concept is not None else None
            found.append(_dotted(icd10) if icd10 else other or "")
        return found

    def _line(self, claim: _Claim, item: _Item, resolver: _Resolver, where: str) -> dict[str, Any]:
        at = f"item {item.sequence}"
        code = item.productOrService.code(_PROCEDURES) or item.productOrService.code()
        if not code:
            raise _UnusableError(f"{at}: productOrService has no code")
        quantity = item.quantity.value if item.quantity is not None else None
        units = quantity if quantity is not None else Decimal(1)
        charge = None
        if item.net is not None and item.net.value is not None:
            charge = item.net.value
        elif item.unitPrice is not None and item.unitPrice.value is not None:
            charge = item.unitPrice.value * units * (item.factor or Decimal(1))
        served = (
            item.servicedDate
            or (item.servicedPeriod.first_day() if item.servicedPeriod else None)
            or (claim.billablePeriod.first_day() if claim.billablePeriod else None)
            or claim.created
        )
        if not served:
            raise _UnusableError(f"{at}: no date of service (serviced[x], billablePeriod, created)")
        diagnosis_order = [d.sequence for d in sorted(claim.diagnosis, key=lambda d: d.sequence)]
        try:
            line: dict[str, Any] = {
                "line_number": item.sequence,
                "procedure_code": code,
                "modifiers": [m.code() or "" for m in item.modifier],
                "units": _number(units),
                "unit_basis": "UN",
                "service_date": served[:10],
                "diagnosis_pointers": [
                    diagnosis_order.index(sequence) + 1 if sequence in diagnosis_order else 0
                    for sequence in item.diagnosisSequence
                ],
            }
            if charge is not None:
                line["charge"] = _money(charge)
        except _UnusableError as problem:
            raise _UnusableError(f"{at}: {problem}") from None
        ndc = item.ndc()
        if ndc:
            line["ndc"] = ndc
        revenue = item.revenue.code() if item.revenue is not None else None
        if revenue:
            line["revenue_code"] = revenue
        place = item.locationCodeableConcept.code() if item.locationCodeableConcept else None
        if place:
            line["place_of_service"] = place
        rendering = self._care_team_npi(claim, resolver, where, item.careTeamSequence)
        if rendering:
            line["rendering_npi"] = rendering
        notes = [
            info.valueString
            for info in claim.supportingInfo
            if info.sequence in item.informationSequence
            and info.valueString
            and info.category.code(frozenset({DOCUMENTATION_SYSTEM})) is None
        ]
        if notes:
            line["note"] = " | ".join(notes)
        return line

    @staticmethod
    def _documentation(claim: _Claim, resolver: _Resolver, where: str) -> dict[str, Any]:
        """The wound documentation of our profile; empty for any other Claim."""
        values: dict[str, Any] = {}
        lots: list[str] = []
        for info in claim.supportingInfo:
            code = info.category.code(frozenset({DOCUMENTATION_SYSTEM}))
            if code is None:
                continue
            quantity = info.valueQuantity.value if info.valueQuantity is not None else None
            value: Any = _number(quantity) if quantity is not None else info.valueString
            if code == "episode-start":
                value = info.timingDate
            if code == "lot-number" and info.valueString:
                lots.append(info.valueString)
            elif value is not None:
                values[code] = value
        for item in claim.item:
            site = item.bodySite.code(frozenset({WOUND_LOCATION_SYSTEM})) if item.bodySite else None
            if site:
                values.setdefault("wound-location", site)
            for udi in item.udi:
                device = resolver.find(udi, claim, f"{where} item {item.sequence} udi")
                if device is None:
                    continue
                if device.deviceName and isinstance(device.deviceName[0].get("name"), str):
                    values.setdefault("product-name", device.deviceName[0]["name"])
                if device.lotNumber:
                    lots.append(device.lotNumber)
        if lots:
            values["lot-number"] = lots
        return _documentation_document(values)


_DOCUMENTATION_FIELDS: Final = {
    "wound-area": ("wound", "area_cm2"),
    "wound-location": ("wound", "location"),
    "wound-laterality": ("wound", "laterality"),
    "wound-indication": ("wound", "indication"),
    "wound-depth": ("wound", "depth"),
    "standard-of-care-weeks": ("wound", "standard_of_care_weeks"),
    "application-number": ("wound", "application_number"),
    "episode-start": ("wound", "episode_start_date"),
    "primary-procedure": (None, "primary_procedure_code"),
    "product-name": ("product", "name"),
    "lot-number": ("product", "lot_numbers"),
    "product-applied": ("product", "quantity_applied_cm2"),
    "product-wasted": ("product", "quantity_wasted_cm2"),
    "medical-necessity": (None, "medical_necessity"),
    "increased-services-justification": (None, "increased_services_justification"),
}
"""Our profile's category codes → ClaimEvent documentation fields (the mapping table of
docs/sending-claims/x12-and-fhir.md)."""


def _documentation_document(values: dict[str, Any]) -> dict[str, Any]:
    documentation: dict[str, Any] = {}
    for code, value in values.items():
        if code not in _DOCUMENTATION_FIELDS:
            continue
        group, field = _DOCUMENTATION_FIELDS[code]
        target = documentation if group is None else documentation.setdefault(group, {})
        target[field] = value
    return documentation


def read_fhir(data: bytes, *, directory: PayerDirectory, zone: ZoneInfo) -> Conversion:
    """Every Claim of one FHIR R4 Claim or Bundle, in order: converted or rejected with its
    reason; an unusable document is one rejection with no claim index."""
    return _Mapper(directory, zone).read(data)
