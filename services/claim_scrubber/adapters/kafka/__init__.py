"""Kafka transport: the FastStream worker and intake, and their exactly-once output."""

from claim_scrubber.adapters.kafka.app import WorkerFailure, build_app, build_intake_app
from claim_scrubber.adapters.kafka.security import KafkaConnection, connection
from claim_scrubber.adapters.kafka.startup import StartupError

__all__ = [
    "KafkaConnection",
    "StartupError",
    "WorkerFailure",
    "build_app",
    "build_intake_app",
    "connection",
]
