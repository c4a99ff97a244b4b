#!/usr/bin/env bash
# Record every real client heady reads (Claude Code, Codex, opencode) against the fake model servers in
# tests/ and refresh tests/fixtures/real/. Each client's script pins its version; pass none to use them.
# Re-record when a client releases a new version: see docs/sources.md.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
status=0
for client in claude codex opencode; do
  script="$HERE/record/$client.sh"
  if [ -x "$script" ]; then
    echo "== $client"
    "$script" || { echo "recording $client failed" >&2; status=1; }
  else
    echo "== $client: no recording script yet ($script)" >&2
  fi
done
exit $status
