"""MkDocs hook: the parts of the documentation generated from the code and the benchmark's
latest results, so that the site and the code cannot disagree.

A page asks for a part with a marker line, `<!-- generated: NAME -->`; an unknown name fails the
build.
"""

import argparse
import json
import math
import re
from pathlib import Path
from typing import Any

from claim_scrubber.adapters.published_docs import rules_page
from claim_scrubber.entrypoints.cli import _parser

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench" / "results.json"
_MARKER = re.compile(r"^<!-- generated: ([a-z-]+) -->$", re.MULTILINE)


def _rules() -> str:
    """The rule catalog as `claim-scrubber schemas` writes it, one heading level down."""
    page = rules_page().split("\n", 1)[1]  # without its title: the page has its own
    return re.sub(r"^(#+) ", r"#\1 ", page, flags=re.MULTILINE)


def _subcommands(
    parser: argparse.ArgumentParser, prefix: str
) -> list[tuple[str, argparse.ArgumentParser]]:
    found = []
    for action in parser._actions:  # argparse keeps its subparsers here only
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.append((f"{prefix} {name}", sub))
                found += _subcommands(sub, f"{prefix} {name}")
    return found


def _commands() -> str:
    """Every subcommand's --help, as the program prints it."""
    parser = _parser()
    parts = ["## claim-scrubber", "", "```text", parser.format_help().rstrip(), "```"]
    for name, sub in _subcommands(parser, "claim-scrubber"):
        parts += ["", f"## {name}", "", "```text", sub.format_help().rstrip(), "```"]
    return "\n".join(parts)


def _bench() -> dict[str, Any]:
    results: dict[str, Any] = json.loads(BENCH.read_text("utf-8"))
    return results


def _met(ok: bool) -> str:  # noqa: FBT001 - a verdict, not a flag
    return "met" if ok else "**not met**"


def _benchmark() -> str:
    """The latest `make bench` results (bench/results.json, committed with each run)."""
    r = _bench()
    rows = [
        (
            "scrubber core, one process",
            f"{r['core_claims_per_s']:,} claims/s ({r['core_us_per_claim']} µs per claim)",
            f"≥ 20,000 claims/s: {_met(r['core_claims_per_s'] >= 20_000)}",
        ),
        ("worker end to end, exactly once", f"{r['e2e_claims_per_s']:,} claims/s", ""),
        (
            "pass-through baseline (bare aiokafka, same transactions)",
            f"{r['baseline_msgs_per_s']:,} records/s",
            "",
        ),
        (
            "ratio worker / baseline",
            f"{r['ratio']}",
            f"≥ 0.7: {_met(r['ratio'] >= 0.7)}",
        ),
        ("… with tracing on", f"{r['e2e_traced_claims_per_s']:,} claims/s", ""),
        (
            "… with claim history on",
            f"{r['e2e_history_claims_per_s']:,} claims/s ({r['history_ratio_to_off']} x off)",
            f"≥ 0.6 x off: {_met(r['history_ratio_to_off'] >= 0.6)}",
        ),
        (
            f"latency at half the worker's rate ({r['offered_per_s']:,} claims/s)",
            f"p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms; visible to a read_committed consumer: "
            f"p99 {r['p99_visible_ms']:g} ms",
            f"p99 ≤ 250 ms: {_met(r['p99_ms'] <= 250)}",
        ),
        (
            "worker memory while draining",
            f"{round(r['worker_rss_max_mb'])} MB RSS ({round(r['history_worker_rss_max_mb'])} MB "
            "with history on)",
            f"< 300 MB: {_met(r['worker_rss_max_mb'] < 300)}",
        ),
        (
            "history restore",
            f"{r['history_restore_patients_per_s']:,} patients/s; "
            f"{r['history_mb_per_100k_patients']} MB per 100,000 patients",
            "",
        ),
        (
            "intake: 837P / 837I / FHIR, one core",
            f"{r['convert_837p_claims_per_s']:,} / {r['convert_837i_claims_per_s']:,} / "
            f"{r['convert_fhir_claims_per_s']:,} claims/s",
            f"837P ≥ 10,000: {_met(r['convert_837p_claims_per_s'] >= 10_000)}",
        ),
        (
            "review page worklist, 50,000 open items",
            f"{r['review_worklist_ms_median']} ms median ({r['review_worklist_ms_max']} ms "
            "slowest)",
            f"≤ 300 ms: {_met(r['review_worklist_ms_max'] <= 300)}",
        ),
    ]
    lines = [
        f"Measured {r['measured_at']} on {r['cpu_count']} cores shared by the broker (Apache "
        f"Kafka {r['kafka_version']}), the worker and the load generator; Python "
        f"{r['python']}, git {r['git_rev']}; {r['claims']:,} claims of "
        f"{r['claim_bytes_mean']:,} bytes on average.",
        "",
        "| measure | result | target |",
        "|---|---|---|",
        *[f"| {name} | {value} | {target} |" for name, value, target in rows],
    ]
    return "\n".join(lines)


def _sizing() -> str:
    """Workers for a peak rate, from the latest measured end-to-end rate of one worker."""
    rate = _bench()["e2e_claims_per_s"]
    lines = [
        f"The latest `make bench` measured **{rate:,} claims/s** for one worker end to end. "
        f"Sizing: workers = ⌈peak claims/s ÷ {rate:,}⌉ + 1 (headroom and failover), input "
        "partitions ≥ workers:",
        "",
        "| peak claims/s | workers | input partitions |",
        "|---|---|---|",
    ]
    for peak in (1_000, 10_000, 40_000):
        workers = math.ceil(peak / rate) + 1
        lines.append(f"| {peak:,} | {workers} | {max(6, workers)} |")
    return "\n".join(lines)


_PARTS = {
    "rules": _rules,
    "commands": _commands,
    "benchmark": _benchmark,
    "sizing": _sizing,
}


def on_page_markdown(markdown: str, **_: object) -> str:
    def generated(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in _PARTS:
            raise ValueError(f"unknown generated part {name!r}")
        return _PARTS[name]()

    return _MARKER.sub(generated, markdown)
