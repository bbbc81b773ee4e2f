"""Reading a ruleset file (TOML or JSON) into a validated Ruleset."""

import difflib
import json
import tomllib
from importlib import resources
from pathlib import Path

from pydantic import ValidationError

from claim_scrubber.models import Ruleset
from claim_scrubber.models.code_sets import read_source
from claim_scrubber.models.ruleset import READ_CODE_SET
from claim_scrubber.rules import CATALOG, ENGINE_FAILURE, RETIRED_RULES

__all__ = ["RulesetError", "default_ruleset_text", "load_ruleset"]


class RulesetError(Exception):
    """The ruleset cannot be used; the message is one line naming the file and the bad entry."""


def default_ruleset_text() -> str:
    return resources.files("claim_scrubber").joinpath("rulesets/default.toml").read_text("utf-8")


def _parse(text: str, name: str) -> object:
    if name.endswith(".json"):
        return json.loads(text)
    return tomllib.loads(text)


def load_ruleset(path: Path | None = None) -> Ruleset:
    """The ruleset at `path`, or the shipped default; RulesetError says what is wrong."""
    name = str(path) if path is not None else "default ruleset"
    try:
        text = default_ruleset_text() if path is None else path.read_text("utf-8")
        document = _parse(text, name)
    except OSError as error:
        raise RulesetError(f"ruleset {name}: cannot read it ({error.strerror})") from None
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError) as error:
        raise RulesetError(f"ruleset {name}: not valid TOML/JSON ({error})") from None
    folder = path.parent if path is not None else None
    try:
        ruleset = Ruleset.model_validate(
            document, context={READ_CODE_SET: lambda source: read_source(source, folder)}
        )
    except ValidationError as error:
        raise RulesetError(f"ruleset {name}: {_first_problem(error)}") from None
    _check_overrides(ruleset, name)
    return ruleset


def _first_problem(error: ValidationError) -> str:
    """The problem to name first: an entry the ruleset has no place for (a misspelt one also
    leaves its right name missing: that name is suggested), else the first in file order."""
    problems = error.errors(include_url=False, include_input=False)
    unknown = [p for p in problems if p["type"] == "extra_forbidden"]
    first = unknown[0] if unknown else problems[0]
    where = ".".join(str(part) for part in first["loc"]) or "(top level)"
    if unknown:
        missing = [
            str(p["loc"][-1])
            for p in problems
            if p["type"] == "missing" and p["loc"][:-1] == first["loc"][:-1]
        ]
        close = difflib.get_close_matches(str(first["loc"][-1]), missing, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        message = f"not a ruleset entry{hint}"
        others = len(problems) - 1 - len(close)
    else:
        message = first["msg"].removeprefix("Value error, ")
        others = len(problems) - 1
    more = f" (and {others} more)" if others > 0 else ""
    return f"{where}: {message}{more}"


def _check_overrides(ruleset: Ruleset, name: str) -> None:
    """Every override names a rule of the catalog; ENGINE-001 cannot be changed (a rule that
    cannot run must never pass silently)."""
    known = {entry.id for entry in CATALOG}
    for where, rule_id in ruleset.overridden_rule_ids:
        if rule_id == ENGINE_FAILURE.id:
            raise RulesetError(
                f'ruleset {name}: {where}."{rule_id}": ENGINE-001 cannot be overridden'
            )
        if rule_id in RETIRED_RULES:
            raise RulesetError(
                f'ruleset {name}: {where}."{rule_id}": the rule is retired '
                f"({RETIRED_RULES[rule_id]}); remove the entry"
            )
        if rule_id not in known:
            raise RulesetError(
                f'ruleset {name}: {where}."{rule_id}": no rule has this id '
                "(claim-scrubber rules lists them)"
            )
