#!/usr/bin/env bash
# Record real Claude Code sessions against tests/fake_anthropic.py and save them as replay fixtures.
# Usage: scripts/record/claude.sh [version]   (default: the pinned version below)
# Writes tests/fixtures/real/claude-code-<version>/: the transcripts Claude Code wrote (gzipped, temp
# paths replaced by /rec), every distinct registry entry of one interactive session in order
# (registry.jsonl), every status line input of two interactive sessions (statusline.jsonl: one with an
# API key, one signed in as a subscriber with a made-up OAuth token, whose answers carry the
# subscription's windows), the fake server's answer log, and sessions.json naming what each session
# exercises. Needs npm and network access to the npm registry only; the client talks to 127.0.0.1 and
# nothing else.
set -euo pipefail

VERSION="${1:-2.1.332}"
MODEL="${MODEL:-claude-sonnet-4-5-20250929}"  # a model our pricing table knows, so cost can be checked
REPO="$(cd "$(dirname "$0")/../.." && pwd)"
PY="${PYTHON:-$REPO/.venv/bin/python}"
OUT="$REPO/tests/fixtures/real/claude-code-$VERSION"
WORK="$(mktemp -d /tmp/heady-rec-claude.XXXXXX)"
trap 'kill "$SERVER_PID" 2>/dev/null || true; rm -rf "$WORK"' EXIT

echo "installing @anthropic-ai/claude-code@$VERSION into $WORK/npm"
npm install --silent --no-audit --no-fund --prefix "$WORK/npm" "@anthropic-ai/claude-code@$VERSION" >/dev/null
# The package's postinstall (which swaps in the native binary) may be blocked; run the binary directly.
CLAUDE="$(ls "$WORK"/npm/node_modules/@anthropic-ai/claude-code-linux-x64*/claude 2>/dev/null | head -1)"
[ -x "$CLAUDE" ] || CLAUDE="$WORK/npm/node_modules/.bin/claude"

mkdir -p "$WORK/home" "$WORK/cfg" "$WORK/work" "$WORK/repo"
cat > "$WORK/schedule.json" <<'JSON'
{"faults": [
  {"match": "RETRY-AFTER-429", "fault": "429", "times": 1},
  {"match": "ALWAYS-500", "fault": "500", "times": 1000},
  {"match": "BREAK-STREAM", "fault": "broken", "times": 1000},
  {"match": "ERROR-EVENT", "fault": "error_event", "times": 1}
],
 "unified_limits": {"5h": {"utilization": 0.39, "resets_in_s": 7200, "per_answer": 0.002},
                    "7d": {"utilization": 0.155, "resets_in_s": 400000}}}
JSON
"$PY" "$REPO/tests/fake_anthropic.py" --log "$WORK/answers.jsonl" --schedule "$WORK/schedule.json" \
  --port-file "$WORK/port" >"$WORK/server.out" 2>&1 &
SERVER_PID=$!
for _ in $(seq 50); do [ -s "$WORK/port" ] && break; sleep 0.1; done
PORT="$(cat "$WORK/port")"

# A clean environment: no user config, no telemetry, no update checks, only the fake server.
run() {  # run <dir> <claude args...>; prints the session id
  (cd "$1" && shift && env -i PATH=/usr/bin:/bin HOME="$WORK/home" CLAUDE_CONFIG_DIR="$WORK/cfg" \
    ANTHROPIC_BASE_URL="http://127.0.0.1:$PORT" ANTHROPIC_API_KEY=any DISABLE_TELEMETRY=1 \
    DISABLE_AUTOUPDATER=1 CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1 CLAUDE_CODE_MAX_RETRIES=2 \
    timeout 120 "$CLAUDE" --model "$MODEL" --output-format json "$@" </dev/null | "$PY" -c 'import json,sys; print(json.load(sys.stdin).get("session_id",""))') || true
}
git -C "$WORK/repo" init -q -b feature/replay 2>/dev/null || git -C "$WORK/repo" init -q

declare -A CASES
CASES[clean]="$(run "$WORK/repo" -p 'say hello')"
CASES[tool_call]="$(run "$WORK/work" --allowedTools='Bash(echo:*)' -p 'run it [[tool:Bash:{"command": "echo hi", "description": "say hi"}]]')"
CASES[subagent]="$(run "$WORK/work" --allowedTools=Agent -p 'delegate [[tool:Agent:{"description": "look around", "prompt": "list nothing", "subagent_type": "general-purpose"}]]')"
CASES[retry_429]="$(run "$WORK/work" -p 'RETRY-AFTER-429 then answer')"
CASES[always_500]="$(run "$WORK/work" -p 'ALWAYS-500 never answers')"
CASES[broken_stream]="$(run "$WORK/work" -p 'BREAK-STREAM mid answer')"
CASES[error_event]="$(run "$WORK/work" -p 'ERROR-EVENT mid answer')"
COMPACT="$(run "$WORK/work" -p 'a turn to compact later')"
run "$WORK/work" -p --resume "$COMPACT" '/compact' >/dev/null
run "$WORK/work" -p --resume "$COMPACT" 'after the compaction' >/dev/null
CASES[compact]="$COMPACT"

# One interactive session: its live registry (busy / idle / waiting on a permission prompt) and a rename.
# Its status line command (settings.json `statusLine`, which only interactive sessions run) appends
# each JSON object it is handed on stdin, bytes as given, as one line of statusline.jsonl.
cat > "$WORK/cfg/.claude.json" <<JSON
{"hasCompletedOnboarding": true, "theme": "dark", "customApiKeyResponses": {"approved": ["any"], "rejected": []},
 "projects": {"$WORK/work": {"hasTrustDialogAccepted": true, "allowedTools": []}}}
JSON
cat > "$WORK/statusline_capture.py" <<'PY'
import os, sys
data = sys.stdin.buffer.read().strip()
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
os.write(fd, data + b"\n")  # one write per input: redraws that overlap never interleave
PY
"$PY" -c 'import json, sys; print(json.dumps({"statusLine": {"type": "command", "command": " ".join(sys.argv[1:])}}))' \
  "$PY" "$WORK/statusline_capture.py" "$WORK/statusline.jsonl" >"$WORK/cfg/settings.json"
interactive_env() {  # interactive_env <auth variable> <its value>: the client's whole environment as JSON
  "$PY" -c 'import json, sys; print(json.dumps({"PATH": "/usr/bin:/bin", "HOME": sys.argv[1], "CLAUDE_CONFIG_DIR": sys.argv[2],
    "ANTHROPIC_BASE_URL": sys.argv[3], sys.argv[4]: sys.argv[5], "DISABLE_TELEMETRY": "1", "DISABLE_AUTOUPDATER": "1",
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "TERM": "xterm-256color"}))' \
    "$WORK/home" "$WORK/cfg" "http://127.0.0.1:$PORT" "$1" "$2"
}
interactive_env ANTHROPIC_API_KEY any >"$WORK/interactive-env.json"
CASES[interactive]="$("$PY" "$REPO/scripts/record/claude_interactive.py" "$CLAUDE" --cwd "$WORK/work" \
  --env "$WORK/interactive-env.json" --config-dir "$WORK/cfg" --model "$MODEL" --out "$WORK/registry.jsonl" || true)"
# The same steps signed in as a claude.ai subscriber: a CLAUDE_CODE_OAUTH_TOKEN (made up; the fake
# server accepts anything) and no API key. Claude Code reads the anthropic-ratelimit-unified-* headers
# only for such a login and then puts `rate_limits` in its status line input.
interactive_env CLAUDE_CODE_OAUTH_TOKEN made-up-oauth-token-for-the-fake-server >"$WORK/subscriber-env.json"
CASES[subscriber]="$("$PY" "$REPO/scripts/record/claude_interactive.py" "$CLAUDE" --cwd "$WORK/work" \
  --env "$WORK/subscriber-env.json" --config-dir "$WORK/cfg" --model "$MODEL" --out "$WORK/registry-subscriber.jsonl" || true)"
kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true

rm -rf "$OUT"; mkdir -p "$OUT"
# Transcripts repeat the system prompt in every session: gzip keeps the fixtures small (tests unpack them).
(cd "$WORK/cfg" && find projects sessions -type f \( -name '*.jsonl' -o -name '*.json' \) 2>/dev/null | while read -r f; do
  mkdir -p "$OUT/claude/$(dirname "$f")"; sed "s#$WORK#/rec#g" "$f" | gzip -9n >"$OUT/claude/$f.gz"; done)
sed "s#$WORK#/rec#g" "$WORK/answers.jsonl" >"$OUT/answers.jsonl"
[ -s "$WORK/registry.jsonl" ] && sed "s#$WORK#/rec#g" "$WORK/registry.jsonl" >"$OUT/registry.jsonl"
[ -s "$WORK/statusline.jsonl" ] && sed "s#$WORK#/rec#g" "$WORK/statusline.jsonl" >"$OUT/statusline.jsonl"
cp "$WORK/schedule.json" "$OUT/schedule.json"
{ echo "{"; first=1; for k in "${!CASES[@]}"; do [ $first = 1 ] || echo ","; first=0; printf '  "%s": "%s"' "$k" "${CASES[$k]}"; done; echo; echo "}"; } >"$OUT/sessions.json"
echo "recorded $(ls "$OUT"/claude/projects/*/*.jsonl.gz | wc -l) transcripts into $OUT ($(du -sh "$OUT" | cut -f1))"
