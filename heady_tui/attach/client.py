"""The attached side of `heady attach`: a headless console's state as it arrives over its socket.

`AttachedConsole` mirrors what the service's query layer shows (a real `Fleet`, the brain's reads,
node details) and satisfies the UI's `ConsoleBackend`, so the screens are the embedded console's.
`RemoteBrain` answers the brain's reads from the mirror (and the records' reads by asking the
service); `RemoteOperator` forwards each operator action, which the service runs through its own
operator layer with this user as the actor. The brain stays in the service.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

from pydantic import TypeAdapter, ValidationError

from heady_agent.clock import Clock, SystemClock
from heady_agent.protocol import Detail, Result
from heady_tui.audit import AuditEntry, Verification
from heady_tui.brain.healing_dispatch import CYCLES_KEPT
from heady_tui.brain.lease import LeaseView
from heady_tui.config import Paths
from heady_tui.ledger import SessionRecord
from heady_tui.engine.consent import ConsentError, ConsentRequest, Grant
from heady_tui.accounts import AccountWindow
from heady_tui.engine.cost import BurnNotice, CostSummary
from heady_tui.engine.detector import EquilibriumReading
from heady_tui.engine.healing import awaiting_approval, HealingCycle, Task, WeakPoint
from heady_tui.engine.kpis import Kpi
from heady_tui.engine.policies import NeedsAttention
from heady_tui.engine.rebalance import RebalanceStatus
from heady_tui.events import HeadyEvent
from heady_tui.fleet import Fleet
from heady_tui.operator import OperatorError
from heady_tui.supervisor import SessionTimeline

from . import wire
from .wire import BRAIN_ADAPTER, CONSOLE_ADAPTER, SESSION_ADAPTER, AttachError, BrainShown, ConsoleShown, Json, WireError

log = logging.getLogger("heady.attach")

CONNECT_TIMEOUT_S = 10.0
# An action waits this long for the service's answer; the service bounds an agent command itself.
CALL_TIMEOUT_S = 120.0
PROBE_TIMEOUT_S = 2.0
T = TypeVar("T")
LOST_EVENT = "attach.lost"  # published to subscribers when the service goes away

_KPIS = TypeAdapter(list[Kpi])
_AUDIT = TypeAdapter(list[AuditEntry])
_VERIFICATION = TypeAdapter(Verification)
_TASK = TypeAdapter(Task)
_GRANT = TypeAdapter(Grant)
_MAYBE_GRANT = TypeAdapter(Grant | None)
_TIMELINE = TypeAdapter(SessionTimeline | None)


def _validated(adapter: TypeAdapter[T], value: Json, what: str) -> T:
    try:
        return adapter.validate_python(value)
    except ValidationError as exc:
        raise WireError(f"{what}: {wire.one_line(exc)}") from None


async def answers(path: Path, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """A headless console serves this socket: it accepts a connection and says hello."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(path), limit=wire.MAX_SERVICE_LINE), timeout)
    except (OSError, TimeoutError):
        return False
    try:
        line = await asyncio.wait_for(reader.readline(), timeout)
        return wire.decode(line, max_depth=wire.MAX_SERVICE_DEPTH).get("type") == "hello"
    except (OSError, TimeoutError, ValueError):
        return False
    finally:
        writer.close()



class RemoteBrain:
    """The service brain's reads, from the last state it sent (`BrainReads`)."""

    def __init__(self, console: AttachedConsole, shown: BrainShown) -> None:
        self.console = console
        self.shown = shown

    @property
    def view_only(self) -> bool:
        return self.shown.view_only

    def equilibrium(self) -> EquilibriumReading | None:
        return self.shown.equilibrium

    def lease_view(self) -> LeaseView | None:
        return self.shown.lease

    def rebalance_status(self) -> RebalanceStatus | None:
        return self.shown.rebalance

    def costs_today_by_node(self) -> dict[str, float]:
        return self.shown.costs_today

    def burn_alerts(self) -> list[BurnNotice]:
        return self.shown.burn_alerts

    def cost_summary(self) -> CostSummary:
        return self.shown.cost_summary

    def accounts(self) -> list[AccountWindow]:
        return self.shown.accounts

    def pending_consent(self) -> list[ConsentRequest]:
        return self.shown.pending_consent

    def hold_consent(self, request_id: str) -> ConsentRequest:
        """Tell the service a dialog shows the request: it stays as shown while any dialog does."""
        for request in self.shown.pending_consent:
            if request.id == request_id:
                self.console.send({"type": "hold", "request": request_id})
                return request
        raise ConsentError(f"no open consent request {request_id!r}")

    async def release_consent(self, request_id: str) -> None:
        self.console.send({"type": "release", "request": request_id})

    def grants(self, include_inactive: bool = False) -> list[Grant]:
        now = self.console.clock.now()
        return [g for g in self.shown.grants if include_inactive or g.status(now) == "active"]

    def tasks(self) -> list[Task]:
        return self.shown.tasks

    def awaiting_approval(self) -> list[Task]:
        return awaiting_approval(self.shown.tasks)

    def weak_points(self) -> list[WeakPoint]:
        return self.shown.weak_points

    def healing_cycles(self, limit: int = CYCLES_KEPT) -> list[HealingCycle]:
        return self.shown.healing_cycles[-limit:]

    def needs_attention(self) -> list[NeedsAttention]:
        return self.shown.needs_attention

    async def rebalance_kpis(self, since: float, until: float) -> list[Kpi]:
        value = await self.console.call("query", "rebalance_kpis", {"since": since, "until": until})
        return _validated(_KPIS, value, "rebalance_kpis")

    async def audit_entries(self, limit: int = 50) -> list[AuditEntry]:
        return _validated(_AUDIT, await self.console.call("query", "audit_entries", {"limit": limit}), "audit_entries")

    async def verify_audit(self) -> Verification:
        return _validated(_VERIFICATION, await self.console.call("query", "verify_audit", {}), "verify_audit")


class RemoteOperator:
    """Operator actions sent to the service (`Operator`); a refusal raises OperatorError (one line)."""

    def __init__(self, console: AttachedConsole) -> None:
        self.console = console

    async def _act(self, action: str, args: Mapping[str, object]) -> Json:
        return await self.console.call("act", action, args)

    async def command(self, node: str, action: str, target: str | None = None,
                      args: Mapping[str, object] | None = None) -> Result:
        value = await self._act("command", {"node": node, "action": action, "target": target, "args": dict(args or {})})
        try:
            return Result.model_validate(value)
        except ValidationError as exc:
            raise WireError(f"command result: {wire.one_line(exc)}") from None

    async def approve_task(self, task_id: str) -> Task:
        return _validated(_TASK, await self._act("task.approve", {"task": task_id}), "task")

    async def reject_task(self, task_id: str) -> Task:
        return _validated(_TASK, await self._act("task.reject", {"task": task_id}), "task")

    async def reset_policy(self, node: str, session: str, policy: str) -> bool:
        return bool(await self._act("policy.reset", {"node": node, "session": session, "policy": policy}))

    async def set_priority(self, node: str, session: str, priority: str) -> SessionRecord:
        value = await self._act("session.priority", {"node": node, "session": session, "priority": priority})
        return _validated(SESSION_ADAPTER, value, "session")

    async def decide_consent(self, request_id: str, decision: str) -> Grant | None:
        return _validated(_MAYBE_GRANT, await self._act("consent.decide", {"request": request_id, "decision": decision}), "grant")

    async def grant(self, scope: str, reason: str) -> Grant:
        return _validated(_GRANT, await self._act("grant", {"scope": scope, "reason": reason}), "grant")

    async def revoke_grant(self, grant_id: str) -> Grant:
        return _validated(_GRANT, await self._act("revoke", {"grant": grant_id}), "grant")

    async def notify_deploy(self, node: str | None = None) -> None:
        await self._act("notify_deploy", {"node": node})


class AttachedConsole:
    """A headless console seen through its socket (`ConsoleBackend`)."""

    def __init__(self, path: Path, paths: Paths, *, clock: Clock | None = None) -> None:
        self.path = path
        self.clock: Clock = clock or SystemClock()
        self.paths = paths  # the data dir becomes the service's once it says hello
        self.fleet = Fleet(max_sessions_per_node=2**31)  # the service bounds its fleet; this mirrors it
        self.details: dict[str, Detail] = {}
        self.actor = ""  # who this console acts as, as the service names it
        self.service = ""
        self.operator = RemoteOperator(self)
        self.lost: str | None = None  # why the connection ended
        self._console = ConsoleShown()
        self._brain: RemoteBrain | None = None
        self._state: dict[str, wire.Section] = {name: {} for name in wire.SECTIONS}
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None
        self._calls: dict[str, asyncio.Future[Json]] = {}
        self._ids = itertools.count(1)
        self._subscribers: list[Callable[[HeadyEvent], None]] = []
        self._watchers: list[Callable[[], None]] = []

    # --- ConsoleBackend -----------------------------------------------------------------------

    @property
    def brain(self) -> RemoteBrain | None:
        return self._brain

    @property
    def simulated(self) -> bool:
        return self._console.simulated

    def insecure_links(self) -> list[str]:
        return list(self._console.insecure_links)

    async def session_timeline(self, node: str, session: str, newest: int) -> SessionTimeline | None:
        value = await self.call("query", "session_timeline", {"node": node, "session": session, "newest": newest})
        return _validated(_TIMELINE, value, "session_timeline")

    def subscribe(self, callback: Callable[[HeadyEvent], None]) -> Callable[[], None]:
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback) if callback in self._subscribers else None

    def watch(self, callback: Callable[[], None]) -> Callable[[], None]:
        self._watchers.append(callback)
        return lambda: self._watchers.remove(callback) if callback in self._watchers else None

    def focus(self, node: str, on: bool) -> None:
        if not on:
            self.details.pop(node, None)
        self.send({"type": "focus", "node": node, "on": on})

    async def start(self) -> None:
        """Connect, exchange hellos and read the snapshot. AttachError (one line) when it cannot.
        Attached already: nothing to do."""
        if self._task is not None:
            return
        try:
            self._reader, self._writer = await asyncio.wait_for(
                asyncio.open_unix_connection(str(self.path), limit=wire.MAX_SERVICE_LINE), CONNECT_TIMEOUT_S)
            hello = await self._next()
            if hello.get("type") == "error":
                raise AttachError(f"{self.path}: {hello.get('error')}")
            if hello.get("type") != "hello" or hello.get("version") != wire.PROTOCOL_VERSION:
                raise AttachError(f"{self.path} speaks another protocol (version {hello.get('version')!r}, this console speaks {wire.PROTOCOL_VERSION})")
            self.actor, self.service = str(hello.get("actor", "")), str(hello.get("service", ""))
            data_dir = hello.get("data_dir")
            if isinstance(data_dir, str):
                self.paths = Paths(self.paths.config_file, Path(data_dir))
            self.send({"type": "hello", "version": wire.PROTOCOL_VERSION})
            snapshot = await self._next()
            if snapshot.get("type") == "error":
                raise AttachError(f"{self.path}: {snapshot.get('error')}")
            if snapshot.get("type") != "snapshot":
                raise AttachError(f"{self.path}: expected the snapshot, got {str(snapshot.get('type'))[:40]!r}")
            self._apply_snapshot(snapshot)
        except (OSError, TimeoutError, ValueError) as exc:
            await self.stop()
            if isinstance(exc, AttachError):
                raise
            raise AttachError(f"cannot attach to {self.path}: {exc}") from None
        self._task = asyncio.create_task(self._read_forever(), name="attach:read")

    async def stop(self) -> None:
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._task = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self._fail_calls("detached")

    # --- sending ------------------------------------------------------------------------------

    def send(self, message: Mapping[str, object]) -> None:
        if self._writer is not None and not self._writer.is_closing():
            self._writer.write(wire.encode(message))

    async def call(self, kind: str, name: str, args: Mapping[str, object]) -> Json:
        """An `act` or a `query`, answered by a reply with its id; OperatorError when refused."""
        if self._writer is None or self.lost is not None:
            raise OperatorError(f"not attached: {self.lost or 'not connected'}")
        call_id = str(next(self._ids))
        future: asyncio.Future[Json] = asyncio.get_running_loop().create_future()
        self._calls[call_id] = future
        field = "action" if kind == "act" else "what"
        self.send({"type": kind, "id": call_id, field: name, "args": dict(args)})
        try:
            return await asyncio.wait_for(future, CALL_TIMEOUT_S)
        except TimeoutError:
            raise OperatorError(f"{name}: no answer from the headless console in {CALL_TIMEOUT_S:g} s") from None
        finally:
            self._calls.pop(call_id, None)

    def _fail_calls(self, reason: str) -> None:
        for future in self._calls.values():
            if not future.done():
                future.set_exception(OperatorError(f"not attached: {reason}"))
        self._calls.clear()

    # --- receiving ----------------------------------------------------------------------------

    async def _next(self) -> dict[str, Json]:
        assert self._reader is not None
        line = await asyncio.wait_for(self._reader.readline(), CONNECT_TIMEOUT_S)
        if not line:
            raise AttachError(f"{self.path}: the console closed the connection")
        return wire.decode(line, max_depth=wire.MAX_SERVICE_DEPTH)

    async def _read_forever(self) -> None:
        assert self._reader is not None
        reason = "the headless console closed the connection"
        try:
            while line := await self._reader.readline():
                self._handle(wire.decode(line, max_depth=wire.MAX_SERVICE_DEPTH))
        except (OSError, ValueError) as exc:  # a broken connection, or a line this console cannot read
            reason = f"{type(exc).__name__}: {exc}".splitlines()[0]
        self.lost = reason
        self._fail_calls(reason)
        log.warning("detached from %s: %s", self.path, reason)
        self._publish(HeadyEvent(LOST_EVENT, self.clock.now(), {"socket": str(self.path), "reason": reason}))

    def _handle(self, message: dict[str, Json]) -> None:
        kind = message["type"]
        if kind == "delta":
            self._apply_delta(message)
        elif kind == "event":
            self._publish(self._event(message))
        elif kind == "reply":
            future = self._calls.get(str(message.get("id")))
            if future is not None and not future.done():
                if message.get("ok") is True:
                    future.set_result(message.get("value"))
                else:
                    future.set_exception(OperatorError(str(message.get("error") or "refused")))
        elif kind == "error":
            log.warning("the headless console says: %s", message.get("error"))
        else:
            raise WireError(f"unknown message type {str(kind)[:40]!r}")

    def _event(self, message: dict[str, Json]) -> HeadyEvent:
        name, ts, details = message.get("name"), message.get("ts"), message.get("details")
        if not isinstance(name, str) or not isinstance(ts, (int, float)) or not math.isfinite(ts) or not isinstance(details, dict):
            raise WireError("event: needs a name, a finite ts and details")
        return HeadyEvent(name, float(ts), details)

    def _publish(self, event: HeadyEvent) -> None:
        for callback in list(self._subscribers):
            callback(event)

    def _changed(self) -> None:
        self.fleet.version += 1
        for callback in list(self._watchers):
            callback()

    # --- the mirror ---------------------------------------------------------------------------

    def _apply_snapshot(self, message: dict[str, Json]) -> None:
        state = message.get("state")
        if not isinstance(state, dict):
            raise WireError("snapshot: needs a state")
        self._apply(changed=state, removed={}, samples=message.get("samples"))

    def _apply_delta(self, message: dict[str, Json]) -> None:
        changed, removed = message.get("changed"), message.get("removed")
        if not isinstance(changed, dict) or not isinstance(removed, dict):
            raise WireError("delta: needs changed and removed")
        self._apply(changed=changed, removed=removed, samples=message.get("samples"))

    def _apply(self, *, changed: dict[str, Json], removed: dict[str, Json], samples: Json) -> None:
        for name in wire.SECTIONS:
            entries, gone = changed.get(name, {}), removed.get(name, [])
            if not isinstance(entries, dict) or not isinstance(gone, list):
                raise WireError(f"{name}: entries are an object, removals a list")
            if not entries and not gone:
                continue
            section = self._state[name]
            section.update(entries)
            for key in gone:
                section.pop(str(key), None)
            self._apply_section(name, entries, [str(key) for key in gone])
        if samples is not None:
            if not isinstance(samples, dict):
                raise WireError("samples: an object of node -> samples")
            for node_id, node_samples in samples.items():
                node = self.fleet.nodes.get(node_id)
                if node is not None:
                    wire.push_samples(node, node_samples)
        self._changed()

    def _apply_section(self, name: str, entries: dict[str, Json], gone: list[str]) -> None:
        fleet = self.fleet
        if name == "nodes":
            for node_id, data in entries.items():
                node = wire.load_node(data)
                old = fleet.nodes.get(node_id)
                if old is not None:  # the rings carry on; samples extend them
                    for ring in wire.RING_FIELDS:
                        setattr(node, ring, getattr(old, ring))
                fleet.nodes[node_id] = node
            for node_id in gone:
                fleet.nodes.pop(node_id, None)
        elif name == "sessions":
            fleet.apply_ledger([_validated(SESSION_ADAPTER, data, "session") for data in entries.values()])
            fleet.remove_sessions(_session_keys(gone))
        elif name == "details":
            for node_id, data in entries.items():
                self.details[node_id] = wire.load_detail(data)
            for node_id in gone:
                self.details.pop(node_id, None)
        elif name == "brain":
            fields = self._state["brain"]
            if not fields:
                self._brain = None
                return
            shown = _validated(BRAIN_ADAPTER, fields, "brain")
            if self._brain is None:
                self._brain = RemoteBrain(self, shown)
            else:
                self._brain.shown = shown
        else:
            self._console = _validated(CONSOLE_ADAPTER, self._state["console"], "console")


def _session_keys(keys: list[str]) -> list[tuple[str, str]]:
    out = []
    for key in keys:
        try:
            node, session = json.loads(key)
        except (ValueError, TypeError):
            raise WireError(f"session key {key[:80]!r} is not [node, id]") from None
        out.append((str(node), str(session)))
    return out
