#!/usr/bin/env bash
# `make test`: static checks, then every test against a real broker. A local broker started
# here is stopped again on any exit; one that was already running (or an external one given
# by SCRUBBER_KAFKA_BOOTSTRAP_SERVERS) is left alone.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=.venv/bin
kafka="bash deploy/kafka/kafka.sh"

started_broker=0
stop_broker() {
  local status=$?
  if [ "$started_broker" = 1 ]; then $kafka down || true; fi
  exit "$status"
}
trap stop_broker EXIT
trap 'exit 130' INT TERM

$bin/ruff check services tests bench
$bin/ruff format --check services tests bench
$bin/mypy
$bin/lint-imports

if [ -z "${SCRUBBER_KAFKA_BOOTSTRAP_SERVERS:-}" ]; then
  if ! [ -f .kafka/kafka.pid ] || ! kill -0 "$(cat .kafka/kafka.pid)" 2>/dev/null; then
    started_broker=1
  fi
  $kafka up
  export SCRUBBER_KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092
fi

$bin/pytest "$@"
