"""Processes and commands: the Kafka worker and the offline CLI."""
