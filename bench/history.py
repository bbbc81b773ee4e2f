"""Claim history in `make bench`: how fast a partition's history is read back from the
changelog (what a worker does after every fence), and what 100,000 patients hold in memory."""

import gc
import time
from datetime import date, timedelta
from pathlib import Path

from claim_scrubber.adapters.kafka.history import ChangelogStore, HistoryTables
from claim_scrubber.adapters.kafka.security import KafkaConnection
from claim_scrubber.adapters.logging import get_logger
from claim_scrubber.adapters.operations import StageMetrics
from claim_scrubber.models.history import Application, ClaimMark, PatientHistory
from claim_scrubber.scrubber.history import DEFAULT_RETENTION_DAYS, HistoryTable


async def restore_rate(
    kafka: KafkaConnection, changelog: str, partitions: int, key: str
) -> dict[str, float]:
    """Patients per second read back from every partition of `changelog`, one after another,
    by the worker's own ChangelogStore."""
    tables = HistoryTables(key.encode(), DEFAULT_RETENTION_DAYS)
    store = ChangelogStore(
        kafka=kafka,
        topic=changelog,
        tables=tables,
        log=get_logger(),
        metrics=StageMetrics(ruleset_version="bench"),
        stall_s=30.0,
    )
    started = time.perf_counter()
    for partition in range(partitions):
        await store.restore(partition)
        tables.begin(partition)
    seconds = time.perf_counter() - started
    patients, _, _ = tables.size()
    return {"patients": patients, "patients_per_s": patients / seconds}


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def history_memory(patients: int, applications_each: int = 5) -> float:
    """MB of resident memory a table of `patients` takes, each with `applications_each`
    weekly applications on one claim each (what 100,000 claims of 20,000 patients leave)."""
    gc.collect()
    before = _rss_mb()
    table = HistoryTable(b"bench", DEFAULT_RETENTION_DAYS)
    first = date(2026, 1, 5)
    for n in range(patients):
        claims = [f"C{n:07d}-{a}" for a in range(applications_each)]
        days = [first + timedelta(weeks=a) for a in range(applications_each)]
        table.restore(
            f"{n:064x}",
            PatientHistory(
                tuple(
                    Application(day, "L97.41", claim, 1, 1, "Q4390")
                    for claim, day in zip(claims, days, strict=True)
                ),
                {
                    claim: ClaimMark(1, voided=False, last_service_date=day)
                    for claim, day in zip(claims, days, strict=True)
                },
            ),
        )
    gc.collect()
    used = _rss_mb() - before
    del table
    return round(used * 100_000 / patients, 1)
