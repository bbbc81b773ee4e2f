"""Kafka transport: the FastStream worker and intake, and their exactly-once output."""

from claim_scrubber.adapters.kafka.app import StageFailure, build_app, build_intake_app
from claim_scrubber.adapters.kafka.security import KafkaConnection, connection
from claim_scrubber.adapters.kafka.stage import StageError

__all__ = [
    "KafkaConnection",
    "StageError",
    "StageFailure",
    "build_app",
    "build_intake_app",
    "connection",
]
