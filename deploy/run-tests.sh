#!/usr/bin/env bash
# `make test`: static checks and every test against a real broker (see with-broker.sh).
#
# Two lanes run side by side: the tests that need no broker (CPU-bound), and the real-Kafka
# tests (mostly waiting on the broker and on worker processes), which start the broker first.
# The type check runs beside them too. Each lane's report is printed when it ends; the run
# fails if any lane failed, and every process it started is stopped on any exit.
# With arguments, one pytest run of exactly those (e.g. `make test ARGS=tests/unit`).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=.venv/bin

$bin/ruff check services tests bench
$bin/ruff format --check services tests bench

if [ $# -gt 0 ]; then
  $bin/mypy
  $bin/lint-imports
  exec bash deploy/kafka/with-broker.sh $bin/pytest "$@"
fi

logs=$(mktemp -d)
lanes=()
stop_lanes() {
  local status=$? pid
  for pid in "${lanes[@]}"; do
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  done
  rm -rf "$logs"
  exit "$status"
}
trap stop_lanes EXIT
trap 'exit 130' INT TERM

set -m  # each lane in its own process group, so that stopping it stops its children
(
  $bin/mypy
  $bin/lint-imports
) >"$logs/types" 2>&1 &
lanes+=($!)
$bin/pytest -m "not kafka" -p no:cacheprovider >"$logs/unit" 2>&1 &
lanes+=($!)
set +m

kafka_status=0
bash deploy/kafka/with-broker.sh $bin/pytest -m kafka -p no:cacheprovider || kafka_status=$?

failed=0
for lane in types unit; do
  status=0
  wait "${lanes[0]}" || status=$?
  lanes=("${lanes[@]:1}")
  echo "---- $lane ----"
  cat "$logs/$lane"
  [ "$status" = 0 ] || failed=1
done
[ "$kafka_status" = 0 ] || failed=1
exit "$failed"
