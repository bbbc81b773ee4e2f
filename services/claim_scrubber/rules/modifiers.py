"""Modifiers (MOD): modifier count, dictionary, and the modifiers Q4390 may or may not carry."""

from collections.abc import Iterator
from datetime import date

from claim_scrubber.models import Severity
from claim_scrubber.rules._engine import Hit, rule
from claim_scrubber.rules._facts import (
    NO_MODIFIER,
    ClaimFacts,
    LineFacts,
    dated_code_problem,
    is_missing,
)

__all__ = [
    "discarded_modifier_window",
    "duplicate_line",
    "increased_services_justified",
    "jw_and_jz_exclusive",
    "known_modifiers",
    "modifier_count",
    "no_e_m_modifier",
    "no_jw_jz_after_window",
    "no_modifier_alone",
    "no_noncoverage_modifier",
    "no_procedure_modifier_on_product",
]

_MAX_MODIFIERS = 4
_NONCOVERAGE = ("GA", "GY", "GZ")
_JW_JZ_SOURCE = (
    "CMS JW/JZ modifier policy (required 2023-07-01 to 2025-12-31; not allowed on non-BLA "
    "skin substitutes from 2026-01-01, CY2026 PFS)"
)


@rule(
    "MOD-001",
    Severity.ERROR,
    title="More than 4 modifiers on a line",
    source="X12 837P SV101-3..6: at most four procedure modifiers",
    fails='"modifiers": ["RT", "59", "XS", "KX", "GX"]',
    passes='"modifiers": ["RT", "59", "XS", "KX"]',
)
def modifier_count(facts: ClaimFacts) -> Iterator[Hit]:
    """A line may carry at most 4 modifiers.

    The claim format has four modifier positions; a fifth is dropped by the clearinghouse
    and the line is priced without it.
    """
    for line in facts.lines:
        if len(line.modifiers) > _MAX_MODIFIERS:
            yield Hit(
                line.number,
                line.field("modifiers"),
                f"Line {line.number} has {len(line.modifiers)} modifiers; keep the 4 that "
                "affect payment.",
            )


@rule(
    "MOD-002",
    Severity.ERROR,
    title="Modifier unknown or not in effect on the date of service",
    source="CPT Level I modifiers (AMA CPT Appendix A) and HCPCS Level II modifiers (CMS "
    "HCPCS annual file), with their dates: the ruleset's code_sets.modifiers table",
    fails='"modifiers": ["ZZ"]; or ["JZ"] on a line dated 2022-12-31 (JZ began 2023-01-01)',
    passes='"modifiers": ["RT"], ["QK", "QS", "P1"] (anesthesia), ["RR", "KH"] (DME), ["RH"] '
    "(ambulance origin/destination)",
)
def known_modifiers(facts: ClaimFacts) -> Iterator[Hit]:
    """Every modifier must be a CPT or HCPCS modifier in effect on the line's date of service,
    an ambulance origin/destination pair, or the seed's 00; each other one is reported.

    A modifier the payer's code set does not have on that date makes it reject the line; it is
    usually a typo (RI for RT) or a modifier used before it existed or after it was deleted.
    The table is the complete published code set, so a valid modifier is never reported.
    """
    table = facts.ruleset.code_sets.modifier_table
    windows = table.windows
    for line in facts.lines:
        day = line.service_date
        for position, modifier in enumerate(line.modifiers):
            window = windows.get(modifier)
            if (
                window is not None
                and (window[0] is None or window[0] <= day)
                and (window[1] is None or day <= window[1])
            ):
                continue
            if modifier == NO_MODIFIER or table.is_ambulance_pair(modifier):
                continue
            entry = table.entry(modifier)
            if entry is None:
                message = (
                    f"Modifier {modifier!r} on line {line.number} is not a CPT or HCPCS "
                    f"modifier ({table.release}); correct or remove it."
                )
            elif (problem := dated_code_problem(entry, [line.service_date])) is not None:
                message = (
                    f"Modifier {modifier} ({entry.name}) on line {line.number} {problem}; "
                    "correct or remove it."
                )
            else:
                continue
            yield Hit(line.number, f"{line.field('modifiers')}[{position}]", message)


@rule(
    "MOD-003",
    Severity.ERROR,
    title="Modifier 00 combined with others",
    source="Billing platform convention: 00 alone means 'no modifier'",
    fails='"modifiers": ["00", "RT"] or ["00", "00"]',
    passes='"modifiers": ["00"] or ["RT"]',
)
def no_modifier_alone(facts: ClaimFacts) -> Iterator[Hit]:
    """00 means "no modifier" and must stand alone: exactly ["00"].

    00 next to a real modifier contradicts itself; the payer's edits read the list as
    invalid.
    """
    for line in facts.lines:
        if NO_MODIFIER in line.modifiers and line.modifiers != (NO_MODIFIER,):
            yield Hit(
                line.number,
                line.field("modifiers"),
                f"Line {line.number} combines 00 (no modifier) with other modifiers; remove 00.",
            )


@rule(
    "MOD-004",
    Severity.ERROR,
    title="Modifier 22 on the Q4390 supply line",
    source="CPT modifier 22 (increased procedural services) applies to procedures only",
    fails='Q4390 line with "modifiers": ["22"]',
    passes='Q4390 line with "modifiers": []',
    q4390_only=True,
)
def no_procedure_modifier_on_product(facts: ClaimFacts) -> Iterator[Hit]:
    """A Q4390 line must not carry modifier 22.

    22 reports unusually difficult procedural work; Q4390 is a supply, so the modifier is
    invalid there and the line is denied.
    """
    for line in facts.product_lines:
        if "22" in line.modifier_set:
            yield Hit(
                line.number,
                line.field("modifiers"),
                f"Modifier 22 on Q4390 line {line.number}: it applies to procedures, not to the "
                "supply line; remove it.",
            )


@rule(
    "MOD-005",
    Severity.ERROR,
    title="Modifier 22 without a justification",
    source="CMS Claims Processing Manual ch. 12 §20.4.6: modifier 22 needs documentation",
    fails="15275 with modifier 22 and no increased_services_justification",
    passes="15275 with modifier 22 and a documented increased_services_justification",
)
def increased_services_justified(facts: ClaimFacts) -> Iterator[Hit]:
    """An application-code line with modifier 22 needs
    documentation.increased_services_justification.

    Payers pay the 22 increase only with a written reason for the extra work; without it the
    modifier is ignored or the claim is pended.
    """
    documentation = facts.documentation
    justification = documentation.increased_services_justification if documentation else None
    if not is_missing(justification):
        return
    for line in facts.application_lines:
        if "22" in line.modifier_set:
            yield Hit(
                line.number,
                line.field("modifiers"),
                f"Line {line.number} carries 22 but no increased-services justification is "
                "documented; add it or remove 22.",
            )


@rule(
    "MOD-006",
    Severity.ERROR,
    title="Modifier 25 on a product or application line",
    source="CPT modifier 25 belongs on the separately identifiable E/M service",
    fails='15275 with "modifiers": ["25"]',
    passes="modifier 25 on the E/M line (992xx) only",
)
def no_e_m_modifier(facts: ClaimFacts) -> Iterator[Hit]:
    """Neither a Q4390 line nor an application-code line may carry modifier 25.

    25 marks an evaluation and management visit as separate from a procedure; on the
    procedure or the supply it is misplaced and the E/M visit is then bundled.
    """
    for line in facts.lines:
        if (line.is_product or line.is_application) and "25" in line.modifier_set:
            yield Hit(
                line.number,
                line.field("modifiers"),
                f"Modifier 25 on line {line.number} belongs on the E/M line; remove it here.",
            )


def _carries_jw_or_jz(line: LineFacts) -> bool:
    return "JW" in line.modifier_set or "JZ" in line.modifier_set


@rule(
    "MOD-007",
    Severity.ERROR,
    title="JW or JZ on Q4390 from 2026",
    source=_JW_JZ_SOURCE,
    fails='Medicare Q4390 line dated 2026-01-01 with "modifiers": ["JZ"]',
    passes="Medicare Q4390 line dated 2026-01-01 without JW or JZ; or dated 2025-12-31 with JZ",
    q4390_only=True,
)
def no_jw_jz_after_window(facts: ClaimFacts) -> Iterator[Hit]:
    """Under the Medicare JW/JZ policy, a Q4390 line dated on or after 2026-01-01 must not
    carry JW or JZ.

    From 2026 non-BLA skin substitutes are paid as incident-to supplies, not as drugs, so
    the drug-wastage modifiers no longer apply and the line is returned.
    """
    if facts.profile.jw_jz_policy != "medicare":
        return
    prohibited_from = facts.ruleset.jw_jz.prohibited_from
    for line in facts.product_lines:
        if line.service_date >= prohibited_from and _carries_jw_or_jz(line):
            yield Hit(
                line.number,
                line.field("modifiers"),
                f"Q4390 line {line.number}: JW/JZ are not used from {prohibited_from.isoformat()}; "
                "remove the "
                "modifier (bill discarded product per the current supply policy).",
            )


@rule(
    "MOD-008",
    Severity.ERROR,
    title="JW/JZ missing or wrong for the MAC (2023-07-01 to 2025-12-31)",
    source=_JW_JZ_SOURCE + "; NGS does not accept JZ on skin substitutes; NGS and CGS do "
    "not require the modifiers",
    fails="Medicare, MAC novitas, Q4390 dated 2025-06-01 with neither JW nor JZ",
    passes="the same claim with JZ on the Q4390 line; or MAC cgs without either",
    q4390_only=True,
)
def discarded_modifier_window(facts: ClaimFacts) -> Iterator[Hit]:
    """Under the Medicare JW/JZ policy, for each date of service from 2023-07-01 to
    2025-12-31: with MAC NGS no Q4390 line of that date may carry JZ; with a MAC other than
    NGS or CGS, a Q4390 line of that date must carry JZ or JW. One finding per date.

    In that window Medicare required JZ (nothing discarded) or JW (amount discarded) on
    single-use products, except where the contractor said otherwise; claims without them
    were returned.
    """
    if facts.profile.jw_jz_policy != "medicare":
        return
    policy = facts.ruleset.jw_jz
    by_date: dict[date, list[LineFacts]] = {}
    for line in facts.product_lines:
        if policy.required_from <= line.service_date <= policy.required_through:
            by_date.setdefault(line.service_date, []).append(line)
    mac = facts.mac
    for service_date, lines in by_date.items():
        first = lines[0]
        contractor = (mac or "unknown").upper()
        when = f"date of service {service_date.isoformat()}"
        if mac in policy.jz_rejected_macs and any("JZ" in ln.modifier_set for ln in lines):
            message = (
                f"MAC {contractor} does not accept JZ on skin substitutes ({when}); remove JZ, "
                "and if product was discarded, bill it on its own Q4390 line with JW."
            )
        elif mac not in policy.modifier_optional_macs and not any(map(_carries_jw_or_jz, lines)):
            message = (
                f"Q4390 for MAC {contractor} ({when}) needs JZ when nothing was discarded; if "
                "product was discarded, add a Q4390 line with JW for the discarded cm²."
            )
        else:
            continue
        yield Hit(first.number, first.field("modifiers"), message)


@rule(
    "MOD-009",
    Severity.ERROR,
    title="JW and JZ on the same line",
    source=_JW_JZ_SOURCE,
    fails='"modifiers": ["JW", "JZ"]',
    passes='"modifiers": ["JW"] on the discarded line, JZ or nothing on the other',
)
def jw_and_jz_exclusive(facts: ClaimFacts) -> Iterator[Hit]:
    """A line must not carry both JW (amount discarded) and JZ (nothing discarded).

    The two modifiers contradict each other; the payer rejects the line.
    """
    for line in facts.lines:
        if "JW" in line.modifier_set and "JZ" in line.modifier_set:
            yield Hit(
                line.number,
                line.field("modifiers"),
                f"Line {line.number} carries both JW and JZ; keep the one that is true.",
            )


@rule(
    "MOD-010",
    Severity.ERROR,
    title="Non-coverage modifier on Q4390",
    source="CMS ABN policy (GA, GZ) and statutory exclusion (GY) modifiers",
    fails='Q4390 line with "modifiers": ["GA"]',
    passes="Q4390 line without GA, GZ or GY",
    q4390_only=True,
)
def no_noncoverage_modifier(facts: ClaimFacts) -> Iterator[Hit]:
    """A Q4390 line with GA, GZ or GY is held: the practice expects the payer to deny it.

    These modifiers shift or accept liability for a denial (ABN on file, no ABN, excluded
    service); a coder must confirm the patient's liability before the claim goes out.
    """
    for line in facts.product_lines:
        found = sorted(set(_NONCOVERAGE) & line.modifier_set)
        if found:
            yield Hit(
                line.number,
                line.field("modifiers"),
                f"Q4390 line {line.number} carries {', '.join(found)} (expected non-coverage); "
                "confirm the ABN and the patient's liability.",
            )


@rule(
    "MOD-011",
    Severity.ERROR,
    title="Possible duplicate line",
    source="CMS duplicate-claim edits: same code, date and modifiers (and the same drug: NDC; "
    "for a not-otherwise-classified code, the same description)",
    fails="two 15275 lines on 2026-11-20 with modifiers [RT]",
    passes="two 15275 lines on 2026-11-20, one RT and one LT; two J3490 lines with different "
    "NDCs or descriptions",
)
def duplicate_line(facts: ClaimFacts) -> Iterator[Hit]:
    """A line must not repeat an earlier line's procedure code, service date, set of modifiers
    (["00"] counts as no modifier) and NDC as sent (absent equals absent); for a not-otherwise-
    classified code (the ruleset's code_sets.not_otherwise_classified: J3490, unlisted CPT
    codes ...) also its description (note, as sent).

    Exact repeats are denied as duplicates; bill more units on one line, or add the
    modifier (such as 59 or XS) that makes the second service distinct. Lines that differ in
    NDC, or NOC lines that describe different items, are different services: combining them
    would make a wrong claim.
    """
    unclassified = facts.ruleset.code_sets.not_otherwise_classified
    seen: dict[tuple[str, date, frozenset[str], str | None, str | None], int] = {}
    for line in facts.lines:
        noc = line.code in unclassified
        key = (
            line.code,
            line.service_date,
            line.modifier_set,
            line.ndc,
            line.description if noc else None,
        )
        if key in seen:
            same = ["code", "date", "modifiers"]
            same += ["NDC"] if line.ndc is not None else []
            same += ["description"] if noc and line.description is not None else []
            yield Hit(
                line.number,
                line.field("procedure_code"),
                f"Line {line.number} repeats line {seen[key]} (same {', '.join(same[:-1])} and "
                f"{same[-1]}); combine the units or add a distinguishing modifier.",
            )
        else:
            seen[key] = line.number
