"""ANSI X12 5010 837P (005010X222A1) and 837I (005010X223A2) → ClaimEvents: one per claim (2300
loop) of an interchange; the transaction's implementation guide (ST03) says which.

The reader takes what the rules need and nothing else, following the TR3's loop structure:
- delimiters from ISA (element separator ISA[3], component ISA16, segment terminator the
  character after it), CR/LF after terminators, a BOM or whitespace before ISA;
- the HL hierarchy: a claim belongs to the nearest subscriber (22) or patient (23) level,
  under the nearest billing provider (20);
- 2010BB payer `NM1*PR` versus the 2330B other payer inside a COB loop (2320 `SBR` on);
- `NM1*82` by position: 2310B (claim rendering), 2420A (line rendering), 2330D (ignored);
- ICD-10 codes (ABK/ABF) dotted after the third character; ICD-9 (BK/BF) unchanged; a
  diagnosis entry that cannot be read rejects its claim (a diagnosis is never dropped);
- a line's NDC from 2410 LIN (LIN02 N4);
- money and units through Decimal; D8 and RD8 dates (an RD8 range keeps its start);
- 4010 interchanges (GS08 004010...) are refused as unsupported.

An 837I claim is `institutional`: its type of bill is CLM05-1 (facility code) + CLM05-3
(frequency), e.g. `131`, and it has no place of service; each line is an SV2 (SV201 revenue
code, SV202 the HCPCS when sent: a line with a revenue code alone has an empty procedure code)
dated by its DTP*472, else by the start of the claim's statement period (DTP*434); the
principal diagnosis (ABK/BK) comes first, then the other (ABF/BF) and external-cause
(ABN/BN) diagnoses; admitting and reason-for-visit diagnoses, procedures, occurrence, value and
condition codes are not diagnoses of the claim. An 837I line has no diagnosis pointers.

Documentation is never in an 837P, so it stays absent (DOC-008 says so); a 2300 PWK becomes
one of `claim.attachments`, a 2400 PWK one of its line's `attachments`. Voids (CLM05-3 = 8)
become `claim.voided`; replacements (7) `claim.resubmitted`. Messages name segments and
positions, never a value.
"""

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any, Final
from zoneinfo import ZoneInfo

from claim_scrubber.formats._conversion import (
    Conversion,
    ConvertedClaim,
    RejectedClaim,
    event_id,
    finish_claim,
)
from claim_scrubber.models import DeadLetterKind, PayerDirectory

__all__ = ["read_x12"]

_GUIDES: Final = {
    "005010X222A1": "professional",
    "005010X222A2": "professional",  # LinuxForHealth's label for the same guide
    "005010X222": "professional",
    "005010X223A2": "institutional",
    "005010X223A3": "institutional",  # LinuxForHealth's label
    "005010X223A1": "institutional",
    "005010X223": "institutional",
}
"""ST03 (or GS08) implementation guides read, and the claim type each carries."""
_ICD10: Final = frozenset({"ABK", "ABF", "ABN"})
_ICD9: Final = frozenset({"BK", "BF", "BN"})
_PRINCIPAL: Final = frozenset({"ABK", "BK"})
_NOT_DIAGNOSES: Final = {
    "professional": frozenset({"BP", "BO", "BG"}),
    "institutional": frozenset(
        {"ABJ", "BJ", "APR", "PR", "BBR", "BR", "BBQ", "BQ", "BP", "BO", "BH", "BE", "BG", "BI"}
        | {"DR", "TC"}
    ),
}
"""2300 HI qualifiers that are not diagnoses of the claim: professional, anesthesia related
procedures and conditions; institutional, admitting and reason-for-visit diagnoses (a claim's
diagnoses are what it treated), procedures (ICD-10-PCS, ICD-9), occurrence, occurrence span,
value and condition codes, DRG and treatment codes."""
_OTHER_SEPARATORS: Final = frozenset(">:^|\\<")
"""Component separators other interchanges use: one inside an HI entry that is not split by
this interchange's ISA16 means the sender wrote another separator than it declared."""
_VERSION_4010: Final = "004010"
_EVENT_TYPES: Final = {"7": "claim.resubmitted", "8": "claim.voided"}
"""CLM05-3, the claim frequency code: 7 replaces a claim, 8 voids it; 1 (and any other) is
an original. 837P has no claim version: an original is 1, a replacement or void the time its
transaction was created (BHT04 + BHT05, CCYYMMDDHHMMSS), so that a later correction outranks
what it corrects in claim history (docs/operating/history.md)."""
_CENT: Final = Decimal("0.01")
_NO_FRACTION: Final = Decimal(1)
_ISA_ELEMENTS: Final = 16
_CLAIM_ENDS: Final = frozenset({"CLM", "HL", "SE", "GE", "IEA", "ST", "GS", "ISA"})
"""Segments that end the current claim (its 2300 loop and everything under it)."""


class _UnusableError(Exception):
    """The interchange, a transaction or a claim cannot be converted; the message says where
    and why, without a value."""

    def __init__(self, message: str, kind: DeadLetterKind = DeadLetterKind.INVALID_X12) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(slots=True)
class _Envelope:
    claim_type: str = "professional"
    sender: str = ""
    interchange: str = ""
    group: str = ""
    transaction: str = ""
    occurred_at: str = ""
    stamp: int = 1
    """BHT04 + BHT05 as CCYYMMDDHHMMSS: the claim version of a replacement or void."""
    submitter: str = ""
    """1000A NM1*41 NM109."""
    reference: str = ""
    """BHT03, the originator's reference of the transaction."""
    ordinals: dict[str, int] = field(default_factory=dict)
    """How many claims of the transaction carried each CLM01 so far."""


@dataclass(slots=True)
class _Party:
    """The HL levels a claim inherits from: billing provider, subscriber, patient."""

    billing: dict[str, Any] = field(default_factory=dict)
    filing_indicator: str = ""
    payer_id: str | None = None
    payer_name: str | None = None
    subscriber: dict[str, str | None] = field(default_factory=dict)
    patient: dict[str, str | None] | None = None
    broken: str | None = None
    """Why the claims of this level cannot be placed (an HL whose parent is not defined)."""


@dataclass(slots=True)
class _Claim:
    index: int
    position: int
    """Segment number of its CLM, for messages."""
    elements: list[str]
    party: _Party
    ordinal: int = 1
    """The claim's ordinal among the claims of its transaction with the same CLM01."""
    rendering_npi: str | None = None
    prior_authorization: str | None = None
    diagnoses: list[str] = field(default_factory=list)
    statement_start: list[str] | None = None
    """837I DTP*434 elements: the statement period, whose start dates a line without DTP*472."""
    attachments: list[dict[str, Any]] = field(default_factory=list)
    lines: list[dict[str, Any]] = field(default_factory=list)
    in_cob: bool = False
    problem: str | None = None
    """Why the claim cannot be converted, found while reading its segments."""


@dataclass(frozen=True, slots=True)
class _Delimiters:
    element: str
    component: str
    segment: str


def _delimiters(text: str) -> _Delimiters:
    """ISA's own separators: the 4th character, ISA16 (found by counting element separators,
    not by column) and the character after ISA16."""
    if not text.startswith("ISA") or len(text) < 4:
        raise _UnusableError("not an X12 interchange: it does not start with an ISA segment")
    element = text[3]
    if element.isalnum() or element.isspace():
        raise _UnusableError("ISA: the element separator must be a special character")
    position = 3
    for _ in range(_ISA_ELEMENTS - 1):
        position = text.find(element, position + 1)
        if position < 0:
            raise _UnusableError("ISA: fewer than 16 elements")
    if position + 2 >= len(text):
        raise _UnusableError("ISA: the interchange ends inside ISA")
    component, segment = text[position + 1], text[position + 2]
    if len({element, component, segment}) != 3 or segment.isalnum():
        raise _UnusableError("ISA: element, component and segment separators must differ")
    return _Delimiters(element, component, segment)


def _decode(data: bytes) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    return text.lstrip("\ufeff \t\r\n")


def _element(elements: list[str], number: int) -> str:
    """An element's value; X12 pads none but ISA's, so values are taken as sent."""
    return elements[number] if number < len(elements) else ""


def _digits(text: str) -> bool:
    """ASCII digits only (str.isdigit also accepts '²', which int() refuses)."""
    return text.isascii() and text.isdigit()


class _BadValueError(ValueError):
    """An element's value is unusable; the caller adds which element."""


@lru_cache(maxsize=4096)
def _date(text: str) -> date:
    if len(text) != 8 or not _digits(text):
        raise _BadValueError("expected a date CCYYMMDD")
    try:
        return date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        raise _BadValueError("not a calendar date") from None


def _time(text: str) -> tuple[int, int, int]:
    if len(text) not in {4, 6, 7, 8} or not _digits(text):
        raise _BadValueError("expected a time HHMM[SS[D[D]]]")
    hour, minute = int(text[:2]), int(text[2:4])
    second = int(text[4:6]) if len(text) >= 6 else 0
    if hour > 23 or minute > 59 or second > 59:
        raise _BadValueError("not a time of day")
    return hour, minute, second


def _decimal(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise _BadValueError("not a number") from None
    if not value.is_finite():
        raise _BadValueError("not a number")
    return value


@lru_cache(maxsize=4096)
def _money(text: str) -> str:
    whole, dot, cents = text.partition(".")
    if _digits(whole) and (not dot or (_digits(cents) and len(cents) <= 2)):
        return f"{int(whole)}.{cents:0<2}"
    value = _decimal(text)
    if value < 0:
        raise _BadValueError("a negative amount")
    return str(value.quantize(_CENT))


@lru_cache(maxsize=4096)
def _units(text: str) -> int | float:
    if _digits(text):
        return int(text)
    value = _decimal(text)
    if value == value.to_integral_value():
        return int(value.quantize(_NO_FRACTION))
    return float(value)


def _dotted(code: str) -> str:
    """ICD-10-CM as the rules compare it: a dot after the category (`E11621` → `E11.621`)."""
    if len(code) > 3 and "." not in code:
        return f"{code[:3]}.{code[3:]}"
    return code


@lru_cache(maxsize=4096)
def _iso_date(text: str) -> str:
    return _date(text).isoformat()


def _service_date(elements: list[str]) -> str:
    qualifier, value = _element(elements, 2), _element(elements, 3)
    if qualifier == "D8":
        return _iso_date(value)
    if qualifier == "RD8":
        return _iso_date(value.partition("-")[0])
    raise _BadValueError("the date format qualifier must be D8 or RD8")


class _Reader:
    def __init__(self, directory: PayerDirectory, zone: ZoneInfo) -> None:
        self._directory = directory
        self._zone = zone
        self._component = ":"

    def read(self, data: bytes) -> Conversion:
        conversion = Conversion()
        try:
            text = _decode(data)
            delimiters = _delimiters(text)
            self._component = delimiters.component
            segments = self._segments(text, delimiters)
            self._walk(segments, conversion)
        except _UnusableError as problem:
            conversion = Conversion()
            conversion.add(RejectedClaim(index=None, kind=problem.kind, message=str(problem)))
        return conversion

    @staticmethod
    def _segments(text: str, delimiters: _Delimiters) -> Iterator[list[str]]:
        """The interchange's segments, split one at a time as the walk asks for them: memory
        stays near the text's size however many claims it holds (STYLE 19)."""
        line_breaks = "\n" in text or "\r" in text  # after (or as) terminators
        terminator, element = delimiters.segment, delimiters.element
        end = len(text.rstrip(terminator + "\r\n \t"))
        last = text.rfind(terminator, 0, end) + 1
        if text[last:end].strip("\r\n").lstrip(" \t").split(element)[0] != "IEA":
            raise _UnusableError("the interchange does not end with IEA (cut short?)")
        return _split(text, terminator, element, line_breaks=line_breaks)

    def _walk(  # noqa: PLR0912 - one branch per envelope segment; loops are delegated
        self, segments: Iterator[list[str]], conversion: Conversion
    ) -> None:
        envelope = _Envelope()
        party = _Party()
        levels: dict[str, _Party] = {}
        claim: _Claim | None = None
        line: dict[str, Any] | None = None
        last_entity = ""
        in_transaction = False
        index = 0
        for position, elements in enumerate(segments, start=1):
            tag = elements[0]
            if claim is not None:
                if tag not in _CLAIM_ENDS:  # most segments: the claim's own loops
                    line = self._claim_segment(
                        tag,
                        elements,
                        position,
                        claim,
                        line,
                        institutional=envelope.claim_type == "institutional",
                    )
                    continue
                self._finish(claim, envelope, conversion)
                claim, line = None, None
            if tag == "ISA":
                envelope.sender = _element(elements, 6).strip()  # fixed width, space-padded
                envelope.interchange = _element(elements, 13).strip()
            elif tag == "GS":
                envelope.group = _element(elements, 6)
                if _element(elements, 8).startswith(_VERSION_4010):
                    raise _UnusableError(
                        f"segment {position} (GS08): a 4010 interchange; only the 5010 837P "
                        "(005010X222A1) and 837I (005010X223A2) are read",
                        DeadLetterKind.UNSUPPORTED_TRANSACTION,
                    )
                envelope.claim_type = _GUIDES.get(_element(elements, 8), "professional")
            elif tag == "ST":
                envelope.claim_type = self._start_transaction(
                    elements, position, envelope.claim_type
                )
                envelope.transaction = _element(elements, 2)
                envelope.occurred_at = ""
                envelope.submitter, envelope.reference, envelope.ordinals = "", "", {}
                levels, party, in_transaction = {}, _Party(), True
            elif tag == "SE":
                in_transaction = False
            elif not in_transaction:
                continue
            elif tag == "BHT":
                self._created(envelope, elements, position)
                envelope.reference = _element(elements, 3)
            elif tag == "NM1" and _element(elements, 1) == "41":
                envelope.submitter = _element(elements, 9)
            elif tag == "HL":
                party = self._level(elements, position, levels)
                last_entity = ""
            elif tag == "CLM":
                index += 1
                if not envelope.occurred_at:
                    raise _UnusableError(f"segment {position} (CLM): no BHT before the first claim")
                claim = _open_claim(
                    index, position, elements, party, conversion=conversion, envelope=envelope
                )
            else:
                last_entity = self._party_segment(tag, elements, party, last_entity)
        if claim is not None:
            self._finish(claim, envelope, conversion)

    @staticmethod
    def _start_transaction(elements: list[str], position: int, group_type: str) -> str:
        """The claim type of the transaction's claims: its ST03 guide's, else its group's."""
        if _element(elements, 1) != "837":
            raise _UnusableError(
                f"segment {position} (ST01): the transaction set is not an 837 claim",
                DeadLetterKind.UNSUPPORTED_TRANSACTION,
            )
        version = _element(elements, 3)
        if not version:
            return group_type
        if version not in _GUIDES:
            raise _UnusableError(
                f"segment {position} (ST03): the implementation guide is neither the 837P "
                "(005010X222A1) nor the 837I (005010X223A2); dental claims are not scrubbed",
                DeadLetterKind.UNSUPPORTED_TRANSACTION,
            )
        return _GUIDES[version]

    def _created(self, envelope: _Envelope, elements: list[str], position: int) -> None:
        """BHT04 + BHT05: when the transaction was created, in the intake's zone."""
        try:
            day = _date(_element(elements, 4))
        except _BadValueError as problem:
            raise _UnusableError(f"segment {position} (BHT04): {problem}") from None
        clock = _element(elements, 5)
        try:
            hour, minute, second = _time(clock) if clock else (0, 0, 0)
        except _BadValueError as problem:
            raise _UnusableError(f"segment {position} (BHT05): {problem}") from None
        moment = datetime(day.year, day.month, day.day, hour, minute, second, tzinfo=self._zone)
        envelope.occurred_at = moment.isoformat(timespec="seconds")
        envelope.stamp = int(moment.strftime("%Y%m%d%H%M%S"))

    @staticmethod
    def _level(elements: list[str], position: int, levels: dict[str, _Party]) -> _Party:
        number, parent, code = (_element(elements, n) for n in (1, 2, 3))
        inherited = levels.get(parent) if parent else None
        if code == "20":
            party = _Party()
        elif code in {"22", "23"}:
            if inherited is None:  # only the claims under this level are unusable
                party = _Party(broken=f"segment {position} (HL02): the parent level is not defined")
                levels[number] = party
                return party
            party = _Party(
                billing=inherited.billing,
                filing_indicator=inherited.filing_indicator,
                payer_id=inherited.payer_id,
                payer_name=inherited.payer_name,
                subscriber=inherited.subscriber,
                patient={} if code == "23" else None,
                broken=inherited.broken,
            )
        else:
            raise _UnusableError(f"segment {position} (HL03): level code is not 20, 22 or 23")
        levels[number] = party
        return party

    @staticmethod
    def _party_segment(tag: str, elements: list[str], party: _Party, last_entity: str) -> str:
        """A segment of loops 2000A-2010CA; returns the entity the next REF/DMG belongs to."""
        if tag == "NM1":
            entity = _element(elements, 1)
            identifier = _element(elements, 9) or None
            if entity == "85":
                is_person = _element(elements, 2) == "1"
                last, first = _element(elements, 3), _element(elements, 4)
                party.billing = {
                    "npi": identifier if _element(elements, 8) == "XX" and identifier else "",
                    "name": f"{first} {last}".strip() if is_person else last or None,
                }
            elif entity == "IL":
                party.subscriber = {
                    "member_id": identifier,
                    "first_name": _element(elements, 4) or None,
                    "last_name": _element(elements, 3) or None,
                }
            elif entity == "QC" and party.patient is not None:
                party.patient.update(
                    first_name=_element(elements, 4) or None,
                    last_name=_element(elements, 3) or None,
                )
            elif entity == "PR":
                party.payer_id = identifier
                party.payer_name = _element(elements, 3) or None
            return entity
        if tag == "SBR":
            party.filing_indicator = _element(elements, 9)
        elif tag == "REF" and last_entity == "85" and _element(elements, 1) == "EI":
            party.billing["tax_id"] = _element(elements, 2) or None
        elif tag == "DMG" and last_entity in {"IL", "QC"}:
            person = party.subscriber if last_entity == "IL" else party.patient
            if person is not None:
                birth = _element(elements, 2)
                person["birth_date"] = (
                    f"{birth[:4]}-{birth[4:6]}-{birth[6:]}"
                    if len(birth) == 8 and _digits(birth)
                    else None
                )
                person["sex"] = _element(elements, 3) or None
        return last_entity

    def _claim_segment(
        self,
        tag: str,
        elements: list[str],
        position: int,
        claim: _Claim,
        line: dict[str, Any] | None,
        *,
        institutional: bool,
    ) -> dict[str, Any] | None:
        """A segment of loops 2300-2440; returns the current service line."""
        if self._component in tag:  # e.g. HI:BF:4019, an element separator written wrong
            claim.problem = claim.problem or (
                f"segment {position}: the segment id is followed by the component separator "
                "instead of the element separator (the segment cannot be read)"
            )
        elif tag == "LX":
            line = {"LX": _element(elements, 1), "position": position, "notes": []}
            claim.lines.append(line)
            claim.in_cob = False
        elif tag == "SBR":  # 2320: other payers' loops until the first LX
            claim.in_cob = True
        elif claim.in_cob:
            pass
        elif tag == "PWK":
            attachment = _attachment(elements)
            if line is None:
                claim.attachments.append(attachment)
            else:
                line.setdefault("attachments", []).append(attachment)
        elif line is None:
            self._claim_level(tag, elements, position, claim, institutional=institutional)
        else:
            _line_level(tag, elements, position, line)
        return line

    def _claim_level(
        self, tag: str, elements: list[str], position: int, claim: _Claim, *, institutional: bool
    ) -> None:
        """Loops 2300 and 2310A-F."""
        if tag == "HI":
            try:
                principal, others = _diagnoses(
                    elements, self._component, institutional=institutional
                )
            except _BadValueError as problem:
                claim.problem = claim.problem or f"segment {position} ({problem})"
            else:
                claim.diagnoses[:0] = principal
                claim.diagnoses.extend(others)
        elif tag == "DTP" and institutional and _element(elements, 1) == "434":
            claim.statement_start = elements
        elif tag == "REF" and _element(elements, 1) == "G1":
            claim.prior_authorization = _element(elements, 2) or None
        elif tag == "NM1" and _element(elements, 1) == "82":
            claim.rendering_npi = _npi(elements)

    def _finish(self, claim: _Claim, envelope: _Envelope, conversion: Conversion) -> None:
        where = f"claim {claim.index} (segment {claim.position})"
        try:
            outcome = self._claim_event(claim, envelope, where)
        except _UnusableError as problem:
            conversion.add(
                RejectedClaim(
                    index=claim.index,
                    kind=problem.kind,
                    message=f"{where}: {problem}",
                    claim_id=_element(claim.elements, 1) or None,
                )
            )
            return
        conversion.add(outcome)

    def _claim_event(
        self, claim: _Claim, envelope: _Envelope, where: str
    ) -> ConvertedClaim | RejectedClaim:
        elements = claim.elements
        claim_id = _element(elements, 1)
        institutional = envelope.claim_type == "institutional"
        place, _, rest = _element(elements, 5).partition(self._component)
        frequency = rest.partition(self._component)[2].strip()
        place = place.strip()
        if claim.problem is not None:
            raise _UnusableError(claim.problem)
        if not claim.lines:
            raise _UnusableError("the claim has no service line (LX)")
        party = claim.party
        kind, mac = self._directory.resolve(party.filing_indicator, party.payer_id)
        patient = dict(party.subscriber)
        if party.patient is not None:
            patient.update(party.patient)
        document: dict[str, Any] = {
            "schema_version": "1",
            "event_id": event_id(
                "837", envelope.submitter, envelope.reference, claim_id, str(claim.ordinal)
            ),
            "event_type": _EVENT_TYPES.get(frequency, "claim.submitted"),
            "occurred_at": envelope.occurred_at,
            "claim": {
                "claim_id": claim_id,
                "claim_version": envelope.stamp if frequency in _EVENT_TYPES else 1,
                "claim_type": envelope.claim_type,
                "payer": _present(
                    {
                        "kind": kind.value,
                        "payer_id": party.payer_id,
                        "name": party.payer_name,
                        "mac": mac,
                    }
                ),
                "patient": _present(patient),
                "billing_provider": _present(party.billing),
                "place_of_service": "" if institutional else place,
                "diagnoses": claim.diagnoses,
                "lines": [
                    self._institutional_line(line, claim.statement_start)
                    if institutional
                    else self._line(line, place)
                    for line in claim.lines
                ],
            },
        }
        body = document["claim"]
        if institutional:  # CLM05-1 is the facility code here, not a place of service
            body["type_of_bill"] = place + frequency
        if claim.rendering_npi is not None:
            body["rendering_provider"] = {"npi": claim.rendering_npi}
        if claim.prior_authorization is not None:
            body["prior_authorization_number"] = claim.prior_authorization
        if claim.attachments:
            body["attachments"] = claim.attachments
        return finish_claim(claim.index, document, DeadLetterKind.INVALID_X12, where)

    @staticmethod
    def _line_number(line: dict[str, Any]) -> int:
        number = line["LX"]
        if not _digits(number) or int(number) < 1:
            raise _UnusableError(
                f"segment {line['position']} (LX01): the line number is not a positive whole number"
            )
        return int(number)

    @staticmethod
    def _extras(line: dict[str, Any], converted: dict[str, Any], notes: list[str]) -> None:
        """What any line may carry beside its service: rendering NPI, notes, NDC, PWK."""
        if "rendering_npi" in line:
            converted["rendering_npi"] = line["rendering_npi"]
        if notes:
            converted["note"] = " | ".join(notes)
        for name in ("ndc", "attachments"):
            if name in line:
                converted[name] = line[name]

    def _institutional_line(
        self, line: dict[str, Any], statement: list[str] | None
    ) -> dict[str, Any]:
        """An 837I service line (2400 SV2), dated by its DTP*472 or the statement period."""
        number = self._line_number(line)
        if "SV2" not in line:
            raise _UnusableError(f"service line at segment {line['position']}: no SV2")
        elements, position = line["SV2"]
        elements = elements + [""] * (8 - len(elements))
        procedure = elements[2].split(self._component) if elements[2] else ["HC", ""]
        procedure += [""] * (7 - len(procedure))
        if procedure[0] not in {"HC", "HP"}:
            raise _UnusableError(
                f"segment {position} (SV202-1): the procedure code is not a HCPCS (HC) code"
            )
        revenue = elements[1].strip()
        if not revenue:
            raise _UnusableError(f"segment {position} (SV201): the line has no revenue code")
        dated = line.get("DTP") or (statement and (statement, position))
        if not dated:
            raise _UnusableError(
                f"service line at segment {line['position']}: no date of service (DTP*472) "
                "and no statement period (DTP*434)"
            )
        converted = _service("SV2", elements, position, procedure, dated, number=number)
        converted["diagnosis_pointers"] = []
        converted["revenue_code"] = revenue
        notes = [text for text in (procedure[6], *line["notes"]) if text]
        self._extras(line, converted, notes)
        return converted

    def _line(self, line: dict[str, Any], claim_place: str) -> dict[str, Any]:
        number = self._line_number(line)
        if "SV1" not in line:
            raise _UnusableError(f"service line at segment {line['position']}: no SV1")
        elements, position = line["SV1"]
        elements = elements + [""] * (8 - len(elements))
        procedure = elements[1].split(self._component)
        procedure += [""] * (7 - len(procedure))
        if procedure[0] != "HC":
            raise _UnusableError(
                f"segment {position} (SV101-1): the procedure code is not a CPT/HCPCS (HC) code"
            )
        if "DTP" not in line:
            raise _UnusableError(
                f"service line at segment {line['position']}: no date of service (DTP*472)"
            )
        notes = [text for text in (procedure[6], *line["notes"]) if text]
        converted = _service("SV1", elements, position, procedure, line["DTP"], number=number)
        converted["diagnosis_pointers"] = list(_pointers(elements[7], self._component))
        place = elements[5]
        if place and place != claim_place:
            converted["place_of_service"] = place
        self._extras(line, converted, notes)
        return converted


_SERVICE_ELEMENTS: Final = {"SV1": (4, 2, 3), "SV2": (5, 3, 4)}
"""Where a service line's units, charge and unit basis are: SV104/SV102/SV103 (837P),
SV205/SV203/SV204 (837I)."""


def _service(
    tag: str,
    elements: list[str],
    position: int,
    procedure: list[str],
    dated: tuple[list[str], int],
    *,
    number: int,
) -> dict[str, Any]:
    """The fields every service line has, read from its SV1 or SV2 and its date."""
    units_at, charge_at, basis_at = _SERVICE_ELEMENTS[tag]
    date_elements, date_position = dated
    field = f"{tag}{units_at:02d}"
    try:
        units = _units(elements[units_at])
        field = f"{tag}{charge_at:02d}"
        charge = _money(elements[charge_at])
        field = "DTP"
        service_date = _service_date(date_elements)
    except _BadValueError as problem:
        where = date_position if field == "DTP" else position
        raise _UnusableError(f"segment {where} ({field}): {problem}") from None
    return {
        "line_number": number,
        "procedure_code": procedure[1],
        "modifiers": [code for code in procedure[2:6] if code],
        "units": units,
        "unit_basis": elements[basis_at] or None,
        "charge": charge,
        "service_date": service_date,
    }


def _split(text: str, terminator: str, element: str, *, line_breaks: bool) -> Iterator[list[str]]:
    """Each non-empty segment of `text` split into its elements, in order."""
    start, size = 0, len(text)
    find = text.find
    while start < size:
        end = find(terminator, start)
        if end < 0:
            end = size
        raw = text[start:end]
        if line_breaks:
            raw = raw.strip("\r\n").lstrip(" \t")
        if raw:
            yield raw.split(element)
        start = end + 1


def _open_claim(
    index: int,
    position: int,
    elements: list[str],
    party: _Party,
    *,
    conversion: Conversion,
    envelope: _Envelope,
) -> _Claim | None:
    """The claim a CLM starts, numbered among its transaction's claims with the same CLM01,
    or None when its place in the HL hierarchy makes it unusable (then it is rejected alone,
    with the reason)."""
    claim_id = _element(elements, 1)
    ordinal = envelope.ordinals[claim_id] = envelope.ordinals.get(claim_id, 0) + 1
    problem = party.broken
    if problem is None and (not party.billing or not party.subscriber):
        problem = "not under a billing provider (HL 20) and a subscriber (HL 22)"
    if problem is None:
        return _Claim(
            index=index, position=position, elements=elements, party=party, ordinal=ordinal
        )
    conversion.add(
        RejectedClaim(
            index=index,
            kind=DeadLetterKind.INVALID_X12,
            message=f"claim {index} (segment {position}): {problem}",
            claim_id=_element(elements, 1) or None,
        )
    )
    return None


@lru_cache(maxsize=1024)
def _pointers(text: str, component: str) -> tuple[int, ...]:
    """SV107's diagnosis pointers (non-numeric ones are left out for DX rules to notice)."""
    return tuple(int(p) for p in text.split(component) if _digits(p.strip()))


def _present(fields: dict[str, Any]) -> dict[str, Any]:
    """The fields the 837P gave (an absent optional field is left out, not null)."""
    return {name: value for name, value in fields.items() if value is not None}


def _line_level(tag: str, elements: list[str], position: int, line: dict[str, Any]) -> None:
    """Loops 2400 and 2420A-H."""
    if tag in {"SV1", "SV2"}:
        line[tag] = (elements, position)
    elif tag == "DTP" and _element(elements, 1) == "472":
        line["DTP"] = (elements, position)
    elif tag == "NTE" and _element(elements, 1) == "ADD":
        line["notes"].append(_element(elements, 2))
    elif tag == "NM1" and _element(elements, 1) == "82":
        line["rendering_npi"] = _npi(elements)
    elif tag == "LIN" and _element(elements, 2) == "N4" and _element(elements, 3):
        line["ndc"] = _element(elements, 3)


def _npi(elements: list[str]) -> str | None:
    if _element(elements, 8) != "XX":
        return None
    return _element(elements, 9) or None


def _attachment(elements: list[str]) -> dict[str, Any]:
    control = _element(elements, 6) if _element(elements, 5) == "AC" else ""
    return _present(
        {
            "report_type": _element(elements, 1) or None,
            "transmission": _element(elements, 2) or None,
            "control_number": control or None,
        }
    )


def _diagnoses(
    elements: list[str], component: str, *, institutional: bool
) -> tuple[list[str], list[str]]:
    """The principal and the other diagnoses of one HI segment; _BadValueError names the
    entry that cannot be read (a diagnosis qualifier without a code, or a qualifier the
    claim's guide does not use in HI)."""
    principal: list[str] = []
    others: list[str] = []
    for composite in elements[1:]:
        qualifier, _, rest = composite.partition(component)
        code = rest.partition(component)[0].strip()
        qualifier = qualifier.strip()
        found = principal if institutional and qualifier in _PRINCIPAL else others
        if code and qualifier in _ICD10:
            found.append(_dotted(code))
        elif code and qualifier in _ICD9:
            found.append(code)
        elif qualifier or code:
            _refuse_diagnosis(elements, composite, qualifier, institutional=institutional)
    return principal, others


def _refuse_diagnosis(
    elements: list[str], composite: str, qualifier: str, *, institutional: bool
) -> None:
    """Raise for an HI entry that is no diagnosis we can read (unless it is one that is not
    a diagnosis of the claim: a procedure, a condition, ...)."""
    where = f"HI{elements.index(composite):02d}"
    if qualifier in _ICD10 or qualifier in _ICD9:
        raise _BadValueError(f"{where}: the diagnosis entry has no code")
    if any(mark in qualifier for mark in _OTHER_SEPARATORS):
        raise _BadValueError(
            f"{where}: the entry is not split by the interchange's component separator (ISA16)"
        )
    if qualifier in _NOT_DIAGNOSES["institutional" if institutional else "professional"]:
        return
    if institutional:
        raise _BadValueError(
            f"{where}: the qualifier is not one an 837I HI uses (ABK, ABF, ABN, BK, BF, BN "
            "for diagnoses; admitting, reason-for-visit, procedure, occurrence, value and "
            "condition codes)"
        )
    raise _BadValueError(
        f"{where}: the qualifier is not one an 837P HI uses (ABK, ABF, BK, BF for "
        "diagnoses; BP, BO, BG)"
    )


def read_x12(data: bytes, *, directory: PayerDirectory, zone: ZoneInfo) -> Conversion:
    """Every claim of one X12 interchange, in order: converted (voids too) or rejected
    with its reason; an unusable interchange is one rejection with no claim index."""
    return _Reader(directory, zone).read(data)
