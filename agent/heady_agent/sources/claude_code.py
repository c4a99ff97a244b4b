"""Claude Code sessions on this machine, from its transcripts and its live process registry.

Transcripts (`projects/**/*.jsonl`, subagent files included) are tailed with persisted offsets;
one `llm.call` per API response (deduplicated by `message.id:requestId`, persisted). The
registry (`sessions/<pid>.json`) says which sessions run and whether they are busy; sessions
that never appear there end after jsonl.INACTIVE_AFTER_S without a record. Facts: shared/SOURCES.md.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from ..protocol import Command
from .base import CommandError, SourceContext
from .common import command_args
from .jsonl import FileCursor, JsonlSession, JsonlSource, as_int, parse_ts

PID_START_SLACK_S = 5.0  # a registry pid whose process started later than this after startedAt was reused
REGISTRY_STATES = {"busy": "running", "idle": "idle", "waiting": "idle"}
SYNTHETIC_MODEL = "<synthetic>"


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

    def scan(self) -> None:
        """Read what is new in every transcript and the registry; emit what changed."""
        self._read_logs()
        self._read_registry()
        self._end_inactive()
        self._flush()

    # --- transcripts --------------------------------------------------------------------

    def _records(self, path: Path, records: list[dict[str, Any]], cursor: FileCursor) -> None:
        models: dict[str, str] = {}
        for record in records:
            if record.get("type") == "assistant":
                model = _message(record).get("model")
                sid = record.get("sessionId")
                if isinstance(model, str) and model != SYNTHETIC_MODEL and isinstance(sid, str):
                    models.setdefault(sid, model)
        for record in records:
            self._record(record, cursor, models)

    def _record(self, record: dict[str, Any], cursor: FileCursor, models: dict[str, str]) -> None:
        ts = parse_ts(record.get("timestamp"))
        uuid = record.get("uuid")
        parent_ts = cursor.recent.get(record.get("parentUuid")) if isinstance(record.get("parentUuid"), str) else None
        if isinstance(uuid, str) and ts is not None:
            cursor.remember(uuid, ts)
        sid = record.get("sessionId")
        kind = record.get("type")
        if not isinstance(sid, str) or not sid or kind not in ("user", "assistant", "system"):
            return  # summaries, snapshots and other bookkeeping records carry no session activity
        when = ts if ts is not None else self.ctx.clock.now()
        session = self._active_session(sid, record, when, models.get(sid))
        if kind == "assistant":
            self._assistant(session, record, when, parent_ts)
        elif kind == "system" and record.get("subtype") == "compact_boundary":
            meta = record.get("compactMetadata")
            trigger = meta.get("trigger") if isinstance(meta, dict) else None
            self._set_state(session, "compacted", trigger if isinstance(trigger, str) else "auto", when)

    def _active_session(self, sid: str, record: dict[str, Any], when: float, model_hint: str | None) -> _Session:
        session = self._active(sid, when)
        if session.cwd is None and isinstance(record.get("cwd"), str):
            session.cwd = record["cwd"]
        if session.title is None and isinstance(record.get("gitBranch"), str) and record["gitBranch"]:
            session.title = record["gitBranch"]
        if session.model is None and model_hint:
            session.model = model_hint
        self._seen(session, when)
        return session

    def _assistant(self, session: _Session, record: dict[str, Any], when: float, parent_ts: float | None) -> None:
        message = _message(record)
        message_id = message.get("id")
        request_id = record.get("requestId")
        if isinstance(message_id, str) and message_id:
            key = f"{message_id}:{request_id}" if isinstance(request_id, str) and request_id else message_id
        elif isinstance(record.get("uuid"), str):
            key = record["uuid"]
        else:
            return
        if key in self._seen_calls or self.ctx.get_state(f"cc.call:{key}") is not None:
            return
        self._seen_calls.add(key)
        self.ctx.set_state(f"cc.call:{key}", "1")
        model = message.get("model")
        if isinstance(model, str) and model != SYNTHETIC_MODEL:
            session.model = model
        usage = message.get("usage") if isinstance(message.get("usage"), dict) else {}
        failed = bool(record.get("isApiErrorMessage"))
        data: dict[str, Any] = {
            "provider": "anthropic",
            "model": session.model or (model if isinstance(model, str) else "unknown"),
            "input_tokens": as_int(usage.get("input_tokens")),
            "output_tokens": as_int(usage.get("output_tokens")),
            "cache_creation_tokens": as_int(usage.get("cache_creation_input_tokens")),
            "cache_read_tokens": as_int(usage.get("cache_read_input_tokens")),
            "cost_usd": _cost(record),
            "latency_ms": round((when - parent_ts) * 1000.0, 1) if parent_ts is not None and when >= parent_ts else None,
            "ok": not failed,
            "error": _error(record) if failed else None,
        }
        split = usage.get("cache_creation")
        if isinstance(split, dict):
            data["cache_creation_5m_tokens"] = as_int(split.get("ephemeral_5m_input_tokens"))
            data["cache_creation_1h_tokens"] = as_int(split.get("ephemeral_1h_input_tokens"))
        if isinstance(usage.get("speed"), str):
            data["speed"] = usage["speed"]
        self.ctx.emit("llm.call", session.id, data, ts=when)
        if session.state == "compacted" and not failed:
            self._set_state(session, "running", "continued after compaction", when)
        else:
            self._save(session)

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
        status = entry.get("status")
        if isinstance(status, str) and status != session.registry_status:
            session.registry_status = status
            state = REGISTRY_STATES.get(status)
            if state is not None and state != session.state and session.state != "paused":
                self._set_state(session, state, f"claude-code status {status}", now)
                return
            changed = True
        if changed:
            self._save(session)

    def _quiet(self, session: _Session, now: float) -> bool:
        """A session the registry lists ends when it leaves the registry, not for want of records."""
        return not session.in_registry and super()._quiet(session, now)

    # --- commands -----------------------------------------------------------------------

    async def command(self, cmd: Command) -> dict[str, Any]:
        args = command_args(cmd)
        session = self._target(cmd)
        if cmd.action in ("session.restart", "session.prompt"):
            raise self._only_watched(cmd.action)
        if cmd.action not in ("session.kill", "session.pause", "session.resume", "session.renice"):
            raise CommandError("not_supported", f"{cmd.action} is not supported by the {self.name} source")
        pid = session.pid
        if pid is None or not _alive(pid, session.registry_started):
            raise CommandError("not_running", f"session {session.id} has no live process in the claude-code registry")
        now = self.ctx.clock.now()
        try:
            if cmd.action == "session.kill":
                os.kill(pid, signal.SIGTERM)
                return {"session": session.id, "pid": pid, "signal": "SIGTERM"}
            if cmd.action == "session.renice":
                psutil.Process(pid).nice(args.nice)
                session.nice = args.nice
                with self.ctx.atomic():
                    self._save(session)
                self._flush()
                return {"session": session.id, "pid": pid, "nice": args.nice}
            pausing = cmd.action == "session.pause"
            os.kill(pid, signal.SIGSTOP if pausing else signal.SIGCONT)
        except (PermissionError, psutil.AccessDenied):
            raise CommandError("not_permitted", f"not permitted to {cmd.action} pid {pid}") from None
        except (ProcessLookupError, psutil.NoSuchProcess):
            raise CommandError("not_running", f"pid {pid} of session {session.id} has exited") from None
        with self.ctx.atomic():
            if pausing and session.state != "paused":
                self._set_state(session, "paused", "paused by command", now)
            elif not pausing and session.state == "paused":
                state = REGISTRY_STATES.get(session.registry_status or "busy", "running")
                self._set_state(session, state, "resumed by command", now)
        self._flush()
        return {"session": session.id, "pid": pid, "state": session.state}


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
    if isinstance(error, str) and error:
        return error
    if isinstance(status, int) and not isinstance(status, bool):
        return f"http_{status}"
    return "api_error"


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
