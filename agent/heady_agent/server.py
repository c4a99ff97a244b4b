"""The agent's WebSocket server: auth, subscribe/replay, live frames, commands, /healthz, /metrics.

One asyncio loop owns everything. A frame is journalled and handed to live subscribers in the same
synchronous step, and a replay turns live in the same step as its last empty read, so the switch
from replay to live has neither a gap nor a duplicate.

Whoever reaches the port is untrusted until the token matches, and a console is trusted only to
send well-formed frames: what the agent echoes back is quoted and cut, each connection's backlog
is bounded in bytes, connections are capped, and browsers (which send an Origin header) are refused.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import platform
import re
import socket
import ssl
import stat
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any

import psutil
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from . import __version__
from .actions import run_command
from .aio import cancel_and_wait
from .clock import Clock, SystemClock
from .collector import Collector
from .config import SOURCE_NAMES, AgentConfig, data_dir, parse_listen
from .journal import Appended, FrameTooLarge, Journal
from .hook_socket import HookListener, HookSocketError
from .hooks import HookSignal
from .protocol import (
    EVENT_KINDS,
    MAX_FRAME_BYTES,
    PROTOCOL_VERSION,
    Ack,
    Command,
    ErrorFrame,
    Focus,
    FrameError,
    Result,
    SessionInfo,
    Sessions,
    Subscribe,
    dump,
    parse_console_frame,
    parse_event_data,
)
from .sources import load_source
from .sources.base import SessionSource, WorkQueueStore, echo

log = logging.getLogger("heady_agent.server")

# websockets itself closes the connection (1009) above this; below it, frames over
# MAX_FRAME_BYTES get an `error` frame and the connection stays up.
HARD_FRAME_LIMIT = 4 * MAX_FRAME_BYTES
INCOMING_QUEUE = 4  # frames websockets reads ahead of the handler, per connection
PRUNE_EVERY_S = 300.0
REFUSAL_WINDOW_S = 60.0  # refused connections: the first of each reason is logged, then one count per window
MESSAGE_CHARS = 512  # an error frame's message
JOURNAL_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")  # Journal ids are token_hex(8); a console sends one back


class StartError(Exception):
    """The agent cannot start (bad listen address, no token on a public address, port in use)."""


def _cut(message: str, limit: int = MESSAGE_CHARS) -> str:
    return message if len(message) <= limit else message[: limit - 3] + "..."


class _Outbox:
    """Frames waiting for one connection, bounded by their total size (one frame always fits).

    A replay fills at most half of it: when it turns live, the `sessions` frame and the first live
    frames must fit, or a reader that keeps up would be cut off the moment its replay ends.
    """

    def __init__(self, limit_bytes: int) -> None:
        self.limit = limit_bytes
        self.size = 0
        self._frames: deque[str] = deque()
        self._ready = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()

    def _fits(self, text: str, limit: int) -> bool:
        return not self._frames or self.size + len(text) <= limit

    def offer(self, text: str) -> bool:
        """Queue the frame if it fits; False when it does not (nothing queued)."""
        if not self._fits(text, self.limit):
            return False
        self._frames.append(text)
        self.size += len(text)
        self._ready.set()
        return True

    async def put(self, text: str) -> None:
        """Queue a replayed frame once half the budget is free (replays follow the reader's pace)."""
        while not self._fits(text, self.limit // 2):
            self._room.clear()
            await self._room.wait()
        self.offer(text)

    async def get(self) -> str:
        while not self._frames:
            self._ready.clear()
            await self._ready.wait()
        text = self._frames.popleft()
        self.size -= len(text)
        self._room.set()
        return text

    def clear(self) -> None:
        self._frames.clear()
        self.size = 0
        self._room.set()


class _RefusalLog:
    """One log line for the first refused connection of each kind (a fixed code, so varying the
    request cannot open new kinds), then a count per window."""

    def __init__(self, clock: Clock, window_s: float = REFUSAL_WINDOW_S) -> None:
        self.clock = clock
        self.window_s = window_s
        self._opened: dict[str, float] = {}
        self._more: dict[str, int] = {}

    def refused(self, code: str, why: str, remote: str) -> None:
        self.flush()
        if code in self._opened:
            self._more[code] += 1
            return
        self._opened[code] = self.clock.monotonic()
        self._more[code] = 0
        log.warning("refused %s: %s", remote, why)

    def flush(self) -> None:
        """Log the counts of windows that have ended."""
        now = self.clock.monotonic()
        for code, opened in list(self._opened.items()):
            if now - opened < self.window_s:
                continue
            more = self._more.pop(code)
            del self._opened[code]
            if more:
                log.warning("refused %d more connections in the last %.0f s (%s)", more, now - opened, code)


@dataclass
class Counts:
    """Running totals for /metrics (metrics.py), by bounded labels only: a source name, a token kind,
    a refusal reason. Plain numbers, so an agent nobody scrapes does not load prometheus_client."""

    llm_calls: dict[str, int] = field(default_factory=dict)  # source -> calls
    llm_tokens: dict[tuple[str, str], int] = field(default_factory=dict)  # (source, kind) -> tokens
    llm_cost_usd: dict[str, float] = field(default_factory=dict)  # source -> provider-reported cost
    refused: dict[str, int] = field(default_factory=dict)  # reason -> connections
    subscribers_dropped: int = 0
    frames_refused: int = 0


@dataclass(eq=False)  # identity: peers live in a set
class _Peer:
    ws: ServerConnection
    outbox: _Outbox
    live: bool = False
    cursor: int = 0  # highest seq queued for this peer
    acked: int = 0
    focus: bool = False
    replay: asyncio.Task[None] | None = None
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)


class _Context:
    """What each source gets from the agent (sources/base.py SourceContext)."""

    def __init__(self, server: AgentServer) -> None:
        self._server = server
        self.config = server.config
        self.clock = server.clock
        self.node_id = server.node_id

    def emit(self, kind: str, session: str | None, data: dict[str, Any], ts: float | None = None) -> None:
        self._server.emit(kind, session, data, ts)

    def notice(self, severity: str, message: str) -> None:
        self._server.emit("agent.notice", None, {"severity": severity, "message": message})

    def get_state(self, key: str) -> str | None:
        return self._server.journal.get_state(key)

    def set_state(self, key: str, value: str) -> None:
        self._server.journal.set_state(key, value)

    def delete_state(self, key: str) -> None:
        self._server.journal.delete_state(key)

    @property
    def work_queue(self) -> WorkQueueStore:
        return self._server.journal

    def atomic(self) -> Any:
        return self._server.atomic()

    def sessions_changed(self) -> None:
        self._server.sessions_changed()

    def go_dark(self, seconds: float) -> None:
        self._server.go_dark(seconds)


class AgentServer:
    def __init__(
        self,
        config: AgentConfig,
        *,
        clock: Clock | None = None,
        journal_path: Path | None = None,
        sources: Sequence[SessionSource | type[SessionSource]] | None = None,
        hook_socket: Path | None = None,
    ) -> None:
        self.config = config
        self.clock = clock or SystemClock()
        self.host, self._port = parse_listen(config.listen)
        self.token = config.resolve_token()
        problem = config.token_problem(self.host)
        if problem:
            raise StartError(
                f"refusing to listen on {self.host}:{self._port} {problem} "
                "(set agent.token, agent.token_file or $HEADY_AGENT_TOKEN, or listen on 127.0.0.1)"
            )
        self.node_id = config.node_id or socket.gethostname()
        self.journal_path = journal_path or (
            Path(config.journal_path).expanduser() if config.journal_path else data_dir() / "agent-journal.db"
        )
        self.context = _Context(self)
        self.sources: list[SessionSource] = []
        for given in sources if sources is not None else [_source_class(name) for name in config.sources]:
            if isinstance(given, type):
                self.sources.append(given(self.context))
            else:
                given.ctx = self.context  # an instance built elsewhere reports through this server
                self.sources.append(given)
        self.simulated = any(s.simulated for s in self.sources)
        self.journal: Journal = None  # type: ignore[assignment]  # opened in start()
        self.collector = Collector(self.clock)
        self._peers: set[_Peer] = set()
        self._pending: list[Appended] = []
        self._server: Server | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._dark_until = 0.0
        self._sessions_push_scheduled = False
        self._last_metrics: dict[str, Any] | None = None
        self._session_source: dict[str, str] = {}  # live sessions -> source label of their llm.call counts
        self._refusals = _RefusalLog(self.clock)
        self._stopping = False
        self.counts = Counts()
        if config.otlp.listen is not None or config.otlp.grpc_listen is not None:
            self.sources.append(self._otlp_source(config))
        # Claude Code hooks arrive here (hook_socket.py); None: not listened for.
        self._hooks = HookListener(hook_socket, self._person_signal, self._limits_signal) if hook_socket is not None else None

    def _otlp_source(self, config: AgentConfig) -> SessionSource:
        """The OTLP receivers' source; off loopback they take the agent's token, as the WebSocket does."""
        from .sources.otlp import OtlpSource  # loads protobuf and gRPC only on agents that receive telemetry

        for key, listen in (("listen", config.otlp.listen), ("grpc_listen", config.otlp.grpc_listen)):
            if listen is None:
                continue
            host, port = parse_listen(listen)
            problem = config.token_problem(host)
            if problem:
                raise StartError(f"refusing to receive OTLP on {host}:{port} {problem} (agent.otlp.{key})")
        source = OtlpSource(self.context)
        source.others = list(self.sources)
        # /metrics: heady_agent_connections_refused{reason="otlp_<status>" or "otlp_grpc_<status>"}
        source.receiver.refused = self.counts.refused
        if source.grpc_receiver is not None:
            source.grpc_receiver.refused = self.counts.refused
        return source

    # --- lifecycle ----------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._server is None:
            return self._port
        return self._server.sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        scheme = "wss" if self.config.tls_cert else "ws"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}/ws"

    @property
    def last_metrics(self) -> dict[str, Any] | None:
        """The last metrics sample (None before the first tick)."""
        return self._last_metrics

    @property
    def connections(self) -> int:
        return len(self._peers)

    @property
    def send_queue_bytes(self) -> int:
        return sum(peer.outbox.size for peer in self._peers)

    def source_labels(self) -> set[str]:
        return {source_label(source.name) for source in self.sources}

    def session_states(self) -> Iterator[tuple[str, str]]:
        """(source label, state) of every session the sources report now."""
        for source in self.sources:
            for info in source.sessions():
                yield source_label(source.name), info.state

    async def start(self) -> None:
        self.journal = Journal(
            self.journal_path,
            clock=self.clock,
            retention_rows=self.config.retention_rows,
            retention_days=self.config.retention_days,
        )
        if self.journal.reset_notice:
            self.emit("agent.notice", None, {"severity": "warning", "message": self.journal.reset_notice})
        self.journal.prune()
        self._warn_readable_token_file()
        try:
            self._server = await serve(
                self._handle,
                self.host,
                self._port,
                process_request=self._process_request,
                ssl=self._ssl_context(),
                max_size=HARD_FRAME_LIMIT,
                max_queue=INCOMING_QUEUE,
                compression=None,  # frames are small; deflate costs CPU on every tick
                server_header=f"heady-agent/{__version__}",
            )
        except OSError as exc:
            self.journal.close()
            raise StartError(f"cannot listen on {self.host}:{self._port}: {exc.strerror or exc}") from None
        for source in self.sources:
            try:
                await source.start()
            except Exception as exc:  # one broken source must not stop the others
                log.exception("source %s failed to start", source.name)
                self.emit("agent.notice", None, {"severity": "warning", "message": f"source {source.name} failed to start: {exc}"})
        await self._listen_for_hooks()
        self._tasks.append(asyncio.create_task(self._tick_loop(), name="heady-agent-ticks"))
        log.info("listening on %s (journal %s, seq %d)", self.url, self.journal.id, self.journal.last_seq)

    def _warn_readable_token_file(self) -> None:
        if not self.config.token_file or self.config.token:
            return
        path = Path(self.config.token_file).expanduser()
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
        except OSError:
            return
        if mode & 0o077:
            log.warning("agent.token_file %s is readable by other users (mode %o); chmod 600 it", path, mode)

    async def _listen_for_hooks(self) -> None:
        if self._hooks is None:
            return
        try:
            await self._hooks.start()
        except (HookSocketError, OSError) as exc:  # the agent works without hooks, from the registry alone
            self.emit("agent.notice", None, {"severity": "warning", "message": f"hooks not accepted: {exc}"})

    def _person_signal(self, signal: HookSignal) -> None:
        for source in self.sources:
            if source.person_signal(signal.session_id, signal.state, signal.reason):
                return

    def _limits_signal(self, session_id: str, limits: dict[str, Any]) -> None:
        for source in self.sources:
            if source.limits_signal(session_id, limits):
                return

    def check_tls(self) -> None:
        """Raise StartError when the configured certificate or key cannot be loaded."""
        self._ssl_context()

    def _ssl_context(self) -> ssl.SSLContext | None:
        if not self.config.tls_cert or not self.config.tls_key:
            return None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            context.load_cert_chain(Path(self.config.tls_cert).expanduser(), Path(self.config.tls_key).expanduser())
        except (OSError, ssl.SSLError) as exc:
            raise StartError(f"agent.tls_cert/tls_key: cannot load: {exc}") from None
        return context

    async def stop(self) -> None:
        self._stopping = True
        await cancel_and_wait(self._tasks)
        self._tasks.clear()
        if self._hooks is not None:
            await self._hooks.stop()
        for source in self.sources:
            try:
                await source.stop()
            except Exception:
                log.exception("source %s failed to stop cleanly", source.name)
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        if self.journal is not None:
            self.journal.close()

    async def __aenter__(self) -> AgentServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- frames in ----------------------------------------------------------------------

    def emit(self, kind: str, session: str | None, data: dict[str, Any], ts: float | None = None) -> None:
        """Journal an event and hand it to live subscribers (after commit, inside atomic())."""
        if kind not in EVENT_KINDS:
            raise ValueError(f"unknown event kind {kind!r}")
        # What is journalled is what was validated (cleaned text, no unknown keys), never the raw dict.
        data = parse_event_data(kind, data).model_dump(mode="json", exclude_unset=True)
        frame = {
            "type": "event",
            "ts": self.clock.now() if ts is None else ts,
            "kind": kind,
            "session": session,
            "data": data,
            "simulated": self.simulated,
        }
        try:
            appended = self.journal.append(frame)
        except FrameTooLarge as exc:
            # Refused with a notice: journalled, it would cut every console off at this seq.
            self.counts.frames_refused += 1
            who = f" of session {echo(session)}" if session is not None else ""
            log.warning("not journalling a %s event%s: %s", kind, who, exc)
            self.emit("agent.notice", None, {"severity": "warning", "message": f"dropped a {kind} event{who}: {exc}"})
            return
        self._count_event(kind, session, data)
        self._publish(appended)

    def _publish(self, appended: Appended) -> None:
        if self.journal.in_transaction:
            self._pending.append(appended)
        else:
            self._broadcast(appended)

    @contextmanager
    def atomic(self) -> Iterator[None]:
        outer = not self.journal.in_transaction
        try:
            with self.journal.transaction():
                yield
        except BaseException:
            if outer:
                self._pending.clear()
            raise
        if outer:
            pending, self._pending = self._pending, []
            for appended in pending:
                self._broadcast(appended)

    def _count_event(self, kind: str, session: str | None, data: dict[str, Any]) -> None:
        """/metrics counters, labelled by source only: a label per session would grow without end."""
        if session is None:
            return
        if kind == "session.started":
            self._session_source[session] = source_label(data.get("source"))
        elif kind == "session.ended":
            self._session_source.pop(session, None)
        elif kind == "llm.call":
            counts = self.counts
            source = self._session_source.get(session, "other")
            counts.llm_calls[source] = counts.llm_calls.get(source, 0) + 1
            for name in ("input", "output", "cache_creation", "cache_read"):
                key = (source, name)
                counts.llm_tokens[key] = counts.llm_tokens.get(key, 0) + int(data.get(f"{name}_tokens") or 0)
            if data.get("cost_usd") is not None:
                counts.llm_cost_usd[source] = counts.llm_cost_usd.get(source, 0.0) + float(data["cost_usd"])

    # --- frames out ---------------------------------------------------------------------

    def _broadcast(self, appended: Appended) -> None:
        for peer in list(self._peers):
            if peer.live and appended.seq > peer.cursor:
                peer.cursor = appended.seq
                self._offer(peer, appended.text)

    def _offer(self, peer: _Peer, text: str) -> None:
        if peer in self._peers and not peer.outbox.offer(text):
            # Cut a subscriber that cannot keep up: it resumes from its cursor on reconnect.
            log.warning("subscriber %s is too slow (%d bytes waiting); closing it", peer.ws.remote_address, peer.outbox.size)
            self.counts.subscribers_dropped += 1
            self._drop(peer, 1013, "subscriber too slow; resume from your cursor")

    def _drop(self, peer: _Peer, code: int, reason: str) -> None:
        self._peers.discard(peer)
        peer.live = False
        peer.outbox.clear()  # its backlog is freed now, not when the close handshake ends
        if peer.replay is not None:
            peer.replay.cancel()
        task = asyncio.get_running_loop().create_task(peer.ws.close(code, reason))
        peer.tasks.add(task)
        task.add_done_callback(peer.tasks.discard)

    def _sessions_text(self) -> str:
        sessions = [info for source in self.sources for info in source.sessions()]
        text = dump(Sessions(sessions=sessions))
        if len(text.encode()) <= MAX_FRAME_BYTES:
            return text
        kept = _fit_sessions(sessions)
        log.warning("sessions frame cut to the %d most recent of %d sessions (frame limit)", len(kept), len(sessions))
        return dump(Sessions(sessions=kept))

    def sessions_changed(self) -> None:
        # Coalesce a burst of changes into one frame per loop turn.
        if self._sessions_push_scheduled:
            return
        self._sessions_push_scheduled = True
        asyncio.get_running_loop().call_soon(self._push_sessions)

    def _push_sessions(self) -> None:
        self._sessions_push_scheduled = False
        live = [p for p in self._peers if p.live]
        if not live:
            return
        text = self._sessions_text()
        for peer in live:
            self._offer(peer, text)

    def go_dark(self, seconds: float) -> None:
        self._dark_until = self.clock.monotonic() + seconds
        for peer in list(self._peers):
            self._drop(peer, 1013, "agent unavailable")

    # --- ticks --------------------------------------------------------------------------

    async def _tick_loop(self) -> None:
        interval = self.config.interval_s
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        last_prune = self.clock.monotonic()
        while True:
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            if next_at < loop.time() - interval:  # fell far behind (suspend): do not burst
                next_at = loop.time()
            try:
                self._tick()
                self._refusals.flush()
                if self.clock.monotonic() - last_prune >= PRUNE_EVERY_S:
                    last_prune = self.clock.monotonic()
                    self.journal.prune()
            except Exception:
                log.exception("metrics tick failed")

    def _tick(self) -> None:
        frame = self.collector.sample(self.sources)
        frame["simulated"] = self.simulated
        self._last_metrics = frame
        if not self.journal.in_transaction:
            self._broadcast(self.journal.append(frame))
        focused = [p for p in self._peers if p.focus]
        if focused:
            pids = {s.pid: s.id for source in self.sources for s in source.sessions() if s.pid}
            text = json.dumps(
                {"type": "detail", "ts": self.clock.now(), "processes": self.collector.top_processes(self.sources, pids)},
                separators=(",", ":"),
            )
            for peer in focused:
                self._offer(peer, text)

    # --- HTTP side ----------------------------------------------------------------------

    def _authorized(self, headers: Headers) -> bool:
        if not self.token:
            return True
        given = headers.get_all("Authorization")
        if len(given) != 1:
            return False
        scheme, _, value = given[0].partition(" ")
        if scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(value.strip().encode(), self.token.encode())

    def _refuse(
        self, connection: ServerConnection, status: HTTPStatus, code: str, why: str, body: str | None = None
    ) -> Response:
        self.counts.refused[code] = self.counts.refused.get(code, 0) + 1
        remote = connection.remote_address
        self._refusals.refused(code, why, f"{remote[0]}:{remote[1]}" if remote else "?")
        response = connection.respond(status, (body or why) + "\n")
        if status == HTTPStatus.UNAUTHORIZED:
            response.headers["WWW-Authenticate"] = 'Bearer realm="heady-agent"'
        return response

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        path = request.path.split("?", 1)[0]
        if path == "/healthz":
            return connection.respond(HTTPStatus.OK, "ok\n")
        headers = request.headers
        for name in ("Authorization", "Origin"):
            if len(headers.get_all(name)) > 1:
                return self._refuse(connection, HTTPStatus.BAD_REQUEST, "bad_request", f"more than one {name} header")
        origin = headers.get("Origin")
        if origin is not None and origin not in self.config.allowed_origins:
            # A page in the operator's browser can open a WebSocket to loopback; consoles send no Origin.
            return self._refuse(
                connection, HTTPStatus.FORBIDDEN, "origin", f"browser origin {echo(origin)} not in agent.allowed_origins"
            )
        if path == "/metrics":
            if not self.config.metrics_public and not self._authorized(headers):
                return self._refuse(
                    connection, HTTPStatus.UNAUTHORIZED, "token", "missing or wrong token", "missing or wrong bearer token"
                )
            from .metrics import exposition  # loads prometheus_client on the first scrape only

            body, content_type = exposition(self, headers.get("Accept", ""))
            response = connection.respond(HTTPStatus.OK, body.decode())
            del response.headers["Content-Type"]  # Headers is a multidict: replace, not add
            response.headers["Content-Type"] = content_type
            return response
        if path != "/ws":
            return connection.respond(HTTPStatus.NOT_FOUND, "not found\n")
        if self._stopping or self.clock.monotonic() < self._dark_until:
            return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "agent unavailable, retry later\n")
        if not self._authorized(headers):
            return self._refuse(
                connection, HTTPStatus.UNAUTHORIZED, "token", "missing or wrong token", "missing or wrong bearer token"
            )
        if len(self._peers) >= self.config.max_connections:
            return self._refuse(
                connection, HTTPStatus.SERVICE_UNAVAILABLE, "capacity",
                f"connection limit reached (agent.max_connections {self.config.max_connections})",
            )  # fmt: skip
        return None

    def hello_text(self) -> str:
        journal = self.journal
        node = {
            "id": self.node_id,
            "hostname": socket.gethostname(),
            "agent_version": __version__,
            "os": f"{platform.system()} {platform.release()}",
            "cpu_count": os.cpu_count() or 1,
            "mem_total": psutil.virtual_memory().total,
            "labels": self.config.labels,
        }
        for source in self.sources:
            node.update(source.node_info() or {})  # a simulated node describes its own host
        if self.config.node_id:
            node["id"] = self.config.node_id  # an explicit node id always wins
        return json.dumps(
            {
                "type": "hello",
                "protocol": PROTOCOL_VERSION,
                "node": node,
                "journal": {"id": journal.id, "first_seq": journal.first_seq, "last_seq": journal.committed_seq},
                "simulated": self.simulated,
            },
            separators=(",", ":"),
        )

    # --- one connection -----------------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        if len(self._peers) >= self.config.max_connections:  # handshakes that raced past the check
            await ws.close(1013, "connection limit reached")
            return
        peer = _Peer(ws=ws, outbox=_Outbox(self.config.peer_queue_bytes))
        self._peers.add(peer)
        peer.outbox.offer(self.hello_text())
        writer = asyncio.create_task(self._write(peer))
        try:
            async for message in ws:
                self._receive(peer, message)
        except ConnectionClosed:
            pass
        finally:
            self._peers.discard(peer)
            peer.live = False
            peer.outbox.clear()
            writer.cancel()
            if peer.replay is not None:
                peer.replay.cancel()
            for task in list(peer.tasks):
                task.cancel()

    @staticmethod
    async def _write(peer: _Peer) -> None:
        try:
            while True:
                await peer.ws.send(await peer.outbox.get())
        except ConnectionClosed:
            pass

    def _receive(self, peer: _Peer, message: str | bytes) -> None:
        try:
            frame = parse_console_frame(message)
        except FrameError as exc:
            command_id = _command_id(message)
            if command_id is not None:  # answered as its result, so the console's wait for it ends now
                self._offer(peer, dump(Result(id=command_id, ok=False, error=f"{exc.code}: {_cut(exc.message)}")))
            else:
                self._offer(peer, dump(ErrorFrame(code=exc.code, message=_cut(exc.message))))
            return
        if isinstance(frame, Subscribe):
            if frame.journal is not None and not JOURNAL_ID.fullmatch(frame.journal):
                message = f"subscribe.journal {echo(frame.journal)} is not a journal id (1-64 of A-Z a-z 0-9 _ -)"
                self._offer(peer, dump(ErrorFrame(code="bad_frame", message=message)))
                return
            if peer.replay is not None:
                peer.replay.cancel()
            peer.live = False
            peer.replay = asyncio.create_task(self._replay(peer, frame))
        elif isinstance(frame, Ack):
            peer.acked = max(peer.acked, frame.seq)
        elif isinstance(frame, Focus):
            peer.focus = frame.detail
        elif isinstance(frame, Command):
            task = asyncio.create_task(self._command(peer, frame))
            peer.tasks.add(task)
            task.add_done_callback(peer.tasks.discard)

    async def _command(self, peer: _Peer, cmd: Command) -> None:
        result = await run_command(cmd, self.sources)
        target = echo(cmd.target) if cmd.target is not None else "-"
        log.info("command %s %s on %s: %s", echo(cmd.id), cmd.action, target, "ok" if result.ok else result.error)
        text = dump(result)
        if len(text.encode()) > MAX_FRAME_BYTES:
            log.warning("result of %s is %d bytes, over the frame limit; sent as an error", cmd.action, len(text))
            error = f"failed: the result is larger than the {MAX_FRAME_BYTES}-byte frame limit"
            text = dump(Result(id=result.id, ok=False, error=error))
        self._offer(peer, text)

    async def _replay(self, peer: _Peer, sub: Subscribe) -> None:
        journal = self.journal
        since = sub.since
        reason = None
        if sub.journal is not None and sub.journal != journal.id:
            reason = f"journal changed from {echo(sub.journal)} to {journal.id}"
        elif since > journal.committed_seq:
            reason = f"cursor {since} is ahead of this journal's last seq {journal.committed_seq}"
        elif since < journal.first_seq - 1:
            reason = f"frames {since + 1}..{journal.first_seq - 1} are no longer kept"
        if reason is not None:
            first = journal.first_seq
            since = first - 1
            self.emit(
                "agent.notice",
                None,
                {"severity": "warning", "message": f"gap in the stream: {reason}; replaying from seq {first}"},
            )
        cursor = since
        rows: list[tuple[int, str]] = []
        try:
            while True:
                rows = journal.read_after(cursor)
                if not rows:
                    # No await between the empty read and going live: nothing can slip in between.
                    peer.cursor = cursor
                    peer.live = True
                    self._offer(peer, self._sessions_text())
                    return
                for seq, text in rows:
                    await peer.outbox.put(text)
                cursor = rows[-1][0]
        finally:
            # A cancelled replay's frame lives on in its traceback, in a reference cycle with the
            # connection: free the batch now rather than at the next full garbage collection.
            rows.clear()


def source_label(name: object) -> str:
    """A source name as a label value: one of the known sources, else "other" (bounded cardinality)."""
    return name if isinstance(name, str) and name in SOURCE_NAMES else "other"


def _fit_sessions(sessions: list[SessionInfo]) -> list[SessionInfo]:
    """The most recently started sessions whose `sessions` frame stays within the frame limit."""
    budget = MAX_FRAME_BYTES - len(dump(Sessions(sessions=[])))
    kept: list[SessionInfo] = []
    for info in sorted(sessions, key=lambda s: s.started or 0.0, reverse=True):
        size = len(dump(info).encode()) + 1
        if size > budget:
            break
        budget -= size
        kept.append(info)
    return kept


def _source_class(name: str) -> type[SessionSource]:
    try:
        return load_source(name)
    except (KeyError, ImportError, AttributeError) as exc:
        raise StartError(f"source {name!r} is not available: {exc}") from None


def _command_id(message: str | bytes) -> str | None:
    """The id of a refused frame that is a command with a well-formed id, else None."""
    try:
        raw = json.loads(message)
    except (ValueError, RecursionError):
        return None
    if not isinstance(raw, dict) or raw.get("type") != "command":
        return None
    command_id = raw.get("id")
    return command_id if isinstance(command_id, str) and JOURNAL_ID.fullmatch(command_id) else None
