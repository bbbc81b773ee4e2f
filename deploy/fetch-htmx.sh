#!/usr/bin/env bash
# htmx for the review page, shipped inside the package (no CDN, no JavaScript build step):
# the pinned htmx.org release from the npm registry, checked against its known SHA-256.
set -euo pipefail
cd "$(dirname "$0")/.."
version=2.0.7
sha256=60231ae6ba9db3825eb15a261122d5f55921c4d53b66bf637dc18b4ee27c79f9
target=services/claim_scrubber/adapters/review/static/htmx.min.js
if [ -f "$target" ] && echo "$sha256  $target" | sha256sum --check --status; then
  exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack "htmx.org@$version" --silent >/dev/null && tar xzf "htmx.org-$version.tgz")
echo "$sha256  $work/package/dist/htmx.min.js" | sha256sum --check --status \
  || { echo "htmx.org@$version: unexpected SHA-256" >&2; exit 1; }
cp "$work/package/dist/htmx.min.js" "$target"
