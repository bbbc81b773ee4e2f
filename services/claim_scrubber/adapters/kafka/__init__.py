"""Kafka transport: the FastStream worker and its exactly-once transactional output."""

from claim_scrubber.adapters.kafka.app import StartupError, build_app

__all__ = ["StartupError", "build_app"]
