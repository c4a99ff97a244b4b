"""The agent's WebSocket server: auth, subscribe/replay, live frames, commands, /healthz, /metrics.

One asyncio loop owns everything. A frame is journalled and handed to live subscribers in the same
synchronous step, and a replay turns live in the same step as its last empty read, so the switch
from replay to live has neither a gap nor a duplicate.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import platform
import socket
import ssl
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
from .config import AgentConfig, data_dir, is_loopback, parse_listen
from .hook_socket import HookListener, HookSocketError
from .hooks import HookSignal
from .journal import Appended, Journal
from .protocol import (
    EVENT_KINDS,
    MAX_FRAME_BYTES,
    PROTOCOL_VERSION,
    Ack,
    Command,
    ErrorFrame,
    Focus,
    FrameError,
    Sessions,
    Subscribe,
    dump,
    parse_console_frame,
    parse_event_data,
)
from .sources import load_source
from .sources.base import SessionSource

log = logging.getLogger("heady_agent.server")

# websockets itself closes the connection (1009) above this; below it, frames over
# MAX_FRAME_BYTES get an `error` frame and the connection stays up.
HARD_FRAME_LIMIT = 4 * MAX_FRAME_BYTES
QUEUE_LIMIT = 10_000  # frames waiting for one subscriber before it is cut off
PRUNE_EVERY_S = 300.0
ENDED_SESSION_KEEP_S = 3600.0  # how long /metrics keeps series of a finished session


class StartError(Exception):
    """The agent cannot start (bad listen address, no token on a public address, port in use)."""


@dataclass(eq=False)  # identity: peers live in a set
class _Peer:
    ws: ServerConnection
    queue: asyncio.Queue[str]
    live: bool = False
    cursor: int = 0  # highest seq queued for this peer
    acked: int = 0
    focus: bool = False
    replay: asyncio.Task[None] | None = None
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)


@dataclass
class _SessionTally:
    source: str | None = None
    tokens: dict[str, int] = field(default_factory=lambda: {"input": 0, "output": 0, "cache_creation": 0, "cache_read": 0})
    cost_usd: float = 0.0
    cost_known: bool = False
    state: str = "running"
    ended_at: float | None = None


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
        queue_limit: int = QUEUE_LIMIT,
        hook_socket: Path | None = None,
    ) -> None:
        self.config = config
        self.clock = clock or SystemClock()
        self.host, self._port = parse_listen(config.listen)
        self.token = config.resolve_token()
        if not is_loopback(self.host) and not self.token:
            raise StartError(
                f"refusing to listen on {self.host}:{self._port} without a token "
                "(set agent.token, agent.token_file or $HEADY_AGENT_TOKEN, or listen on 127.0.0.1)"
            )
        self.node_id = config.node_id or socket.gethostname()
        self.journal_path = journal_path or (
            Path(config.journal_path).expanduser() if config.journal_path else data_dir() / "agent-journal.db"
        )
        self.queue_limit = queue_limit
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
        self._tally: dict[str, _SessionTally] = {}
        self._stopping = False
        # Claude Code hooks arrive here (hook_socket.py); None: not listened for.
        self._hooks = HookListener(hook_socket, self._person_signal) if hook_socket is not None else None

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
        try:
            self._server = await serve(
                self._handle,
                self.host,
                self._port,
                process_request=self._process_request,
                ssl=self._ssl_context(),
                max_size=HARD_FRAME_LIMIT,
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
        parse_event_data(kind, data)
        frame = {
            "type": "event",
            "ts": self.clock.now() if ts is None else ts,
            "kind": kind,
            "session": session,
            "data": data,
            "simulated": self.simulated,
        }
        self._tally_event(kind, session, data)
        self._publish(self.journal.append(frame))

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

    def _tally_event(self, kind: str, session: str | None, data: dict[str, Any]) -> None:
        if session is None:
            return
        tally = self._tally.setdefault(session, _SessionTally())
        if kind == "session.started":
            tally.source = data.get("source")
        elif kind == "session.state":
            tally.state = data["state"]
        elif kind == "session.ended":
            tally.state = "completed"
            tally.ended_at = self.clock.monotonic()
        elif kind == "llm.call":
            for name in ("input", "output", "cache_creation", "cache_read"):
                tally.tokens[name] += int(data.get(f"{name}_tokens") or 0)
            if data.get("cost_usd") is not None:
                tally.cost_usd += float(data["cost_usd"])
                tally.cost_known = True

    # --- frames out ---------------------------------------------------------------------

    def _broadcast(self, appended: Appended) -> None:
        for peer in list(self._peers):
            if peer.live and appended.seq > peer.cursor:
                peer.cursor = appended.seq
                self._offer(peer, appended.text)

    def _offer(self, peer: _Peer, text: str) -> None:
        try:
            peer.queue.put_nowait(text)
        except asyncio.QueueFull:
            # Cut a subscriber that cannot keep up: it resumes from its cursor on reconnect.
            log.warning("subscriber %s is too slow (%d frames waiting); closing it", peer.ws.remote_address, peer.queue.qsize())
            self._drop(peer, 1013, "subscriber too slow; resume from your cursor")

    def _drop(self, peer: _Peer, code: int, reason: str) -> None:
        self._peers.discard(peer)
        peer.live = False
        task = asyncio.get_running_loop().create_task(peer.ws.close(code, reason))
        peer.tasks.add(task)
        task.add_done_callback(peer.tasks.discard)

    def _sessions_text(self) -> str:
        sessions = [info for source in self.sources for info in source.sessions()]
        return dump(Sessions(sessions=sessions))

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
        given = headers.get("Authorization", "")
        scheme, _, value = given.partition(" ")
        if scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(value.strip().encode(), self.token.encode())

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        path = request.path.split("?", 1)[0]
        if path == "/healthz":
            return connection.respond(HTTPStatus.OK, "ok\n")
        if path == "/metrics":
            if not self.config.metrics_public and not self._authorized(request.headers):
                return self._unauthorized(connection)
            response = connection.respond(HTTPStatus.OK, self.prometheus_text())
            del response.headers["Content-Type"]  # Headers is a multidict: replace, not add
            response.headers["Content-Type"] = "text/plain; version=0.0.4; charset=utf-8"
            return response
        if path != "/ws":
            return connection.respond(HTTPStatus.NOT_FOUND, "not found\n")
        if self._stopping or self.clock.monotonic() < self._dark_until:
            return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "agent unavailable, retry later\n")
        if not self._authorized(request.headers):
            log.warning("refused %s: missing or wrong token", connection.remote_address)
            return self._unauthorized(connection)
        return None

    @staticmethod
    def _unauthorized(connection: ServerConnection) -> Response:
        response = connection.respond(HTTPStatus.UNAUTHORIZED, "missing or wrong bearer token\n")
        response.headers["WWW-Authenticate"] = 'Bearer realm="heady-agent"'
        return response

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
        peer = _Peer(ws=ws, queue=asyncio.Queue(self.queue_limit))
        self._peers.add(peer)
        peer.queue.put_nowait(self.hello_text())
        writer = asyncio.create_task(self._write(peer))
        try:
            async for message in ws:
                self._receive(peer, message)
        except ConnectionClosed:
            pass
        finally:
            self._peers.discard(peer)
            peer.live = False
            writer.cancel()
            if peer.replay is not None:
                peer.replay.cancel()
            for task in list(peer.tasks):
                task.cancel()

    @staticmethod
    async def _write(peer: _Peer) -> None:
        try:
            while True:
                await peer.ws.send(await peer.queue.get())
        except ConnectionClosed:
            pass

    def _receive(self, peer: _Peer, message: str | bytes) -> None:
        try:
            frame = parse_console_frame(message)
        except FrameError as exc:
            self._offer(peer, dump(ErrorFrame(code=exc.code, message=exc.message)))
            return
        if isinstance(frame, Subscribe):
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
        log.info("command %s %s on %s: %s", cmd.id, cmd.action, cmd.target, "ok" if result.ok else result.error)
        self._offer(peer, dump(result))

    async def _replay(self, peer: _Peer, sub: Subscribe) -> None:
        journal = self.journal
        since = sub.since
        reason = None
        if sub.journal is not None and sub.journal != journal.id:
            reason = f"journal changed from {sub.journal} to {journal.id}"
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
        while True:
            rows = journal.read_after(cursor)
            if not rows:
                # No await between the empty read and going live: nothing can slip in between.
                peer.cursor = cursor
                peer.live = True
                self._offer(peer, self._sessions_text())
                return
            for seq, text in rows:
                await peer.queue.put(text)
            cursor = rows[-1][0]

    # --- /metrics -----------------------------------------------------------------------

    def prometheus_text(self) -> str:
        lines: list[str] = []

        def family(name: str, kind: str, help_text: str, samples: list[tuple[dict[str, str], float]]) -> None:
            lines.append(f"# HELP {name} {help_text}")
            lines.append(f"# TYPE {name} {kind}")
            for labels, value in samples:
                if labels:
                    inner = ",".join(f'{k}="{_escape_label(v)}"' for k, v in labels.items())
                    lines.append(f"{name}{{{inner}}} {_number(value)}")
                else:
                    lines.append(f"{name} {_number(value)}")

        m = self._last_metrics or self.collector.sample(self.sources)
        family("heady_agent_cpu_percent", "gauge", "Host CPU use, percent of all cores.", [({}, m["cpu"])])
        family(
            "heady_agent_load",
            "gauge",
            "Host load average.",
            [({"period": p}, v) for p, v in zip(("1m", "5m", "15m"), m["load"])],
        )
        family("heady_agent_memory_used_percent", "gauge", "Host memory in use, percent.", [({}, m["mem"])])
        family("heady_agent_swap_used_percent", "gauge", "Host swap in use, percent.", [({}, m["swap"])])
        family("heady_agent_memory_available_bytes", "gauge", "Host memory available.", [({}, m["mem_available"])])
        family(
            "heady_agent_disk_bytes_per_second",
            "gauge",
            "Host disk throughput.",
            [({"direction": "read"}, m["disk_read_bps"]), ({"direction": "write"}, m["disk_write_bps"])],
        )
        family(
            "heady_agent_network_bytes_per_second",
            "gauge",
            "Host network throughput.",
            [({"direction": "rx"}, m["net_rx_bps"]), ({"direction": "tx"}, m["net_tx_bps"])],
        )
        family("heady_agent_processes", "gauge", "Processes on the host.", [({}, m["procs"])])
        family("heady_agent_queue_depth", "gauge", "Work items waiting in the agent's queues.", [({}, m["queue_depth"])])
        family(
            "heady_agent_journal_last_seq",
            "gauge",
            "Last seq written to the journal.",
            [({"journal": self.journal.id}, self.journal.committed_seq)],
        )
        family(
            "heady_agent_journal_first_seq",
            "gauge",
            "Oldest seq still kept in the journal.",
            [({"journal": self.journal.id}, self.journal.first_seq)],
        )
        family("heady_agent_consoles_connected", "gauge", "Open console connections.", [({}, len(self._peers))])
        family("heady_agent_simulated", "gauge", "1 when any source is simulated.", [({}, int(self.simulated))])

        now = self.clock.monotonic()
        for sid in [s for s, t in self._tally.items() if t.ended_at is not None and now - t.ended_at > ENDED_SESSION_KEEP_S]:
            del self._tally[sid]
        tallies = sorted(self._tally.items())
        family(
            "heady_agent_session_tokens_total",
            "counter",
            "LLM tokens used by a session since the agent started, by kind.",
            [
                ({"session": sid, "source": t.source or "", "kind": kind}, count)
                for sid, t in tallies
                for kind, count in t.tokens.items()
            ],
        )
        family(
            "heady_agent_session_cost_usd_total",
            "counter",
            "Cost reported by the provider for a session since the agent started (sessions with a known cost).",
            [({"session": sid, "source": t.source or ""}, t.cost_usd) for sid, t in tallies if t.cost_known],
        )
        family(
            "heady_agent_session_state",
            "gauge",
            "1 for the current state of each session.",
            [({"session": sid, "source": t.source or "", "state": t.state}, 1) for sid, t in tallies],
        )
        return "\n".join(lines) + "\n"


def _source_class(name: str) -> type[SessionSource]:
    try:
        return load_source(name)
    except (KeyError, ImportError, AttributeError) as exc:
        raise StartError(f"source {name!r} is not available: {exc}") from None


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int):
        return str(value)
    return repr(float(value))
