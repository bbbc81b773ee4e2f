"""`claim-scrubber send` and `tail` on a real broker: the shipped examples go in as the
billing platform sends them and come back as a person reads the results."""

import asyncio
import os
import subprocess
import time
from datetime import datetime
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from tests.conftest import WorkerStarter
from tests.kafka_harness import ROOT, WORKER, Topics

pytestmark = [pytest.mark.kafka]

EXAMPLES = ROOT / "examples"
CLI = WORKER[0]


def _command(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    clean_env = {k: v for k, v in os.environ.items() if not k.startswith("SCRUBBER_")}
    return subprocess.run(
        [CLI, *args], env=clean_env | env, capture_output=True, text=True, timeout=120, check=False
    )


async def _input_keys(bootstrap: str, topic: str) -> list[bytes | None]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(6)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        keys: list[bytes | None] = []
        while any([await consumer.position(p) < ends[p] for p in partitions]):
            for records in (await consumer.getmany(timeout_ms=500)).values():
                keys += [record.key for record in records]
    finally:
        await consumer.stop()
    return keys


class TestSendAndTail:
    async def test_the_examples_sent_come_back_on_tail_as_results_with_their_findings(
        self,
        kafka_bootstrap: str,
        topics: Topics,
        start_worker: WorkerStarter,
        start_intake: WorkerStarter,
    ) -> None:
        start_worker()
        start_intake()
        env = topics.env(kafka_bootstrap)
        sent = [
            _command(env, "send", str(EXAMPLES / name))
            for name in ("claims.jsonl", "claim.837p", "claim-bundle.fhir.json")
        ]
        assert [s.returncode for s in sent] == [0, 0, 0], [s.stderr for s in sent]
        assert [s.stderr for s in sent] == [
            f"sent 3 claim events to {topics.input}\n",
            f"sent 1 x12 record to {topics.inbound_x12}\n",
            f"sent 1 fhir record to {topics.inbound_fhir}\n",
        ]

        machine = await asyncio.to_thread(_command, env, "tail", "--json", "--max", "5")
        readable = await asyncio.to_thread(_command, env, "tail", "--max", "5")

        assert machine.returncode == 0, machine.stderr
        outputs = [orjson.loads(line) for line in machine.stdout.splitlines()]
        seen = {
            o.get("claim_id", o.get("source", {}).get("key")): o.get("outcome")
            or o["error"]["kind"]
            for o in outputs
        }
        assert seen == {
            "CLM-EXAMPLE-0001": "clean",
            "CLM-EXAMPLE-0002": "needs_review",
            "CLM-EXAMPLE-0003": "schema_violation",
            "CLM-EXAMPLE-X12-1": "needs_review",
            "CLM-EXAMPLE-FHIR-1": "clean",
        }
        text = readable.stdout
        assert "needs_review CLM-EXAMPLE-0002 v1  3 findings" in text
        assert "    error   DOC-004   claim    claim.documentation.product.lot_numbers" in text
        assert "    error   UNITS-002 line 2   claim.lines[1].units" in text
        assert "dead_letter  schema_violation  key CLM-EXAMPLE-0003" in text
        assert "claim.lines.1.units: Input should be a valid number" in text
        keys = await _input_keys(kafka_bootstrap, topics.input)
        assert {b"CLM-EXAMPLE-0001", b"CLM-EXAMPLE-0002", b"CLM-EXAMPLE-0003"} <= set(keys)

    async def test_tail_starts_where_asked_and_follows_what_arrives_after_it_started(
        self, kafka_bootstrap: str, topics: Topics, start_worker: WorkerStarter
    ) -> None:
        start_worker()
        env = topics.env(kafka_bootstrap)
        first = _command(env, "send", str(EXAMPLES / "claims.jsonl"))
        assert first.returncode == 0, first.stderr
        await asyncio.to_thread(_command, env, "tail", "--json", "--max", "3")
        await asyncio.sleep(2)  # the first send's results are now more than 1 s old
        started = time.time()
        following = await asyncio.create_subprocess_exec(
            CLI,
            "tail",
            "--json",
            "--max",
            "3",
            "--since",
            "1s",
            env={k: v for k, v in os.environ.items() if not k.startswith("SCRUBBER_")} | env,
            stdout=asyncio.subprocess.PIPE,
        )
        try:
            await asyncio.sleep(3)  # it has started, and found nothing newer than 1 s ago
            again = await asyncio.to_thread(_command, env, "send", str(EXAMPLES / "claims.jsonl"))
            assert again.returncode == 0, again.stderr
            out_bytes, _ = await asyncio.wait_for(following.communicate(), timeout=90)
        finally:
            if following.returncode is None:
                following.kill()
        out = out_bytes.decode()
        results = [orjson.loads(line) for line in out.splitlines()]
        assert len(results) == 3
        decided = [
            datetime.fromisoformat(r.get("scrubbed_at") or r["received_at"]) for r in results
        ]
        assert all(moment.timestamp() > started for moment in decided)  # the second send's

    def test_tail_of_topics_that_do_not_exist_is_one_line(
        self, kafka_bootstrap: str, tmp_path: Path
    ) -> None:
        missing = Topics(f"absent-{tmp_path.name}")
        result = _command(missing.env(kafka_bootstrap), "tail", "--max", "1")

        assert result.returncode == 1
        (line,) = result.stderr.splitlines()
        assert line.startswith("claim-scrubber: error: no topic ")
