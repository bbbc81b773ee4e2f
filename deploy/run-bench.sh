#!/usr/bin/env bash
# `make bench`: the benchmark on the local broker (started here and stopped again, unless it
# was already running or SCRUBBER_KAFKA_BOOTSTRAP_SERVERS names another one).
set -euo pipefail
cd "$(dirname "$0")/.."
kafka="bash deploy/kafka/kafka.sh"

started_broker=0
stop_broker() {
  local status=$?
  if [ "$started_broker" = 1 ]; then $kafka down || true; fi
  exit "$status"
}
trap stop_broker EXIT
trap 'exit 130' INT TERM

if [ -z "${SCRUBBER_KAFKA_BOOTSTRAP_SERVERS:-}" ]; then
  if ! [ -f .kafka/kafka.pid ] || ! kill -0 "$(cat .kafka/kafka.pid)" 2>/dev/null; then
    started_broker=1
  fi
  $kafka up
  export SCRUBBER_KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092
fi

.venv/bin/python -m bench.run "$@"
