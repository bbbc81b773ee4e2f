"""What one consuming process reads and writes (the worker, or intake), and the error that
stops it with one line for the operator."""

from dataclasses import dataclass

from claim_scrubber.adapters.settings import Settings

__all__ = ["Stage", "StageError"]


class StageError(Exception):
    """The stage cannot start, or cannot go on (a permission the broker took away); the
    message is one line for the operator."""


@dataclass(frozen=True, slots=True)
class Stage:
    """What one consuming process reads and writes: the worker (claims.submitted to results)
    or intake (the inbound 837P and FHIR topics to claims.submitted)."""

    name: str
    group_id: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    dead_letter: str
    results: tuple[str, ...] = ()
    """Outputs that carry scrub results (each must hold the largest claim's result)."""

    @property
    def topics(self) -> list[str]:
        return [*self.inputs, *self.outputs, self.dead_letter]

    @classmethod
    def worker(cls, settings: Settings) -> "Stage":
        return cls(
            "worker",
            settings.group_id,
            (settings.topic_input,),
            (settings.topic_clean, settings.topic_review),
            settings.topic_dead_letter,
            results=(settings.topic_clean, settings.topic_review),
        )

    @classmethod
    def intake(cls, settings: Settings) -> "Stage":
        return cls(
            "intake",
            settings.intake_group_id,
            (settings.topic_inbound_x12, settings.topic_inbound_fhir),
            (settings.topic_input,),
            settings.topic_dead_letter,
        )
