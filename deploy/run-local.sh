#!/usr/bin/env bash
# `make run`: the worker in the foreground, intake beside it (837P/FHIR from the inbound topics
# to claims.submitted) and the review page, on the local broker unless
# SCRUBBER_KAFKA_BOOTSTRAP_SERVERS is set, with claim history on. Ctrl-C (or SIGTERM) stops all
# three gracefully; when one exits, the others are stopped.
#   --secure (make run SECURE=1): on the local broker's SASL_SSL listener, each stage as its own
#   least-privileged user (scrubber, intake, review; kafka.sh grants their ACLs).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=.venv/bin

secure=0
if [ "${1:-}" = --secure ]; then
  secure=1
  if [ -n "${SCRUBBER_KAFKA_BOOTSTRAP_SERVERS:-}" ]; then
    echo "make run SECURE=1 runs on the local broker: unset SCRUBBER_KAFKA_BOOTSTRAP_SERVERS" >&2
    exit 2
  fi
fi

if [ -z "${SCRUBBER_KAFKA_BOOTSTRAP_SERVERS:-}" ]; then
  bash deploy/kafka/kafka.sh up
  export SCRUBBER_KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092
fi

# stage ENV_FILE COMMAND...: a stage's command, with --secure signed in as its own user.
stage() {
  local env_file=$1
  shift
  if [ "$secure" = 1 ]; then
    # shellcheck source=/dev/null
    source "$env_file"
  fi
  exec "$@"
}

# Claim history on (contract section 10), keyed by a secret generated once for this machine.
export SCRUBBER_HISTORY="${SCRUBBER_HISTORY:-on}"
if [ "$SCRUBBER_HISTORY" = on ] && [ -z "${SCRUBBER_HISTORY_KEY:-}${SCRUBBER_HISTORY_KEY_FILE:-}" ]; then
  key=.kafka/history.key
  if ! [ -s "$key" ]; then
    mkdir -p .kafka
    (umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$key")
  fi
  export SCRUBBER_HISTORY_KEY_FILE="$PWD/$key"
fi

port="${SCRUBBER_HTTP_PORT:-8080}"
intake_port=$(( port == 0 ? 0 : port + 2 ))   # /metrics, /livez, /readyz of intake (8081: the review page)

# The review page (contract section 12) on 127.0.0.1, with a token generated once.
export SCRUBBER_REVIEW_TOKEN_FILE="${SCRUBBER_REVIEW_TOKEN_FILE:-$PWD/.kafka/review.token}"
if ! [ -s "$SCRUBBER_REVIEW_TOKEN_FILE" ]; then
  mkdir -p "$(dirname "$SCRUBBER_REVIEW_TOKEN_FILE")"
  (umask 077 && head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$SCRUBBER_REVIEW_TOKEN_FILE")
fi
review_port="${SCRUBBER_REVIEW_PORT:-8081}"

(SCRUBBER_HTTP_PORT="$intake_port" stage .kafka/secure-intake.env "$bin/claim-scrubber" intake) &
intake=$!
(stage .kafka/secure.env "$bin/claim-scrubber" worker) &
worker=$!
(SCRUBBER_HTTP_PORT=0 stage .kafka/secure-review.env "$bin/claim-scrubber" review) &
review=$!
echo "review page: http://127.0.0.1:$review_port/login?token=$(cat "$SCRUBBER_REVIEW_TOKEN_FILE")" >&2

stop() { kill -TERM "$worker" "$intake" "$review" 2>/dev/null || true; }
trap stop INT TERM
status=0
wait -n "$worker" "$intake" "$review" || status=$?
stop
wait "$worker" 2>/dev/null || true
wait "$intake" 2>/dev/null || true
wait "$review" 2>/dev/null || true
exit "$status"
