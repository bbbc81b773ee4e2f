"""What claim history keeps of one patient (docs/operating/history.md).

Per patient: the Q4390 applications of the claims seen, and what is known of each claim
(its latest version, whether it was voided), so that a replay, a duplicate delivery or an
older version arriving late changes nothing. The history changelog carries this as JSON.
"""

from dataclasses import dataclass, field
from datetime import date

__all__ = ["Application", "ClaimMark", "PatientHistory"]


@dataclass(frozen=True, slots=True, order=True)
class Application:
    """One Q4390 application of an earlier claim (rules.md "Claim history")."""

    service_date: date
    wound: str
    """The wound of the line (rules.md "Wound of a line"): `L97.41`, `foot:right`, ..."""
    claim_id: str
    claim_version: int
    line_number: int
    procedure_code: str


@dataclass(frozen=True, slots=True)
class ClaimMark:
    """What history remembers of a claim so that it applies each version once."""

    version: int
    voided: bool
    last_service_date: date
    """The latest service date of the claim's lines: the mark expires with retention."""


@dataclass(frozen=True, slots=True)
class PatientHistory:
    """One patient's history: the applications and the claims they came from."""

    applications: tuple[Application, ...] = ()
    claims: dict[str, ClaimMark] = field(default_factory=dict)

    @property
    def is_empty(self) -> bool:
        return not self.applications and not self.claims

    def of_other_claims(self, claim_id: str) -> tuple[Application, ...]:
        """The applications of every claim but `claim_id`: what a claim is judged against
        (its own earlier versions are replaced by it)."""
        return tuple(entry for entry in self.applications if entry.claim_id != claim_id)
