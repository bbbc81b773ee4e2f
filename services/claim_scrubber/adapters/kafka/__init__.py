"""Kafka transport: the FastStream worker and its exactly-once transactional output."""

from claim_scrubber.adapters.kafka.app import build_app
from claim_scrubber.adapters.kafka.startup import StartupError

__all__ = ["StartupError", "build_app"]
