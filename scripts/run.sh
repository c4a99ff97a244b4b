#!/usr/bin/env bash
# Set up on a fresh machine, then start the console. With no [[nodes]] configured it supervises
# this machine through an embedded agent on loopback. Extra arguments go to `heady`.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -e .
exec .venv/bin/heady "$@"
