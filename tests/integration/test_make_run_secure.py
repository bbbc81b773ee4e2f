"""`make run SECURE=1`: the worker, intake and the review page on the local broker's SASL_SSL
listener, each signed in as its own user with only its own ACLs (kafka.sh grants them), scrub
what `send` puts on the PLAINTEXT listener: a ClaimEvent file and an 837P through intake."""

import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from tests.integration.test_readme_try_it import _newcomer_env, _stop
from tests.kafka_harness import ROOT, WORKER, http_get

pytestmark = [pytest.mark.kafka, pytest.mark.exclusive]

CLI = WORKER[0]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, *args],
        cwd=ROOT,
        env=_newcomer_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _started(log: str, event: str) -> dict[str, object]:
    (line,) = [line for line in log.splitlines() if f'"event":"{event}"' in line]
    found: dict[str, object] = orjson.loads(line)
    return found


def test_every_stage_runs_as_its_own_least_privileged_user(tmp_path: Path) -> None:
    log = tmp_path / "make-run.log"
    started = datetime.now(UTC)
    run = subprocess.Popen(
        ["make", "run", "SECURE=1"],
        cwd=ROOT,
        env=_newcomer_env(),
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 240
        while '"event":"review.started"' not in log.read_text() or not all(
            f'"event":"{stage}.started"' in log.read_text() for stage in ("worker", "intake")
        ):
            assert run.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)
        assert _cli("send", "examples/claims.jsonl").returncode == 0
        assert _cli("send", "examples/claim.837p").returncode == 0

        wanted = {"CLM-EXAMPLE-0001", "CLM-EXAMPLE-0002", "CLM-EXAMPLE-X12-1"}
        shown: set[object] = set()
        while not wanted <= shown:
            assert run.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, (shown, log.read_text()[-3000:])
            tailed = _cli("tail", "--json", "--max", "4", "--since", started.isoformat())
            shown = {orjson.loads(line).get("claim_id") for line in tailed.stdout.splitlines()}

        token = (ROOT / ".kafka" / "review.token").read_text().strip()
        status = 0
        while status != 200:  # the page follows the results on its own
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            status, _ = http_get(8081, "/claims/CLM-EXAMPLE-X12-1", token)
            time.sleep(0.5)
        text = log.read_text()
        for stage in ("worker", "intake"):
            assert _started(text, f"{stage}.started")["bootstrap_servers"] == "127.0.0.1:9094"
        for refusal in ("start_failed", "feed_failed", "Not authorized"):
            assert refusal not in text, text[-3000:]
    finally:
        _stop(run)
