"""Claim integrity (CLM): checks every claim must pass, whatever it bills."""

from collections.abc import Iterator
from datetime import date
from decimal import Decimal

from claim_scrubber.models import Severity
from claim_scrubber.rules._engine import Hit, rule
from claim_scrubber.rules._facts import (
    ClaimFacts,
    dated_code_problem,
    icd10_shaped,
    is_missing,
    money_text,
    npi_valid,
)

__all__ = [
    "billing_npi_valid",
    "charge_within_limit",
    "diagnoses_billable",
    "diagnoses_billable_nearest_release",
    "diagnoses_icd10_shaped",
    "line_numbers_unique",
    "place_of_service_known",
    "pointers_valid",
    "rendering_npi_valid",
    "service_date_not_future",
    "units_positive",
]

_MAX_POINTERS = 4
_NPI_HELP = "10 digits with a correct check digit; correct it from the NPPES record"


@rule(
    "CLM-001",
    Severity.ERROR,
    title="Billing provider NPI is not valid",
    source="CMS NPI standard (45 CFR 162.406): 10 digits, Luhn check digit with prefix 80840",
    fails='"billing_provider": {"npi": "1245319598"} (check digit wrong), or "npi": "" (none)',
    passes='"billing_provider": {"npi": "1245319599"}',
)
def billing_npi_valid(facts: ClaimFacts) -> Iterator[Hit]:
    """The billing provider's NPI must be present and be 10 digits that pass the NPI
    check-digit test; a missing or empty NPI is reported as missing, not as a bad check digit.

    Payers reject a claim whose billing NPI is malformed before any review of the services,
    so the claim would come back unpaid; a typo is cheapest to fix before submission. An NPI
    that is not there at all (an intake source whose provider could not be resolved) needs
    adding, not correcting.
    """
    npi = facts.event.claim.billing_provider.npi
    if is_missing(npi):
        yield Hit(
            None,
            "claim.billing_provider.npi",
            "The claim has no billing provider NPI; add the billing provider's 10-digit NPI "
            "(837P 2010AA NM109; FHIR Claim.provider's identifier).",
        )
    elif not npi_valid(npi):
        yield Hit(
            None,
            "claim.billing_provider.npi",
            f"Billing provider NPI is not a valid NPI ({_NPI_HELP}).",
        )


@rule(
    "CLM-002",
    Severity.ERROR,
    title="Rendering provider NPI is not valid",
    source="CMS NPI standard; X12 837P loops 2310B / 2420A (rendering provider)",
    fails='"rendering_provider": {"npi": "1003000127"}, or a line with "rendering_npi": "12345"',
    passes='"rendering_provider": {"npi": "1003000126"}',
)
def rendering_npi_valid(facts: ClaimFacts) -> Iterator[Hit]:
    """Every rendering NPI sent, on the claim or on a line, must be a valid NPI.

    The rendering NPI identifies who performed the service; an invalid one makes the payer
    deny the line. An inherited claim-level value is reported once, not on every line.
    """
    rendering = facts.event.claim.rendering_provider
    if rendering is not None and rendering.npi is not None and not npi_valid(rendering.npi):
        yield Hit(
            None,
            "claim.rendering_provider.npi",
            _rendering_problem("Rendering provider NPI", rendering.npi),
        )
    for line in facts.lines:
        if line.own_rendering_npi is not None and not npi_valid(line.own_rendering_npi):
            yield Hit(
                line.number,
                line.field("rendering_npi"),
                _rendering_problem(f"Line {line.number} rendering NPI", line.own_rendering_npi),
            )


def _rendering_problem(label: str, npi: str) -> str:
    if is_missing(npi):
        return f"{label} is empty; add the 10-digit NPI, or leave the rendering provider out."
    return f"{label} is not a valid NPI ({_NPI_HELP})."


@rule(
    "CLM-003",
    Severity.ERROR,
    title="Service date is in the future",
    source="CMS Claims Processing Manual ch. 1 §70: services are billed after they are rendered",
    fails='occurred_at 2026-11-20, a line with "service_date": "2026-11-21"',
    passes='occurred_at 2026-11-20, "service_date": "2026-11-20"',
)
def service_date_not_future(facts: ClaimFacts) -> Iterator[Hit]:
    """No line may have a service date after the day the claim event occurred (UTC).

    A service cannot be billed before it is performed; a future date is a keying error
    (often the year) and the payer rejects the line.
    """
    for line in facts.lines:
        if line.service_date > facts.today:
            yield Hit(
                line.number,
                line.field("service_date"),
                f"Line {line.number}: service date {line.service_date.isoformat()} is after the "
                f"claim date {facts.today.isoformat()}; correct the date of service.",
            )


@rule(
    "CLM-004",
    Severity.ERROR,
    title="Line number used twice",
    source="X12 837P loop 2400 LX: line numbers identify service lines uniquely",
    fails="two lines with line_number 1",
    passes="lines numbered 1 and 2",
)
def line_numbers_unique(facts: ClaimFacts) -> Iterator[Hit]:
    """Each line_number may appear once; every repeat after the first is reported.

    Remittance advice, denials and adjustments refer to lines by number; a repeated number
    makes payments and denials impossible to match to the right service.
    """
    seen: set[int] = set()
    for line in facts.lines:
        if line.number in seen:
            yield Hit(
                line.number,
                line.field("line_number"),
                f"Line number {line.number} is already used by an earlier line; renumber.",
            )
        seen.add(line.number)


@rule(
    "CLM-005",
    Severity.ERROR,
    title="Diagnosis code is not ICD-10-CM shaped",
    source="HIPAA code sets (45 CFR 162.1002): ICD-10-CM for diagnoses",
    fails='"diagnoses": ["E11621"] or ["250.00"] (ICD-9)',
    passes='"diagnoses": ["E11.621", "L97.412"] or ["U07.1"]',
)
def diagnoses_icd10_shaped(facts: ClaimFacts) -> Iterator[Hit]:
    """Every diagnosis must look like an ICD-10-CM code: letter (U included: U07.1, U09.9),
    digit, digit or letter, then an optional dot and 1-4 characters.

    A malformed code (missing dot, ICD-9, a typo) cannot be matched to coverage policies and
    the claim is rejected; the coder needs to see which position is wrong.
    """
    for index, code in enumerate(facts.diagnoses):
        if not icd10_shaped(code):
            yield Hit(
                None,
                f"claim.diagnoses[{index}]",
                f"Diagnosis {index + 1} is not an ICD-10-CM code (like E11.621); correct it.",
            )


@rule(
    "CLM-006",
    Severity.ERROR,
    title="Diagnosis pointers missing, too many or out of range",
    source="X12 837P SV107: 1 to 4 pointers into the claim's diagnosis list",
    fails='"diagnosis_pointers": [] or [1, 2, 3, 4, 5] or [3] with two diagnoses',
    passes='"diagnosis_pointers": [1, 2] with two diagnoses; any institutional claim',
    professional_only=True,
)
def pointers_valid(facts: ClaimFacts) -> Iterator[Hit]:
    """Each line must point to 1-4 diagnoses, each pointer between 1 and the number of
    diagnoses on the claim.

    The pointers say why each service was medically necessary; a line without a valid
    pointer has no diagnosis and is denied. Professional claims only: an institutional claim
    (837I, UB-04) has no pointers, its diagnoses apply to every line.
    """
    count = len(facts.diagnoses)
    for line in facts.lines:
        if not line.pointers:
            problem = "has no diagnosis pointer; point it to 1-4 diagnoses"
        elif len(line.pointers) > _MAX_POINTERS:
            problem = f"has {len(line.pointers)} diagnosis pointers; at most 4 are allowed"
        elif any(not 1 <= pointer <= count for pointer in line.pointers):
            problem = f"points outside the {count} diagnoses on the claim; fix the pointers"
        else:
            continue
        yield Hit(line.number, line.field("diagnosis_pointers"), f"Line {line.number} {problem}.")


@rule(
    "CLM-007",
    Severity.ERROR,
    title="Units are zero or negative",
    source="X12 837P SV104: service unit count must be positive",
    fails='"units": 0',
    passes='"units": 1',
)
def units_positive(facts: ClaimFacts) -> Iterator[Hit]:
    """Every line must bill more than zero units.

    A line with no units bills nothing and is rejected; it usually means a quantity was not
    carried over from the chart.
    """
    for line in facts.lines:
        if line.units <= 0:
            yield Hit(
                line.number,
                line.field("units"),
                f"Line {line.number} bills {line.units} units; enter the quantity provided.",
            )


@rule(
    "CLM-008",
    Severity.ERROR,
    title="Claim total is over the payer's limit",
    source="Payer profile claim charge limit (Medicare: 99,999.99 per claim in the 837P)",
    fails="Medicare claim whose line charges add up to 100000.00",
    passes="Medicare claim whose line charges add up to 2954.80",
)
def charge_within_limit(facts: ClaimFacts) -> Iterator[Hit]:
    """When the payer profile has a claim charge limit, the sum of line charges must not
    exceed it.

    A total above the limit cannot be submitted in one claim; split the services into
    several claims. Lines without a charge (a FHIR item may leave it out) add nothing.
    """
    limit = facts.profile.claim_charge_limit
    if limit is None:
        return
    total = sum((line.charge for line in facts.lines if line.charge is not None), Decimal(0))
    if total > limit:
        yield Hit(
            None,
            "claim.lines",
            f"Line charges total {money_text(total)}, above this payer's limit of "
            f"{money_text(limit)} per claim; "
            "split the claim.",
        )


@rule(
    "CLM-009",
    Severity.ERROR,
    title="Place of service is not a CMS place-of-service code",
    source="CMS Place of Service Code Set (the ruleset's code_sets.places_of_service table)",
    fails='"place_of_service": "1", "office", "30" (unassigned), or "27" before 2023-10-01',
    passes='"place_of_service": "11"; any institutional claim',
    professional_only=True,
)
def place_of_service_known(facts: ClaimFacts) -> Iterator[Hit]:
    """The claim's place_of_service, and a line's own where given (contract v1.1), must be a
    CMS place-of-service code in effect on the date of service. The claim's value is judged
    on the dates of the lines that use it (in effect on one of them is enough). Professional
    claims only: an institutional claim carries a type of bill instead.

    The place of service decides the payment rate and whether a supply is bundled; a code
    that is malformed, unassigned, or not yet (or no longer) in effect is rejected at the
    front end.
    """
    table = facts.ruleset.code_sets.place_of_service_table
    windows = table.windows
    own_dates = [line.service_date for line in facts.lines if line.own_place_of_service is None]
    places: list[tuple[int | None, str, str, list[date]]] = [
        (
            None,
            "claim.place_of_service",
            facts.place_of_service,
            own_dates or [facts.earliest_service_date],
        )
    ]
    places.extend(
        (
            line.number,
            line.field("place_of_service"),
            line.own_place_of_service,
            [line.service_date],
        )
        for line in facts.lines
        if line.own_place_of_service is not None
    )
    for line_number, field, code, days in places:
        window = windows.get(code)
        if window is not None and any(window[0] <= day <= window[1] for day in days):
            continue
        if not code:
            message = "The claim has no place of service; add the two-digit CMS code (like 11)."
        elif not (len(code) == 2 and code.isascii() and code.isdigit()):
            message = (
                "Place of service is not a two-digit CMS code (like 11 for office); correct it."
            )
        elif (entry := table.codes.get(code)) is None:
            message = (
                f"Place of service {code} is not an assigned CMS place-of-service code "
                f"({table.release}); correct it."
            )
        else:
            problem = dated_code_problem(entry, days)
            message = (
                f"Place of service {code} ({entry.name}) {problem}; use the code in effect then."
            )
        yield Hit(line_number, field, message)


@rule(
    "CLM-010",
    Severity.ERROR,
    title="Diagnosis is not a billable ICD-10-CM code",
    source="HIPAA code sets (45 CFR 162.1002); CMS ICD-10-CM release in force on the date of "
    "service (the ruleset's code_sets.icd10cm)",
    fails='service in 2026-05 with "diagnoses": ["L97.4"] (a category) or ["L97.499"] (no code)',
    passes='service in 2026-05 with "diagnoses": ["L97.412"]',
)
def diagnoses_billable(facts: ClaimFacts) -> Iterator[Hit]:
    """Every ICD-10-CM shaped diagnosis must be a billable (complete) code of the release in
    force on the claim's earliest date of service: not a category that needs more characters,
    not a code the release does not have. Shape errors are CLM-005's; dates of service outside
    every release the ruleset ships are CLM-011's.

    Payers deny a claim whose diagnosis is a category header or does not exist; a code shaped
    right can still be one (L97.4 needs site and severity: L97.412).
    """
    if not facts.diagnosis_release_in_force:
        return
    release = facts.diagnosis_release
    for index, code in enumerate(facts.diagnoses):
        if not icd10_shaped(code):
            continue
        status = release.table.status(code)
        if status == "category":
            message = (
                f"Diagnosis {index + 1} ({code}) is a category in {release.release}, not a "
                f"billable code; report its full {release.table.characters_needed(code)}-"
                "character code."
            )
        elif status == "unknown":
            message = (
                f"Diagnosis {index + 1} ({code}) is not a code in {release.release}; correct it."
            )
        else:
            continue
        yield Hit(None, f"claim.diagnoses[{index}]", message)


@rule(
    "CLM-011",
    Severity.WARNING,
    title="Diagnosis not billable in the nearest ICD-10-CM release shipped",
    source="CMS ICD-10-CM releases (the ruleset's code_sets.icd10cm): a date of service outside "
    "every shipped release is judged by the nearest one, as a warning",
    fails='service in 2026-11 (after the FY2026 window) with "diagnoses": ["L97.4"]',
    passes='service in 2026-11 with "diagnoses": ["L97.412"]',
)
def diagnoses_billable_nearest_release(facts: ClaimFacts) -> Iterator[Hit]:
    """When the claim's earliest date of service is outside every ICD-10-CM release the
    ruleset ships, each shaped diagnosis that the nearest release does not have as a billable
    code is a warning naming that release.

    The code set changes every October (and some Aprils): a code missing from a release of
    another year may be new, retired, or wrong. The data cannot tell which, so the coder is
    told what it was checked against instead of being told it is wrong.
    """
    if facts.diagnosis_release_in_force:
        return
    release = facts.diagnosis_release
    for index, code in enumerate(facts.diagnoses):
        if icd10_shaped(code) and release.table.status(code) != "billable":
            yield Hit(
                None,
                f"claim.diagnoses[{index}]",
                f"Diagnosis {index + 1} ({code}) is not a billable code in {release.release}, "
                f"the release nearest to the date of service "
                f"{facts.earliest_service_date.isoformat()} (it covers "
                f"{release.effective_from.isoformat()} to "
                f"{release.effective_through.isoformat()}); check the code in the release in "
                "force on that date.",
            )
