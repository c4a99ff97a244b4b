"""The headless console's side of `heady attach`: a Unix socket under the data dir (docs/attach.md).

Only the owner reaches it: the socket is 0600 in a 0700 directory, and where the kernel tells the
peer's credentials (SO_PEERCRED) a connection from another uid is refused. Each attached console
acts through its own `ConsoleOperator` (origin `attach`) with the peer's user as the actor, so the
audit says who answered. The shown state is computed once per change for every client: a snapshot
to a client that joins, then the same deltas to all.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import stat
import struct
from collections.abc import Callable
from pathlib import Path

from pydantic_core import to_jsonable_python

from heady_tui import __version__
from heady_tui.brain import Brain
from heady_tui.engine.consent import ConsentError
from heady_tui.events import HeadyEvent
from heady_tui.operator import ConsoleOperator
from heady_tui.supervisor import Supervisor

from . import wire
from .client import answers
from .wire import (
    BRAIN_ADAPTER,
    CONSOLE_ADAPTER,
    AttachError,
    Act,
    BrainShown,
    ConsoleShown,
    Focus,
    Hold,
    Query,
    Section,
    WireError,
)

log = logging.getLogger("heady.attach")

# At most this many state publications a second: a burst of frames costs one delta.
PUBLISH_INTERVAL_S = 0.2
HELLO_TIMEOUT_S = 10.0
# A client that reads this far behind is dropped (it can attach again) rather than held in memory.
MAX_BACKLOG = 64 * 1024 * 1024
# Bounds on what clients can make the service hold: connections at once, and actions or queries
# one client has waiting for an answer.
MAX_CONNECTIONS = 32
MAX_PENDING_CALLS = 16
DIR_MODE = 0o700
SOCKET_MODE = 0o600


def peer_uid(sock: socket.socket) -> int | None:
    """The connecting process's uid from SO_PEERCRED; None where the platform does not tell it."""
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:
        return None
    creds = sock.getsockopt(socket.SOL_SOCKET, option, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return int(uid)


def user_name(uid: int) -> str:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def brain_shown(brain: Brain) -> BrainShown:
    return BrainShown(
        view_only=brain.view_only,
        equilibrium=brain.equilibrium(),
        lease=brain.lease_view(),
        rebalance=brain.rebalance_status(),
        costs_today=brain.costs_today_by_node(),
        burn_alerts=brain.burn_alerts(),
        cost_summary=brain.cost_summary(),
        pending_consent=brain.pending_consent(),
        grants=brain.grants(include_inactive=True),
        tasks=brain.tasks(),
        weak_points=brain.weak_points(),
        healing_cycles=brain.healing_cycles(),
        needs_attention=brain.needs_attention(),
        accounts=brain.accounts(),
    )


class _Peer:
    """One attached console."""

    def __init__(self, writer: asyncio.StreamWriter, actor: str, operator: ConsoleOperator) -> None:
        self.writer = writer
        self.actor = actor
        self.operator = operator
        self.holds: set[str] = set()
        self.tasks: set[asyncio.Task[None]] = set()

    def send(self, line: bytes) -> bool:
        """Queue a line; False (and the connection closed) when the client is gone or too far behind."""
        if self.writer.is_closing():
            return False
        transport = self.writer.transport
        if transport.get_write_buffer_size() > MAX_BACKLOG:
            log.warning("attached console %s dropped: %d bytes unread", self.actor, transport.get_write_buffer_size())
            self.writer.close()
            return False
        self.writer.write(line)
        return True


class AttachService:
    def __init__(self, supervisor: Supervisor, path: Path) -> None:
        self.supervisor = supervisor
        self.path = path
        self._server: asyncio.Server | None = None
        self._peers: set[_Peer] = set()
        self._last: dict[str, Section] = {name: {} for name in wire.SECTIONS}
        self._last_sample: dict[str, float | None] = {}
        self._fleet_version = -1
        self._seq = 0
        self._holders: dict[str, set[_Peer]] = {}  # consent request -> the peers showing it
        self._publish_handle: asyncio.TimerHandle | None = None
        self._last_publish = float("-inf")
        self._unsubscribe: Callable[[], None] | None = None
        self._unwatch: Callable[[], None] | None = None
        self._connections: dict[asyncio.Task[None], asyncio.StreamWriter] = {}

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind the socket (AttachError when it cannot be served) and follow the supervisor."""
        directory = self.path.parent
        try:
            directory.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
            info = directory.stat()
            if info.st_uid != os.getuid():
                raise AttachError(f"{directory} belongs to uid {info.st_uid}, not to this user")
            os.chmod(directory, DIR_MODE)
            if self.path.exists() or self.path.is_symlink():
                if not stat.S_ISSOCK(self.path.lstat().st_mode):
                    raise AttachError(f"{self.path} exists and is not a socket")
                if await answers(self.path):
                    raise AttachError(f"another console already serves {self.path}")
                self.path.unlink()  # left by a console that died
            self._server = await asyncio.start_unix_server(self._accept, path=str(self.path), limit=wire.MAX_CLIENT_LINE)
            os.chmod(self.path, SOCKET_MODE)
        except AttachError:
            raise
        except OSError as exc:
            raise AttachError(f"cannot serve {self.path}: {exc.strerror or exc}") from None
        self._unsubscribe = self.supervisor.subscribe(self._on_event)
        self._unwatch = self.supervisor.watch(self._schedule)
        log.info("attach socket at %s", self.path)

    async def stop(self) -> None:
        for callback in (self._unsubscribe, self._unwatch):
            if callback is not None:
                callback()
        self._unsubscribe = self._unwatch = None
        if self._publish_handle is not None:
            self._publish_handle.cancel()
            self._publish_handle = None
        if self._server is not None:
            self._server.close()
            # Closed connections end their readers at EOF; a cancelled one would be logged by asyncio.
            for writer in self._connections.values():
                writer.close()
            await asyncio.gather(*self._connections, return_exceptions=True)
            await self._server.wait_closed()
            self._server = None
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass

    # --- the shown state --------------------------------------------------------------------

    def _sections(self) -> dict[str, Section]:
        sup = self.supervisor
        fleet = sup.fleet
        sections = dict(self._last)
        if fleet.version != self._fleet_version:
            sections["nodes"] = {node_id: wire.dump_node(node) for node_id, node in fleet.nodes.items()}
            sections["sessions"] = {wire.session_key(rec): wire.dump_session(rec) for rec in fleet.sessions.values()}
            self._fleet_version = fleet.version
        sections["details"] = {node: wire.dump_detail(detail) for node, detail in sup.details.items()}
        brain = sup.brain
        shown = BRAIN_ADAPTER.dump_python(brain_shown(brain), mode="json") if brain is not None and brain.started else {}
        sections["brain"] = dict(shown)
        console = ConsoleShown(simulated=sup.simulated, insecure_links=sup.insecure_links())
        sections["console"] = dict(CONSOLE_ADAPTER.dump_python(console, mode="json"))
        return sections

    def _new_samples(self) -> dict[str, list[list[float]]]:
        out = {}
        for node_id, node in self.supervisor.fleet.nodes.items():
            samples = wire.node_samples(node, self._last_sample.get(node_id))
            if samples:
                out[node_id] = samples
                self._last_sample[node_id] = samples[-1][0]
        return out

    def _schedule(self) -> None:
        """Something shown changed: publish once, no sooner than PUBLISH_INTERVAL_S after the last."""
        if self._publish_handle is not None or not self._peers:
            return
        loop = asyncio.get_running_loop()
        delay = max(0.0, self._last_publish + PUBLISH_INTERVAL_S - loop.time())
        self._publish_handle = loop.call_later(delay, self.publish)

    def publish(self) -> None:
        """Send every client what changed since the last publication."""
        if self._publish_handle is not None:
            self._publish_handle.cancel()
            self._publish_handle = None
        self._last_publish = asyncio.get_running_loop().time()
        sections = self._sections()
        changed: dict[str, Section] = {}
        removed: dict[str, list[str]] = {}
        for name, entries in sections.items():
            last = self._last[name]
            diff = {key: value for key, value in entries.items() if last.get(key) != value}
            gone = [key for key in last if key not in entries]
            if diff:
                changed[name] = diff
            if gone:
                removed[name] = gone
        samples = self._new_samples()
        self._last = sections
        if not (changed or removed or samples):
            return
        self._seq += 1
        self._broadcast(wire.encode({"type": "delta", "seq": self._seq, "changed": changed, "removed": removed,
                                     "samples": samples}))

    def _snapshot(self) -> bytes:
        fleet = self.supervisor.fleet
        samples = {node_id: wire.node_samples(node, None) for node_id, node in fleet.nodes.items()}
        return wire.encode({"type": "snapshot", "seq": self._seq, "state": self._last, "samples": samples})

    def _broadcast(self, line: bytes) -> None:
        for peer in list(self._peers):
            if not peer.send(line):
                self._peers.discard(peer)

    def _on_event(self, event: HeadyEvent) -> None:
        if not self._peers:
            return
        # The event, then at once the state it changed: a console that closes a dialog on that state
        # already knows who answered.
        self._broadcast(wire.encode({"type": "event", "name": event.name, "ts": event.ts, "details": event.details}))
        self.publish()

    # --- connections ------------------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if len(self._connections) >= MAX_CONNECTIONS:
            writer.write(wire.error_line(f"refused: {MAX_CONNECTIONS} consoles are attached already"))
            writer.close()
            return
        self._connections[task] = writer
        try:
            await self._serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._connections.pop(task, None)
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        uid = peer_uid(sock) if sock is not None else None
        if uid is not None and uid != os.getuid():
            log.warning("attach refused: uid %d is not this console's owner", uid)
            writer.write(wire.error_line(f"refused: uid {uid} does not own this console"))
            return
        actor = f"{user_name(os.getuid() if uid is None else uid)}@{socket.gethostname()}"
        writer.write(wire.encode({"type": "hello", "version": wire.PROTOCOL_VERSION, "service": f"heady {__version__}",
                                  "actor": actor, "data_dir": str(self.supervisor.paths.data_dir)}))
        if not await self._hello(reader, writer):
            return
        peer = _Peer(writer, actor, ConsoleOperator(self.supervisor, "attach", actor=actor))
        self.publish()
        writer.write(self._snapshot())
        self._peers.add(peer)
        log.info("console attached: %s", actor)
        try:
            await self._read(reader, peer)
        finally:
            self._peers.discard(peer)
            for task in list(peer.tasks):
                task.cancel()
            for request_id in list(peer.holds):
                await self._release(peer, request_id)
            log.info("console detached: %s", actor)

    async def _hello(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        try:
            line = await asyncio.wait_for(reader.readline(), HELLO_TIMEOUT_S)
            message = wire.client_message(wire.decode(line, max_depth=wire.MAX_CLIENT_DEPTH))
        except TimeoutError:
            writer.write(wire.error_line(f"no hello within {HELLO_TIMEOUT_S:g} s"))
            return False
        except ValueError as exc:  # WireError, or a line over the limit
            writer.write(wire.error_line(str(exc)))
            return False
        if not isinstance(message, wire.ClientHello) or message.type != "hello":
            writer.write(wire.error_line("the first message must be hello"))
            return False
        if message.version != wire.PROTOCOL_VERSION:
            writer.write(wire.error_line(f"protocol version {message.version} is not served (this console speaks {wire.PROTOCOL_VERSION})"))
            return False
        return True

    async def _read(self, reader: asyncio.StreamReader, peer: _Peer) -> None:
        while True:
            try:
                line = await reader.readline()
            except ValueError:  # longer than the limit: the rest of the stream cannot be framed
                peer.send(wire.error_line(f"line longer than {wire.MAX_CLIENT_LINE} bytes; closing"))
                return
            if not line:
                return
            try:
                message = wire.client_message(wire.decode(line, max_depth=wire.MAX_CLIENT_DEPTH))
                await self._dispatch(peer, message)
            except WireError as exc:
                peer.send(wire.error_line(str(exc)))

    async def _dispatch(self, peer: _Peer, message: wire.ClientMessage) -> None:
        if isinstance(message, (Act, Query)):
            action = message.action if isinstance(message, Act) else message.what
            table, kind = (wire.ACTIONS, "action") if isinstance(message, Act) else (wire.QUERIES, "query")
            try:
                args = wire.parsed_args(table, action, kind, message.args)
            except WireError as exc:  # answered under the call's id, so the caller is not left waiting
                self._reply(peer, message.id, error=str(exc))
                return
            if len(peer.tasks) >= MAX_PENDING_CALLS:
                self._reply(peer, message.id, error=f"{MAX_PENDING_CALLS} calls are waiting for an answer already")
                return
            work = self._act(peer, message.id, action, args) if kind == "action" else self._query(peer, message.id, args)
            task = asyncio.create_task(work)
            peer.tasks.add(task)
            task.add_done_callback(peer.tasks.discard)
        elif isinstance(message, Hold):
            if message.type == "hold":
                self._hold(peer, message.request)
            else:
                await self._release(peer, message.request)
        elif isinstance(message, Focus):
            if message.node not in self.supervisor.fleet.nodes:
                raise WireError(f"focus: no node named {message.node!r}")
            self.supervisor.focus(message.node, message.on)
        else:
            raise WireError("hello was said already")

    async def _act(self, peer: _Peer, call_id: str, action: str, args: wire.Arguments) -> None:
        operator = peer.operator
        try:
            if isinstance(args, wire.CommandArgs):
                value: object = await operator.command(args.node, args.action, args.target, args.args)
            elif isinstance(args, wire.TaskArgs):
                value = await (operator.approve_task if action == "task.approve" else operator.reject_task)(args.task)
            elif isinstance(args, wire.PolicyArgs):
                value = await operator.reset_policy(args.node, args.session, args.policy)
            elif isinstance(args, wire.PriorityArgs):
                value = wire.dump_session(await operator.set_priority(args.node, args.session, args.priority))
            elif isinstance(args, wire.DecideArgs):
                value = await operator.decide_consent(args.request, args.decision)
            elif isinstance(args, wire.GrantArgs):
                value = await operator.grant(args.scope, args.reason)
            elif isinstance(args, wire.RevokeArgs):
                value = await operator.revoke_grant(args.grant)
            else:
                assert isinstance(args, wire.DeployArgs)
                await operator.notify_deploy(args.node)
                value = None
        except ValueError as exc:  # refused: OperatorError, ConsentError, ViewOnlyError, a bad value
            self._reply(peer, call_id, error=str(exc))
        except Exception as exc:  # audited by the operator layer; the client gets one line
            log.exception("attached action %s by %s failed", action, peer.actor)
            self._reply(peer, call_id, error=f"{type(exc).__name__}: {exc}")
        else:
            self.publish()  # every client sees the outcome (a closed request) before this reply
            self._reply(peer, call_id, value=value)

    async def _query(self, peer: _Peer, call_id: str, args: wire.Arguments) -> None:
        if isinstance(args, wire.TimelineArgs):
            timeline = await self.supervisor.session_timeline(args.node, args.session, args.newest)
            self._reply(peer, call_id, value=timeline)
            return
        brain = self.supervisor.brain
        if brain is None or brain.records is None:
            self._reply(peer, call_id, error="the console is still starting; try again in a moment")
            return
        if isinstance(args, wire.AuditArgs):
            value: object = await brain.audit_entries(args.limit)
        elif isinstance(args, wire.KpiArgs):
            value = await brain.rebalance_kpis(args.since, args.until)
        else:
            value = await brain.verify_audit()
        self._reply(peer, call_id, value=value)

    def _reply(self, peer: _Peer, call_id: str, *, value: object = None, error: str | None = None) -> None:
        if error is not None:
            peer.send(wire.encode({"type": "reply", "id": call_id, "ok": False, "error": error.splitlines()[0] if error else "error"}))
        else:
            peer.send(wire.encode({"type": "reply", "id": call_id, "ok": True, "value": to_jsonable_python(value)}))

    # --- consent dialogs --------------------------------------------------------------------

    def _hold(self, peer: _Peer, request_id: str) -> None:
        """A client's dialog shows the request; the brain holds it while any dialog does."""
        holders = self._holders.get(request_id)
        if holders is None:
            brain = self.supervisor.brain
            if brain is None:
                raise WireError("hold: the console is still starting")
            try:
                brain.hold_consent(request_id)
            except ValueError as exc:  # ConsentError, ViewOnlyError
                raise WireError(f"hold: {exc}") from None
            holders = self._holders[request_id] = set()
        holders.add(peer)
        peer.holds.add(request_id)

    async def _release(self, peer: _Peer, request_id: str) -> None:
        peer.holds.discard(request_id)
        holders = self._holders.get(request_id)
        if holders is None:
            return
        holders.discard(peer)
        if not holders:
            del self._holders[request_id]
            brain = self.supervisor.brain
            if brain is not None:
                try:
                    await brain.release_consent(request_id)
                except ConsentError as exc:
                    log.warning("release of %s: %s", request_id, exc)
