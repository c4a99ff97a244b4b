#!/usr/bin/env bash
# Records real Codex CLI sessions against tests/fake_openai.py and saves the rollouts Codex wrote,
# with the server's log of every answer it gave, as tests/fixtures/real/codex-<version>/.
#
#   scripts/record/codex.sh            # the pinned version
#   CODEX_VERSION=0.172.0 scripts/record/codex.sh
#
# Codex is installed from npm into a temp prefix; HOME and CODEX_HOME are temp dirs; the model
# provider is the fake server on 127.0.0.1 with a fake key; analytics and update checks are off.
set -euo pipefail

VERSION="${CODEX_VERSION:-0.171.0}"
REPO="$(cd "$(dirname "$0")/../.." && pwd)"
PYTHON="${PYTHON:-$REPO/.venv/bin/python}"
OUT="$REPO/tests/fixtures/real/codex-$VERSION"
TMP="$(mktemp -d /tmp/heady-record-codex.XXXXXX)"
SERVER_PID=""
cleanup() {
    if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; fi
    rm -rf "$TMP"
}
trap cleanup EXIT

echo "installing @openai/codex@$VERSION" >&2
npm install --silent --no-audit --no-fund --prefix "$TMP/npm" "@openai/codex@$VERSION" >&2
CODEX="$TMP/npm/node_modules/.bin/codex"

# Faults by prompt text: one 429 (Retry-After: 1) then success, a 429 without a retry hint, a 500
# on every attempt, one broken stream then success.
cat >"$TMP/schedule.json" <<'EOF'
{"rules": [
  {"match": "RATE-LIMITED-ONCE", "fault": "429", "times": 1},
  {"match": "RATE-LIMITED-NO-HINT", "fault": "429", "times": null, "retry_after": null},
  {"match": "SERVER-DOWN", "fault": "500", "times": null},
  {"match": "STREAM-BREAKS-ONCE", "fault": "broken", "times": 1}
]}
EOF
"$PYTHON" "$REPO/tests/fake_openai.py" --seed 7 --port-file "$TMP/port" --log "$TMP/server.jsonl" \
    --schedule "$TMP/schedule.json" &
SERVER_PID=$!
for _ in $(seq 100); do [ -s "$TMP/port" ] && break; sleep 0.1; done
PORT="$(cat "$TMP/port")"

export HOME="$TMP/home" CODEX_HOME="$TMP/home/.codex" FAKE_OPENAI_API_KEY="sk-fake-recording"
mkdir -p "$CODEX_HOME" "$TMP/work"
cat >"$CODEX_HOME/config.toml" <<EOF
model = "gpt-5-codex"
model_provider = "fake"
check_for_update_on_startup = false

[model_providers.fake]
name = "fake"
base_url = "http://127.0.0.1:$PORT/v1"
env_key = "FAKE_OPENAI_API_KEY"
wire_api = "responses"
request_max_retries = 2
stream_max_retries = 1
stream_idle_timeout_ms = 5000

[analytics]
enabled = false

[features]
# The TUI would start a background app-server daemon that outlives the recording.
daemon_auto_start = false

[projects."$TMP/work"]
trust_level = "trusted"  # no "Trust this folder?" dialog in the TUI
EOF
git -C "$TMP/work" init -q -b record-codex

run() {  # codex exec ARGS... ; a failing turn is part of the recording, not an error here
    (cd "$TMP/work" && "$CODEX" exec --skip-git-repo-check -s workspace-write "$@" </dev/null >>"$TMP/codex.out" 2>&1) || true
}
last_session() {
    find "$CODEX_HOME/sessions" -name 'rollout-*.jsonl' -newer "$1" | head -n 1 | sed -E 's/.*-([0-9a-f-]{36})\.jsonl$/\1/'
}

echo "recording sessions" >&2
run "Say hello."                                        # one clean call
run "Show the date. RUN: echo hello"                    # a tool call and the answer after it
run "Delegate. SPAWN: Count to three."                  # a sub-agent (its own rollout), waited for
run "Try again. RATE-LIMITED-ONCE"                      # 429 with Retry-After, retried, then success
run "Give up. RATE-LIMITED-NO-HINT"                     # 429 without a hint: Codex 0.171 gives up
run "This will fail. SERVER-DOWN"                       # 500 on every attempt: a failed turn
run "Stream this. STREAM-BREAKS-ONCE"                   # broken stream, retried, then success
touch "$TMP/mark"
run -c model_auto_compact_token_limit=1500 "First turn of a long session. RUN: echo one"
SID="$(last_session "$TMP/mark")"
# Second and third turns of the same session: every answer is past the limit, so Codex compacts
# (within the first turn and before the second).
run -c model_auto_compact_token_limit=1500 resume "$SID" "Second turn."
run -c model_auto_compact_token_limit=1500 resume "$SID" "Third turn. SERVER-DOWN"

# The interactive TUI in a pseudo-terminal: a prompt, a manual /compact, another prompt, a prompt
# whose tool call is interrupted with Esc. (The TUI also asks the model for a thread title, in a
# thread that writes no rollout.)
(cd "$TMP/work" && CODEX="$CODEX" SERVER_LOG="$TMP/server.jsonl" "$PYTHON" - <<'PY' >>"$TMP/codex.out")
import os, re, time
import pexpect

child = pexpect.spawn(os.environ["CODEX"], ["-s", "workspace-write", "-a", "never"], env=dict(os.environ, TERM="xterm-256color"),
                      dimensions=(40, 120), encoding="utf-8", timeout=30)

screen = []

def pump(seconds):  # keep reading the screen so the TUI never blocks on a full pty
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            screen.append(child.read_nonblocking(65536, timeout=0.2))
        except pexpect.TIMEOUT:
            pass
        except pexpect.EOF:
            return

def answers():
    with open(os.environ["SERVER_LOG"]) as fh:
        return sum(1 for _ in fh)

def plain(chunks):  # what the terminal output says, without its escape sequences
    return re.sub(r"\x1b(\[[0-9;?<>=]*[a-zA-Z@~]|\][^\x07]*\x07|.)", "", "".join(chunks))

def submit(text):
    """Type until the composer shows the text, then press Enter until the server has answered
    (the TUI ignores keys while it is still starting)."""
    before = answers()
    for _ in range(30):
        mark = len(screen)
        child.send(text)
        pump(2)
        if text in plain(screen[mark:]):
            break
        child.send("\x15")  # ctrl-u: clear whatever part of it arrived
        pump(1)
    for _ in range(6):
        child.send("\r")
        pump(5)
        if answers() > before:
            return
    raise SystemExit(f"the TUI did not send {text!r}; its screen ended with: {plain(screen)[-600:]!r}")

child.expect("Ask Codex")  # the composer is drawn
pump(3)
for text in ("Say hello.", "/compact", "Say more.", "Wait for it. RUN: sleep 8"):
    submit(text)
child.send("\x1b")  # Esc while the tool runs: the turn is interrupted
pump(4)
child.send("/quit")
pump(1)
child.send("\r")
pump(2)
child.terminate(force=True)
PY

rm -rf "$OUT"
mkdir -p "$OUT"
(cd "$CODEX_HOME" && for d in sessions archived_sessions; do if [ -d "$d" ]; then find "$d" -name "rollout-*"; fi; done | while read -r f; do
    mkdir -p "$OUT/codex-home/$(dirname "$f")"
    sed "s#$TMP#/tmp/heady-record-codex#g" "$f" >"$OUT/codex-home/$f"
done)
cp "$CODEX_HOME/session_index.jsonl" "$OUT/codex-home/session_index.jsonl"
cp "$TMP/server.jsonl" "$OUT/server.jsonl"
cp "$TMP/schedule.json" "$OUT/schedule.json"
sed "s#$TMP#/tmp/heady-record-codex#g; s#127.0.0.1:$PORT#127.0.0.1:PORT#" "$CODEX_HOME/config.toml" >"$OUT/config.toml"
echo "$VERSION" >"$OUT/VERSION"
echo "saved $(find "$OUT" -type f | wc -l) files ($(du -sh "$OUT" | cut -f1)) to $OUT" >&2
