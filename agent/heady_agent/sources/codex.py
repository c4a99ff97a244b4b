"""Codex CLI sessions on this machine, from its rollout files (one file per session).

Rollouts under `sessions/YYYY/MM/DD/` and `archived_sessions/`, plain (`.jsonl`) or compressed
(`.jsonl.zst`), are tailed with a read position kept per rollout id, so a rollout that is moved to
the archive or compressed is not read again. Each response is one `llm.call`: Codex >= 0.171 logs a
`token_usage_record` (with `response_id`) right after the response and a `token_count` (with the
cumulative total and the account's rate limits) later, after any tool output; older versions only
the `token_count`. A turn Codex gives up on because its model request failed is one failed call.
Kill, pause, resume and renice act on the process that has the session's rollout open for writing.
A shell call left without its output while that process starts no command for it waits for the
person's approval (`waiting`, reason `approval`): Codex writes no approval record.
Facts: shared/SOURCES.md "Codex CLI"; docs/sources.md "codex".
"""

from __future__ import annotations

import asyncio
import functools
import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import zstandard

from ..accounts import Account, AccountFile, codex_account, codex_files
from ..protocol import Command
from .base import CommandError, SourceContext
from .common import PROCESS_ACTIONS, plain_text
from .ledger import FAILED_TURN, CallLedger, openai_identity
from .radar import UNKNOWN_FIELD, UNKNOWN_TYPE, UNREADABLE_FILE
from .runners import run_event_data, runner_of
from .jsonl import (
    FileCursor,
    JsonlSession,
    JsonlSource,
    as_int,
    parse_records,
    parse_ts,
    read_complete_lines,
    walk_jsonl,
)

_ROLLOUT_ID = re.compile(r"([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\.jsonl(\.zst)?$", re.I)
_SUFFIXES = (".jsonl", ".jsonl.zst")
# Records after which Codex asks the model: the latest one before a response starts its latency.
_REQUEST_EVENTS = ("task_started", "user_message")
_REQUEST_ITEMS = ("function_call_output", "custom_tool_call_output", "local_shell_call_output")
_USAGE_KEYS = ("input_tokens", "cached_input_tokens", "output_tokens", "reasoning_output_tokens", "total_tokens")
# Rollout record types this source knows (reads or deliberately ignores), and usage fields that are
# counted or known to be none of our business; anything else is a format change worth a notice.
_KNOWN_RECORDS = frozenset(
    {"session_meta", "turn_context", "response_item", "event_msg", "compacted", "token_usage_record", "world_state"}
)
_KNOWN_USAGE = frozenset(_USAGE_KEYS) | {"cache_write_input_tokens"}
_ERROR_KIND_MAX = 60
_TITLE_INDEX = "session_index.jsonl"  # {id, thread_name, updated_at} per line, written by the TUI
_TITLE_MAX = 200
# codex_error_info kinds of a turn Codex gave up on (codex-rs protocol `CodexErrorInfo`). All but the
# last three mean the model request failed; those three fail the turn without a model request.
_TURN_ERRORS = frozenset({
    "context_window_exceeded", "usage_limit_exceeded", "server_overloaded", "cyber_policy",
    "http_connection_failed", "response_stream_connection_failed", "internal_server_error", "unauthorized",
    "bad_request", "response_stream_disconnected", "response_too_many_failed_attempts", "other",
    "sandbox_error", "active_turn_not_steerable", "thread_rollback_failed",
})
_NOT_MODEL_ERRORS = frozenset({"sandbox_error", "active_turn_not_steerable", "thread_rollback_failed"})
# Shell tool calls: `exec_command` {"cmd": "..."} (0.171), `shell` {"command": [argv]} (older).
_SHELL_TOOLS = ("exec_command", "shell")
_TEST_CALLS = "test_calls"  # cursor extra: {call_id: command} of test runs waiting for their output
_TEST_CALLS_KEPT = 64
_EXIT_LINE = re.compile(r"^(?:Process exited with code|Exit code:?) (-?\d{1,3})\b", re.M)
_OUTPUT_START = re.compile(r"^Output:\n", re.M)  # what the tool printed follows this header
# A process's create time, read again, may differ by rounding; a reused pid starts far later.
_SAME_START_S = 0.05
# Shell tools whose command Codex may hold for the person's approval (0.171: `exec_command`).
_APPROVABLE_TOOLS = ("exec_command", "shell", "shell_command")
# A shell call this long without output and without a command process of its own waits for approval;
# below it, Codex may be between writing the call and starting the command.
APPROVAL_GRACE_S = 3.0
# psutil dates a process from the boot time, which Linux gives in whole seconds: up to 1 s early
# against the rollout's clock. A child started this long before the call is an older one (a
# background terminal of an earlier call, an MCP server), not the call's command.
_START_SLACK_S = 2.0


def resolve_roots(configured: list[str], environ: Mapping[str, str]) -> list[Path]:
    """$CODEX_HOME when set (where Codex itself writes), else the configured roots."""
    env = environ.get("CODEX_HOME", "").strip()
    if env:
        return [Path(env).expanduser()]
    return [Path(p).expanduser() for p in configured]


def rollout_id(path: Path) -> str | None:
    """The session uuid a rollout's file name ends with, whatever folder or compression it is in."""
    return _id_in_name(path.name)


@functools.lru_cache(maxsize=4096)  # asked for every rollout on every poll
def _id_in_name(name: str) -> str | None:
    match = _ROLLOUT_ID.search(name)
    return match.group(1).lower() if match else None


def read_compressed_lines(path: Path, cursor: FileCursor) -> tuple[list[bytes], int] | None:
    """The complete lines of a `.jsonl.zst` after the cursor (an offset in the uncompressed text).

    Codex compresses only finished rollouts, so the file is read once; the cursor remembers which
    compressed file it has read (inode and size) so later polls do not decompress it again.
    Raises OSError for a file that cannot be read, zstandard.ZstdError for one that is not zstd.
    """
    try:
        st = path.stat()
    except OSError:
        return None
    if cursor.extra.get("zst") == [st.st_ino, st.st_size]:
        return None
    with open(path, "rb") as fh:  # a file that exists but cannot be read raises: the caller counts it
        data = zstandard.ZstdDecompressor().stream_reader(fh).read()
    if len(data) < cursor.offset:  # not the text the cursor was counting: read it all again
        cursor.offset = 0
        cursor.recent.clear()
        cursor.extra.clear()
    cursor.extra["zst"] = [st.st_ino, st.st_size]
    end = data.rfind(b"\n")
    if end < cursor.offset:
        return None
    return data[cursor.offset : end + 1].splitlines(), end + 1


def latency_ms(asked: Any, answered: float) -> float | None:
    """Milliseconds from the record after which the request was sent to the answer's record."""
    if isinstance(asked, (int, float)) and not isinstance(asked, bool) and answered >= asked:
        return round((answered - asked) * 1000.0, 1)
    return None


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_ino, st.st_size


def usage_of(raw: Any) -> dict[str, int] | None:
    """A Codex usage object as token counts (non-negative ints), None if it is not one."""
    if not isinstance(raw, dict):
        return None
    return {k: as_int(raw.get(k)) for k in _USAGE_KEYS}


def rate_limits_of(raw: Any, when: float) -> dict[str, Any] | None:
    """`rate_limits` of a token_count as `llm.call` data: windows with a valid used_percent only."""
    if not isinstance(raw, dict):
        return None
    limits: dict[str, Any] = {}
    for name in ("primary", "secondary"):
        window = raw.get(name)
        if not isinstance(window, dict):
            continue
        used = _finite(window.get("used_percent"))
        if used is None or not 0.0 <= used <= 100.0:
            continue
        minutes = _finite(window.get("window_minutes"))
        resets_at = _finite(window.get("resets_at"))
        resets_in = _finite(window.get("resets_in_seconds"))  # before Codex reported resets_at
        if resets_at is None and resets_in is not None:
            resets_at = when + resets_in
        limits[name] = {
            "used_percent": used,
            "window_minutes": int(minutes) if minutes is not None and minutes >= 0 else None,
            "resets_at": resets_at if resets_at is not None and resets_at >= 0 else None,
        }
    return limits or None


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def turn_error(error: Any) -> tuple[str, str]:
    """A failed turn's (kind, error as `llm.call` names it): Codex's `codex_error_info` kind, with
    `http_<status>` before it when Codex names the status."""
    info = error.get("codex_error_info") if isinstance(error, dict) else None
    if isinstance(info, str) and info:
        kind = plain_text(info, _ERROR_KIND_MAX)
        return kind, kind
    if isinstance(info, dict) and info:
        key = next(iter(info))
        kind = plain_text(str(key), _ERROR_KIND_MAX)
        detail = info[key]
        status = detail.get("http_status_code") if isinstance(detail, dict) else None
        if isinstance(status, int) and not isinstance(status, bool) and 100 <= status <= 599:
            return kind, f"http_{status} {kind}"
        return kind, kind
    return "other", "other"


def _first_model(records: list[dict[str, Any]]) -> dict[str, str]:
    for record in records:
        payload = record.get("payload")
        if record.get("type") == "turn_context" and isinstance(payload, dict):
            model = payload.get("model")
            if isinstance(model, str) and model:
                return {"model": model}
    return {}


def rollout_writer(path: str) -> tuple[int, float] | None:
    """(pid, create time) of a live process of the agent's user that has the file open for writing.

    While a session runs, Codex keeps its rollout open for appending (as of 0.171 the native `codex`
    binary does, not the node wrapper that starts it); a reader such as `tail -f` is not the session.
    Only the agent's own user's processes are looked at: another user's sessions are not its to act on.
    """
    uid, own = os.getuid(), os.getpid()
    for proc in psutil.process_iter(["uids"]):
        uids = proc.info.get("uids")
        if proc.pid == own or uids is None or uids.real != uid or not _writes(proc, path):
            continue
        try:
            return proc.pid, proc.create_time()
        except psutil.Error:
            continue  # exited since
    return None


def _writes(proc: psutil.Process, path: str) -> bool:
    try:
        files = proc.open_files()
    except psutil.Error:
        return False
    # `mode` is known on Linux only; elsewhere an open rollout is taken as written.
    return any(f.path == path and getattr(f, "mode", "a") != "r" for f in files)


def _still_writes(pid: int, started: float | None, path: str) -> bool:
    """The process found writing the rollout runs and writes it still (not a later one with its pid)."""
    try:
        proc = psutil.Process(pid)
        if started is None or abs(proc.create_time() - started) > _SAME_START_S:
            return False
    except psutil.Error:
        return False
    return _writes(proc, path)


def runs_command_since(pid: int, since: float) -> bool | None:
    """Whether the process has a child started at `since` or later (None: it has exited or is stopped).

    Codex runs each shell command in a child of its own (the sandbox helper, or the shell); while
    the person has not approved the command there is none. Children started before the call (a
    background terminal an earlier call left running, an MCP server) do not count.
    """
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_STOPPED:
            return None  # a stopped Codex asks nothing: the pause is what holds it
        children = proc.children()
    except psutil.Error:
        return None
    for child in children:
        try:
            if child.create_time() >= since - _START_SLACK_S:
                return True
        except psutil.Error:
            continue  # exited since
    return False


@dataclass
class CodexSession(JsonlSession):
    # A response whose call waits for the token_count that brings its rate limits (persisted with
    # the session, so neither a restart nor the session's end loses it).
    pending_response: dict[str, Any] | None = None
    pid_started: float | None = None  # create time of `pid`, the process found writing the rollout
    paused_from: str | None = None  # the state a pause interrupted, which a resume returns to
    # The latest shell call without its output yet (call id, time of its record): it runs, or it
    # waits for the person's approval.
    pending_call: str | None = None
    pending_since: float | None = None


class CodexSource(JsonlSource[CodexSession]):
    name = "codex"
    watches = "codex"
    state_prefix = "cx"
    session_type = CodexSession
    log_folders = ("sessions", "archived_sessions")

    def __init__(self, ctx: SourceContext) -> None:
        cfg = ctx.config.codex
        super().__init__(ctx, resolve_roots(cfg.roots, os.environ), cfg.poll_interval_s)
        self._decompressed: dict[str, tuple[int, int]] = {}  # .zst path -> (inode, size) when last read
        self._rollouts: dict[str, Path] = {}  # rollout id -> its file as of the latest poll
        # session -> when a command of its pending shell call was last seen running (Codex writes the
        # output a moment after the command exits: no wait for approval before the grace has passed again)
        self._command_seen: dict[str, float] = {}
        self.ledger = CallLedger(ctx)  # the telemetry route (sources/otlp.py) may report the same calls
        self._account = AccountFile(codex_files(self.roots), codex_account)

    def account_of(self, session: CodexSession) -> Account:
        return self._account.account()

    # --- rollouts -----------------------------------------------------------------------

    def _read_logs(self) -> None:
        rollouts: dict[str, Path] = {}
        for root in self.roots:
            for folder in self.log_folders:
                if (root / folder).is_dir():
                    for path in walk_jsonl(root / folder, self._listings, _SUFFIXES):
                        key = rollout_id(path) or str(path)
                        # While both exist, the plain file is the one Codex may still append to.
                        if key not in rollouts or rollouts[key].name.endswith(".zst"):
                            rollouts[key] = path
        self._rollouts = {key: path for key, path in rollouts.items() if rollout_id(path) == key}
        for path in rollouts.values():
            self._read_file(path)
        for root in self.roots:
            self._read_titles(root / _TITLE_INDEX)

    def _read_titles(self, path: Path) -> None:
        """Thread names Codex keeps in its session index become the titles of known sessions."""
        key = f"{self.state_prefix}.index:{path}"
        cursor = self._cursors.get(key)
        if cursor is None:
            cursor = self._cursors[key] = FileCursor.load(self.ctx.get_state(key))
        got = read_complete_lines(path, cursor)
        if got is None:
            return
        lines, cursor.offset = got
        records, _ = parse_records(lines)
        with self.ctx.atomic():
            for record in records:
                sid, name = record.get("id"), record.get("thread_name")
                if not isinstance(sid, str) or not isinstance(name, str):
                    continue
                title = plain_text(name, _TITLE_MAX)
                session = self._load(sid)
                if session is not None and title and session.title != title:
                    session.title = title
                    if session.started is not None and not session.ended:
                        updated = parse_ts(record.get("updated_at"))
                        self._reannounce(session, updated if updated is not None else self.ctx.clock.now())
                    else:
                        self._save(session)
            self.ctx.set_state(key, cursor.dump())

    def _cursor_key(self, path: Path) -> str:
        rid = rollout_id(path)
        if rid is None:
            return super()._cursor_key(path)
        key = f"{self.state_prefix}.rollout:{rid}"
        if key not in self._cursors and self.ctx.get_state(key) is None:
            legacy = super()._cursor_key(path)  # positions were kept by path before rollouts were compressed
            if (saved := self.ctx.get_state(legacy)) is not None:
                self.ctx.set_state(key, saved)
        return key

    def _forget(self) -> None:
        super()._forget()
        self._decompressed.clear()  # a failed poll rolled back what it read from them

    def _new_lines(self, path: Path, cursor: FileCursor) -> tuple[list[bytes], int] | None:
        if path.name.endswith(".zst"):
            identity = _identity(path)
            if identity is None or self._decompressed.get(str(path)) == identity:
                return None  # gone, or already read as it is now: not decompressed again each poll
            self._decompressed[str(path)] = identity
            try:
                return read_compressed_lines(path, cursor)
            except zstandard.ZstdError as exc:
                with self.ctx.atomic():
                    self.radar.seen(UNREADABLE_FILE, path.name, detail=f"zstd: {exc}")
                return None
        cursor.extra.pop("zst", None)
        return read_complete_lines(path, cursor, by_inode=rollout_id(path) is None)

    def _records(self, path: Path, records: list[dict[str, Any]], cursor: FileCursor) -> None:
        extra = cursor.extra
        if "model" not in extra:
            # turn_context follows task_started: a session first read here is announced with its model.
            extra.update(_first_model(records))
        for record in records:
            self._record(path, record, extra)

    def _record(self, path: Path, record: dict[str, Any], extra: dict[str, Any]) -> None:
        kind = record.get("type")
        raw = record.get("payload")
        payload: dict[str, Any] = raw if isinstance(raw, dict) else {}
        ts = parse_ts(record.get("timestamp"))
        when = ts if ts is not None else self.ctx.clock.now()
        if kind == "session_meta":
            if isinstance(payload.get("id"), str) and payload["id"]:
                extra["session"] = payload["id"]
            if isinstance(payload.get("cwd"), str):
                extra["cwd"] = payload["cwd"]
            git = payload.get("git")
            if isinstance(git, dict) and isinstance(git.get("branch"), str):
                extra["branch"] = git["branch"]
            return
        if kind == "turn_context":
            if isinstance(payload.get("model"), str) and payload["model"]:
                extra["model"] = payload["model"]
                self._update_model(extra, when)
            if isinstance(payload.get("cwd"), str):
                extra.setdefault("cwd", payload["cwd"])
            return
        if kind == "response_item":
            if payload.get("type") in _REQUEST_ITEMS or (payload.get("type") == "message" and payload.get("role") == "user"):
                extra["asked_at"] = when
            if payload.get("type") == "function_call":
                _test_call(payload, extra)
                if payload.get("name") in _APPROVABLE_TOOLS and isinstance(payload.get("call_id"), str):
                    self._shell_call(path, payload["call_id"], extra, when)
            elif payload.get("type") in _REQUEST_ITEMS:
                if payload.get("type") == "function_call_output" and extra.get(_TEST_CALLS):
                    self._test_result(path, payload, extra, when)
                self._call_output(path, payload.get("call_id"), extra, when)
            return
        if kind not in _KNOWN_RECORDS:
            self.radar.seen(UNKNOWN_TYPE, str(kind), detail=path.name)
        if kind not in ("event_msg", "compacted", "token_usage_record"):
            return
        session = self._rollout_session(path, extra, when)
        if session is None:
            return
        event = payload.get("type") if kind == "event_msg" else None
        if kind == "token_usage_record":
            usage = payload.get("usage")
            for field in sorted(set(usage) - _KNOWN_USAGE) if isinstance(usage, dict) else ():
                self.radar.seen(UNKNOWN_FIELD, f"usage.{field}", detail=path.name)
            self._response(session, payload, extra, when)
        elif kind == "compacted":
            self._flush_response(session)
            self._set_state(session, "compacted", "manual" if extra.get("compact_task") else "auto", when)
            extra["asked_at"] = when
        elif event == "token_count":
            self._token_count(session, payload, extra, when)
        elif event == "task_started":
            # Codex >= 0.171 attributes each turn a user or `codex exec` starts (`turn_attribution`);
            # the task `/compact` starts has none. Older rollouts attribute nothing: compactions are auto.
            attributed = isinstance(payload.get("turn_attribution"), dict)
            extra["compact_task"] = not attributed and bool(extra.get("attributed"))
            extra["attributed"] = bool(extra.get("attributed")) or attributed
            self._settle_call(session)
            if session.state != "running":
                self._set_state(session, "running", "task started", when)
        elif event == "task_complete":
            self._flush_response(session)
            self._settle_call(session)
            if isinstance(payload.get("error"), dict):
                self._failed_turn(path, session, payload, extra, when)
            else:
                self._set_state(session, "idle", "task complete", when)
        elif event == "turn_aborted":
            self._flush_response(session)
            self._settle_call(session)
            reason = payload.get("reason")
            # An aborted turn leaves the session waiting for input; `error` would read as terminal.
            self._set_state(session, "idle", f"turn aborted: {reason}" if isinstance(reason, str) else "turn aborted", when)
        if event in _REQUEST_EVENTS:
            extra["asked_at"] = when

    def _test_result(self, path: Path, payload: dict[str, Any], extra: dict[str, Any], when: float) -> None:
        """`test.run` for the output of a test runner's shell call (its exit code as Codex reports it)."""
        call_id = str(payload.get("call_id"))
        command = extra[_TEST_CALLS].pop(call_id, None)
        runner = runner_of(command) if isinstance(command, str) else None
        output = payload.get("output")
        if isinstance(output, dict):  # older rollouts: {"output": "...", "metadata": {"exit_code": N}}
            meta = output.get("metadata")
            code = meta.get("exit_code") if isinstance(meta, dict) else None
            text = output["output"] if isinstance(output.get("output"), str) else ""
            exit_code = code if isinstance(code, int) and not isinstance(code, bool) and abs(code) < 1000 else None
        elif isinstance(output, str):
            found = _EXIT_LINE.search(output)
            exit_code = int(found.group(1)) if found is not None else None
            start = _OUTPUT_START.search(output)
            text = output[start.end():] if start is not None else output
        else:
            return
        if command is None or runner is None or exit_code is None:
            return  # not a test run, or it never finished (aborted, timed out)
        session = self._rollout_session(path, extra, when)
        if session is None:
            return
        key = f"cx.test:{session.id}:{call_id}"
        if self.ctx.get_state(key) is not None:
            return  # already reported from another copy of this rollout
        self.ctx.set_state(key, "1")
        self.ctx.emit("test.run", session.id, run_event_data(command, runner, exit_code, text), ts=when)

    def _rollout_session(self, path: Path, extra: dict[str, Any], when: float) -> CodexSession | None:
        sid = extra.get("session")
        if not isinstance(sid, str):
            rid = rollout_id(path)
            if rid is None:
                return None
            sid = extra["session"] = rid
        session = self._active(sid, when)  # an ended one runs again after `codex resume`
        session.cwd = session.cwd or extra.get("cwd")
        session.title = session.title or extra.get("branch")
        if isinstance(extra.get("model"), str):
            session.model = extra["model"]
        self._seen(session, when)
        self._touch(session)
        return session

    def _update_model(self, extra: dict[str, Any], when: float) -> None:
        """A model named after the session was announced (or a new one) is announced again."""
        sid = extra.get("session")
        session = self._sessions.get(sid) if isinstance(sid, str) else None
        if session is not None and session.started is not None and not session.ended and session.model != extra["model"]:
            session.model = extra["model"]
            self._reannounce(session, when)

    # --- waiting for approval ---------------------------------------------------------------

    def _shell_call(self, path: Path, call_id: str, extra: dict[str, Any], when: float) -> None:
        session = self._rollout_session(path, extra, when)
        if session is not None:
            session.pending_call, session.pending_since = call_id, when
            self._save(session)

    def _call_output(self, path: Path, call_id: Any, extra: dict[str, Any], when: float) -> None:
        """A tool's output: when it answers the pending shell call, a wait for approval is over."""
        sid = extra.get("session")
        session = self._load(sid) if isinstance(sid, str) else None
        if session is None or session.pending_call is None or session.pending_call != call_id:
            return
        self._settle_call(session)
        if session.state == "waiting":
            self._set_state(session, "running", "approval answered", when)

    def _settle_call(self, session: CodexSession) -> None:
        self._command_seen.pop(session.id, None)
        if session.pending_call is not None:
            session.pending_call = session.pending_since = None
            self._save(session)

    def _poll_once(self) -> None:
        self._read_logs()
        self._watch_approvals()
        self._end_inactive()

    def _watch_approvals(self) -> None:
        """Sessions whose shell call has waited past the grace: waiting while their Codex process runs
        no command started since the call, running again once it does. Only these sessions are looked
        at: one process's open files and children each, per poll."""
        now = self.ctx.clock.now()
        with self.ctx.atomic():
            for sid in sorted(self._live):
                session = self._sessions.get(sid)
                since = session.pending_since if session is not None else None
                if session is None or since is None or session.state == "paused" or now - since < APPROVAL_GRACE_S:
                    continue
                pid = self._writer(session)
                if pid is None:  # Codex has exited: nobody is left to approve the call
                    self._settle_call(session)
                    if session.state == "waiting":
                        self._set_state(session, "idle", "codex exited", now)
                    continue
                running = runs_command_since(pid, since)
                if running:
                    self._command_seen[sid] = now
                    if session.state == "waiting":
                        self._set_state(session, "running", "command approved", now)
                    continue
                seen = self._command_seen.get(sid, since)
                # A command that ran may have exited just now: its output is on its way.
                if running is False and session.state != "waiting" and now - seen >= APPROVAL_GRACE_S:
                    self._set_state(session, "waiting", "approval", max(since, seen, session.last_ts))

    def _writer(self, session: CodexSession) -> int | None:
        """The pid of the process writing the session's rollout: the one found before while it still
        writes it, else the one a look over the user's processes finds (kept with the session)."""
        if self._writes_still(session):
            return session.pid
        rollout = self._rollout(session)
        return self._keep_pid(session, rollout_writer(rollout) if rollout is not None else None)

    def _keep_pid(self, session: CodexSession, found: tuple[int, float] | None) -> int | None:
        """Keep the (pid, create time) found writing the rollout with the session; None: none does."""
        pid, started = found if found is not None else (None, None)
        if (session.pid, session.pid_started) != (pid, started):
            session.pid, session.pid_started = pid, started
            self._save(session)
        return pid

    # --- calls --------------------------------------------------------------------------

    def _response(self, session: CodexSession, payload: dict[str, Any], extra: dict[str, Any], when: float) -> None:
        """A response completed; its call is sent with the token_count that follows (and its rate limits)."""
        self._flush_response(session)
        usage = usage_of(payload.get("usage"))
        if usage is None:
            return
        asked = extra.get("asked_at")
        extra["usage_records"] = True
        response_id = payload.get("response_id")
        session.pending_response = {
            "key": f"cx.response:{session.id}:{response_id if isinstance(response_id, str) and response_id else when}",
            "usage": usage,
            "ts": when,
            "latency_ms": latency_ms(asked, when),
        }
        self._save(session)
        extra["asked_at"] = when  # the next request is sent after this response at the earliest

    def _flush_response(self, session: CodexSession, rate_limits: dict[str, Any] | None = None) -> None:
        pending, session.pending_response = session.pending_response, None
        if pending is not None:
            self._emit_call(
                session, str(pending["key"]), pending["usage"], float(pending["ts"]), pending["latency_ms"], rate_limits
            )
            self._save(session)  # no longer pending, in the commit that moves the cursor past its token_count

    def _end(self, session: CodexSession, reason: str, when: float) -> None:
        self._flush_response(session)  # Codex stopped before logging the token_count
        super()._end(session, reason, when)

    def _token_count(self, session: CodexSession, payload: dict[str, Any], extra: dict[str, Any], when: float) -> None:
        info = payload.get("info")
        if not isinstance(info, dict):
            return  # rate-limit-only updates carry no usage
        last, total = usage_of(info.get("last_token_usage")), info.get("total_token_usage")
        if last is None or not isinstance(total, dict):
            return
        total_key = json.dumps({k: as_int(v) for k, v in sorted(total.items())}, separators=(",", ":"))
        if total_key == extra.get("last_total"):
            return  # the same cumulative usage repeated: no new call
        extra["last_total"] = total_key
        rate_limits = rate_limits_of(payload.get("rate_limits"), when)
        if session.pending_response is not None:
            self._flush_response(session, rate_limits)
            return
        if extra.get("usage_records"):
            return  # this rollout logs each response: a total without one is no new call
        latency = latency_ms(extra.get("asked_at"), when)
        extra["asked_at"] = when
        self._emit_call(session, f"cx.call:{session.id}:{total_key}", last, when, latency, rate_limits)

    def _emit_call(
        self,
        session: CodexSession,
        key: str,
        usage: dict[str, Any],
        when: float,
        latency_ms: Any,
        rate_limits: dict[str, Any] | None,
    ) -> None:
        if self.ctx.get_state(key) is not None:
            return  # already counted from another copy of this rollout
        self.ctx.set_state(key, "1")
        cached = as_int(usage.get("cached_input_tokens"))
        identity = openai_identity(as_int(usage.get("input_tokens")), cached, as_int(usage.get("output_tokens")),
                                   as_int(usage.get("reasoning_output_tokens")))
        if self.ledger.first("transcript", session.id, identity):  # else the telemetry route counted it
            self.ctx.emit(
                "llm.call",
                session.id,
                {
                    "provider": "openai",
                    "model": session.model or "unknown",
                    "input_tokens": max(0, as_int(usage.get("input_tokens")) - cached),
                    "output_tokens": as_int(usage.get("output_tokens")),
                    "cache_creation_tokens": 0,
                    "cache_read_tokens": cached,
                    "cost_usd": None,
                    "latency_ms": latency_ms if isinstance(latency_ms, (int, float)) else None,
                    "ok": True,
                    "error": None,
                    "rate_limits": rate_limits,
                },
                ts=when,
            )
        if session.state != "running":
            self._set_state(session, "running", "model call", when)

    def _failed_turn(
        self, path: Path, session: CodexSession, payload: dict[str, Any], extra: dict[str, Any], when: float
    ) -> None:
        """A turn Codex gave up on: one failed call when its model request failed (retries exhausted),
        and the session waits for input."""
        kind, error = turn_error(payload.get("error"))
        if kind not in _TURN_ERRORS:
            self.radar.seen(UNKNOWN_TYPE, f"turn error {kind}", detail=path.name)
        key = f"cx.failed:{session.id}:{payload.get('turn_id') or when}"
        first_read = kind not in _NOT_MODEL_ERRORS and self.ctx.get_state(key) is None
        if first_read:
            self.ctx.set_state(key, "1")
        if first_read and self.ledger.first("transcript", session.id, FAILED_TURN):
            self.ctx.emit(
                "llm.call",
                session.id,
                {
                    "provider": "openai",
                    "model": session.model or "unknown",
                    "latency_ms": latency_ms(extra.get("asked_at"), when),
                    "ok": False,
                    "error": error,
                },
                ts=when,
            )
        # `error` would read as a terminal state in the console; the session waits for its next prompt.
        self._set_state(session, "idle", f"turn failed: {error}", when)

    def _set_state(self, session: CodexSession, state: str, reason: str, when: float) -> None:
        if state == "paused" and session.state != "paused":
            session.paused_from = session.state
        super()._set_state(session, state, reason, when)

    def _quiet(self, session: CodexSession, now: float) -> str | None:
        reason = super()._quiet(session, now)
        if reason is not None and session.state in ("paused", "waiting") and self._writes_still(session):
            return None  # stopped by a command, or held by the person: silent until they act, not ended
        return reason

    # --- commands -----------------------------------------------------------------------

    def _rollout(self, session: CodexSession) -> str | None:
        """The real path of the session's plain rollout (the one Codex may still write), if any."""
        path = self._rollouts.get(session.id)
        return os.path.realpath(path) if path is not None and path.name.endswith(".jsonl") else None

    def _writes_still(self, session: CodexSession) -> bool:
        rollout = self._rollout(session)
        return rollout is not None and session.pid is not None and _still_writes(session.pid, session.pid_started, rollout)

    async def _process(self, cmd: Command) -> tuple[CodexSession, int | None]:
        """The session a command names and the pid of the live process writing its rollout: the one
        found before while it still writes it, else the one a look over the user's processes finds."""
        session = self._target(cmd)
        if self._writes_still(session):
            return session, session.pid
        rollout = self._rollout(session)
        found = await asyncio.to_thread(rollout_writer, rollout) if rollout is not None else None
        session = self._target(cmd)  # the poll may have ended it meanwhile
        with self.ctx.atomic():
            pid = self._keep_pid(session, found)
        self._flush()
        return session, pid

    async def command(self, cmd: Command) -> dict[str, Any]:
        self._target(cmd)
        if cmd.action in ("session.restart", "session.prompt"):
            raise self._only_watched(cmd.action)
        if cmd.action not in PROCESS_ACTIONS:
            raise CommandError("not_supported", f"{cmd.action} is not supported by the {self.name} source")
        session, pid = await self._process(cmd)
        if pid is None:
            raise CommandError(
                "not_running", f"no live process has the rollout of codex session {session.id} open: Codex has exited"
            )
        return self._act_on_process(cmd, session, pid, session.paused_from or "running")


def _test_call(payload: dict[str, Any], extra: dict[str, Any]) -> None:
    """Remember a shell tool call that runs a test runner until its output comes."""
    if payload.get("name") not in _SHELL_TOOLS or not isinstance(payload.get("call_id"), str):
        return
    try:
        args = json.loads(payload.get("arguments") or "")
    except (TypeError, ValueError):
        return
    if not isinstance(args, dict):
        return
    command = args.get("cmd") if isinstance(args.get("cmd"), str) else None
    argv = args.get("command")
    if command is None and isinstance(argv, list) and argv and all(isinstance(a, str) for a in argv):
        # ["bash", "-lc", "script"] runs the script; anything else is the command itself
        command = argv[-1] if len(argv) == 3 and argv[1] in ("-lc", "-c") else " ".join(argv)
    if command is None or runner_of(command) is None:
        return
    waiting = extra.setdefault(_TEST_CALLS, {})
    waiting[payload["call_id"]] = command
    while len(waiting) > _TEST_CALLS_KEPT:
        del waiting[next(iter(waiting))]
