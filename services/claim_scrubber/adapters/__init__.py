"""Edges of the scrubber: Kafka, settings, ruleset files, logging, generated documents."""
