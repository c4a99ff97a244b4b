#!/usr/bin/env bash
# Record real opencode sessions against the fake OpenAI server (Chat Completions) on loopback and
# save them as replay fixtures in tests/fixtures/real/opencode-<version>/.
#   scripts/record/opencode.sh [version]      (default: the pinned version below)
# Needs npm and the repo's .venv (httpx). Everything opencode writes stays in a temporary HOME,
# removed at the end (KEEP_TMP=1 keeps it, e.g. to read opencode's own log).
set -euo pipefail
cd "$(dirname "$0")/../.."
VERSION="${1:-1.18.33}"
PY=.venv/bin/python
TMP="$(mktemp -d)"
trap 'kill $(cat "$TMP/fake.pid" 2>/dev/null) 2>/dev/null || true; [ -n "${KEEP_TMP:-}" ] || rm -rf "$TMP"' EXIT

npm install --silent --no-audit --no-fund --prefix "$TMP/npm" "opencode-ai@$VERSION" >/dev/null
OPENCODE="$(find "$TMP/npm/node_modules" -path '*/bin/opencode' -type f | head -1)"
[ -x "$OPENCODE" ] || { echo "opencode binary not found after npm install" >&2; exit 1; }

export HOME="$TMP/home"
export XDG_CONFIG_HOME="$HOME/.config" XDG_DATA_HOME="$HOME/.local/share" XDG_CACHE_HOME="$HOME/.cache" XDG_STATE_HOME="$HOME/.local/state"
# No update checks, sharing, model-list downloads, LSP downloads or plugins: only the fake server is called.
export OPENCODE_DISABLE_AUTOUPDATE=1 OPENCODE_DISABLE_SHARE=1 OPENCODE_DISABLE_MODELS_FETCH=1 \
  OPENCODE_DISABLE_DEFAULT_PLUGINS=1 OPENCODE_DISABLE_LSP_DOWNLOAD=1 OPENCODE_DISABLE_CLAUDE_CODE=1 \
  OPENCODE_DISABLE_EXTERNAL_SKILLS=1 OPENCODE_DISABLE_EMBEDDED_WEB_UI=1
mkdir -p "$XDG_CONFIG_HOME/opencode" "$TMP/work"

OUT="tests/fixtures/real/opencode-$VERSION"
rm -rf "$OUT"
mkdir -p "$OUT"
cat > "$TMP/schedule.json" <<'JSON'
{"rules": [{"match": "RETRY429", "fault": "429", "times": 1},
           {"match": "FAIL500", "fault": "500", "times": null},
           {"match": "BROKEN", "fault": "broken", "times": 1},
           {"match": "BADREQUEST", "fault": "400", "times": null}]}
JSON
cp "$TMP/schedule.json" "$OUT/schedule.json"
"$PY" tests/fake_openai.py --port-file "$TMP/fake.port" --log "$OUT/server-log.jsonl" --schedule "$TMP/schedule.json" --seed 7 &
echo $! > "$TMP/fake.pid"
# Anthropic answers carry 5-minute / 1-hour cache-write splits, which opencode does not keep.
"$PY" tests/fake_anthropic.py --port-file "$TMP/anthropic.port" --log "$OUT/anthropic-server-log.jsonl" --seed 3 &
echo $! >> "$TMP/fake.pid"
for _ in $(seq 100); do [ -s "$TMP/fake.port" ] && [ -s "$TMP/anthropic.port" ] && break; sleep 0.1; done
FAKE_PORT="$(cat "$TMP/fake.port")"
ANTHROPIC_PORT="$(cat "$TMP/anthropic.port")"

# The title model differs from the session model so the server log tells title requests apart
# (opencode records no message for them).
cat > "$XDG_CONFIG_HOME/opencode/opencode.json" <<JSON
{"\$schema": "https://opencode.ai/config.json", "autoupdate": false, "share": "disabled",
 "provider": {"fake": {"npm": "@ai-sdk/openai-compatible", "name": "Fake OpenAI",
   "options": {"baseURL": "http://127.0.0.1:$FAKE_PORT/v1", "apiKey": "not-a-key"},
   "models": {"gpt-5": {"name": "gpt-5", "cost": {"input": 1.25, "output": 10, "cache_read": 0.125}},
              "gpt-5-mini": {"name": "gpt-5-mini", "cost": {"input": 0.25, "output": 2, "cache_read": 0.025}}}},
   "anthropic": {"options": {"baseURL": "http://127.0.0.1:$ANTHROPIC_PORT/v1", "apiKey": "not-a-key"}}},
 "model": "fake/gpt-5", "small_model": "fake/gpt-5-mini"}
JSON

SERVE_PORT="$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
"$PY" scripts/record/opencode_sessions.py --opencode "$OPENCODE" --work "$TMP/work" --out "$OUT" \
  --port "$SERVE_PORT" --provider fake --model gpt-5 --anthropic-model claude-sonnet-4-5 \
  --db "$XDG_DATA_HOME/opencode/opencode.db"

# Absolute temporary paths are the only thing rewritten.
{ grep -rlF "$TMP" "$OUT" --exclude=opencode.db || true; } | while read -r f; do sed -i "s#$TMP#/tmp/REC#g" "$f"; done
"$PY" - "$OUT/opencode.db" "$TMP" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
for table, column in (("session", "directory"), ("message", "data"), ("part", "data"), ("project", "worktree"),
                      ("event", "data"), ("project_directory", "directory"), ("session_message", "data")):
    db.execute(f"UPDATE {table} SET {column} = replace({column}, ?, '/tmp/REC')", (sys.argv[2],))
db.commit()
db.execute("VACUUM")
PY
du -sh "$OUT"
