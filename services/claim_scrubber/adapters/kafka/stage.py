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
    forwarded: tuple[str, ...] = ()
    """Outputs that carry input records unchanged (each must hold the largest one)."""
    changelog: str | None = None
    """The claim history changelog the stage reads back and writes (history on)."""
    groups: tuple[tuple[str, str], ...] = ()
    """(input topic, consumer group) where an input is read by a group other than group_id."""

    @property
    def topics(self) -> list[str]:
        """Every topic the stage reads or writes, once each."""
        changelog = () if self.changelog is None else (self.changelog,)
        return list(dict.fromkeys([*self.inputs, *self.outputs, *changelog, self.dead_letter]))

    @property
    def read(self) -> tuple[str, ...]:
        """The topics the stage reads: its inputs and the changelog."""
        return self.inputs if self.changelog is None else (*self.inputs, self.changelog)

    def group_for(self, topic: str) -> str:
        """The consumer group that reads this input topic."""
        return dict(self.groups).get(topic, self.group_id)

    @classmethod
    def worker(cls, settings: Settings) -> "Stage":
        """Without history: the input to results. With history: the input re-keyed by
        patient (group_id goes on reading the input), and that scrubbed by a group of its
        own, with the claim history changelog (docs/operating/history.md)."""
        results = (settings.topic_clean, settings.topic_review)
        if not settings.history_on:
            return cls(
                "worker",
                settings.group_id,
                (settings.topic_input,),
                results,
                settings.topic_dead_letter,
                results=results,
            )
        by_patient = settings.topic_by_patient
        return cls(
            "worker",
            settings.group_id,
            (settings.topic_input, by_patient),
            (by_patient, *results, settings.topic_history),
            settings.topic_dead_letter,
            results=results,
            forwarded=(by_patient,),
            changelog=settings.topic_history,
            groups=((by_patient, settings.by_patient_group_id),),
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
