"""The README's one-minute try-it, run as a newcomer runs it: `make run` in one terminal, then
the README's own commands in another, until the scrubbed claims appear.

The commands are read from the README, so the README and this test cannot drift apart."""

import os
import re
import shlex
import signal
import subprocess
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from tests.kafka_harness import ROOT

pytestmark = [pytest.mark.kafka, pytest.mark.exclusive]

STEPS_S = 300.0
"""The issue's promise: from `make run` to a scrubbed claim on screen in under 5 minutes."""


def _newcomer_env() -> dict[str, str]:
    """A shell with nothing of ours set: make run finds (or starts) the local broker itself."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("SCRUBBER_", "OTEL_"))}


def _readme_commands() -> list[list[str]]:
    readme = (ROOT / "README.md").read_text("utf-8")
    section = readme.split("## Try it in one minute", 1)[1]
    block = re.search(r"```\n(.*?)```", section, re.DOTALL)
    assert block is not None, "the README's try-it has no command block"
    lines = [line.split("#", 1)[0].strip() for line in block.group(1).splitlines()]
    return [shlex.split(line) for line in lines if line]


def _readme_output() -> str:
    """The output the README's try-it shows (its `text` block)."""
    section = (ROOT / "README.md").read_text("utf-8").split("## Try it in one minute", 1)[1]
    block = re.search(r"```text\n(.*?)```", section, re.DOTALL)
    assert block is not None, "the README's try-it shows no output"
    return block.group(1)


def _results(text: str) -> set[str]:
    """`tail`'s results, each with its finding lines, the offset left out."""
    results: list[list[str]] = []
    for line in text.splitlines():
        if not line.startswith(" "):
            results.append([])
        if results:
            results[-1].append(re.sub(r"(\(\S+ \d+):\d+\)$", r"\1)", line))
    return {"\n".join(lines) for lines in results}


class _Lines:
    """A process's stdout, collected by a thread."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        assert process.stdout is not None
        stream = process.stdout
        threading.Thread(target=lambda: self.lines.extend(stream), daemon=True).start()

    def text(self) -> str:
        return "".join(self.lines)


def _stop(process: subprocess.Popen[str]) -> bool:
    """Ctrl-C, as the newcomer stops it; whether that was enough (else it is killed)."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
            return False
    return True


def test_a_newcomer_sees_scrubbed_claims_by_following_the_readme(tmp_path: Path) -> None:
    commands = _readme_commands()
    assert [c[1] for c in commands] == ["send", "tail"], commands
    send, tail = commands
    started = datetime.now(UTC)
    deadline = time.monotonic() + STEPS_S
    run = subprocess.Popen(
        ["make", "run"],
        cwd=ROOT,
        env=_newcomer_env(),
        stdout=(tmp_path / "make-run.log").open("w"),
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    watcher: subprocess.Popen[str] | None = None
    try:
        # send as soon as the broker and topics are there: the worker picks the claims up
        # whenever it has joined its group
        while True:
            sent = subprocess.run(
                send, cwd=ROOT, env=_newcomer_env(), capture_output=True, text=True, check=False
            )
            if sent.returncode == 0 or time.monotonic() > deadline or run.poll() is not None:
                break
            time.sleep(2)
        assert sent.returncode == 0, sent.stderr + (tmp_path / "make-run.log").read_text()
        assert sent.stderr == "sent 3 claim events to claims.submitted\n"

        watcher = subprocess.Popen(
            tail,
            cwd=ROOT,
            env=_newcomer_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )
        shown = _Lines(watcher)
        wanted = (
            "clean        CLM-EXAMPLE-0001",
            "needs_review CLM-EXAMPLE-0002",
            "key CLM-EXAMPLE-0003",
        )
        while not all(w in shown.text() for w in wanted) and time.monotonic() < deadline:
            assert run.poll() is None, (tmp_path / "make-run.log").read_text()[-3000:]
            time.sleep(0.5)
        assert all(w in shown.text() for w in wanted), shown.text()
        assert "    error   UNITS-002 line 2   claim.lines[1].units" in shown.text()
        # what the README shows is what a newcomer sees, but for the offsets of earlier runs
        assert _results(_readme_output()) <= _results(shown.text()), shown.text()

        # and they are this run's results, not an earlier run's still within tail's window
        fresh = subprocess.run(
            [tail[0], "tail", "--json", "--max", "3", "--since", started.isoformat()],
            cwd=ROOT,
            env=_newcomer_env(),
            capture_output=True,
            timeout=60,
            check=True,
        )
        claims = {orjson.loads(line).get("claim_id") for line in fresh.stdout.splitlines()}
        assert {"CLM-EXAMPLE-0001", "CLM-EXAMPLE-0002"} <= claims
    finally:
        if watcher is not None:
            _stop(watcher)
        _stop(run)
    assert run.returncode in {0, -signal.SIGINT, 130}, (tmp_path / "make-run.log").read_text()[
        -3000:
    ]
