"""The two stages composed: the worker (claim events to scrub results) and intake (837P, 837I and
FHIR to claim events), each the same runtime (runtime.py) with its own mapping and topics."""

from typing import Any, Final

from faststream import FastStream
from pydantic import BaseModel
from structlog.typing import FilteringBoundLogger

from claim_scrubber.adapters.conversion import Format, Intake
from claim_scrubber.adapters.kafka.history import HistoryTables
from claim_scrubber.adapters.kafka.intake_mapping import IntakeMapping
from claim_scrubber.adapters.kafka.outbound import OutputTopics, RecordMapping
from claim_scrubber.adapters.kafka.ownership import (
    ProducerFactory,
)
from claim_scrubber.adapters.kafka.rekey_mapping import RekeyMapping
from claim_scrubber.adapters.kafka.runtime import StageFailure, StreamSpec, stage_application
from claim_scrubber.adapters.kafka.scrub_mapping import ScrubMapping
from claim_scrubber.adapters.kafka.security import KafkaConnection
from claim_scrubber.adapters.kafka.stage import Stage, StageError
from claim_scrubber.adapters.settings import Settings
from claim_scrubber.adapters.tracing import Tracing
from claim_scrubber.models import ClaimEvent, DeadLetter, Ruleset, ScrubResult
from claim_scrubber.scrubber import Scrubber

__all__ = ["StageError", "StageFailure", "build_app", "build_intake_app"]


_DESCRIPTIONS: Final = {
    "worker": "Scrubs claim events for HCPCS Q4390 and claim integrity, exactly once.",
    "intake": "Turns X12 837P and 837I interchanges and FHIR R4 Claims into claim events, "
    "exactly once.",
}


def _output_topics(settings: Settings, sizes: dict[str, int]) -> OutputTopics:
    return OutputTopics(
        clean=settings.topic_clean,
        review=settings.topic_review,
        dead_letter=settings.topic_dead_letter,
        max_bytes=dict(sizes),
    )


def build_app(
    settings: Settings,
    scrubber: Scrubber,
    log: FilteringBoundLogger,
    *,
    kafka: KafkaConnection | None = None,
    producer_factory: ProducerFactory | None = None,
    failure: StageFailure | None = None,
    tracing: Tracing | None = None,
) -> FastStream:
    """The worker: consume claim events, scrub, publish and commit exactly once.

    `kafka` is how every client connects (default: built from `settings`, which raises
    SettingsError for an unusable secret or certificate file); `producer_factory` replaces
    aiokafka's transactional producers (tests); `failure` receives the reason when the worker
    stops itself (a permission the broker refuses), after a graceful stop.
    """
    stage = Stage.worker(settings)
    history, secret = None, b""
    if settings.history_on:
        secret = settings.history_secret()
        history = HistoryTables(secret, settings.history_retention_days)
    streams = [
        StreamSpec(
            settings.topic_input,
            f"{settings.topic_input}:scrub",
            "ClaimEvent JSON, schema_version 1 (schemas/claim-event.schema.json)",
        )
    ]
    publishers: list[tuple[str, type[BaseModel] | None, str]] = [
        (settings.topic_clean, ScrubResult, "ScrubResult with outcome clean, keyed by claim_id"),
        (settings.topic_review, ScrubResult, "ScrubResult with outcome needs_review"),
        (settings.topic_dead_letter, DeadLetter, "DeadLetter with the original bytes, input key"),
    ]
    if history is not None:
        streams = [
            StreamSpec(
                settings.topic_input,
                f"{settings.topic_input}:rekey",
                f"ClaimEvent JSON, re-keyed by patient to {settings.topic_by_patient} (history on)",
            ),
            StreamSpec(
                settings.topic_by_patient,
                f"{settings.topic_by_patient}:scrub",
                "ClaimEvent JSON keyed by patient, scrubbed against the patient's history",
                history=True,
            ),
        ]
        publishers += [
            (
                settings.topic_by_patient,
                ClaimEvent,
                "the input record unchanged, keyed by patient (internal)",
            ),
            (
                settings.topic_history,
                None,
                "a patient's Q4390 applications and claims seen (JSON), "
                "or a tombstone; compacted (internal, PHI-derived)",
            ),
        ]

    def mapping_for(topic: str, sizes: dict[str, int]) -> RecordMapping[Any]:
        scrubbing = ScrubMapping(
            scrubber=scrubber,
            topics=_output_topics(settings, sizes),
            worker_id=settings.worker_id,
            history=None if history is None else (history, settings.topic_history),
        )
        if history is not None and topic == settings.topic_input:
            return RekeyMapping(
                secret=secret,
                output_topic=settings.topic_by_patient,
                dead_letters=scrubbing,
            )
        return scrubbing

    return stage_application(
        settings,
        stage,
        scrubber.ruleset,
        log,
        streams=streams,
        mapping_for=mapping_for,
        publishers=publishers,
        kafka=kafka,
        producer_factory=producer_factory,
        failure=failure,
        tracing=tracing,
        description=_DESCRIPTIONS["worker"],
        history=history,
    )


def build_intake_app(
    settings: Settings,
    ruleset: Ruleset,
    log: FilteringBoundLogger,
    *,
    kafka: KafkaConnection | None = None,
    producer_factory: ProducerFactory | None = None,
    failure: StageFailure | None = None,
    tracing: Tracing | None = None,
) -> FastStream:
    """Intake: consume 837P and 837I interchanges and FHIR Claims, publish one ClaimEvent per claim
    to the worker's input topic (an unusable one as a dead letter), exactly once."""
    intake = Intake(ruleset.payer_directory, settings.intake_zone)
    formats: dict[str, Format] = {
        settings.topic_inbound_x12: "x12",
        settings.topic_inbound_fhir: "fhir",
    }
    return stage_application(
        settings,
        Stage.intake(settings),
        ruleset,
        log,
        streams=[
            StreamSpec(
                settings.topic_inbound_x12,
                f"{settings.topic_inbound_x12}:convert",
                "one X12 5010 837P or 837I interchange (ISA...IEA) per record, any number of "
                "claims",
            ),
            StreamSpec(
                settings.topic_inbound_fhir,
                f"{settings.topic_inbound_fhir}:convert",
                "one FHIR R4 Claim, or a Bundle of Claims and the resources they reference",
            ),
        ],
        mapping_for=lambda topic, sizes: IntakeMapping(
            intake=intake,
            format_name=formats[topic],
            output_topic=settings.topic_input,
            dead_letter_topic=settings.topic_dead_letter,
            dead_letter_max_bytes=sizes.get(settings.topic_dead_letter),
            worker_id=settings.worker_id,
            ruleset_version=ruleset.version,
        ),
        publishers=[
            (settings.topic_input, ClaimEvent, "ClaimEvent, one per claim, keyed by claim_id"),
            (
                settings.topic_dead_letter,
                DeadLetter,
                "DeadLetter of an unusable interchange, Claim or claim, with the record's bytes",
            ),
        ],
        kafka=kafka,
        producer_factory=producer_factory,
        failure=failure,
        tracing=tracing,
        description=_DESCRIPTIONS["intake"],
    )
