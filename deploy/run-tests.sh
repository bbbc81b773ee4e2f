#!/usr/bin/env bash
# `make test`: static checks, then every test: those without a broker, then those against a
# real broker (see with-broker.sh). With arguments: one pytest run of exactly those.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=.venv/bin

$bin/ruff check services tests bench
$bin/ruff format --check services tests bench
$bin/mypy
$bin/lint-imports
if [ $# -gt 0 ]; then
  exec bash deploy/kafka/with-broker.sh $bin/pytest "$@"
fi
# The tests that need no broker are CPU-bound: both cores, before the broker takes one. The
# real-Kafka tests then run one at a time (they start workers and brokers of their own).
$bin/pytest -m "not kafka" -n 2 -p no:cacheprovider
bash deploy/kafka/with-broker.sh $bin/pytest -m kafka -p no:cacheprovider
