"""Claim events for tests: the contract's example claim, patched."""

import copy
import json
import re
from pathlib import Path
from typing import Any

DATA = Path(__file__).parent / "data"
_STEP = re.compile(r"([^.\[\]]+)|\[(\d+)\]")
DELETE = "$delete"
"""A patch value that removes the key instead of setting it."""


def default_event() -> dict[str, Any]:
    """The contract's example event: a clean Medicare Q4390 claim."""
    document: dict[str, Any] = json.loads((DATA / "default-claim.json").read_text("utf-8"))
    return document


def _steps(path: str) -> list[str | int]:
    return [name if name else int(index) for name, index in _STEP.findall(path)]


def patched(document: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """A copy with each `claim.lines[1].units`-style path set (or removed with DELETE)."""
    result = copy.deepcopy(document)
    for path, value in patch.items():
        *parents, last = _steps(path)
        target: Any = result
        for step in parents:
            target = target[step]
        if value == DELETE:
            del target[last]
        elif isinstance(last, int) and last == len(target):
            target.append(copy.deepcopy(value))
        else:
            target[last] = copy.deepcopy(value)
    return result


def event_bytes(document: dict[str, Any]) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()


PHI_CANARIES: dict[str, str | list[str]] = {
    "claim.patient.member_id": "PHICANARY-MEMBER-7731",
    "claim.patient.first_name": "PHICANARY-FIRST",
    "claim.patient.last_name": "PHICANARY-LAST",
    "claim.patient.birth_date": "1901-02-03",
    "claim.patient.sex": "PHICANARY-SEX",
    "claim.diagnoses": ["L97.419", "E11.622"],
    "claim.lines[0].note": "PHICANARY-NOTE Invoice $130.00",
    "claim.lines[1].note": "PHICANARY-NOTE2",
    "claim.documentation.wound.indication": "PHICANARY-INDICATION",
    "claim.documentation.medical_necessity": "PHICANARY-NECESSITY",
    "claim.documentation.increased_services_justification": "PHICANARY-JUSTIFICATION",
    "claim.documentation.wound.laterality": "PHICANARY-LATERALITY",
}
"""Recognisable values for every PHI field; none may appear in any log line."""


def phi_strings() -> list[str]:
    found: list[str] = []
    for value in PHI_CANARIES.values():
        found.extend(value if isinstance(value, list) else [value])
    return found


def canary_event(**patch: Any) -> dict[str, Any]:
    return patched(patched(default_event(), PHI_CANARIES), patch)
