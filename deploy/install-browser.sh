#!/usr/bin/env bash
# The review page's browser tests drive Debian's chromium (Playwright, executable_path): install
# it when it is missing. Needs root (or sudo); says what to do otherwise.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
  run=()
elif command -v sudo >/dev/null 2>&1; then
  run=(sudo)
else
  echo "install-browser: chromium is missing; install it: apt-get install chromium" >&2
  exit 1
fi
echo "install-browser: installing Debian's chromium for the review page's browser tests" >&2
"${run[@]}" apt-get install -y -q chromium >/dev/null 2>&1 \
  || { "${run[@]}" apt-get update -q >/dev/null && "${run[@]}" apt-get install -y -q chromium >/dev/null; }
