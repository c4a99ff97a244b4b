"""Claude Code sessions on this machine, from its transcripts and its live process registry.

Transcripts (`projects/**/*.jsonl`, subagent files included) are tailed with persisted offsets;
one `llm.call` per API response (deduplicated by `message.id:requestId`, persisted). The
registry (`sessions/<pid>.json`) says which sessions run and whether they are busy; sessions
that never appear there end after jsonl.INACTIVE_AFTER_S without a record. Facts: shared/SOURCES.md.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil

from ..accounts import Account, AccountFile, claude_account, claude_files
from ..protocol import Command
from .base import CommandError, SourceContext
from .common import PROCESS_ACTIONS, TITLE_CHARS, plain_text
from .managed import MANAGED_SESSION_ENV
from .ledger import CallLedger, anthropic_identity
from .radar import UNKNOWN_FIELD, UNKNOWN_TYPE
from .jsonl import HELD, FileCursor, JsonlSession, JsonlSource, as_int, parse_ts
from .runners import run_event_data, runner_of

# Records that carry no calls nor session activity, as of 2.1.332 (tests/fixtures/real); any other
# type is counted and noticed by the format radar.
KNOWN_RECORD_TYPES = frozenset({
    "user", "assistant", "system", "summary", "file-history-snapshot", "ai-title", "custom-title", "tag",
    "attachment", "atis-latch", "queue-operation", "last-prompt", "api-request", "api-request-blob",
    "api-request-shape", "cost-state", "mode", "tools-used", "permission-mode", "agent-name",
})
# Usage fields read or knowingly ignored (no tokens to price); a new one may be a new token kind.
KNOWN_USAGE_FIELDS = frozenset({
    "input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens", "cache_creation",
    "speed", "service_tier", "server_tool_use", "output_tokens_details", "inference_geo", "iterations",
    "fallback_credit",
})
PID_START_SLACK_S = 5.0  # a registry pid whose process started later than this after startedAt was reused
REGISTRY_STATES = {"busy": "running", "idle": "idle", "waiting": "waiting"}
SYNTHETIC_MODEL = "<synthetic>"  # Claude Code's model name for messages it wrote itself, not the API
# The note Claude Code (2.1.3xx) adds after a response whose stream broke, before asking again.
CUT_OFF_NOTE = "Your response above was cut off mid-stream"
DETACHED_BRANCH = "HEAD"  # gitBranch outside a git repository or on a detached head: not a title
EXITED_GRACE_S = 5.0  # quiet this long with no Claude Code process in its directory: the session has exited
# Token kinds as LlmCallData names them, and as Claude Code's `cost-state` modelUsage does.
USAGE_KINDS = ("input_tokens", "output_tokens", "cache_creation_tokens", "cache_read_tokens",
               "cache_creation_5m_tokens", "cache_creation_1h_tokens")
COST_STATE_KINDS = ("inputTokens", "outputTokens", "cacheCreationInputTokens", "cacheReadInputTokens",
                    "cacheCreationEphemeral5mInputTokens", "cacheCreationEphemeral1hInputTokens")
COUNTED = "counted"  # FileCursor.extra key: {session: {model: tokens counted from this file, USAGE_KINDS order}}
UNWRITTEN_ERROR = None  # the calls found in cost-state succeeded (Claude Code totals answers only)
CLIENT_SCAN_EVERY_S = 10.0  # how old the list of running Claude Code processes may be
ERROR_CHARS = 80  # an error name from a transcript is cut here
UNKNOWN_DIR = ""  # _client_dirs() key of Claude Code processes whose working directory cannot be read
FAILED_ATTEMPT = "failed-attempt:"  # FileCursor.recent key prefix: a session's latest api_error record
HOLD_S = 30.0  # a partial-looking response nothing followed for this long is judged as it is (backfill, dead client)
UNSTATED_STOP = ""  # transcripts older than stop_reason: finished as far as anyone can tell
TITLE_RANK = {"branch": 0, "ai": 1, "custom": 2}  # a user's rename beats the generated title beats the branch
SHELL_TOOL = "Bash"
TEST_CALLS = "test-calls"  # FileCursor.extra key: {tool_use id: command} of test runs waiting for their result
TEST_CALLS_KEPT = 64  # a result that never comes must not grow the cursor without end
EXIT_CODE_LINE = re.compile(r"^(?:Error: )?Exit code (-?\d{1,3})\b")  # how Claude Code starts a failed command's result


def resolve_roots(configured: list[str], environ: Mapping[str, str]) -> list[Path]:
    """$CLAUDE_CONFIG_DIR when set (a comma-separated list, used alone, as Claude Code itself does), else the configured roots."""
    env = environ.get("CLAUDE_CONFIG_DIR", "").strip()
    if env:
        return [Path(p.strip()).expanduser() for p in env.split(",") if p.strip()]
    return [Path(p).expanduser() for p in configured]


@dataclass
class _Session(JsonlSession):
    in_registry: bool = False
    registry_status: str | None = None
    registry_started: float | None = None
    title_from: str | None = None  # a TITLE_RANK key
    # Read from its first record by an agent that tallies counted tokens (COUNTED in each file's
    # cursor); only then can Claude Code's `cost-state` be compared with them.
    counted_from_start: bool = False


@dataclass
class _Call:
    """One API response read from a transcript, kept until the records after it say whether it finished."""

    key: str
    sid: str
    when: float
    data: dict[str, Any]
    request_id: str | None
    uuid: str | None
    stop_reason: str | None
    failure: str | None = None  # set when a later record says the request failed
    followed: bool = False  # a later record continues from this one

    @property
    def suspect(self) -> bool:
        """A partial message looks like this: no stop reason, or only message_start's one output token."""
        return bool(self.data["ok"]) and (self.stop_reason is None or self.data["output_tokens"] <= 1)


class ClaudeCodeSource(JsonlSource[_Session]):
    name = "claude-code"
    watches = "claude-code"
    state_prefix = "cc"
    session_type = _Session
    log_folders = ("projects",)

    def __init__(self, ctx: SourceContext) -> None:
        cfg = ctx.config.claude_code
        super().__init__(ctx, resolve_roots(cfg.roots, os.environ), cfg.poll_interval_s)
        self._seen_calls: set[str] = set()
        self._clients: dict[str, list[int]] | None = None
        self._clients_at = float("-inf")
        self._clients_poll = -1  # the poll the process list was walked in
        self._polls = 0
        # cost-state records read this poll, with their file and its cursor
        self._pending_costs: list[tuple[str, dict[str, Any], float, Path, FileCursor]] = []
        self._reading: Path | None = None  # the file _records is reading
        self.ledger = CallLedger(ctx)  # the telemetry route (sources/otlp.py) may report the same calls
        self._account = AccountFile(claude_files(self.roots), claude_account)

    def _forget(self) -> None:
        super()._forget()
        self._seen_calls.clear()
        self._pending_costs.clear()

    def _poll_once(self) -> None:
        self._polls += 1
        self._read_logs()
        self._cost_states()
        self._read_registry()
        self._end_inactive()

    # --- transcripts --------------------------------------------------------------------

    def _records(self, path: Path, records: list[dict[str, Any]], cursor: FileCursor) -> None:
        models: dict[str, str] = {}
        for record in records:
            sid = record.get("sessionId")
            model = _real_model(record)
            if model is not None and isinstance(sid, str):
                models.setdefault(sid, model)
        calls = {call.key: call for call in _held(cursor)}
        self._reading = path
        for record in records:
            self._record(record, cursor, models, calls)
            self._settle(calls, cursor, None)  # in order: a call before the state change that follows it
        # What is left waits for its verdict in the next record: the next read, or the next quiet poll.
        self._settle(calls, cursor, self.ctx.clock.now())
        cursor.extra[HELD] = [asdict(call) for call in calls.values()]

    def _settle(self, calls: dict[str, _Call], cursor: FileCursor, now: float | None) -> None:
        """Emit the calls whose outcome is known (or, given `now`, that waited HOLD_S for it) and forget them."""
        for key, call in list(calls.items()):
            waited = now is not None and now - call.when >= HOLD_S
            if not call.suspect or call.followed or call.failure is not None or waited:
                self._emit_call(call, cursor)
                del calls[key]

    def _unchanged(self, path: Path, cursor: FileCursor) -> bool:
        """Nothing followed a partial-looking response for a whole poll: it is what it says."""
        if not cursor.extra.get(HELD):
            return False
        for call in _held(cursor):
            self._emit_call(call, cursor)
        cursor.extra[HELD] = []
        return True

    def _record(self, record: dict[str, Any], cursor: FileCursor, models: dict[str, str], calls: dict[str, _Call]) -> None:
        ts = parse_ts(record.get("timestamp"))
        uuid = record.get("uuid")
        parent = record.get("parentUuid")
        parent_ts = cursor.recent.get(parent) if isinstance(parent, str) else None
        if isinstance(uuid, str) and ts is not None:
            cursor.remember(uuid, ts)
        sid = record.get("sessionId")
        kind = record.get("type")
        if kind == "api-request" and isinstance(record.get("id"), str) and ts is not None:
            cursor.remember(record["id"], ts)  # the request's start: latency runs from here
        if kind not in KNOWN_RECORD_TYPES:
            self.radar.seen(UNKNOWN_TYPE, str(kind))
        if not isinstance(sid, str) or not sid:
            return
        if kind in ("ai-title", "custom-title"):
            self._titled(sid, record, kind, ts if ts is not None else self.ctx.clock.now())
            return
        if kind == "cost-state":
            session = self._load(sid)
            when = ts if ts is not None else (session.last_ts if session is not None and session.last_ts else self.ctx.clock.now())
            if self._reading is not None:
                self._pending_costs.append((sid, record, when, self._reading, cursor))
            return
        if kind not in ("user", "assistant", "system"):
            return  # snapshots, attachments and other bookkeeping carry no session activity
        if isinstance(parent, str):
            for call in calls.values():
                if call.uuid == parent and (call.key != _call_key(record)):
                    call.followed = True
                    if kind == "user" and _cut_off_note(record):
                        call.failure = "stream_cut_off"
        when = ts if ts is not None else self.ctx.clock.now()
        session = self._active_session(sid, record, when, models.get(sid))
        if kind == "assistant":
            self._assistant(session, record, when, _request_start(record, cursor, parent_ts), calls)
            _test_calls(record, cursor)
        elif kind == "user" and cursor.extra.get(TEST_CALLS):
            self._test_results(session, record, cursor, when)
        elif kind == "system" and record.get("subtype") == "api_error" and ts is not None:
            cursor.remember(f"{FAILED_ATTEMPT}{sid}", ts)
        elif kind == "system" and record.get("subtype") == "compact_boundary":
            meta = record.get("compactMetadata")
            trigger = meta.get("trigger") if isinstance(meta, dict) else None
            self._set_state(session, "compacted", trigger if isinstance(trigger, str) else "auto", when)

    def _titled(self, sid: str, record: dict[str, Any], kind: str, when: float) -> None:
        field_name, rank = ("customTitle", "custom") if kind == "custom-title" else ("aiTitle", "ai")
        title = record.get(field_name)
        session = self._session(sid)
        if isinstance(title, str) and title.strip() and TITLE_RANK[rank] >= TITLE_RANK.get(session.title_from or "", -1):
            self._describe(session, when, title=title.strip(), title_from=rank)

    def _active_session(self, sid: str, record: dict[str, Any], when: float, model_hint: str | None) -> _Session:
        session = self._active(sid, when)
        if session.cwd is None and isinstance(record.get("cwd"), str):
            session.cwd = record["cwd"]
        branch = record.get("gitBranch")
        named = session.title is None and isinstance(branch, str) and branch and branch != DETACHED_BRANCH
        if named or (session.model is None and model_hint):
            self._describe(session, when, model=session.model or model_hint, title=branch if named else None,
                           title_from="branch" if named else None)
        self._seen(session, when)
        return session

    def _describe(self, session: _Session, when: float, *, model: str | None = None, title: str | None = None,
                  title_from: str | None = None) -> None:
        """A model or title learnt: kept, and announced again if the session was announced without it."""
        changed = False
        if model is not None and model != session.model:
            session.model, changed = model, True
        title = plain_text(title, TITLE_CHARS) if title is not None else None
        if title and title != session.title:
            session.title, changed = title, True
        if title_from is not None:
            session.title_from = title_from
        if session.started is None:
            return  # not announced yet: the announcement carries it and saves the record
        if changed and not session.ended:
            self._reannounce(session, when)
        elif changed:
            self._save(session)

    def _assistant(self, session: _Session, record: dict[str, Any], when: float, started: float | None, calls: dict[str, _Call]) -> None:
        message = _message(record)
        key = _call_key(record)
        if key is None or key in self._seen_calls or self.ctx.get_state(f"cc.call:{key}") is not None:
            return
        request_id = record.get("requestId") if isinstance(record.get("requestId"), str) else None
        model = message.get("model")
        if model == SYNTHETIC_MODEL:
            if not record.get("isApiErrorMessage"):
                return  # Claude Code's own placeholder ("No response requested."): no request was made
            for call in calls.values():
                if request_id is not None and call.request_id == request_id and call.suspect:
                    call.failure = _error(record)  # the partial response before it and this error are one request
                    return
        elif isinstance(model, str) and model:
            self._describe(session, when, model=model)
        raw_usage = message.get("usage")
        usage: dict[str, Any] = raw_usage if isinstance(raw_usage, dict) else {}
        for name in usage.keys() - KNOWN_USAGE_FIELDS:
            self.radar.seen(UNKNOWN_FIELD, f"message.usage.{name}")
        failed = bool(record.get("isApiErrorMessage"))
        data: dict[str, Any] = {
            "provider": "anthropic",
            "model": session.model or "",
            "input_tokens": as_int(usage.get("input_tokens")),
            "output_tokens": as_int(usage.get("output_tokens")),
            "cache_creation_tokens": as_int(usage.get("cache_creation_input_tokens")),
            "cache_read_tokens": as_int(usage.get("cache_read_input_tokens")),
            "cost_usd": _cost(record),
            "latency_ms": round((when - started) * 1000.0, 1) if started is not None and when >= started else None,
            "ok": not failed,
            "error": _error(record) if failed else None,
        }
        if failed and not any(data[kind] for kind in USAGE_KINDS[:4]):
            data["cost_usd"] = 0.0  # nothing was served: free, whatever the model (none, when it never got one)
        split = usage.get("cache_creation")
        if isinstance(split, dict):
            data["cache_creation_5m_tokens"] = as_int(split.get("ephemeral_5m_input_tokens"))
            data["cache_creation_1h_tokens"] = as_int(split.get("ephemeral_1h_input_tokens"))
        if isinstance(usage.get("speed"), str):
            data["speed"] = usage["speed"]
        stop = message.get("stop_reason", UNSTATED_STOP)  # an explicit null is a stream that never finished
        if failed:
            stop = "error"
        call = _Call(key, session.id, when, data, request_id, record.get("uuid") if isinstance(record.get("uuid"), str) else None,
                     stop if isinstance(stop, str) else None)
        earlier = calls.get(key)
        if earlier is None or (earlier.stop_reason is None and call.stop_reason is not None):
            calls[key] = call  # a message written block by block: its finished record has the final usage
        self._touch(session)

    def _test_results(self, session: _Session, record: dict[str, Any], cursor: FileCursor, when: float) -> None:
        """`test.run` for each result of a test runner's shell call (exit code from how Claude Code words it)."""
        waiting: dict[str, str] = cursor.extra[TEST_CALLS]
        content = _message(record).get("content")
        for block in content if isinstance(content, list) else []:
            if not isinstance(block, dict) or block.get("type") != "tool_result":
                continue
            tool_use_id = str(block.get("tool_use_id"))
            command = waiting.pop(tool_use_id, None)
            runner = runner_of(command) if command is not None else None
            key = f"cc.test:{tool_use_id}"
            if command is None or runner is None or self.ctx.get_state(key) is not None:
                continue  # not a test run, or reported before this file was read again from its start
            output = _result_text(block.get("content"))
            if block.get("is_error"):
                found = EXIT_CODE_LINE.match(output)
                if found is None:
                    continue  # refused, interrupted or timed out: the tests did not run to an end
                exit_code = int(found.group(1))
            else:
                exit_code = 0
            self.ctx.set_state(key, "1")
            self.ctx.emit("test.run", session.managed_as or session.id, run_event_data(command, runner, exit_code, output), ts=when)

    def _emit_call(self, call: _Call, cursor: FileCursor) -> None:
        if call.key in self._seen_calls:
            return
        self._seen_calls.add(call.key)
        self.ctx.set_state(f"cc.call:{call.key}", "1")
        data = dict(call.data)
        failure = call.failure or (None if call.stop_reason is not None else "stream_cut_off")
        if failure is not None and data["ok"]:
            data["ok"], data["error"] = False, failure
        session = self._session(call.sid)
        if call.request_id is None or self.ledger.first("transcript", session.id, anthropic_identity(call.request_id)):
            self._emit_counted(session, data, call.when, cursor)
        if session.state == "compacted" and data["ok"]:
            self._set_state(session, "running", "continued after compaction", call.when)

    def _emit_counted(self, session: _Session, data: dict[str, Any], when: float, cursor: FileCursor) -> None:
        """Emit a call and add its tokens to the file's tally (saved with the cursor, in the same commit)."""
        self.ctx.emit("llm.call", session.managed_as or session.id, data, ts=when)
        tally = cursor.extra.setdefault(COUNTED, {}).setdefault(session.id, {})
        counted = tally.setdefault(data["model"], [0] * len(USAGE_KINDS))
        for i, kind in enumerate(USAGE_KINDS):
            counted[i] += data.get(kind) or 0

    def _counted(self, sid: str, model: str) -> list[int]:
        """The tokens counted for a session and model over all its files (every cursor is loaded by now)."""
        total = [0] * len(USAGE_KINDS)
        for cursor in self._cursors.values():
            counted = cursor.extra.get(COUNTED, {}).get(sid, {}).get(model)
            if isinstance(counted, list) and len(counted) == len(USAGE_KINDS):
                total = [t + as_int(c) for t, c in zip(total, counted)]
        return total

    def _cost_states(self) -> None:
        """Requests Claude Code answered but wrote no response record for (the summaries `/compact`
        and auto-compaction ask for): its cumulative `cost-state` per model, less what was counted,
        is one more ok call. Run after every file of the poll is read, subagents' included."""
        latest = {sid: (record, when, path, cursor) for sid, record, when, path, cursor in self._pending_costs}  # the last holds the rest
        self._pending_costs.clear()
        for sid, (record, when, path, cursor) in sorted(latest.items()):
            session = self._load(sid)
            usage = record.get("modelUsage")
            if session is None or not session.counted_from_start or not isinstance(usage, dict):
                continue
            for model, totals in sorted(usage.items()):
                if not isinstance(model, str) or not isinstance(totals, dict) or model == SYNTHETIC_MODEL:
                    continue
                # What the telemetry route counted of this session was counted too (sources/ledger.py).
                counted = [a + b for a, b in zip(self._counted(sid, model), self.ledger.tallied(sid, model))]
                unseen = [max(0, as_int(totals.get(name)) - counted[i]) for i, name in enumerate(COST_STATE_KINDS)]
                if unseen[0] + unseen[2] + unseen[3] == 0:
                    continue  # every request sends input: output alone is a cut-off stream's tally, not a request
                data: dict[str, Any] = {"provider": "anthropic", "model": model, "cost_usd": None, "latency_ms": None,
                                        "ok": True, "error": UNWRITTEN_ERROR}
                data.update(zip(USAGE_KINDS, unseen))
                self._emit_counted(session, data, when, cursor)
                self.ledger.credit(sid, model, data)
                self.ctx.set_state(self._cursor_key(path), cursor.dump())

    def _session(self, sid: str) -> _Session:
        session = self._load(sid)
        if session is None:
            session = self._sessions[sid] = _Session(id=sid, counted_from_start=True)
        return session

    def _end(self, session: _Session, reason: str, when: float) -> None:
        session.in_registry = False
        session.registry_status = None
        session.pid = None
        super()._end(session, reason, when)

    # --- the live registry --------------------------------------------------------------------

    def _read_registry(self) -> None:
        listed: set[str] = set()
        dead: set[str] = set()
        now = self.ctx.clock.now()
        for root in self.roots:
            folder = root / "sessions"
            try:
                files = sorted(folder.glob("*.json"))
            except OSError:
                continue
            for path in files:
                entry = _read_json(path)
                if entry is None:
                    continue  # being written, or not a registry entry: next poll
                sid, pid = entry.get("sessionId"), entry.get("pid")
                if not isinstance(sid, str) or not sid or isinstance(pid, bool) or not isinstance(pid, int):
                    continue
                started_at = parse_ts(entry.get("startedAt"))
                if not _alive(pid, started_at):
                    dead.add(sid)  # a crash leaves its entry behind
                    continue
                listed.add(sid)
                with self.ctx.atomic():
                    self._registry_entry(sid, pid, entry, started_at, now)
        with self.ctx.atomic():
            for sid in sorted(self._live):
                session = self._sessions.get(sid)
                if session is not None and session.in_registry and sid not in listed:
                    self._end(session, "process gone" if sid in dead else "exited", now)

    def _registry_entry(self, sid: str, pid: int, entry: dict[str, Any], started_at: float | None, now: float) -> None:
        session = self._session(sid)
        if session.ended:
            self._reopen(session)
        if session.cwd is None and isinstance(entry.get("cwd"), str):
            session.cwd = entry["cwd"]
        changed = not session.in_registry or session.pid != pid
        session.in_registry = True
        session.pid = pid
        session.registry_started = started_at
        session.last_ts = max(session.last_ts, now)
        if session.started is None:
            self._announce(session, started_at or now)
        name = entry.get("name")
        if entry.get("nameSource") == "user" and isinstance(name, str) and name.strip():
            self._describe(session, now, title=name.strip(), title_from="custom")  # a /rename, before the transcript says it
        status = entry.get("status")
        if isinstance(status, str) and status != session.registry_status:
            session.registry_status = status
            state = REGISTRY_STATES.get(status)
            if state is not None and state != session.state and session.state != "paused":
                self._set_state(session, state, _registry_reason(status, entry), now)
                return
            changed = True
        if changed:
            self._save(session)

    def _quiet(self, session: _Session, now: float) -> str | None:
        """A session the registry lists ends when it leaves the registry. One it never listed (`claude -p`,
        or one that came and went between two polls) ends once quiet while no Claude Code process works
        in its directory, so neither a short session nor a restarted agent keeps finished ones open."""
        if session.in_registry:
            return None
        silence = now - session.last_ts
        if silence > EXITED_GRACE_S and session.cwd is not None:
            clients = self._client_dirs()  # a process scan: only for sessions gone quiet
            if session.cwd not in clients and UNKNOWN_DIR not in clients:
                return "exited"
        return super()._quiet(session, now)

    def _client_dirs(self, fresh: bool = False) -> dict[str, list[int]]:
        """The pids of running Claude Code processes by working directory, looked up at most every
        CLIENT_SCAN_EVERY_S (walking every process costs milliseconds), or, when `fresh`, once in this poll."""
        now = self.ctx.clock.now()
        stale = now - self._clients_at >= CLIENT_SCAN_EVERY_S or (fresh and self._clients_poll != self._polls)
        if self._clients is None or stale:
            self._clients_at, self._clients_poll = now, self._polls
            found: dict[str, list[int]] = {}
            for proc in psutil.process_iter(["name", "cmdline", "cwd"]):
                info = proc.info
                if _is_claude_code(info.get("name"), info.get("cmdline")):
                    # Another user's process hides its directory: then no session can be said to have exited.
                    cwd = info.get("cwd") if isinstance(info.get("cwd"), str) else UNKNOWN_DIR
                    found.setdefault(cwd, []).append(proc.pid)
            self._clients = found
        return self._clients

    def account_of(self, session: _Session) -> Account:
        return self._account.account()

    def _announce(self, session: _Session, when: float) -> None:
        if session.managed_as is None:
            session.managed_as = self._managed_session(session)
        super()._announce(session, when)

    def _managed_session(self, session: _Session) -> str | None:
        """The managed session whose process runs this one: named in the environment of its pid, or of
        the only Claude Code processes working in its directory."""
        if session.pid is not None:
            pids = [session.pid]
        elif session.cwd is not None:
            pids = self._client_dirs().get(session.cwd) or self._client_dirs(fresh=True).get(session.cwd, [])
        else:
            return None
        names = set()
        for pid in pids:
            try:
                names.add(psutil.Process(pid).environ().get(MANAGED_SESSION_ENV))
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                names.add(None)
        found = names.pop() if len(names) == 1 else None
        return found if isinstance(found, str) and found else None

    # --- commands -----------------------------------------------------------------------

    async def command(self, cmd: Command) -> dict[str, Any]:
        session = self._target(cmd)
        if cmd.action in ("session.restart", "session.prompt"):
            raise self._only_watched(cmd.action)
        if cmd.action not in PROCESS_ACTIONS:
            raise CommandError("not_supported", f"{cmd.action} is not supported by the {self.name} source")
        pid = session.pid
        if pid is None or not _alive(pid, session.registry_started):
            raise CommandError("not_running", f"session {session.id} has no live process in the claude-code registry")
        resumed = REGISTRY_STATES.get(session.registry_status or "busy", "running")
        return self._act_on_process(cmd, session, pid, resumed)


def _registry_reason(status: str, entry: dict[str, Any]) -> str:
    """`permission` for a registry entry waiting for a permission prompt (the reason hooks give too)."""
    waiting_for = entry.get("waitingFor")
    if status == "waiting" and isinstance(waiting_for, str) and "permission" in waiting_for:
        return "permission"
    return f"claude-code status {status}"


def _real_model(record: dict[str, Any]) -> str | None:
    """The model an assistant record or an api-request record names, unless Claude Code made the message up."""
    if record.get("type") == "assistant":
        model = _message(record).get("model")
    elif record.get("type") == "api-request" and isinstance(record.get("params"), dict):
        model = record["params"].get("model")
    else:
        return None
    return model if isinstance(model, str) and model and model != SYNTHETIC_MODEL else None


def _request_start(record: dict[str, Any], cursor: FileCursor, parent_ts: float | None) -> float | None:
    """When the request this response answers was made.

    The record the response follows (the prompt or tool result) precedes the request by Claude Code's
    preparation, so the span is never shorter than the server's. After a failed attempt that record
    would add the retry back-off: the successful attempt's own `api-request` record (2.1.2xx on) is
    the start then, else the failed attempt's error record.
    """
    failed_at = cursor.recent.get(f"{FAILED_ATTEMPT}{record.get('sessionId')}")
    if parent_ts is not None and (failed_at is None or failed_at < parent_ts):
        return parent_ts
    ref = record.get("requestRef")
    attempt = cursor.recent.get(ref) if isinstance(ref, str) else None
    return attempt if attempt is not None else failed_at


def _call_key(record: dict[str, Any]) -> str | None:
    """A response's identity: its message id and request id (one message is written as several records)."""
    message_id = _message(record).get("id")
    request_id = record.get("requestId")
    if isinstance(message_id, str) and message_id:
        return f"{message_id}:{request_id}" if isinstance(request_id, str) and request_id else message_id
    uuid = record.get("uuid")
    return uuid if isinstance(uuid, str) and uuid else None


def _cut_off_note(record: dict[str, Any]) -> bool:
    content = _message(record).get("content")
    return bool(record.get("isMeta")) and isinstance(content, str) and content.startswith(CUT_OFF_NOTE)


def _test_calls(record: dict[str, Any], cursor: FileCursor) -> None:
    """Remember the shell tool calls that run a test runner until their results come."""
    content = _message(record).get("content")
    for block in content if isinstance(content, list) else []:
        if not isinstance(block, dict) or block.get("type") != "tool_use" or block.get("name") != SHELL_TOOL:
            continue
        tool_input = block.get("input")
        command = tool_input.get("command") if isinstance(tool_input, dict) else None
        if isinstance(command, str) and isinstance(block.get("id"), str) and runner_of(command) is not None:
            waiting = cursor.extra.setdefault(TEST_CALLS, {})
            waiting[block["id"]] = command
            while len(waiting) > TEST_CALLS_KEPT:
                del waiting[next(iter(waiting))]


def _result_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    parts = content if isinstance(content, list) else []
    return "\n".join(p["text"] for p in parts if isinstance(p, dict) and isinstance(p.get("text"), str))


def _held(cursor: FileCursor) -> list[_Call]:
    calls = []
    for raw in cursor.extra.get(HELD) or []:
        try:
            calls.append(_Call(**raw))
        except TypeError:
            continue  # a cursor written by an older agent: nothing of it can be trusted
    return calls


def _message(record: dict[str, Any]) -> dict[str, Any]:
    message = record.get("message")
    return message if isinstance(message, dict) else {}


def _cost(record: dict[str, Any]) -> float | None:
    value = record.get("costUSD")  # very old transcripts priced calls themselves
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
        return float(value)
    return None


def _error(record: dict[str, Any]) -> str:
    error = record.get("error")
    status = record.get("apiErrorStatus")
    if isinstance(error, str) and plain_text(error, ERROR_CHARS):
        return plain_text(error, ERROR_CHARS)
    if isinstance(status, int) and not isinstance(status, bool):
        return f"http_{status}"
    return "api_error"


def _is_claude_code(name: Any, cmdline: Any) -> bool:
    """The native `claude` binary, or Node running the npm package's cli."""
    if name == "claude":
        return True
    args = cmdline if isinstance(cmdline, list) else []
    return any(isinstance(a, str) and ("claude-code" in a or os.path.basename(a) == "claude") for a in args[:2])


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        obj = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None


def _alive(pid: int, started_at: float | None) -> bool:
    """The pid runs and is the process the registry means (not a later one that reused the number)."""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        if started_at is not None and proc.create_time() > started_at + PID_START_SLACK_S:
            return False
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return False
    return True
