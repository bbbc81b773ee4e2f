"""What every subcommand shares: a help text that says what it reads, writes and which
settings it uses, and one line for the user when it cannot go on."""

import argparse
import textwrap
from typing import TextIO

from claim_scrubber.adapters.logging import configure_logging
from claim_scrubber.adapters.settings import Settings, SettingsError, load_settings

__all__ = ["CommandError", "add_command", "kafka_settings"]


class CommandError(Exception):
    """One line for the user: a setting, an input or Kafka refused (exit 1)."""


def add_command(
    commands: "argparse._SubParsersAction[argparse.ArgumentParser]",
    name: str,
    summary: str,
    *,
    reads: str,
    writes: str,
    settings: str,
    more: str = "",
) -> argparse.ArgumentParser:
    """A subcommand whose --help says what it does, reads, writes and which settings it uses."""
    paragraphs = [summary + ".", *([more] if more else [])]
    paragraphs += [f"Reads: {reads}.", f"Writes: {writes}.", f"Settings: {settings}."]
    return commands.add_parser(
        name,
        help=summary,
        description="\n\n".join(textwrap.fill(p, 88) for p in paragraphs),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def kafka_settings(log_stream: TextIO | None = None) -> Settings:
    """The worker's settings, for a command that talks to Kafka; it logs to `log_stream`
    (default stdout, as the worker), without the Kafka client's warnings about retries it
    won: the command says itself whether it worked."""
    try:
        settings = load_settings()
    except SettingsError as error:
        raise CommandError(str(error)) from None
    configure_logging(
        log_format=settings.log_format,
        level=settings.log_level,
        stream=log_stream,
        one_shot=True,
    )
    return settings
