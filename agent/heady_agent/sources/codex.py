"""Codex CLI sessions on this machine, from its rollout files (one file per session).

Rollouts under `sessions/YYYY/MM/DD/` and `archived_sessions/` are tailed with persisted offsets.
Each new `token_count` is one `llm.call` (a repeat of the same cumulative total is skipped, and
the total also keys the call, so a rollout moved to the archive is not counted twice).
Facts: shared/SOURCES.md "Codex CLI".
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..protocol import Command
from .base import CommandError, SourceContext
from .jsonl import FileCursor, JsonlSession, JsonlSource, as_int, parse_ts

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


class CodexSource(JsonlSource[JsonlSession]):
    name = "codex"
    watches = "codex"
    state_prefix = "cx"
    session_type = JsonlSession
    log_folders = ("sessions", "archived_sessions")

    def __init__(self, ctx: SourceContext) -> None:
        cfg = ctx.config.codex
        super().__init__(ctx, resolve_roots(cfg.roots, os.environ), cfg.poll_interval_s)

    # --- rollouts -----------------------------------------------------------------------

    def _records(self, path: Path, records: list[dict[str, Any]], cursor: FileCursor) -> None:
        for record in records:
            self._record(path, record, cursor.extra)

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
        session = self._rollout_session(path, extra, when)
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

    def _rollout_session(self, path: Path, extra: dict[str, Any], when: float) -> JsonlSession | None:
        sid = extra.get("session")
        if not isinstance(sid, str):
            match = _ROLLOUT_ID.search(path.name)
            if match is None:
                return None
            sid = extra["session"] = match.group(1)
        session = self._active(sid, when)  # an ended one runs again after `codex resume`
        session.cwd = session.cwd or extra.get("cwd")
        session.title = session.title or extra.get("branch")
        if isinstance(extra.get("model"), str):
            session.model = extra["model"]
        self._seen(session, when)
        return session

    def _token_count(self, session: JsonlSession, payload: dict[str, Any], extra: dict[str, Any], when: float) -> None:
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

    # --- commands -----------------------------------------------------------------------

    async def command(self, cmd: Command) -> dict[str, Any]:
        self._target(cmd)
        if cmd.action in ("session.restart", "session.prompt"):
            raise self._only_watched(cmd.action)
        raise CommandError(
            "not_supported", f"{cmd.action}: codex rollouts do not name their process, so the agent cannot act on it"
        )
