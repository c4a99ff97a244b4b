#!/usr/bin/env bash
# Records the native OpenTelemetry of real Claude Code and Codex sessions, together with the
# transcripts / rollouts the same sessions wrote, against the local fake model servers, and saves
# them as tests/fixtures/real/otlp-claude-code-<version>/, otlp-codex-<version>/ and (exporting
# over gRPC) otlp-grpc-claude-code-<version>/, otlp-grpc-codex-<version>/.
#
#   scripts/record/otlp.sh                                   # the pinned versions, all four
#   scripts/record/otlp.sh codex-grpc                        # only some: claude, codex, claude-grpc, codex-grpc
#   CLAUDE_VERSION=2.1.400 CODEX_VERSION=0.172.0 scripts/record/otlp.sh
#
# Each client's OTLP export goes to scripts/record/otlp_capture.py on 127.0.0.1, which keeps every
# request body exactly as sent (protobuf or JSON, gzip or not; over gRPC the message as gRPC hands it
# over) and lists them in otlp/requests.jsonl. Needs npm (to install the clients) and the repo's .venv; the clients talk to
# 127.0.0.1 only. Takes about a minute plus the installs.
set -euo pipefail

CLAUDE_VERSION="${CLAUDE_VERSION:-2.1.332}"
CODEX_VERSION="${CODEX_VERSION:-0.171.0}"
MODEL="${MODEL:-claude-sonnet-4-5-20250929}"
REPO="$(cd "$(dirname "$0")/../.." && pwd)"
PARTS=" ${*:-claude codex claude-grpc codex-grpc} "
want() { [[ "$PARTS" == *" $1 "* ]]; }
PY="${PYTHON:-$REPO/.venv/bin/python}"
WORK="$(mktemp -d /tmp/heady-rec-otlp.XXXXXX)"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

wait_port() { for _ in $(seq 100); do [ -s "$1" ] && break; sleep 0.1; done; cat "$1"; }
start_capture() {  # start_capture DIR: prints the capture receiver's OTLP/HTTP port (its gRPC port: in DIR.grpc-port)
    "$PY" "$REPO/scripts/record/otlp_capture.py" --out "$1" --port-file "$1.port" --grpc-port-file "$1.grpc-port" >/dev/null 2>&1 &
    PIDS+=($!)
    wait_port "$1.grpc-port" >/dev/null
    wait_port "$1.port"
}
save_transcripts() {  # save_transcripts CLAUDE_CONFIG_DIR OUT
    (cd "$1" && find projects -type f -name '*.jsonl' | while read -r f; do
        mkdir -p "$2/claude/$(dirname "$f")"; sed "s#$WORK#/rec#g" "$f" | gzip -9n >"$2/claude/$f.gz"; done)
}
save_otlp() {  # save_otlp CAPTURE_DIR OUT: bodies gzipped for size (the listing says how each came)
    mkdir -p "$2/otlp"
    cp "$1/requests.jsonl" "$2/otlp/requests.jsonl"
    for f in "$1"/*-*; do
        case "$f" in *.gz) cp "$f" "$2/otlp/" ;; *) gzip -9n <"$f" >"$2/otlp/$(basename "$f").gz" ;; esac
    done
}

save_sessions() {  # save_sessions FILE: the CASES array (case -> session id) as JSON
    { echo "{"; first=1; for k in "${!CASES[@]}"; do [ $first = 1 ] || echo ","; first=0; printf '  "%s": "%s"' "$k" "${CASES[$k]}"; done; echo; echo "}"; } >"$1"
}

echo "installing @anthropic-ai/claude-code@$CLAUDE_VERSION and @openai/codex@$CODEX_VERSION" >&2
npm install --silent --no-audit --no-fund --prefix "$WORK/npm" \
    "@anthropic-ai/claude-code@$CLAUDE_VERSION" "@openai/codex@$CODEX_VERSION" >/dev/null
CLAUDE="$(ls "$WORK"/npm/node_modules/@anthropic-ai/claude-code-linux-x64*/claude 2>/dev/null | head -1)"
[ -x "$CLAUDE" ] || CLAUDE="$WORK/npm/node_modules/.bin/claude"
CODEX="$WORK/npm/node_modules/.bin/codex"

# --- Claude Code ----------------------------------------------------------------------------
if want claude; then
CC="$WORK/cc"
mkdir -p "$CC/home" "$CC/cfg" "$CC/work"
cat >"$CC/schedule.json" <<'JSON'
{"faults": [
  {"match": "RETRY-AFTER-429", "fault": "429", "times": 1},
  {"match": "ALWAYS-500", "fault": "500", "times": 1000},
  {"match": "BREAK-STREAM", "fault": "broken", "times": 1000}
]}
JSON
"$PY" "$REPO/tests/fake_anthropic.py" --log "$CC/answers.jsonl" --schedule "$CC/schedule.json" \
    --port-file "$CC/port" >"$CC/server.out" 2>&1 &
PIDS+=($!)
PORT="$(wait_port "$CC/port")"
CPORT="$(start_capture "$CC/capture")"

# Telemetry to the capture receiver only (1 s export intervals; logs are flushed at exit anyway).
claude() {  # claude PROTOCOL COMPRESSION ARGS...; prints the session id
    local protocol="$1" compression="$2"
    shift 2
    (cd "$CC/work" && env -i PATH=/usr/bin:/bin HOME="$CC/home" CLAUDE_CONFIG_DIR="$CC/cfg" \
        ANTHROPIC_BASE_URL="http://127.0.0.1:$PORT" ANTHROPIC_API_KEY=any DISABLE_AUTOUPDATER=1 \
        CLAUDE_CODE_MAX_RETRIES=2 CLAUDE_CODE_ENABLE_TELEMETRY=1 OTEL_LOGS_EXPORTER=otlp \
        OTEL_METRICS_EXPORTER=otlp OTEL_EXPORTER_OTLP_PROTOCOL="$protocol" \
        OTEL_EXPORTER_OTLP_COMPRESSION="$compression" OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$CPORT" \
        OTEL_LOGS_EXPORT_INTERVAL=1000 OTEL_METRIC_EXPORT_INTERVAL=1000 \
        timeout 120 "$CLAUDE" --model "$MODEL" --output-format json "$@" </dev/null \
        | "$PY" -c 'import json,sys; print(json.load(sys.stdin).get("session_id",""))') || true
}
declare -A CASES
echo "recording Claude Code" >&2
CASES[clean_json]="$(claude http/json none -p 'say hello')"
CASES[tool_call]="$(claude http/protobuf gzip --allowedTools='Bash(echo:*)' -p 'run it [[tool:Bash:{"command": "echo hi", "description": "say hi"}]]')"
CASES[retry_429]="$(claude http/protobuf gzip -p 'RETRY-AFTER-429 then answer')"
CASES[always_500]="$(claude http/protobuf none -p 'ALWAYS-500 never answers')"
CASES[broken_stream]="$(claude http/protobuf gzip -p 'BREAK-STREAM mid answer')"
COMPACT="$(claude http/protobuf gzip -p 'a turn to compact later')"
claude http/protobuf gzip -p --resume "$COMPACT" '/compact' >/dev/null
claude http/protobuf gzip -p --resume "$COMPACT" 'after the compaction' >/dev/null
CASES[compact]="$COMPACT"

OUT="$REPO/tests/fixtures/real/otlp-claude-code-$CLAUDE_VERSION"
rm -rf "$OUT"; mkdir -p "$OUT"
save_transcripts "$CC/cfg" "$OUT"
sed "s#$WORK#/rec#g" "$CC/answers.jsonl" >"$OUT/answers.jsonl"
cp "$CC/schedule.json" "$OUT/schedule.json"
save_otlp "$CC/capture" "$OUT"
save_sessions "$OUT/sessions.json"
echo "$CLAUDE_VERSION" >"$OUT/VERSION"
echo "saved $(find "$OUT" -type f | wc -l) files ($(du -sh "$OUT" | cut -f1)) to $OUT" >&2
fi

# --- Claude Code over OTLP/gRPC -------------------------------------------------------------
if want claude-grpc; then
CG="$WORK/cg"
mkdir -p "$CG/home" "$CG/cfg" "$CG/work"
cat >"$CG/schedule.json" <<'JSON'
{"faults": [
  {"match": "RETRY-AFTER-429", "fault": "429", "times": 1},
  {"match": "ALWAYS-500", "fault": "500", "times": 1000}
]}
JSON
"$PY" "$REPO/tests/fake_anthropic.py" --log "$CG/answers.jsonl" --schedule "$CG/schedule.json" \
    --port-file "$CG/port" >"$CG/server.out" 2>&1 &
PIDS+=($!)
PORT="$(wait_port "$CG/port")"
start_capture "$CG/capture" >/dev/null
GPORT="$(cat "$CG/capture.grpc-port")"
claude_grpc() {  # claude_grpc COMPRESSION ARGS...; prints the session id
    local compression="$1"
    shift
    (cd "$CG/work" && env -i PATH=/usr/bin:/bin HOME="$CG/home" CLAUDE_CONFIG_DIR="$CG/cfg" \
        ANTHROPIC_BASE_URL="http://127.0.0.1:$PORT" ANTHROPIC_API_KEY=any DISABLE_AUTOUPDATER=1 \
        CLAUDE_CODE_MAX_RETRIES=2 CLAUDE_CODE_ENABLE_TELEMETRY=1 OTEL_LOGS_EXPORTER=otlp \
        OTEL_METRICS_EXPORTER=otlp OTEL_EXPORTER_OTLP_PROTOCOL=grpc \
        OTEL_EXPORTER_OTLP_COMPRESSION="$compression" OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$GPORT" \
        OTEL_LOGS_EXPORT_INTERVAL=1000 OTEL_METRIC_EXPORT_INTERVAL=1000 \
        timeout 120 "$CLAUDE" --model "$MODEL" --output-format json "$@" </dev/null \
        | "$PY" -c 'import json,sys; print(json.load(sys.stdin).get("session_id",""))') || true
}
unset CASES
declare -A CASES
echo "recording Claude Code over OTLP/gRPC" >&2
CASES[clean_gzip]="$(claude_grpc gzip -p 'say hello')"
CASES[clean_plain]="$(claude_grpc none -p 'say hello uncompressed')"
CASES[tool_call]="$(claude_grpc gzip --allowedTools='Bash(echo:*)' -p 'run it [[tool:Bash:{"command": "echo hi", "description": "say hi"}]]')"
CASES[retry_429]="$(claude_grpc gzip -p 'RETRY-AFTER-429 then answer')"
CASES[always_500]="$(claude_grpc gzip -p 'ALWAYS-500 never answers')"

OUT="$REPO/tests/fixtures/real/otlp-grpc-claude-code-$CLAUDE_VERSION"
rm -rf "$OUT"; mkdir -p "$OUT"
save_transcripts "$CG/cfg" "$OUT"
sed "s#$WORK#/rec#g" "$CG/answers.jsonl" >"$OUT/answers.jsonl"
cp "$CG/schedule.json" "$OUT/schedule.json"
save_otlp "$CG/capture" "$OUT"
save_sessions "$OUT/sessions.json"
echo "$CLAUDE_VERSION" >"$OUT/VERSION"
echo "saved $(find "$OUT" -type f | wc -l) files ($(du -sh "$OUT" | cut -f1)) to $OUT" >&2
fi

# --- Codex, over OTLP/HTTP or OTLP/gRPC -----------------------------------------------------
record_codex() {  # record_codex http|grpc: the same sessions, exported over that transport
    local transport="$1"
    CX="$WORK/cx-$transport"
    mkdir -p "$CX/home/.codex" "$CX/work"
    cat >"$CX/schedule.json" <<'JSON'
{"rules": [
  {"match": "RATE-LIMITED-ONCE", "fault": "429", "times": 1},
  {"match": "SERVER-DOWN", "fault": "500", "times": null},
  {"match": "STREAM-BREAKS-ONCE", "fault": "broken", "times": 1}
]}
JSON
    "$PY" "$REPO/tests/fake_openai.py" --seed 7 --port-file "$CX/port" --log "$CX/server.jsonl" \
        --schedule "$CX/schedule.json" >"$CX/server.out" 2>&1 &
    PIDS+=($!)
    PORT="$(wait_port "$CX/port")"
    local otlp_port exporters first_run=() clean=clean out
    otlp_port="$(start_capture "$CX/capture")"
    if [ "$transport" = grpc ]; then
        otlp_port="$(cat "$CX/capture.grpc-port")"
        exporters="exporter = { otlp-grpc = { endpoint = \"http://127.0.0.1:$otlp_port\" } }
metrics_exporter = { otlp-grpc = { endpoint = \"http://127.0.0.1:$otlp_port\" } }"
        out="$REPO/tests/fixtures/real/otlp-grpc-codex-$CODEX_VERSION"
    else
        exporters="exporter = { otlp-http = { endpoint = \"http://127.0.0.1:$otlp_port/v1/logs\", protocol = \"binary\" } }
metrics_exporter = { otlp-http = { endpoint = \"http://127.0.0.1:$otlp_port/v1/metrics\", protocol = \"binary\" } }"
        # the clean call exported as OTLP/JSON (gRPC has only protobuf)
        first_run=(-c "otel.exporter={otlp-http={endpoint=\"http://127.0.0.1:$otlp_port/v1/logs\",protocol=\"json\"}}")
        clean=clean_json
        out="$REPO/tests/fixtures/real/otlp-codex-$CODEX_VERSION"
    fi
    cat >"$CX/home/.codex/config.toml" <<TOML
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

[otel]
environment = "record"
log_user_prompt = false
$exporters
TOML
    git -C "$CX/work" init -q -b record-codex
    unset CASES
    declare -gA CASES
    echo "recording Codex over OTLP/$transport" >&2
    CASES[$clean]="$(codex "${first_run[@]}" "Say hello.")"             # one clean call
    CASES[tool_call]="$(codex "Show the date. RUN: echo hello")"          # a tool call and the answer after it
    CASES[retry_429]="$(codex "Try again. RATE-LIMITED-ONCE")"           # 429 with Retry-After, retried, then success
    CASES[always_500]="$(codex "This will fail. SERVER-DOWN")"           # 500 on every attempt: a failed turn
    CASES[broken_stream]="$(codex "Stream this. STREAM-BREAKS-ONCE")"    # broken stream, retried, then success

    rm -rf "$out"; mkdir -p "$out"
    (cd "$CX/home/.codex" && find sessions -name 'rollout-*' | while read -r f; do
        mkdir -p "$out/codex-home/$(dirname "$f")"; sed "s#$WORK#/rec#g" "$f" >"$out/codex-home/$f"; done)
    cp "$CX/server.jsonl" "$out/server.jsonl"
    cp "$CX/schedule.json" "$out/schedule.json"
    sed "s#$WORK#/rec#g; s#127.0.0.1:$PORT#127.0.0.1:PORT#; s#127.0.0.1:$otlp_port#127.0.0.1:OTLP_PORT#g" \
        "$CX/home/.codex/config.toml" >"$out/config.toml"
    save_otlp "$CX/capture" "$out"
    save_sessions "$out/sessions.json"
    echo "$CODEX_VERSION" >"$out/VERSION"
    echo "saved $(find "$out" -type f | wc -l) files ($(du -sh "$out" | cut -f1)) to $out" >&2
}
codex() {  # codex ARGS...: one `codex exec` in $CX; prints its session id (a failing turn is part of the recording)
    local said
    said="$( (cd "$CX/work" && env HOME="$CX/home" CODEX_HOME="$CX/home/.codex" FAKE_OPENAI_API_KEY=sk-fake-recording \
        timeout 120 "$CODEX" exec --skip-git-repo-check -s workspace-write "$@" </dev/null 2>&1) || true)"
    printf '%s\n' "$said" >>"$CX/codex.out"
    printf '%s\n' "$said" | sed -n 's/^session id: //p' | head -1
}
want codex && record_codex http
want codex-grpc && record_codex grpc
