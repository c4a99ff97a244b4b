#!/usr/bin/env bash
# Record real Claude Code and Codex sessions whose shell tool runs a test runner (pytest), once
# passing and once failing, against tests/fake_anthropic.py and tests/fake_openai.py. Saved as
# tests/fixtures/real/test-runs/{claude-code-<v>,codex-<v>}/ for the sources' test.run events.
# Usage: scripts/record/test_runs.sh   (CLAUDE_VERSION / CODEX_VERSION override the pinned versions)
# Needs npm (the registry only); the clients talk to 127.0.0.1 and nothing else.
set -euo pipefail

CLAUDE_VERSION="${CLAUDE_VERSION:-2.1.332}"
CODEX_VERSION="${CODEX_VERSION:-0.171.0}"
MODEL="${MODEL:-claude-sonnet-4-5-20250929}"
REPO="$(cd "$(dirname "$0")/../.." && pwd)"
PY="${PYTHON:-$REPO/.venv/bin/python}"
OUT="$REPO/tests/fixtures/real/test-runs"
WORK="$(mktemp -d /tmp/heady-rec-tests.XXXXXX)"
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"' EXIT

echo "installing @anthropic-ai/claude-code@$CLAUDE_VERSION and @openai/codex@$CODEX_VERSION" >&2
npm install --silent --no-audit --no-fund --prefix "$WORK/npm-claude" "@anthropic-ai/claude-code@$CLAUDE_VERSION" >/dev/null
npm install --silent --no-audit --no-fund --prefix "$WORK/npm-codex" "@openai/codex@$CODEX_VERSION" >/dev/null
CLAUDE="$(ls "$WORK"/npm-claude/node_modules/@anthropic-ai/claude-code-linux-x64*/claude 2>/dev/null | head -1)"
[ -x "$CLAUDE" ] || CLAUDE="$WORK/npm-claude/node_modules/.bin/claude"
CODEX="$WORK/npm-codex/node_modules/.bin/codex"

# A small project with one passing and one failing test, and a `.venv/bin/pytest` that is the
# repository venv's. Claude Code runs `pytest` from PATH; Codex runs its shell as a login shell,
# which resets PATH, so it runs `.venv/bin/pytest`.
mkdir -p "$WORK/work/.venv/bin" "$WORK/work/tests" "$WORK/home" "$WORK/cfg"
printf '#!/bin/sh\nexec "%s" -m pytest -p no:cacheprovider "$@"\n' "$PY" >"$WORK/work/.venv/bin/pytest"
chmod +x "$WORK/work/.venv/bin/pytest"
printf 'def test_adds():\n    assert 1 + 1 == 2\n\n\ndef test_subtracts():\n    assert 2 - 1 == 1\n' >"$WORK/work/tests/test_ok.py"
printf 'def test_adds():\n    assert 1 + 1 == 2\n\n\ndef test_rounds():\n    assert round(2.5) == 3\n' >"$WORK/work/tests/test_bad.py"
git -C "$WORK/work" init -q -b tests 2>/dev/null || git -C "$WORK/work" init -q
TEST_PATH="$WORK/work/.venv/bin:/usr/bin:/bin"

echo '{"faults": []}' >"$WORK/anthropic-schedule.json"
"$PY" "$REPO/tests/fake_anthropic.py" --log "$WORK/anthropic.jsonl" --schedule "$WORK/anthropic-schedule.json" \
  --port-file "$WORK/anthropic-port" >"$WORK/anthropic.out" 2>&1 &
PIDS+=($!)
echo '{"rules": []}' >"$WORK/openai-schedule.json"
"$PY" "$REPO/tests/fake_openai.py" --seed 7 --port-file "$WORK/openai-port" --log "$WORK/openai.jsonl" \
  --schedule "$WORK/openai-schedule.json" >"$WORK/openai.out" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do [ -s "$WORK/anthropic-port" ] && [ -s "$WORK/openai-port" ] && break; sleep 0.1; done

echo "recording Claude Code" >&2
claude_run() {  # claude_run <prompt>; prints the session id
  (cd "$WORK/work" && env -i PATH="$TEST_PATH" HOME="$WORK/home" CLAUDE_CONFIG_DIR="$WORK/cfg" \
    ANTHROPIC_BASE_URL="http://127.0.0.1:$(cat "$WORK/anthropic-port")" ANTHROPIC_API_KEY=any DISABLE_TELEMETRY=1 \
    DISABLE_AUTOUPDATER=1 CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1 \
    timeout 120 "$CLAUDE" --model "$MODEL" --output-format json --allowedTools='Bash(pytest:*)' -p "$1" </dev/null \
    | "$PY" -c 'import json,sys; print(json.load(sys.stdin).get("session_id",""))') || true
}
PASSING="$(claude_run 'run the tests [[tool:Bash:{"command": "pytest -q tests/test_ok.py", "description": "run the passing tests"}]]')"
FAILING="$(claude_run 'run the tests [[tool:Bash:{"command": "pytest -q tests/test_bad.py", "description": "run the failing tests"}]]')"

echo "recording Codex" >&2
export CODEX_HOME="$WORK/codex-home"
mkdir -p "$CODEX_HOME"
cat >"$CODEX_HOME/config.toml" <<EOF
model = "gpt-5-codex"
model_provider = "fake"
check_for_update_on_startup = false

[model_providers.fake]
name = "fake"
base_url = "http://127.0.0.1:$(cat "$WORK/openai-port")/v1"
env_key = "FAKE_OPENAI_API_KEY"
wire_api = "responses"
request_max_retries = 2
stream_max_retries = 1

[analytics]
enabled = false
EOF
codex_run() {
  (cd "$WORK/work" && env HOME="$WORK/home" CODEX_HOME="$CODEX_HOME" FAKE_OPENAI_API_KEY=sk-fake-recording \
    timeout 120 "$CODEX" exec --skip-git-repo-check -s workspace-write "$1" </dev/null >>"$WORK/codex.out" 2>&1) || true
}
codex_run "Run the tests. RUN: .venv/bin/pytest -q tests/test_ok.py"
codex_run "Run the tests. RUN: .venv/bin/pytest -q tests/test_bad.py"
for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done

rm -rf "$OUT/claude-code-$CLAUDE_VERSION" "$OUT/codex-$CODEX_VERSION"
CC="$OUT/claude-code-$CLAUDE_VERSION"
mkdir -p "$CC"
(cd "$WORK/cfg" && find projects -type f -name '*.jsonl' | while read -r f; do
  mkdir -p "$CC/claude/$(dirname "$f")"; sed "s#$WORK#/rec#g" "$f" | gzip -9n >"$CC/claude/$f.gz"; done)
printf '{"passing": "%s", "failing": "%s"}\n' "$PASSING" "$FAILING" >"$CC/sessions.json"
CX="$OUT/codex-$CODEX_VERSION"
(cd "$CODEX_HOME" && find sessions -name 'rollout-*.jsonl' | while read -r f; do
  mkdir -p "$CX/codex-home/$(dirname "$f")"; sed "s#$WORK#/rec#g" "$f" >"$CX/codex-home/$f"; done)
sed "s#$WORK#/rec#g" "$WORK/anthropic.jsonl" >"$CC/answers.jsonl"
sed "s#$WORK#/rec#g" "$WORK/openai.jsonl" >"$CX/server.jsonl"
echo "recorded $(find "$OUT" -type f | wc -l) files into $OUT" >&2
