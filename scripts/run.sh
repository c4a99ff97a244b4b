#!/usr/bin/env bash
# Set up on a fresh machine, then start the console. With no [[nodes]] configured it supervises
# this machine through an embedded agent on loopback. Extra arguments go to `heady`.
# pip runs only when .venv is missing or the project files it was installed from changed (their
# hash is kept in .venv/heady-installed), so every later start goes straight to the console.
set -euo pipefail
cd "$(dirname "$0")/.."
stamp=.venv/heady-installed
wanted=$(cat pyproject.toml agent/pyproject.toml | sha256sum | cut -d' ' -f1)
if [ ! -x .venv/bin/heady ] || [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
    [ -x .venv/bin/python ] || python3 -m venv .venv
    .venv/bin/pip install -q --disable-pip-version-check -e .
    echo "$wanted" > "$stamp"
fi
exec .venv/bin/heady "$@"
