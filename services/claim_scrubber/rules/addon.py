"""Add-on pairing (ADDON): an add-on code is paid only with its primary procedure."""

from collections.abc import Iterator

from claim_scrubber.models import Severity
from claim_scrubber.rules._engine import Hit, rule
from claim_scrubber.rules._facts import ClaimFacts, code_range, is_missing

__all__ = [
    "addon_has_primary",
    "primary_code_billed",
    "product_has_application",
    "product_rendered_by_applier",
]


@rule(
    "ADDON-001",
    Severity.ERROR,
    title="Q4390 billed without a same-day application procedure",
    source="CMS NCCI add-on code policy; Noridian/NGS skin-substitute billing (the product "
    "needs an application code on the same claim)",
    fails="Q4390 on 2026-11-20 and no 15271-15278 line dated 2026-11-20",
    passes="Q4390 and 15275 both dated 2026-11-20",
    q4390_only=True,
)
def product_has_application(facts: ClaimFacts) -> Iterator[Hit]:
    """Each Q4390 line needs an application-code line (15271-15278) with the same service date.

    Q4390 is an add-on supply: it is paid only together with the skin-substitute application
    procedure it was used in. Without that procedure on the same date the payer denies it.
    """
    for line in facts.product_lines:
        if not facts.application_lines_on(line.service_date):
            yield Hit(
                line.number,
                line.field("procedure_code"),
                f"Q4390 line {line.number} ({line.service_date.isoformat()}) has no "
                "skin-substitute application line "
                f"({code_range(facts.ruleset.application_codes)}) on the same date; add the "
                "application procedure.",
            )


@rule(
    "ADDON-002",
    Severity.ERROR,
    title="Add-on application code without its primary code",
    source="CMS NCCI add-on code policy; CPT 15272/15274/15276/15278 are 'each additional' codes",
    fails="15276 on 2026-11-20 and no 15275 that day",
    passes="15275 and 15276 both on 2026-11-20",
)
def addon_has_primary(facts: ClaimFacts) -> Iterator[Hit]:
    """An add-on application line (15272, 15274, 15276, 15278) needs a line with its primary
    code (15271, 15273, 15275, 15277) on the same service date.

    Add-on codes describe each additional area beyond the first; without the primary code
    for the first area the add-on is denied.
    """
    primary_of = facts.ruleset.primary_of_addon
    for line in facts.lines:
        primary = primary_of.get(line.code)
        if primary is None:
            continue
        if not any(
            other.code == primary and other.service_date == line.service_date
            for other in facts.lines
        ):
            yield Hit(
                line.number,
                line.field("procedure_code"),
                f"Line {line.number}: add-on {line.code} on {line.service_date.isoformat()} has no "
                f"{primary} line "
                f"on the same date; bill the primary code {primary} with it.",
            )


@rule(
    "ADDON-003",
    Severity.ERROR,
    title="Q4390 rendered by someone other than the applying provider",
    source="CMS incident-to supply rules; MAC articles A54117/A56696 (the product is billed "
    "by the practitioner who applies it)",
    fails='Q4390 line with "rendering_npi": "1245319599" and 15275 rendered by 1003000126',
    passes="Q4390 and 15275 both rendered by 1003000126 (or both inheriting the claim's NPI)",
    q4390_only=True,
)
def product_rendered_by_applier(facts: ClaimFacts) -> Iterator[Hit]:
    """When a Q4390 line and all of its same-date application lines name a rendering NPI, the
    Q4390 line's NPI must equal at least one of theirs.

    The skin substitute is a supply incident to the application: it is paid to the
    practitioner who applied it. A different rendering provider splits the pair and the
    product line is denied.
    """
    for line in facts.product_lines:
        applications = facts.application_lines_on(line.service_date)
        if not applications or line.rendering_npi is None:
            continue
        npis = {application.rendering_npi for application in applications}
        if None in npis or line.rendering_npi in npis:
            continue
        yield Hit(
            line.number,
            line.field("rendering_npi"),
            f"Q4390 line {line.number} names a different rendering provider than the "
            f"application procedure on {line.service_date.isoformat()}; bill both under the "
            "provider who applied the product.",
        )


@rule(
    "ADDON-004",
    Severity.ERROR,
    title="Documented primary procedure is not billed",
    source="MAC articles A54117/A56696: the documented application procedure supports the claim",
    fails='"primary_procedure_code": "15271" while the claim bills 15275',
    passes='"primary_procedure_code": "15275" with a 15275 line',
    q4390_only=True,
)
def primary_code_billed(facts: ClaimFacts) -> Iterator[Hit]:
    """When documentation names a primary_procedure_code, a line must bill that code.

    The documentation and the claim must describe the same procedure; a mismatch is a
    coding or documentation error that an audit would find.
    """
    documentation = facts.documentation
    if documentation is None or is_missing(documentation.primary_procedure_code):
        return
    code = (documentation.primary_procedure_code or "").strip().upper()
    if not any(line.code == code for line in facts.lines):
        yield Hit(
            None,
            "claim.documentation.primary_procedure_code",
            f"Documentation names primary procedure {code} but no line bills it; bill the "
            "documented procedure or correct the documentation.",
        )
