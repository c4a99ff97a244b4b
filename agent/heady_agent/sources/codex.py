"""Codex CLI sessions on this machine, from its rollout files (one file per session).

Rollouts under `sessions/YYYY/MM/DD/` and `archived_sessions/` are tailed with persisted offsets.
Each new `token_count` is one `llm.call` (a repeat of the same cumulative total is skipped, and
the total also keys the call, so a rollout moved to the archive is not counted twice).
Facts: shared/SOURCES.md "Codex CLI".
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..protocol import Command, SessionInfo
from .base import CommandError, SessionSource
from .jsonl import FileCursor, as_int, parse_record, parse_ts, read_complete_lines, walk_jsonl

log = logging.getLogger("heady_agent.sources.codex")

INACTIVE_AFTER_S = 600.0  # a session with no record for this long has ended
_ROLLOUT_ID = re.compile(r"([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\.jsonl$", re.I)
# Records after which the model is asked again: the time from the latest of these to the next
# token_count is that call's latency.
_REQUEST_EVENTS = ("task_started", "user_message", "token_count")
_REQUEST_ITEMS = ("function_call_output", "custom_tool_call_output", "local_shell_call_output")


def resolve_roots(configured: list[str], environ: Mapping[str, str]) -> list[Path]:
    """$CODEX_HOME when set (where Codex itself writes), else the configured roots."""
    env = environ.get("CODEX_HOME", "").strip()
    if env:
        return [Path(env).expanduser()]
    return [Path(p).expanduser() for p in configured]


@dataclass
class _Session:
    id: str
    cwd: str | None = None
    model: str | None = None
    title: str | None = None
    state: str = "running"
    started: float | None = None
    last_ts: float = 0.0
    ended: bool = False
    ended_at: float = 0.0

    @property
    def project(self) -> str | None:
        return os.path.basename(self.cwd.rstrip("/")) if self.cwd else None


class CodexSource(SessionSource):
    name = "codex"

    def __init__(self, ctx: Any) -> None:
        super().__init__(ctx)
        cfg = ctx.config.codex
        self.roots = resolve_roots(cfg.roots, os.environ)
        self.poll_interval_s = cfg.poll_interval_s
        self._sessions: dict[str, _Session] = {}
        self._live: set[str] = set()
        self._skipped = 0
        self._changed = False
        self._task: asyncio.Task[None] | None = None

    @property
    def skipped_lines(self) -> int:
        """Rollout lines that were not JSON objects, since this source started."""
        return self._skipped

    async def start(self) -> None:
        raw = self.ctx.get_state("cx.live")
        for sid in json.loads(raw) if raw else []:
            session = self._load(sid)
            if session is not None and not session.ended:
                self._live.add(sid)
        self.scan()
        self._task = asyncio.create_task(self._poll(), name="codex-poll")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval_s)
            try:
                self.scan()
            except Exception:  # a surprise in one poll must not end the watching
                log.exception("codex scan failed")

    def scan(self) -> None:
        for root in self.roots:
            for folder in ("sessions", "archived_sessions"):
                if (root / folder).is_dir():
                    for path in walk_jsonl(root / folder):
                        self._read_file(path)
        now = self.ctx.clock.now()
        with self.ctx.atomic():
            for sid in sorted(self._live):
                session = self._sessions.get(sid)
                if session is not None and now - session.last_ts > INACTIVE_AFTER_S:
                    self._end(session, session.last_ts)
        if self._changed:
            self._changed = False
            self.ctx.sessions_changed()

    # --- persisted session records ----------------------------------------------------------

    def _load(self, sid: str) -> _Session | None:
        if sid in self._sessions:
            return self._sessions[sid]
        raw = self.ctx.get_state(f"cx.session:{sid}")
        if raw is None:
            return None
        try:
            session = _Session(**json.loads(raw))
        except (ValueError, TypeError):
            return None
        self._sessions[sid] = session
        return session

    def _save(self, session: _Session) -> None:
        self.ctx.set_state(f"cx.session:{session.id}", json.dumps(asdict(session)))
        if (session.id in self._live) == session.ended:
            if session.ended:
                self._live.discard(session.id)
            else:
                self._live.add(session.id)
            self.ctx.set_state("cx.live", json.dumps(sorted(self._live)))
        self._changed = True

    # --- rollouts -----------------------------------------------------------------------

    def _read_file(self, path: Path) -> None:
        key = f"cx.file:{path}"
        cursor = FileCursor.load(self.ctx.get_state(key))
        got = read_complete_lines(path, cursor)
        if got is None:
            return
        lines, new_offset = got
        skipped = 0
        with self.ctx.atomic():
            for line in lines:
                if not line.strip():
                    continue
                record = parse_record(line)
                if record is None:
                    skipped += 1
                    continue
                self._record(path, record, cursor.extra)
            cursor.offset = new_offset
            if skipped:
                self._skipped += skipped
                if not cursor.noticed:
                    cursor.noticed = True
                    self.ctx.notice("warning", f"codex: skipped {skipped} unreadable line(s) in {path}")
            self.ctx.set_state(key, cursor.dump())

    def _record(self, path: Path, record: dict[str, Any], extra: dict[str, Any]) -> None:
        kind = record.get("type")
        payload = record.get("payload") if isinstance(record.get("payload"), dict) else {}
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
            if isinstance(payload.get("model"), str):
                extra["model"] = payload["model"]
            if isinstance(payload.get("cwd"), str):
                extra.setdefault("cwd", payload["cwd"])
            return
        event = payload.get("type") if kind == "event_msg" else None
        if kind == "response_item" and payload.get("type") in _REQUEST_ITEMS:
            extra["asked_at"] = when
            return
        if kind not in ("event_msg", "compacted"):
            return
        session = self._session(path, extra, when)
        if session is None:
            return
        if kind == "compacted":
            self._set_state(session, "compacted", "auto", when)
        elif event == "token_count":
            self._token_count(session, payload, extra, when)
        elif event == "task_started":
            if session.state != "running":
                self._set_state(session, "running", "task started", when)
        elif event == "task_complete":
            self._set_state(session, "idle", "task complete", when)
        elif event == "turn_aborted":
            reason = payload.get("reason")
            # An aborted turn leaves the session waiting for input; `error` would read as terminal.
            self._set_state(session, "idle", f"turn aborted: {reason}" if isinstance(reason, str) else "turn aborted", when)
        if event in _REQUEST_EVENTS:
            extra["asked_at"] = when

    def _session(self, path: Path, extra: dict[str, Any], when: float) -> _Session | None:
        sid = extra.get("session")
        if not isinstance(sid, str):
            match = _ROLLOUT_ID.search(path.name)
            if match is None:
                return None
            sid = extra["session"] = match.group(1)
        session = self._load(sid)
        if session is None:
            session = _Session(id=sid)
            self._sessions[sid] = session
        elif session.ended and when > session.ended_at:
            session.ended = False  # resumed (`codex resume`) after it had ended
            session.started = None
            session.state = "running"
        session.cwd = session.cwd or extra.get("cwd")
        session.title = session.title or extra.get("branch")
        if isinstance(extra.get("model"), str):
            session.model = extra["model"]
        session.last_ts = max(session.last_ts, when)
        if session.started is None and not session.ended:
            session.started = when
            self.ctx.emit(
                "session.started",
                sid,
                {
                    "source": self.name,
                    "project": session.project,
                    "cwd": session.cwd,
                    "pid": None,
                    "model": session.model,
                    "title": session.title,
                },
                ts=when,
            )
            self._save(session)
        return session

    def _token_count(self, session: _Session, payload: dict[str, Any], extra: dict[str, Any], when: float) -> None:
        info = payload.get("info")
        if not isinstance(info, dict):
            return  # rate-limit-only updates carry no usage
        last, total = info.get("last_token_usage"), info.get("total_token_usage")
        if not isinstance(last, dict) or not isinstance(total, dict):
            return
        total_key = json.dumps({k: as_int(v) for k, v in sorted(total.items())}, separators=(",", ":"))
        if total_key == extra.get("last_total"):
            return  # the same cumulative usage repeated: no new call
        extra["last_total"] = total_key
        call_key = f"cx.call:{session.id}:{total_key}"
        if self.ctx.get_state(call_key) is not None:
            return  # already counted from another copy of this rollout
        self.ctx.set_state(call_key, "1")
        cached = as_int(last.get("cached_input_tokens"))
        asked = extra.get("asked_at")
        self.ctx.emit(
            "llm.call",
            session.id,
            {
                "provider": "openai",
                "model": session.model or "unknown",
                "input_tokens": max(0, as_int(last.get("input_tokens")) - cached),
                "output_tokens": as_int(last.get("output_tokens")),
                "cache_creation_tokens": 0,
                "cache_read_tokens": cached,
                "cost_usd": None,
                "latency_ms": round((when - asked) * 1000.0, 1) if isinstance(asked, (int, float)) and when >= asked else None,
                "ok": True,
                "error": None,
            },
            ts=when,
        )
        if session.state != "running":
            self._set_state(session, "running", "model call", when)
        else:
            self._save(session)

    def _set_state(self, session: _Session, state: str, reason: str, when: float) -> None:
        session.state = state
        self.ctx.emit("session.state", session.id, {"state": state, "reason": reason}, ts=when)
        self._save(session)

    def _end(self, session: _Session, when: float) -> None:
        session.ended = True
        session.ended_at = when
        session.state = "completed"
        self.ctx.emit("session.ended", session.id, {"exit_code": None, "reason": "inactive"}, ts=when)
        self._save(session)

    # --- what the agent reads -------------------------------------------------------------

    def sessions(self) -> list[SessionInfo]:
        return [
            SessionInfo(
                id=s.id,
                source=self.name,
                project=s.project,
                cwd=s.cwd,
                model=s.model,
                title=s.title,
                state=s.state,  # type: ignore[arg-type]
                started=s.started,
            )
            for s in (self._sessions[sid] for sid in sorted(self._live))
        ]

    def owns(self, session_id: str) -> bool:
        return session_id in self._live

    async def command(self, cmd: Command) -> dict[str, Any]:
        if cmd.target not in self._live:
            raise CommandError("unknown_session", f"no codex session {cmd.target!r} on this node")
        if cmd.action in ("session.restart", "session.prompt"):
            raise CommandError("not_allowed", f"{cmd.action} needs a managed session; codex sessions are only watched")
        raise CommandError(
            "not_supported", f"{cmd.action}: codex rollouts do not name their process, so the agent cannot act on it"
        )
