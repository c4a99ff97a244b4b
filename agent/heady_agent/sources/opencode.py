"""opencode sessions (facts: shared/SOURCES.md "opencode"; measured on real opencode 1.18, see
docs/sources.md), from two places that overlap:

- the server `opencode serve`: its event stream `GET /global/event` (every directory the server
  serves), and on each (re)connect a backfill of what happened while the agent was away
  (`GET /experimental/session`, `GET /session/{id}/message`) and a re-check of which sessions are
  still busy (`GET /session/status`);
- opencode's SQLite store `opencode.db` (opencode >= 1.2), polled read-only: it holds every
  session, also those of `opencode run` and the TUI, which run their own server no one else sees.

An assistant message is one model call; it is counted once it is complete, once across all three
paths (by message id, persisted with the event in one transaction). opencode prices calls itself,
so `cost_usd` is opencode's figure; the token counts go along so the console prices them too.
Kill aborts the running turn; prompt sends text with `prompt_async`: opencode defines both, so no
command runs anything on this machine.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from ..aio import cancel_and_wait
from ..protocol import Command
from .base import CommandError, SourceContext
from .common import WatchedSession, WatchedSource, command_args, plain_text
from .jsonl import as_int
from .radar import SKIPPED_LINE, UNKNOWN_FIELD, UNKNOWN_TYPE, UNREADABLE_FILE, FormatRadar

if TYPE_CHECKING:
    import httpx

# httpx is imported where it is used, not with this module: when click, pygments and rich are
# installed (as next to the console), `import httpx` loads its command-line client and rich with it.

HEARTBEAT_GRACE_S = 35.0  # opencode sends server.heartbeat every 10 s; silence this long is a dead stream
REQUEST_TIMEOUT_S = 10.0
FIRST_BACKOFF_S = 0.5
STATUS_STATES = {"busy": "running", "retry": "running", "idle": "idle"}
ABORTED = "MessageAbortedError"  # the user stopped the turn: not a provider failure
# Events that stop a session until a person answers (`permission.updated` before opencode 1.x named
# it `permission.asked`), and those that say the person did.
WAITING_EVENTS = {"permission.asked": "permission", "permission.updated": "permission", "question.asked": "question"}
ANSWERED_EVENTS = frozenset({"permission.replied", "question.replied", "question.rejected"})
# opencode names a session "New session - <ISO time>" (a child "Child session - ...") until its
# title request answers; that is no title.
PLACEHOLDER_TITLE = re.compile(r"^(New|Child) session - \d{4}-\d\d-\d\dT")
MAX_TEXT = 200  # titles, model names, error texts from opencode
# A session read back (server backfill, opencode.db) last updated this long ago is over: opencode
# has no end of a session, and a cold start must not list every session the machine ever ran as
# live. New activity opens it again.
STALE_AFTER_S = 600.0
# The token counts of an assistant message; another field would be a format change to read.
TOKEN_FIELDS = frozenset({"total", "input", "output", "reasoning", "cache"})
CACHE_FIELDS = frozenset({"read", "write"})
MAX_PENDING_MESSAGES = 10_000  # part times kept for messages not complete yet (cut-off ones never are)
DB_BATCH = 2_000  # messages read from opencode.db per poll, so a cold start on a long history is bounded
# Stream events the source does not need (file watcher, LSP, `sync` copies of the same events...);
# any other type it does not read counts as unknown. `session.compacted` follows the summary
# message, which is what marks the compaction here (the same in the stream, the backfill and the db).
KNOWN_IGNORED = frozenset({
    "server.connected", "server.heartbeat", "sync", "session.compacted", "plugin.added", "catalog.updated",
    "project.updated", "reference.updated", "integration.updated", "session.diff", "session.idle",
    "message.part.delta", "message.part.removed", "message.removed", "file.edited", "file.watcher.updated",
    "lsp.updated", "lsp.client.diagnostics", "installation.updated", "installation.update-available",
    "todo.updated", "command.executed",
    "tui.toast.show", "vcs.branch.updated", "pty.created", "pty.updated", "pty.exited", "pty.deleted",
    "mcp.tools.changed",
})


def parse_sse(buffer: list[str], line: str) -> str | None:
    """Feed one line of an event stream; returns an event's data when a blank line completes it."""
    if line == "":
        if not buffer:
            return None
        data = "\n".join(buffer)
        buffer.clear()
        return data
    if line.startswith(":"):
        return None  # comment / keep-alive
    name, _, value = line.partition(":")
    if name == "data":
        buffer.append(value[1:] if value.startswith(" ") else value)
    return None


def _ms(value: Any) -> float | None:
    """An opencode time (epoch milliseconds), if it is one."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < 1e14:
        return float(value)
    return None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def plain(value: Any, limit: int = MAX_TEXT) -> str:
    return plain_text(str(value), limit)


def real_title(value: Any) -> str | None:
    """The session's title, or None while it is opencode's placeholder."""
    if not isinstance(value, str) or not value.strip() or PLACEHOLDER_TITLE.match(value):
        return None
    return plain(value)


def error_text(error: dict[str, Any]) -> str:
    """opencode's error as a call's error: its name, and the HTTP status when the provider gave one."""
    name = plain(error.get("name") or "error")
    status = as_int(_dict(error.get("data")).get("statusCode"))
    return f"{name} {status}" if status else name


@dataclass
class MessageTimes:
    """What the parts of one assistant message tell about its model call (epoch ms)."""

    step_finish: float | None = None
    first_tool_start: float | None = None

    def add_part(self, part: dict[str, Any], at: float | None) -> None:
        kind = part.get("type")
        if kind == "step-finish" and at is not None:
            self.step_finish = at if self.step_finish is None else min(self.step_finish, at)
        elif kind == "tool":
            start = _ms(_dict(_dict(part.get("state")).get("time")).get("start"))
            if start is not None:
                self.first_tool_start = start if self.first_tool_start is None else min(self.first_tool_start, start)


@dataclass
class Retrying:
    """The provider failures opencode is retrying for a session (session.status `retry`)."""

    attempts: int = 0
    message: str = ""
    next_ms: float | None = None


class OpencodeSource(WatchedSource[WatchedSession]):
    name = "opencode"
    watches = "opencode"
    state_prefix = "oc"
    session_type = WatchedSession

    def __init__(self, ctx: SourceContext) -> None:
        import httpx

        super().__init__(ctx)
        cfg = ctx.config.opencode
        self.base_url = cfg.opencode_url.rstrip("/")
        self.reconnect_max_s = cfg.reconnect_max_s
        password = cfg.resolve_password()
        self._auth = httpx.BasicAuth(cfg.username, password) if password else None
        self.db_path = cfg.resolve_db_path()
        self.db_poll_interval_s = cfg.db_poll_interval_s
        self._known: dict[str, dict[str, Any]] = {}  # session infos the server or the db listed
        self._times: dict[str, MessageTimes] = {}  # by message id, until the message is counted
        self._compaction_auto: dict[str, bool] = {}  # by session: the `auto` flag of its latest compaction part
        self._retrying: dict[str, Retrying] = {}  # by session id
        self.radar = FormatRadar(self.name, ctx, self.state_prefix)
        self._connected = False
        self._db_task: asyncio.Task[None] | None = None

    @property
    def skipped_events(self) -> int:
        """Stream events that were not JSON objects."""
        return self.radar.counts[SKIPPED_LINE]

    @property
    def connected(self) -> bool:
        return self._connected

    def format_radar(self) -> dict[str, int]:
        return self.radar.snapshot()

    async def start(self) -> None:
        self._load_live()
        self._task = asyncio.create_task(self._follow(), name="opencode-server")
        self._db_task = asyncio.create_task(self._poll_db(), name="opencode-db")

    async def stop(self) -> None:
        await cancel_and_wait([self._db_task])
        self._db_task = None
        await super().stop()

    def _client(self) -> httpx.AsyncClient:
        import httpx

        return httpx.AsyncClient(base_url=self.base_url, auth=self._auth, timeout=REQUEST_TIMEOUT_S,
                                 trust_env=False)

    # --- the server ---------------------------------------------------------------------

    async def _follow(self) -> None:
        import httpx

        backoff = FIRST_BACKOFF_S
        failing = False
        while True:
            try:
                async with self._client() as client, client.stream(
                    "GET", "/global/event", timeout=httpx.Timeout(REQUEST_TIMEOUT_S, read=HEARTBEAT_GRACE_S)
                ) as response:
                    if response.status_code != 200:
                        raise httpx.HTTPStatusError(f"GET /global/event answered {response.status_code}",
                                                    request=response.request, response=response)
                    # The stream is open, so nothing that happens from here on is missed; what
                    # happened before is read back now.
                    await self._backfill(client)
                    self._connected = True
                    if failing:
                        failing = False
                        self.ctx.notice("info", f"opencode: connected to {self.base_url}")
                    backoff = FIRST_BACKOFF_S
                    buffer: list[str] = []
                    async for line in response.aiter_lines():
                        data = parse_sse(buffer, line)
                        if data is not None:
                            self.handle_text(data)
            except (httpx.HTTPError, OSError, ValueError) as exc:
                if not failing:
                    failing = True
                    self.ctx.notice("warning", f"opencode: server at {self.base_url} unavailable: "
                                               f"{str(exc) or type(exc).__name__}")
            self._connected = False
            await asyncio.sleep(backoff * random.uniform(0.5, 1.0))
            backoff = min(backoff * 2, self.reconnect_max_s)

    async def _get_json(self, client: httpx.AsyncClient, path: str, **params: str) -> Any:
        import httpx

        response = await client.get(path, params=params)
        if response.status_code != 200:
            raise httpx.HTTPStatusError(f"GET {path} answered {response.status_code}",
                                        request=response.request, response=response)
        return response.json()

    async def _backfill(self, client: httpx.AsyncClient) -> None:
        """Sessions and messages the server has that were not seen, then which sessions are busy."""
        import httpx

        try:
            listed = await self._get_json(client, "/experimental/session")
        except httpx.HTTPStatusError as exc:
            if exc.response.status_code != 404:
                raise
            listed = await self._get_json(client, "/session")  # an opencode without it: its own directory
        directories: set[str] = set()
        for info in listed if isinstance(listed, list) else []:
            if not isinstance(info, dict) or not isinstance(info.get("id"), str):
                continue
            sid = info["id"]
            self._known[sid] = info
            directory = str(info.get("directory") or "")
            directories.add(directory)
            updated = _ms(_dict(info.get("time")).get("updated"))
            seen = self.ctx.get_state(f"oc.updated:{sid}")
            if updated is None or (seen is not None and float(seen) >= updated):
                continue
            messages = await self._get_json(client, f"/session/{quote(sid)}/message", directory=directory)
            with self.ctx.atomic():
                self._session_info(info)
                for message in messages if isinstance(messages, list) else []:
                    entry = _dict(message)
                    for part in entry.get("parts") or []:
                        self._part(_dict(part), None)  # the server gives no part times
                    self._message(_dict(entry.get("info")), stored=True)
                self._end_if_stale(info)
                self.ctx.set_state(f"oc.updated:{sid}", repr(updated))
        busy: set[str] = set()
        for directory in sorted(directories | {s.cwd or "" for s in self._live_sessions()}):
            statuses = await self._get_json(client, "/session/status", directory=directory)
            for sid, status in _dict(statuses).items():
                if _dict(status).get("type") in ("busy", "retry"):
                    busy.add(sid)
        now = self.ctx.clock.now()
        with self.ctx.atomic():
            for session in self._live_sessions():
                if session.state == "running" and session.id not in busy:
                    # Cut off while busy (the server died or the agent was away): it is not busy now.
                    self._set_state(session, "idle", "opencode not busy after reconnect", now)
        self._flush()

    def _end_if_stale(self, info: dict[str, Any]) -> None:
        sid = info.get("id")
        session = self._sessions.get(sid) if isinstance(sid, str) and sid in self._live else None
        updated = _ms(_dict(info.get("time")).get("updated"))
        now = self.ctx.clock.now()
        if session is not None and updated is not None and updated / 1000.0 < now - STALE_AFTER_S:
            self._end(session, "inactive", now)

    def _live_sessions(self) -> list[WatchedSession]:
        return [self._sessions[sid] for sid in sorted(self._live) if sid in self._sessions]

    def handle_text(self, text: str) -> None:
        """One event of `/global/event` (its `data`)."""
        try:
            event = json.loads(text)
        except ValueError:
            event = None
        if not isinstance(event, dict):
            with self.ctx.atomic():
                self.radar.seen(SKIPPED_LINE, f"{self.base_url}/global/event")
            return
        # /global/event wraps each event with the directory it happened in; /event does not.
        payload = _dict(event["payload"]) if "payload" in event else event
        etype = payload.get("type")
        if etype in KNOWN_IGNORED:
            return
        if etype == "message.part.updated":  # streamed many times a turn; only remembered
            props = _dict(payload.get("properties"))
            self._part(_dict(props.get("part")), _ms(props.get("time")))
            return
        with self.ctx.atomic():
            self._handle(payload)
        self._flush()

    def _handle(self, event: dict[str, Any]) -> None:
        etype = event.get("type")
        props = _dict(event.get("properties"))
        now = self.ctx.clock.now()
        if etype in ("session.created", "session.updated"):
            self._session_info(_dict(props.get("info")), created=etype == "session.created")
            return
        if etype == "session.deleted":
            sid = _dict(props.get("info")).get("id")
            if isinstance(sid, str) and sid in self._live:
                self._end(self._sessions[sid], "deleted", now)
            return
        if etype == "message.updated":
            self._message(_dict(props.get("info")), stored=False)
            return
        sid = props.get("sessionID")
        if etype == "session.status" and isinstance(sid, str):
            self._status(sid, _dict(props.get("status")), now)
        elif etype in WAITING_EVENTS and isinstance(sid, str):
            session = self._active(sid, now)
            if session.state != "waiting":
                self._set_state(session, "waiting", WAITING_EVENTS[etype], now)
        elif etype in ANSWERED_EVENTS and isinstance(sid, str):
            waiting = self._sessions.get(sid) if sid in self._live else None
            if waiting is not None and waiting.state == "waiting":
                self._set_state(waiting, "running", f"opencode {etype}", now)
        elif etype == "session.error" and isinstance(sid, str):
            error = _dict(props.get("error"))
            if error.get("name") != ABORTED:
                self.ctx.notice("warning", f"opencode: session {sid}: {error_text(error)}")
        elif isinstance(etype, str) and etype not in KNOWN_IGNORED:
            self.radar.seen(UNKNOWN_TYPE, etype)

    def _part(self, part: dict[str, Any], at: float | None) -> None:
        msg_id, sid, kind = part.get("messageID"), part.get("sessionID"), part.get("type")
        if kind in ("step-finish", "tool") and isinstance(msg_id, str):
            if msg_id not in self._times and len(self._times) >= MAX_PENDING_MESSAGES:
                del self._times[next(iter(self._times))]
            self._times.setdefault(msg_id, MessageTimes()).add_part(part, at)
        elif kind == "compaction" and isinstance(sid, str):
            self._compaction_auto[sid] = part.get("auto") is True

    def _status(self, sid: str, status: dict[str, Any], now: float) -> None:
        kind = status.get("type")
        state = STATUS_STATES.get(kind) if isinstance(kind, str) else None
        if state is None:
            return
        if kind == "retry":
            retrying = self._retrying.setdefault(sid, Retrying())
            retrying.attempts = max(retrying.attempts, as_int(status.get("attempt")))
            retrying.message = plain(status.get("message") or "")
            retrying.next_ms = _ms(status.get("next"))
        session = self._active(sid, now)
        if session.state != state:
            self._set_state(session, state, f"opencode {kind}", now)

    # --- sessions -----------------------------------------------------------------------

    def _session_info(self, info: dict[str, Any], created: bool = False) -> None:
        sid = info.get("id")
        if not isinstance(sid, str):
            return
        self._known[sid] = info
        session = self._load(sid)
        now = self.ctx.clock.now()
        if created or (session is not None and not session.ended):
            # A new session has not been prompted yet: it is idle until opencode says busy.
            session = self._active(sid, now, state="idle" if created else "running")
        if session is not None and session.started is not None and not session.ended:
            title = real_title(info.get("title"))
            if title is not None and title != session.title:
                # opencode's title request answered: say session.started again with the real title
                # (the console keeps the newest values).
                session.title = title
                self._reannounce(session, now)

    def _active(self, sid: str, now: float, state: str = "running") -> WatchedSession:
        """The session, started (event emitted) on its first activity."""
        session = self._session(sid)
        info = self._known.get(sid, {})
        if session.started is None or session.ended:
            if isinstance(info.get("directory"), str):
                session.cwd = plain(info["directory"], 4096)
            session.title = real_title(info.get("title"))
            self._reopen(session)
            session.state = state
            self._announce(session, now)
        return session

    # --- calls --------------------------------------------------------------------------

    def _message(self, info: dict[str, Any], stored: bool) -> None:
        """A message from any path (`stored`: read back from the server or the db, not live); an
        assistant message is counted once it is complete."""
        if info.get("role") != "assistant":
            return
        msg_id, sid = info.get("id"), info.get("sessionID")
        if not isinstance(msg_id, str) or not isinstance(sid, str):
            return
        times = _dict(info.get("time"))
        completed, created = _ms(times.get("completed")), _ms(times.get("created"))
        error = _dict(info.get("error")) or None
        if completed is None and error is None:
            return  # still streaming; counted when complete
        if self.ctx.get_state(f"oc.msg:{msg_id}") is not None:
            self._times.pop(msg_id, None)
            return
        self.ctx.set_state(f"oc.msg:{msg_id}", "1")
        part_times = self._times.pop(msg_id, MessageTimes())
        retrying = self._retrying.pop(sid, None)
        tokens = _dict(info.get("tokens"))
        cache = _dict(tokens.get("cache"))
        for name in tokens.keys() - TOKEN_FIELDS:
            self.radar.seen(UNKNOWN_FIELD, f"tokens.{name}")
        for name in cache.keys() - CACHE_FIELDS:
            self.radar.seen(UNKNOWN_FIELD, f"tokens.cache.{name}")
        counts = {
            "input_tokens": as_int(tokens.get("input")),
            # opencode counts reasoning apart from output; it is billed as output.
            "output_tokens": as_int(tokens.get("output")) + as_int(tokens.get("reasoning")),
            "cache_creation_tokens": as_int(cache.get("write")),
            "cache_read_tokens": as_int(cache.get("read")),
        }
        finish = info.get("finish")
        aborted = error is not None and error.get("name") == ABORTED
        failure: str | None = None
        if retrying is not None and not any(counts.values()) and (error is None or aborted):
            # Every attempt failed, and opencode was stopped while it retried.
            failure = f"gave up after {retrying.attempts} failed attempts: {retrying.message}"
        elif aborted:
            return  # stopped by the user: not a call that failed
        elif error is not None:
            failure = error_text(error)
        elif not any(counts.values()) and finish == "unknown":
            failure = "stream ended before the response completed"
        elif not any(counts.values()) and finish is None:
            return  # stopped by the user before any answer
        now = self.ctx.clock.now()
        session = self._active(sid, now)
        model = info.get("modelID")
        provider = plain(info["providerID"]) if isinstance(info.get("providerID"), str) else None
        account = f"opencode:{provider}" if provider else session.account  # opencode's account is its provider's
        if (isinstance(model, str) and plain(model) != session.model) or account != session.account:
            session.model = plain(model) if isinstance(model, str) else session.model
            session.account = account
            self._reannounce(session, now)  # announced before its first answer named the model
        cost = info.get("cost")
        self.ctx.emit(
            "llm.call",
            sid,
            {
                "provider": provider or "unknown",
                "model": session.model or "unknown",
                **counts,
                "cost_usd": float(cost) if isinstance(cost, (int, float)) and not isinstance(cost, bool)
                and 0 <= cost < 1e6 else None,
                "latency_ms": model_latency_ms(created, completed, part_times, retrying),
                "ok": failure is None,
                "error": failure,
            },
            ts=(completed or created or now * 1000.0) / 1000.0,
        )
        if info.get("summary") is True and failure is None:
            auto = self._compaction_auto.pop(sid, True)
            self._set_state(session, "compacted", "auto" if auto else "manual", now)
        elif stored and finish != "tool-calls" and session.state != "idle":
            # Read back after the fact, with no status events: a turn that did not end in tool
            # calls has ended.
            self._set_state(session, "idle", "opencode turn ended", now)
        self._save(session)

    # --- opencode.db ------------------------------------------------------------------------

    async def _poll_db(self) -> None:
        while True:
            try:
                rows = await asyncio.to_thread(read_db, self.db_path, self._db_watermark())
            except (sqlite3.Error, OSError) as exc:
                with self.ctx.atomic():
                    self.radar.seen(UNREADABLE_FILE, str(self.db_path), detail=str(exc))
            else:
                if rows is not None:
                    self.apply_db(rows)
            await asyncio.sleep(self.db_poll_interval_s)

    def _db_watermark(self) -> float:
        raw = self.ctx.get_state("oc.db_updated")
        return float(raw) if raw else 0.0

    def apply_db(self, rows: DbRows) -> None:
        """Sessions and messages read from opencode.db since the last read."""
        with self.ctx.atomic():
            for info in rows.sessions:
                self._known[info["id"]] = info
                if info["id"] in self._live:
                    self._session_info(info)
            for info, parts in rows.messages:
                for part, at in parts:
                    self._part(part, at)
                self._message(info, stored=True)
            for info in rows.sessions:
                self._end_if_stale(info)
            if rows.watermark > self._db_watermark():
                self.ctx.set_state("oc.db_updated", repr(rows.watermark))
        self._flush()

    # --- commands -----------------------------------------------------------------------

    async def command(self, cmd: Command) -> dict[str, Any]:
        import httpx

        args = command_args(cmd)
        sid = self._target(cmd).id
        body: dict[str, Any] | None = None
        if cmd.action == "session.kill":
            path = f"/session/{quote(sid)}/abort"
        elif cmd.action == "session.prompt":
            path, body = f"/session/{quote(sid)}/prompt_async", {"parts": [{"type": "text", "text": args.text}]}
        elif cmd.action == "session.restart":
            raise self._only_watched(cmd.action)
        else:
            raise CommandError("not_supported", f"{cmd.action}: opencode offers no way to do this")
        directory = self._sessions[sid].cwd or ""
        try:
            async with self._client() as client:
                response = await client.post(path, params={"directory": directory}, json=body)
        except httpx.HTTPError as exc:
            raise CommandError("unavailable", f"opencode at {self.base_url}: {str(exc) or type(exc).__name__}") from None
        if response.status_code >= 300:
            raise CommandError("failed", f"opencode answered {response.status_code} to POST {path}")
        return {"session": sid, "status": response.status_code}


def model_latency_ms(created: float | None, completed: float | None, times: MessageTimes,
                     retrying: Retrying | None) -> float | None:
    """How long the model call took, in ms: from when opencode could send the request (the
    message's creation, or the end of the last retry back-off) to the end of the model's answer
    (its step-finish, or the start of the first tool it asked for). Tool time and back-off are
    left out; opencode's preparation of the request (snapshot, prompt) is in."""
    start = created
    if retrying is not None and retrying.next_ms is not None and (start is None or retrying.next_ms > start):
        start = retrying.next_ms
    ends = [t for t in (times.step_finish, times.first_tool_start) if t is not None]
    end = min(ends) if ends else completed
    if start is None or end is None or end < start:
        return None
    return end - start


@dataclass
class DbRows:
    sessions: list[dict[str, Any]]
    messages: list[tuple[dict[str, Any], list[tuple[dict[str, Any], float | None]]]]  # info, (part, created)
    watermark: float  # the largest time_updated read


def read_db(path: Path, since: float) -> DbRows | None:
    """Sessions and messages of opencode.db updated at or after `since` (epoch ms; rows read twice
    are counted once by message id); None if it is absent.
    Opened read-only: opencode keeps writing it (WAL), the agent never does."""
    if not path.exists():
        return None
    db = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=REQUEST_TIMEOUT_S)
    try:
        sessions = [
            {"id": sid, "directory": directory, "title": title, "time": {"updated": updated}}
            for sid, directory, title, updated in db.execute(
                "SELECT id, directory, title, time_updated FROM session WHERE time_updated >= ? ORDER BY time_updated",
                (since,))
        ]
        messages: list[tuple[dict[str, Any], list[tuple[dict[str, Any], float | None]]]] = []
        watermark = max([since] + [s["time"]["updated"] for s in sessions])
        for msg_id, sid, updated, data in db.execute(
            "SELECT id, session_id, time_updated, data FROM message WHERE time_updated >= ? "
            "ORDER BY time_updated, id LIMIT ?", (since, DB_BATCH)):
            watermark = max(watermark, float(updated))
            try:
                info = json.loads(data)
            except ValueError:
                continue
            if not isinstance(info, dict):
                continue
            info.update(id=msg_id, sessionID=sid)
            # A summary message's `auto` flag is on the compaction part of the message it answers.
            owners = [msg_id]
            if info.get("summary") is True and isinstance(info.get("parentID"), str):
                owners.append(info["parentID"])
            parts: list[tuple[dict[str, Any], float | None]] = []
            for owner in owners:
                for part_data, part_created in db.execute(
                    "SELECT data, time_created FROM part WHERE message_id = ? ORDER BY id", (owner,)):
                    try:
                        part = json.loads(part_data)
                    except ValueError:
                        continue
                    if isinstance(part, dict):
                        part.update(messageID=owner, sessionID=sid)
                        parts.append((part, _ms(part_created)))
            messages.append((info, parts))
        return DbRows(sessions, messages, watermark)
    finally:
        db.close()
