"""Published code sets the general rules judge against (rules v1.2, STYLE 17).

Each set is a data file named in the ruleset's `code_sets` and read once, when the ruleset is
validated: the modifiers (CPT Level I and HCPCS Level II) and the places of service as the
project's own dated tables, and ICD-10-CM releases as published (by default the CMS files
that `simple-icd-10-cm` ships). A source is a path relative to the ruleset file, or
`package:<distribution>/<path>` for a file a Python package ships.
"""

import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from functools import cached_property, lru_cache
from importlib.util import find_spec
from pathlib import Path, PurePosixPath
from typing import Annotated, Final, Literal, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

__all__ = [
    "PACKAGE_PREFIX",
    "CodeSetError",
    "DatedCode",
    "DiagnosisCodeTable",
    "DiagnosisStatus",
    "ModifierCodeSet",
    "PlaceOfServiceCodeSet",
    "SourceReader",
    "parse_icd10cm",
    "read_code_set",
    "read_icd10cm",
    "read_source",
    "shipped_source_reader",
]

PACKAGE_PREFIX: Final = "package:"
_SHIPPED_RULESETS: Final = ("claim_scrubber", "rulesets")
_CODE_SET_MODEL = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

SourceReader = Callable[[str], str]
"""Reads a code-set source (a path relative to the ruleset, or package:...) as text."""


class CodeSetError(ValueError):
    """A code-set file cannot be read or is not valid; the message names the source."""


class DatedCode(BaseModel):
    """One code of a dated code set: in effect from `from` through `through` (inclusive)."""

    model_config = _CODE_SET_MODEL

    effective_from: date | None = Field(default=None, alias="from")
    effective_through: date | None = Field(default=None, alias="through")
    name: Annotated[str, Field(min_length=1, max_length=120)]

    @model_validator(mode="after")
    def _window_in_order(self) -> Self:
        if (
            self.effective_from is not None
            and self.effective_through is not None
            and self.effective_through < self.effective_from
        ):
            raise ValueError("through is before from")
        return self

    def in_effect_on(self, day: date) -> bool:
        starts, ends = self.effective_from, self.effective_through
        return (starts is None or starts <= day) and (ends is None or day <= ends)


_Modifier = Annotated[str, Field(pattern=r"^[0-9A-Z]{2}$")]
_Letters = Annotated[str, Field(pattern=r"^[A-Z]+$")]


class _AmbulanceLetters(BaseModel):
    model_config = _CODE_SET_MODEL

    origins: _Letters
    destinations: _Letters


class ModifierCodeSet(BaseModel):
    """Every valid modifier with its dates: CPT Level I, HCPCS Level II and the ambulance
    origin/destination pairs."""

    model_config = _CODE_SET_MODEL

    release: Annotated[str, Field(min_length=1, max_length=200)]
    ambulance: _AmbulanceLetters
    level_i: dict[_Modifier, DatedCode]
    level_ii: dict[_Modifier, DatedCode]

    @model_validator(mode="after")
    def _levels_apart(self) -> Self:
        both = sorted(set(self.level_i) & set(self.level_ii))
        if both:
            raise ValueError(f"modifiers listed as both level_i and level_ii: {both}")
        return self

    def entry(self, modifier: str) -> DatedCode | None:
        """The modifier's row (Level I, then Level II), or None when neither lists it."""
        return self.level_i.get(modifier) or self.level_ii.get(modifier)

    @cached_property
    def ambulance_pairs(self) -> frozenset[str]:
        """Every origin/destination pair (an origin letter, then a destination letter)."""
        return frozenset(o + d for o in self.ambulance.origins for d in self.ambulance.destinations)

    def is_ambulance_pair(self, modifier: str) -> bool:
        return modifier in self.ambulance_pairs

    @cached_property
    def windows(self) -> dict[str, tuple[date | None, date | None]]:
        """Each listed modifier's (from, through), for the per-line check on the hot path."""
        return {
            code: (entry.effective_from, entry.effective_through)
            for code, entry in (*self.level_ii.items(), *self.level_i.items())
        }


_PlaceCode = Annotated[str, Field(pattern=r"^[0-9]{2}$")]


class PlaceOfServiceCodeSet(BaseModel):
    """The CMS place-of-service codes with their dates."""

    model_config = _CODE_SET_MODEL

    release: Annotated[str, Field(min_length=1, max_length=200)]
    codes: dict[_PlaceCode, DatedCode]

    @cached_property
    def windows(self) -> dict[str, tuple[date, date]]:
        """Each code's (from, through), open ends as date.min / date.max, for the hot path."""
        return {
            code: (entry.effective_from or date.min, entry.effective_through or date.max)
            for code, entry in self.codes.items()
        }


DiagnosisStatus = Literal["billable", "category", "unknown"]

_UNDOTTED_ICD10: Final = re.compile(r"[A-Z][0-9][0-9A-Z][0-9A-Z]{0,4}")
_CATEGORY_LENGTH: Final = 3


_MEMO_CODES: Final = 16384
"""Diagnoses whose status a table remembers (claims repeat the same few thousand)."""


@dataclass(frozen=True, slots=True)
class DiagnosisCodeTable:
    """One ICD-10-CM release: its billable codes and, for each code above them (a category or
    subcategory), the length of its shortest billable code. Codes are kept without the dot."""

    billable: frozenset[str]
    shortest_billable_below: dict[str, int]
    _memo: dict[str, DiagnosisStatus] = field(default_factory=dict, compare=False, repr=False)

    def status(self, dotted_code: str) -> DiagnosisStatus:
        found = self._memo.get(dotted_code)
        if found is not None:
            return found
        code = dotted_code.replace(".", "")
        status: DiagnosisStatus = "unknown"
        if code in self.billable:
            status = "billable"
        elif code in self.shortest_billable_below:
            status = "category"
        if len(self._memo) < _MEMO_CODES:
            self._memo[dotted_code] = status
        return status

    def characters_needed(self, dotted_code: str) -> int:
        """How many characters (without the dot) the shortest billable code under a category
        has."""
        return self.shortest_billable_below[dotted_code.replace(".", "")]


def parse_icd10cm(text: str) -> DiagnosisCodeTable:
    """An ICD-10-CM code file: the first token of each line is a code, dotted or not.

    Both published shapes are read: a list of every code in tabular order (chapters, blocks,
    categories and codes, as simple-icd-10-cm ships CMS's release) or CMS's list of billable
    codes only. A code is billable when no other code of the file extends it; chapter and
    block lines (`1`, `A00-A09`) are passed over.
    """
    codes = set()
    for line in text.splitlines():
        token = line.split(maxsplit=1)[0].replace(".", "") if line.strip() else ""
        if _UNDOTTED_ICD10.fullmatch(token):
            codes.add(token)
    if not codes:
        raise CodeSetError("no ICD-10-CM code in it")
    above = {code[:size] for code in codes for size in range(_CATEGORY_LENGTH, len(code))}
    billable = frozenset(codes - above)
    shortest: dict[str, int] = {}
    for code in billable:
        length = len(code)
        for size in range(_CATEGORY_LENGTH, length):
            prefix = code[:size]
            if shortest.get(prefix, length + 1) > length:
                shortest[prefix] = length
    return DiagnosisCodeTable(billable=billable, shortest_billable_below=shortest)


@lru_cache(maxsize=16)
def _package_text(source: str) -> str:
    """The text of a file a package ships (package data never changes while we run).

    The package is found, not imported: importing one may cost far more than its data file
    (simple_icd_10_cm parses its 10 MB XML on import).
    """
    package, _, path = source.removeprefix(PACKAGE_PREFIX).partition("/")
    if not package or not path or ".." in PurePosixPath(path).parts:
        raise CodeSetError(f"{source}: expected package:<package>/<path inside it>")
    spec = find_spec(package) if package.isidentifier() else None
    folders = spec.submodule_search_locations if spec is not None else None
    if not folders:
        raise CodeSetError(f"{source}: no installed package {package}")
    try:
        return Path(next(iter(folders)), path).read_text("utf-8")
    except OSError as error:
        raise CodeSetError(f"{source}: cannot read it ({error.strerror})") from None


def read_source(source: str, base: Path | None) -> str:
    """A code-set source as text: package data, or a file relative to `base` (the ruleset's
    folder; None: the shipped rulesets folder)."""
    if source.startswith(PACKAGE_PREFIX):
        return _package_text(source)
    if base is None:
        return _package_text(f"{PACKAGE_PREFIX}{'/'.join(_SHIPPED_RULESETS)}/{source}")
    try:
        return (base / source).read_text("utf-8")
    except OSError as error:
        raise CodeSetError(f"{source}: cannot read it ({error.strerror})") from None
    except UnicodeDecodeError:
        raise CodeSetError(f"{source}: not UTF-8 text") from None


def shipped_source_reader(source: str) -> str:
    """The reader of the shipped ruleset: relative sources are the package's own files."""
    return read_source(source, None)


@lru_cache(maxsize=8)
def _parsed_icd10cm(text: str) -> DiagnosisCodeTable:
    return parse_icd10cm(text)


_CodeSet = TypeVar("_CodeSet", ModifierCodeSet, PlaceOfServiceCodeSet)


def read_code_set(source: str, model: type[_CodeSet], reader: SourceReader) -> _CodeSet:
    """A TOML code-set file validated as `model`; CodeSetError names the source and entry."""
    text = reader(source)
    try:
        return model.model_validate(tomllib.loads(text))
    except tomllib.TOMLDecodeError as error:
        raise CodeSetError(f"{source}: not valid TOML ({error})") from None
    except ValidationError as error:
        first = error.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or "(top level)"
        message = first["msg"].removeprefix("Value error, ")
        raise CodeSetError(f"{source}: {where}: {message}") from None


def read_icd10cm(source: str, reader: SourceReader) -> DiagnosisCodeTable:
    """An ICD-10-CM release file (see parse_icd10cm), parsed once per process."""
    text = reader(source)
    try:
        return _parsed_icd10cm(text)
    except CodeSetError as error:
        raise CodeSetError(f"{source}: {error}") from None
