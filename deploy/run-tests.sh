#!/usr/bin/env bash
# `make test`: static checks, then every test against a real broker (see with-broker.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=.venv/bin

$bin/ruff check services tests bench
$bin/ruff format --check services tests bench
$bin/mypy
$bin/lint-imports
bash deploy/kafka/with-broker.sh $bin/pytest "$@"
