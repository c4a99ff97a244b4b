#!/usr/bin/env bash
# Everything the test suite needs on a fresh machine, then the suite itself.
set -euo pipefail
cd "$(dirname "$0")/.."
# System tools some tests drive (tmux for the terminal end-to-end test, chromium for the HTML
# report, prometheus-node-exporter for the agent benchmark and, with prometheus, the [[prometheus]]
# end-to-end test). Tests that need a missing tool skip.
need=()
command -v tmux >/dev/null || need+=(tmux)
command -v chromium >/dev/null || need+=(chromium)
command -v prometheus >/dev/null || need+=(prometheus)
command -v prometheus-node-exporter >/dev/null || need+=(prometheus-node-exporter)
if [ "${#need[@]}" -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null \
        || echo "warning: could not install ${need[*]}; the tests that need them will skip" >&2
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -e '.[dev]'
# Types (pyproject.toml [tool.mypy]) and the layering contracts of [tool.importlinter] (docs/internals.md).
.venv/bin/mypy
.venv/bin/lint-imports --no-logo --no-cache
# Two workers: most of the suite waits on real agents, sockets and child processes rather than the
# CPU, so on the 2-core CI machine this halves the wall time (about 7 min instead of 14).
exec .venv/bin/python -m pytest -q -n 2 "$@"
