#!/usr/bin/env bash
# Run a command against a Kafka broker: the one SCRUBBER_KAFKA_BOOTSTRAP_SERVERS names, or else
# the local broker, started for the command and stopped after it on any exit (unless it was
# already running, in which case it is left as it was).
#   deploy/kafka/with-broker.sh COMMAND [ARG...]
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
pidfile="$here/../../.kafka/kafka.pid"
kafka="bash $here/kafka.sh"

started_broker=0
stop_broker() {
  local status=$?
  if [ "$started_broker" = 1 ]; then $kafka down || true; fi
  exit "$status"
}
trap stop_broker EXIT
trap 'exit 130' INT TERM

if [ -z "${SCRUBBER_KAFKA_BOOTSTRAP_SERVERS:-}" ]; then
  if ! [ -f "$pidfile" ] || ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    started_broker=1
  fi
  $kafka up
  export SCRUBBER_KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092
fi

"$@"
