#!/usr/bin/env bash
# `make test`: static checks and the docs' strict build, then every test: those without a broker, then those against a
# real broker (see with-broker.sh). With arguments: one pytest run of exactly those.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=.venv/bin

$bin/ruff check services tests bench docs
$bin/ruff format --check services tests bench docs
$bin/mypy
$bin/mypy docs/hooks.py
$bin/lint-imports
# The documentation site, strictly: a broken link or anchor, a page left out of the navigation
# or a generated part that fails stops the run.
NO_MKDOCS_2_WARNING=1 $bin/mkdocs build --strict --quiet
bash deploy/install-browser.sh  # the review page's browser tests
if [ $# -gt 0 ]; then
  exec bash deploy/kafka/with-broker.sh $bin/pytest "$@"
fi
# The tests that need no broker are CPU-bound: both cores, before the broker takes one. Then,
# against the local broker, the real-Kafka tests two at a time (each on topics of its own),
# and alone those that stop or add a broker or time the event loop (marked `exclusive`),
# adding their rows to the same fault-scenario table.
$bin/pytest -m "not kafka" -n 2 -p no:cacheprovider
bash deploy/kafka/with-broker.sh bash -c "
  $bin/pytest -m 'kafka and not exclusive' -n 2 -p no:cacheprovider &&
  DELIVERY_REPORT=append $bin/pytest -m 'kafka and exclusive' -p no:cacheprovider"
