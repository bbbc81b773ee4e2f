"""The ruleset: every value the rules read (code lists, limits, payer profiles, dates, rates).

Rule logic is code; its reference data is this versioned document, shipped as
`rulesets/default.toml` and replaceable by an operator (SCRUBBER_RULESET). It is validated
once at start, and the lookups rules need per claim are precomputed then.
"""

from datetime import date
from decimal import Decimal
from functools import cached_property
from typing import Annotated, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationInfo,
    model_validator,
)

from claim_scrubber.models.code_sets import (
    DiagnosisCodeTable,
    ModifierCodeSet,
    PlaceOfServiceCodeSet,
    SourceReader,
    read_code_set,
    read_icd10cm,
    shipped_source_reader,
)
from claim_scrubber.models.event import PayerKind

__all__ = [
    "READ_CODE_SET",
    "ApplicationFamily",
    "CodeSets",
    "Icd10CmRelease",
    "JwJzPolicy",
    "PayerDirectory",
    "PayerIdEntry",
    "PayerProfile",
    "PlaceOfService",
    "Rate",
    "RuleOverride",
    "Ruleset",
]

_RULESET_MODEL = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

_MEMO_DAYS = 4096
"""Dates of service whose ICD-10-CM release is remembered (about eleven years of days)."""

READ_CODE_SET = "read_code_set"
"""Validation-context key of the SourceReader that reads the ruleset's code-set files
(default: the shipped files, for the shipped ruleset)."""

Code = Annotated[str, Field(pattern=r"^[0-9A-Z]{5}$")]
DiagnosisPrefix = Annotated[str, Field(pattern=r"^[A-Z][0-9][0-9A-Z.]{1,6}$")]
PositiveInt = Annotated[int, Field(gt=0)]


RuleId = Annotated[str, Field(pattern=r"^[A-Z]+-[0-9]{3}$")]


class RuleOverride(BaseModel):
    """An operator's setting for one rule: its severity, or `off` (the rule does not run)."""

    model_config = _RULESET_MODEL

    severity: Literal["error", "warning", "info", "off"]
    """The rule's severity for these claims, or off: the rule does not run."""


class Rate(BaseModel):
    """An expected payment per cm² of product, from a date of service on."""

    model_config = _RULESET_MODEL

    effective_from: date
    """The first date of service the rate applies to."""
    per_cm2: Annotated[Decimal, Field(gt=0, decimal_places=2)]
    """The expected payment per cm² of product (PRICE-001)."""


class PayerProfile(BaseModel):
    """What one payer family requires. A setting left out is a check the payer does not make."""

    model_config = _RULESET_MODEL

    display_name: Annotated[str, Field(min_length=1, max_length=60)] | None = Field(
        default=None, description="how findings name the payer (default: 'this payer')"
    )
    covered_products: frozenset[Code] | None = Field(
        default=None, description="skin-substitute Q-codes the payer covers; absent: not checked"
    )
    prior_authorization_codes: frozenset[Code] = frozenset()
    """Codes the payer pays only with a prior authorization number (PAY-002)."""
    max_applications: PositiveInt | None = None
    """Applications per wound per episode the payer pays at most (PAY-003, HIST-001)."""
    episode_weeks: PositiveInt | None = None
    """The length of an episode of care in weeks (PAY-004, HIST-001)."""
    min_standard_care_weeks: Annotated[float, Field(gt=0)] | None = None
    """Weeks of standard wound care the payer requires before the first application (PAY-005)."""
    min_wound_area_cm2: Annotated[float, Field(gt=0)] | None = None
    """The smallest wound area the payer covers, in cm² (PAY-006)."""
    dual_diagnosis_required: bool = False
    """A Q4390 line must point to an underlying condition and an ulcer site (DX-002)."""
    jw_jz_policy: Literal["medicare"] | None = None
    """medicare: the JW/JZ windows of jw_jz apply (MOD-007, MOD-008)."""
    claim_charge_limit: Annotated[Decimal, Field(gt=0, decimal_places=2)] | None = None
    """The highest total claim charge the payer accepts without review (CLM-008)."""
    rates: tuple[Rate, ...] = ()
    """Expected payments per cm² by date of service, oldest first (PRICE-001)."""
    rules: dict[RuleId, RuleOverride] = Field(
        default_factory=dict,
        description="overrides for claims of this payer kind, over the ruleset's own `rules`",
    )

    @model_validator(mode="after")
    def _rates_in_date_order(self) -> Self:
        starts = [rate.effective_from for rate in self.rates]
        if starts != sorted(set(starts)):
            raise ValueError("rates must be listed by effective_from, oldest first, one per date")
        return self

    def rate_on(self, service_date: date) -> Decimal | None:
        """The expected rate per cm² for a date of service, or None when none applies."""
        applicable = None
        for rate in self.rates:
            if rate.effective_from <= service_date:
                applicable = rate.per_cm2
        return applicable


class ApplicationFamily(BaseModel):
    """Skin-substitute application codes for one group of anatomic sites (CPT 15271-15278)."""

    model_config = _RULESET_MODEL

    locations: frozenset[Annotated[str, Field(pattern=r"^[a-z_]+$")]]
    """The wound locations (ClaimEvent wound.location) this family of application codes covers."""
    small_primary: Code = Field(description="first 25 cm² of a wound under 100 cm²")
    small_addon: Code = Field(description="each further 25 cm² under 100 cm²")
    large_primary: Code = Field(description="first 100 cm² of a wound of 100 cm² or more")
    large_addon: Code = Field(description="each further 100 cm²")


class PlaceOfService(BaseModel):
    model_config = _RULESET_MODEL

    bundled: frozenset[Annotated[str, Field(pattern=r"^[0-9]{2}$")]]
    """Places of service where the product is paid in the facility's bundle, not separately
    (POS-001)."""
    expected: frozenset[Annotated[str, Field(pattern=r"^[0-9]{2}$")]]
    """Places of service where a Q4390 application is usual; others are flagged to check
    (POS-002)."""


class JwJzPolicy(BaseModel):
    """The Medicare JW/JZ (discarded / no discarded drug) modifier windows."""

    model_config = _RULESET_MODEL

    required_from: date
    """The first date of service on which Medicare requires JW or JZ on the product's line."""
    required_through: date
    """The last date of service on which JW or JZ is required."""
    prohibited_from: date
    """From this date of service on, JW and JZ are not used on skin substitutes."""
    jz_rejected_macs: frozenset[str] = Field(description="MACs that reject JZ on skin substitutes")
    modifier_optional_macs: frozenset[str] = Field(
        description="MACs that do not require JW or JZ on skin substitutes"
    )

    @model_validator(mode="after")
    def _windows_in_order(self) -> Self:
        if not self.required_from <= self.required_through < self.prohibited_from:
            raise ValueError("expected required_from <= required_through < prohibited_from")
        return self


PayerId = Annotated[str, Field(pattern=r"^[0-9A-Z]{2,80}$")]


class PayerIdEntry(BaseModel):
    """What one payer id (837P 2010BB NM109, FHIR insurer identifier) stands for."""

    model_config = _RULESET_MODEL

    kind: PayerKind
    """The payer kind claims with this payer id are judged as."""
    mac: Annotated[str, Field(pattern=r"^[a-z0-9_]{2,20}$")] | None = Field(
        default=None, description="the Medicare administrative contractor (medicare only)"
    )

    @model_validator(mode="after")
    def _mac_only_for_medicare(self) -> Self:
        if self.mac is not None and self.kind is not PayerKind.MEDICARE:
            raise ValueError("mac is given for medicare payer ids only")
        return self


def _standard_filing_indicators() -> dict[str, PayerKind]:
    return {
        "MA": PayerKind.MEDICARE,
        "MB": PayerKind.MEDICARE,
        "16": PayerKind.MEDICARE_ADVANTAGE,
        "BL": PayerKind.BCBS,
    }


class PayerDirectory(BaseModel):
    """How intake names the payer family and MAC of an 837P or FHIR claim, which carry
    neither: first the claim filing indicator (837P SBR09), then the payer id; else other."""

    model_config = _RULESET_MODEL

    filing_indicators: dict[Annotated[str, Field(pattern=r"^[0-9A-Z]{2}$")], PayerKind] = Field(
        default_factory=_standard_filing_indicators,
        description="SBR09 codes that name the payer family by themselves",
    )
    payer_ids: dict[PayerId, PayerIdEntry] = Field(
        default_factory=dict, description="payer ids, upper-case, to their family and MAC"
    )

    def resolve(
        self, filing_indicator: str | None, payer_id: str | None
    ) -> tuple[PayerKind, str | None]:
        """The payer kind and MAC of a claim; unknown ids are `other`."""
        entry = self.payer_ids.get((payer_id or "").strip().upper())
        kind = self.filing_indicators.get((filing_indicator or "").strip().upper())
        if kind is None:
            kind = entry.kind if entry is not None else PayerKind.OTHER
        mac = entry.mac if entry is not None and entry.kind is kind else None
        return kind, mac


def _reader(info: ValidationInfo) -> SourceReader:
    context = info.context if isinstance(info.context, dict) else {}
    reader: SourceReader = context.get(READ_CODE_SET, shipped_source_reader)
    return reader


class Icd10CmRelease(BaseModel):
    """One ICD-10-CM release and the dates of service it judges (CLM-010 / CLM-011)."""

    model_config = _RULESET_MODEL

    release: Annotated[str, Field(min_length=1, max_length=120)]
    """The release's name, e.g. ICD-10-CM FY2026; findings and `claim-scrubber rules` name it."""
    effective_from: date
    """The first date of service the release judges."""
    effective_through: date
    """The last date of service the release judges."""
    codes: Annotated[str, Field(min_length=1, description="the release's code file")]
    _table: DiagnosisCodeTable = PrivateAttr()

    @model_validator(mode="after")
    def _load(self, info: ValidationInfo) -> Self:
        if self.effective_through < self.effective_from:
            raise ValueError("effective_through is before effective_from")
        self._table = read_icd10cm(self.codes, _reader(info))
        return self

    @cached_property
    def table(self) -> DiagnosisCodeTable:
        return self._table

    def covers(self, day: date) -> bool:
        return self.effective_from <= day <= self.effective_through

    def days_away(self, day: date) -> int:
        """How far `day` lies outside the window (0 inside it)."""
        if day < self.effective_from:
            return (self.effective_from - day).days
        return max(0, (day - self.effective_through).days)


class CodeSets(BaseModel):
    """The published code sets of the general rules, each from its data file (rules v1.2)."""

    model_config = _RULESET_MODEL

    modifiers: Annotated[str, Field(min_length=1, description="MOD-002: the modifier table")]
    places_of_service: Annotated[
        str, Field(min_length=1, description="CLM-009: the place-of-service table")
    ]
    icd10cm: Annotated[tuple[Icd10CmRelease, ...], Field(min_length=1)] = Field(
        description="CLM-010/011: ICD-10-CM releases, oldest first, windows not overlapping"
    )
    not_otherwise_classified: frozenset[Code] = Field(
        description="MOD-011: codes that describe no single service (unlisted CPT, HCPCS NOC)"
    )
    _modifiers: ModifierCodeSet = PrivateAttr()
    _places: PlaceOfServiceCodeSet = PrivateAttr()

    @model_validator(mode="after")
    def _load(self, info: ValidationInfo) -> Self:
        for earlier, later in zip(self.icd10cm, self.icd10cm[1:], strict=False):
            if later.effective_from <= earlier.effective_through:
                raise ValueError(
                    "icd10cm: releases must be listed oldest first with windows that do not overlap"
                )
        reader = _reader(info)
        self._modifiers = read_code_set(self.modifiers, ModifierCodeSet, reader)
        self._places = read_code_set(self.places_of_service, PlaceOfServiceCodeSet, reader)
        return self

    @cached_property
    def modifier_table(self) -> ModifierCodeSet:
        return self._modifiers

    @cached_property
    def place_of_service_table(self) -> PlaceOfServiceCodeSet:
        return self._places

    @cached_property
    def _release_by_day(self) -> dict[date, tuple[Icd10CmRelease, bool]]:
        """Memo of icd10cm_release_for: claims name few dates of service, over and over."""
        return {}

    def icd10cm_release_for(self, day: date) -> tuple[Icd10CmRelease, bool]:
        """The release in force on `day` and True; else the nearest release and False."""
        memo = self._release_by_day
        found = memo.get(day)
        if found is None:
            covering = [release for release in self.icd10cm if release.covers(day)]
            if covering:
                found = (covering[0], True)
            else:
                found = (min(self.icd10cm, key=lambda release: release.days_away(day)), False)
            if len(memo) < _MEMO_DAYS:
                memo[day] = found
        return found

    @property
    def releases(self) -> dict[str, list[str]]:
        """The release (and window) each table follows, by code set, for operators."""
        return {
            "modifiers": [self._modifiers.release],
            "places_of_service": [self._places.release],
            "icd10cm": [
                f"{release.release}, in force {release.effective_from.isoformat()} to "
                f"{release.effective_through.isoformat()}"
                for release in self.icd10cm
            ],
        }


class Ruleset(BaseModel):
    """The complete, validated reference data of one ruleset version."""

    model_config = _RULESET_MODEL

    version: Annotated[str, Field(min_length=1, max_length=64)]
    """The ruleset's version, stamped on every result (ruleset_version)."""
    small_wound_step_cm2: Annotated[float, Field(gt=0)] = 25.0
    """Units of the small application codes: the first and each further step of this many cm²
    (UNITS-006)."""
    large_wound_threshold_cm2: Annotated[float, Field(gt=0)] = 100.0
    """Wounds of this area or more bill the large application codes (UNITS-006)."""
    large_wound_step_cm2: Annotated[float, Field(gt=0)] = 100.0
    """Units of the large application codes: this many cm² each (UNITS-006)."""
    application_families: dict[Annotated[str, Field(pattern=r"^[A-Z]$")], ApplicationFamily]
    """The skin-substitute application codes (CPT 15271-15278) by family of anatomic sites."""
    unit_limits: dict[Code, PositiveInt]
    """The most units of a code per date of service (UNITS-004): operators load the CMS
    medically unlikely edits."""
    code_sets: CodeSets
    """The published code sets the general rules read: modifiers, places of service, ICD-10-CM
    releases."""
    wound_diagnoses: tuple[DiagnosisPrefix, ...]
    """ICD-10-CM prefixes of a wound a Q4390 line may point to (DX-001)."""
    underlying_condition_diagnoses: tuple[DiagnosisPrefix, ...]
    """ICD-10-CM prefixes of an underlying condition (DX-002)."""
    ulcer_site_diagnoses: tuple[DiagnosisPrefix, ...]
    """ICD-10-CM prefixes of an ulcer site (DX-002)."""
    place_of_service: PlaceOfService
    """Places of service the Q4390 rules judge (POS-001, POS-002)."""
    jw_jz: JwJzPolicy
    """The Medicare JW/JZ modifier windows (MOD-007, MOD-008)."""
    payers: dict[PayerKind, PayerProfile]
    """One profile per payer kind: what that payer requires."""
    rules: dict[RuleId, RuleOverride] = Field(
        default_factory=dict,
        description='severity overrides by rule id: [rules."DOC-008"] severity = "warning"',
    )
    payer_directory: PayerDirectory = Field(
        default_factory=PayerDirectory,
        description="intake: payer family and MAC of 837P and FHIR claims",
    )

    def override_for(self, rule_id: str, payer_kind: PayerKind) -> RuleOverride | None:
        """The payer kind's override of a rule, else the ruleset's, else None."""
        return self.payers[payer_kind].rules.get(rule_id) or self.rules.get(rule_id)

    @property
    def overridden_rule_ids(self) -> list[tuple[str, str]]:
        """(where, rule id) of every override, for checking them against the catalog."""
        found = [("rules", rule_id) for rule_id in self.rules]
        found.extend(
            (f"payers.{kind.value}.rules", rule_id)
            for kind, profile in self.payers.items()
            for rule_id in profile.rules
        )
        return found

    @model_validator(mode="after")
    def _complete_and_consistent(self) -> Self:
        missing = sorted(kind.value for kind in PayerKind if kind not in self.payers)
        if missing:
            raise ValueError(f"payers: every payer kind needs a profile; missing {missing}")
        seen: set[str] = set()
        for name, family in sorted(self.application_families.items()):
            overlap = seen & family.locations
            if overlap:
                raise ValueError(
                    f"application_families.{name}: locations {sorted(overlap)} are in two families"
                )
            seen |= family.locations
        return self

    @cached_property
    def application_codes(self) -> frozenset[str]:
        return frozenset(
            code
            for family in self.application_families.values()
            for code in (
                family.small_primary,
                family.small_addon,
                family.large_primary,
                family.large_addon,
            )
        )

    @cached_property
    def primary_of_addon(self) -> dict[str, str]:
        pairs: dict[str, str] = {}
        for family in self.application_families.values():
            pairs[family.small_addon] = family.small_primary
            pairs[family.large_addon] = family.large_primary
        return pairs

    @cached_property
    def _family_by_location(self) -> dict[str, ApplicationFamily]:
        return {
            location: family
            for family in self.application_families.values()
            for location in family.locations
        }

    def family_for(self, location: str) -> ApplicationFamily | None:
        return self._family_by_location.get(location)
