"""opencode sessions, from the event stream of `opencode serve` (facts: shared/SOURCES.md "opencode").

The source follows `GET /event` (server-sent events) and reconnects with jittered back-off.
It speaks HTTP/1.1 itself (asyncio streams), so the agent needs no HTTP client library.
Assistant messages become `llm.call`s once complete (opencode prices them itself, so `cost_usd`
is set), each counted once by message id, persisted. Kill aborts the running turn; prompt sends
text with `prompt_async`; opencode defines both, so no command runs anything on this machine.
"""

from __future__ import annotations

import asyncio
import json
import random
import ssl
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

from ..protocol import Command
from .base import CommandError, SourceContext
from .common import WatchedSession, WatchedSource, command_args
from .jsonl import as_int

HEARTBEAT_GRACE_S = 35.0  # opencode sends server.heartbeat every 10 s; silence this long is a dead stream
REQUEST_TIMEOUT_S = 10.0
MAX_HEADER_LINES = 100
FIRST_BACKOFF_S = 0.5
STATUS_STATES = {"busy": "running", "retry": "running", "idle": "idle"}
ABORTED = "MessageAbortedError"  # the user stopped the turn: not a provider failure
# Events that stop a session until a person answers (`permission.updated` before opencode 1.x named
# it `permission.asked`), and those that say the person did.
WAITING_EVENTS = {"permission.asked": "permission", "permission.updated": "permission", "question.asked": "question"}
ANSWERED_EVENTS = frozenset({"permission.replied", "question.replied", "question.rejected"})


def _object(value: Any) -> dict[str, Any]:
    """A JSON object from opencode, or an empty one for anything else (the stream is not trusted)."""
    return value if isinstance(value, dict) else {}


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
    field, _, value = line.partition(":")
    if field == "data":
        buffer.append(value[1:] if value.startswith(" ") else value)
    return None


class HttpError(Exception):
    """opencode could not be reached or answered something that is not HTTP."""


class _Response:
    def __init__(self, status: int, headers: dict[str, str], reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        self.status = status
        self.headers = headers
        self._reader = reader
        self._writer = writer

    async def chunks(self, timeout: float) -> AsyncIterator[bytes]:
        """The body as it arrives (chunked, sized or until close); each read waits at most `timeout`."""
        read = self._reader
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size_line = await asyncio.wait_for(read.readline(), timeout)
                try:
                    size = int(size_line.split(b";")[0].strip() or b"0", 16)
                except ValueError:
                    raise HttpError(f"bad chunk size {size_line[:20]!r}") from None
                if size == 0:
                    return
                yield await asyncio.wait_for(read.readexactly(size), timeout)
                await asyncio.wait_for(read.readline(), timeout)
        elif "content-length" in self.headers:
            remaining = int(self.headers["content-length"])
            while remaining > 0:
                data = await asyncio.wait_for(read.read(min(remaining, 65536)), timeout)
                if not data:
                    return
                remaining -= len(data)
                yield data
        else:
            while data := await asyncio.wait_for(read.read(65536), timeout):
                yield data

    async def body(self) -> bytes:
        return b"".join([c async for c in self.chunks(REQUEST_TIMEOUT_S)])

    async def lines(self) -> AsyncIterator[str]:
        pending = b""
        async for chunk in self.chunks(HEARTBEAT_GRACE_S):
            pending += chunk
            *complete, pending = pending.split(b"\n")
            for line in complete:
                yield line.rstrip(b"\r").decode("utf-8", "replace")

    def close(self) -> None:
        self._writer.close()


async def http_request(base_url: str, method: str, path: str, body: Any = None) -> _Response:
    """One HTTP/1.1 request (Connection: close). The agent keeps no HTTP client library for this."""
    url = urlsplit(base_url)
    tls = url.scheme == "https"
    host = url.hostname or "127.0.0.1"
    port = url.port or (443 if tls else 80)
    payload = b"" if body is None else json.dumps(body).encode()
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=ssl.create_default_context() if tls else None), REQUEST_TIMEOUT_S
        )
    except (OSError, asyncio.TimeoutError) as exc:
        raise HttpError(f"cannot connect to {host}:{port}: {getattr(exc, 'strerror', None) or exc or 'timed out'}") from None
    head = [f"{method} {url.path.rstrip('/')}{path} HTTP/1.1", f"Host: {url.netloc}", "Connection: close",
            "Accept: application/json, text/event-stream"]
    if body is not None:
        head.append("Content-Type: application/json")
    if method != "GET":
        head.append(f"Content-Length: {len(payload)}")
    try:
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + payload)
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), REQUEST_TIMEOUT_S)
        parts = status_line.decode("latin-1").split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
            raise HttpError(f"not an HTTP answer: {status_line[:40]!r}")
        headers: dict[str, str] = {}
        for _ in range(MAX_HEADER_LINES):
            line = await asyncio.wait_for(reader.readline(), REQUEST_TIMEOUT_S)
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
    except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError) as exc:
        writer.close()
        raise HttpError(f"{method} {path}: {exc or type(exc).__name__}") from None
    except HttpError:
        writer.close()
        raise
    return _Response(int(parts[1]), headers, reader, writer)


class IngestSource(WatchedSource[WatchedSession]):
    name = "ingest"
    watches = "opencode"
    state_prefix = "oc"
    session_type = WatchedSession

    def __init__(self, ctx: SourceContext) -> None:
        super().__init__(ctx)
        cfg = ctx.config.ingest
        self.base_url = cfg.opencode_url.rstrip("/")
        self.reconnect_max_s = cfg.reconnect_max_s
        self._known: dict[str, dict[str, Any]] = {}  # session infos listed by the server, not yet active
        self._skipped = 0
        self._connected = False

    @property
    def skipped_events(self) -> int:
        """Stream events that were not JSON objects."""
        return self._skipped

    @property
    def connected(self) -> bool:
        return self._connected

    async def start(self) -> None:
        self._load_live()
        self._task = asyncio.create_task(self._follow(), name="ingest-opencode")

    # --- the stream ---------------------------------------------------------------------

    async def _follow(self) -> None:
        backoff = FIRST_BACKOFF_S
        failing = False
        while True:
            try:
                await self._list_sessions()
                response = await http_request(self.base_url, "GET", "/event")
                try:
                    if response.status != 200:
                        raise HttpError(f"GET /event answered {response.status}")
                    self._connected = True
                    if failing:
                        failing = False
                        self.ctx.notice("info", f"ingest: connected to opencode at {self.base_url}")
                    backoff = FIRST_BACKOFF_S
                    buffer: list[str] = []
                    async for line in response.lines():
                        data = parse_sse(buffer, line)
                        if data is not None:
                            self._handle_text(data)
                finally:
                    response.close()
            except (HttpError, OSError, asyncio.TimeoutError, asyncio.IncompleteReadError) as exc:
                if not failing:
                    failing = True
                    self.ctx.notice("warning", f"ingest: opencode at {self.base_url} unavailable: {exc or type(exc).__name__}")
            self._connected = False
            await asyncio.sleep(backoff * random.uniform(0.5, 1.0))
            backoff = min(backoff * 2, self.reconnect_max_s)

    async def _list_sessions(self) -> None:
        response = await http_request(self.base_url, "GET", "/session")
        try:
            if response.status != 200:
                return
            try:
                listed = json.loads(await response.body())
            except ValueError:
                return
        finally:
            response.close()
        for info in listed if isinstance(listed, list) else []:
            if isinstance(info, dict) and isinstance(info.get("id"), str):
                self._known[info["id"]] = info

    def _handle_text(self, text: str) -> None:
        try:
            event = json.loads(text)
        except ValueError:
            event = None
        if not isinstance(event, dict):
            self._skipped += 1
            return
        with self.ctx.atomic():
            changed = self._handle(event)
        if changed:
            self.ctx.sessions_changed()

    def _handle(self, event: dict[str, Any]) -> bool:
        etype = event.get("type")
        props = _object(event.get("properties"))
        now = self.ctx.clock.now()
        if etype in ("session.created", "session.updated"):
            info = props.get("info")
            if not isinstance(info, dict) or not isinstance(info.get("id"), str):
                return False
            self._known[info["id"]] = info
            session = self._load(info["id"])
            if etype == "session.created" or (session is not None and not session.ended):
                self._active(info["id"], now)
                return True
            return False
        if etype == "session.deleted":
            info = props.get("info")
            sid = info.get("id") if isinstance(info, dict) else None
            session = self._sessions.get(sid) if isinstance(sid, str) and sid in self._live else None
            if session is None:
                return False
            self._end(session, "deleted", now)
            return True
        sid = props.get("sessionID")
        if not isinstance(sid, str):
            info = props.get("info")
            sid = info.get("sessionID") if isinstance(info, dict) else None
        if not isinstance(sid, str):
            return False
        if etype == "session.status":
            status = props.get("status")
            kind = status.get("type") if isinstance(status, dict) else status
            state = STATUS_STATES.get(kind) if isinstance(kind, str) else None
            if state is None:
                return False
            session = self._active(sid, now)
            if session.state != state:
                self._set_state(session, state, f"opencode {kind}", now)
            return True
        if etype == "session.compacted":
            self._set_state(self._active(sid, now), "compacted", "auto", now)
            return True
        if etype in WAITING_EVENTS:
            session = self._active(sid, now)
            if session.state != "waiting":
                self._set_state(session, "waiting", WAITING_EVENTS[etype], now)
            return True
        if etype in ANSWERED_EVENTS:
            waiting = self._sessions.get(sid) if sid in self._live else None
            if waiting is None or waiting.state != "waiting":
                return False
            self._set_state(waiting, "running", f"opencode {etype}", now)
            return True
        if etype == "session.error":
            error = props.get("error")
            name = error.get("name") if isinstance(error, dict) else None
            if name != ABORTED:
                self.ctx.notice("warning", f"ingest: opencode session {sid}: {name or 'error'}")
            return False
        if etype == "message.updated":
            return self._message(sid, props.get("info"), now)
        return False

    def _message(self, sid: str, info: Any, now: float) -> bool:
        if not isinstance(info, dict) or info.get("role") != "assistant":
            return False
        times = _object(info.get("time"))
        completed, created = times.get("completed"), times.get("created")
        error = info.get("error") if isinstance(info.get("error"), dict) else None
        if completed is None and error is None:
            return False  # still streaming; counted when complete
        msg_id = info.get("id")
        if not isinstance(msg_id, str) or self.ctx.get_state(f"oc.msg:{msg_id}") is not None:
            return False
        self.ctx.set_state(f"oc.msg:{msg_id}", "1")
        if error is not None and error.get("name") == ABORTED:
            return False
        session = self._active(sid, now)
        if isinstance(info.get("modelID"), str):
            session.model = info["modelID"]
        tokens = _object(info.get("tokens"))
        cache = _object(tokens.get("cache"))
        cost = info.get("cost")
        latency = None
        if isinstance(completed, (int, float)) and isinstance(created, (int, float)) and completed >= created:
            latency = float(completed - created)  # opencode times are epoch milliseconds
        self.ctx.emit(
            "llm.call",
            sid,
            {
                "provider": info.get("providerID") if isinstance(info.get("providerID"), str) else "unknown",
                "model": session.model or "unknown",
                "input_tokens": as_int(tokens.get("input")),
                # Reasoning is billed as output.
                "output_tokens": as_int(tokens.get("output")) + as_int(tokens.get("reasoning")),
                "cache_creation_tokens": as_int(cache.get("write")),
                "cache_read_tokens": as_int(cache.get("read")),
                "cost_usd": float(cost) if isinstance(cost, (int, float)) and not isinstance(cost, bool) and cost >= 0 else None,
                "latency_ms": latency,
                "ok": error is None,
                "error": (error.get("name") or "error") if error is not None else None,
            },
            ts=completed / 1000.0 if isinstance(completed, (int, float)) else now,
        )
        self._save(session)
        return True

    # --- sessions -----------------------------------------------------------------------

    def _active(self, sid: str, now: float) -> WatchedSession:
        """The session, started (event emitted) on its first activity."""
        session = self._session(sid)
        info = self._known.get(sid, {})
        if isinstance(info.get("directory"), str):
            session.cwd = info["directory"]
        if isinstance(info.get("title"), str):
            session.title = info["title"]
        if session.started is None or session.ended:
            self._reopen(session)
            self._announce(session, now)
        return session

    # --- commands -----------------------------------------------------------------------

    async def command(self, cmd: Command) -> dict[str, Any]:
        args = command_args(cmd)
        sid = self._target(cmd).id
        if cmd.action == "session.kill":
            path, body = f"/session/{sid}/abort", None
        elif cmd.action == "session.prompt":
            path, body = f"/session/{sid}/prompt_async", {"parts": [{"type": "text", "text": args.text}]}
        elif cmd.action == "session.restart":
            raise self._only_watched(cmd.action)
        else:
            raise CommandError("not_supported", f"{cmd.action}: opencode offers no way to do this")
        try:
            response = await http_request(self.base_url, "POST", path, body)
        except HttpError as exc:
            raise CommandError("unavailable", f"opencode at {self.base_url}: {exc}") from None
        response.close()
        if response.status >= 300:
            raise CommandError("failed", f"opencode answered {response.status} to POST {path}")
        return {"session": sid, "status": response.status}
