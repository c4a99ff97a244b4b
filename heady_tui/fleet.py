"""The live model of the fleet: nodes, sessions, recent calls, metric rings. Pure: no I/O, no clock.

The supervisor feeds it stored frames in order; the UI, the brain and the reports read it.
`Fleet.version` increases on every change so readers can skip unchanged refreshes.
"""

from __future__ import annotations

from array import array
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any
from heady_agent.protocol import (
    Event,
    FrameError,
    Hello,
    LlmCallData,
    Metrics,
    SessionInfo,
    parse_event_data,
)

MAX_SESSIONS_PER_NODE = 2000  # StoreConfig.max_sessions_per_node's default
FORGET_FRACTION = 0.1  # of the bound, forgotten at once: one sort per that many new sessions, not one per session
RING_SIZE = 600  # 10 minutes of samples at the agent's default 1 s interval
CALL_RING_SIZE = 100_000  # recent llm.calls kept for the detector's windows
TERMINAL_STATES = ("completed", "error")
# Nodes' streams interleave (a replay after a reconnect lands late), so the call ring is only nearly
# in time order; a window scan looks this far past its start before it stops.
ORDER_SLACK_S = 300.0

Pricer = Callable[[LlmCallData], tuple[float, bool]]


class Ring:
    """A fixed-size ring of floats (array of C doubles: 8 bytes a sample, no per-sample objects)."""

    __slots__ = ("_data", "_next", "_count")

    def __init__(self, size: int = RING_SIZE) -> None:
        self._data = array("d", bytes(8 * size))
        self._next = 0
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def push(self, value: float) -> None:
        self._data[self._next] = value
        self._next = (self._next + 1) % len(self._data)
        if self._count < len(self._data):
            self._count += 1

    def last(self) -> float | None:
        if not self._count:
            return None
        return self._data[self._next - 1]

    def values(self, limit: int | None = None) -> list[float]:
        """Oldest first; the newest `limit` samples when given."""
        n = self._count if limit is None else min(limit, self._count)
        if not n:
            return []
        start = (self._next - n) % len(self._data)
        if start + n <= len(self._data):
            return self._data[start : start + n].tolist()
        return self._data[start:].tolist() + self._data[: self._next].tolist()


@dataclass
class NodeMetrics:
    ts: float
    cpu: float
    mem: float
    swap: float
    load: tuple[float, float, float]
    mem_available: int
    disk_read_bps: float
    disk_write_bps: float
    net_rx_bps: float
    net_tx_bps: float
    procs: int
    queue_depth: int


@dataclass
class NodeState:
    id: str  # the configured node name; the console addresses nodes by it
    hostname: str = ""
    agent_id: str = ""  # the node id the agent announces in hello
    agent_version: str = ""
    os: str = ""
    cpu_count: int = 1
    mem_total: int = 0
    labels: dict[str, str] = field(default_factory=dict)
    status: str = "connecting"  # connecting | online | offline | error
    since: float = 0.0
    last_error: str | None = None
    journal: str | None = None
    last_seq: int = 0
    journal_reset: bool = False
    simulated: bool = False
    metrics: NodeMetrics | None = None
    cpu: Ring = field(default_factory=Ring)
    mem: Ring = field(default_factory=Ring)
    load: Ring = field(default_factory=Ring)  # load1 / cores: the utilisation the detector compares
    queue: Ring = field(default_factory=Ring)
    sample_ts: Ring = field(default_factory=Ring)
    bad_events: int = 0
    sessions_forgotten: int = 0  # ended sessions dropped to stay within the bound
    sessions_refused: int = 0  # events and reports of sessions past the bound, all of them live

    @property
    def utilisation(self) -> float | None:
        if self.metrics is None:
            return None
        return self.metrics.load[0] / max(1, self.cpu_count)

    @property
    def queue_depth(self) -> int:
        return self.metrics.queue_depth if self.metrics else 0


@dataclass
class SessionRecord:
    node: str
    id: str
    source: str = ""
    project: str | None = None
    cwd: str | None = None
    pid: int | None = None
    model: str | None = None
    title: str | None = None
    state: str = "running"
    state_reason: str | None = None
    state_since: float = 0.0
    started: float | None = None
    ended: float | None = None
    exit_code: int | None = None
    managed: str | None = None
    nice: int | None = None
    calls: int = 0
    errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_tokens: int = 0
    cache_read_tokens: int = 0
    cost_usd: float = 0.0
    cost_unknown: bool = False  # at least one call had no price
    last_call_at: float | None = None
    last_latency_ms: float | None = None
    last_event_at: float = 0.0

    @property
    def key(self) -> tuple[str, str]:
        return (self.node, self.id)

    @property
    def active(self) -> bool:
        return self.ended is None and self.state not in TERMINAL_STATES

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens + self.cache_creation_tokens + self.cache_read_tokens


@dataclass(frozen=True, slots=True)
class CallRecord:
    node: str
    session: str | None
    ts: float
    provider: str
    model: str
    latency_ms: float | None
    ok: bool
    error: str | None
    input_tokens: int
    output_tokens: int
    cost_usd: float
    cost_known: bool


class Fleet:
    def __init__(
        self, pricer: Pricer | None = None, *, call_ring: int = CALL_RING_SIZE, max_sessions_per_node: int = MAX_SESSIONS_PER_NODE
    ) -> None:
        self.max_sessions_per_node = max_sessions_per_node
        self.nodes: dict[str, NodeState] = {}
        self.sessions: dict[tuple[str, str], SessionRecord] = {}
        # The same records per node, so per-node reads stay cheap with thousands of sessions.
        self._node_sessions: dict[str, dict[str, SessionRecord]] = {}
        self.calls: deque[CallRecord] = deque(maxlen=call_ring)
        self.pricer = pricer
        self.version = 0

    # --- writes -----------------------------------------------------------------------

    def node(self, node_id: str) -> NodeState:
        state = self.nodes.get(node_id)
        if state is None:
            state = self.nodes[node_id] = NodeState(id=node_id)
            self.version += 1
        return state

    def set_status(self, node_id: str, status: str, since: float, error: str | None = None) -> None:
        state = self.node(node_id)
        state.status = status
        state.since = since
        state.last_error = error
        self.version += 1

    def apply_hello(self, node_id: str, hello: Hello) -> None:
        state = self.node(node_id)
        info = hello.node
        state.agent_id = info.id
        state.hostname = info.hostname
        state.agent_version = info.agent_version
        state.os = info.os
        state.cpu_count = info.cpu_count
        state.mem_total = info.mem_total
        state.labels = dict(info.labels)
        state.simulated = hello.simulated
        if state.journal is not None and state.journal != hello.journal.id:
            state.journal_reset = True
        state.journal = hello.journal.id
        self.version += 1

    def apply_frames(self, node_id: str, frames: Iterable[Metrics | Event]) -> None:
        for frame in frames:
            self.apply_frame(node_id, frame)

    def apply_frame(self, node_id: str, frame: Metrics | Event) -> Any:
        """Apply one frame; returns an event's data as validated (LlmCallData, ...), so later readers
        of the same frame need not validate it again, else None."""
        state = self.nodes.get(node_id) or self.node(node_id)
        if frame.seq > state.last_seq or (frame.journal and frame.journal != state.journal):
            state.last_seq = frame.seq
        if frame.journal:
            state.journal = frame.journal
        self.version += 1
        if isinstance(frame, Metrics):
            self._apply_metrics(state, frame)
            return None
        return self._apply_event(state, frame)

    def _apply_metrics(self, state: NodeState, m: Metrics) -> None:
        load = (m.load[0], m.load[1], m.load[2])
        state.metrics = NodeMetrics(
            ts=m.ts,
            cpu=m.cpu,
            mem=m.mem,
            swap=m.swap,
            load=load,
            mem_available=m.mem_available,
            disk_read_bps=m.disk_read_bps,
            disk_write_bps=m.disk_write_bps,
            net_rx_bps=m.net_rx_bps,
            net_tx_bps=m.net_tx_bps,
            procs=m.procs,
            queue_depth=m.queue_depth,
        )
        if m.simulated:
            state.simulated = True
        state.cpu.push(m.cpu)
        state.mem.push(m.mem)
        state.load.push(load[0] / max(1, state.cpu_count))
        state.queue.push(float(m.queue_depth))
        state.sample_ts.push(m.ts)

    def _apply_event(self, state: NodeState, ev: Event) -> Any:
        if ev.kind == "agent.notice" or ev.session is None:
            return None
        try:
            data = parse_event_data(ev.kind, ev.data)
        except FrameError:
            state.bad_events += 1  # counted and shown per node; the rest of the stream goes on
            return None
        rec = self._session(state.id, ev.session)
        if rec is None:
            return None
        rec.last_event_at = max(rec.last_event_at, ev.ts)
        if ev.kind == "session.started":
            rec.source = data.source
            rec.project = data.project or rec.project
            rec.cwd = data.cwd or rec.cwd
            rec.pid = data.pid if data.pid is not None else rec.pid
            rec.model = data.model or rec.model
            rec.title = data.title or rec.title
            rec.managed = data.managed or rec.managed
            rec.started = ev.ts if rec.started is None else min(rec.started, ev.ts)
        elif ev.kind == "session.state":
            # Replays may deliver older states after a fresher sessions snapshot: time decides.
            if ev.ts >= rec.state_since:
                rec.state = data.state
                rec.state_reason = data.reason
                rec.state_since = ev.ts
        elif ev.kind == "session.ended":
            rec.ended = ev.ts
            rec.exit_code = data.exit_code
            if ev.ts >= rec.state_since:
                rec.state = "error" if (data.exit_code or 0) != 0 else "completed"
                rec.state_reason = data.reason
                rec.state_since = ev.ts
        elif ev.kind == "llm.call":
            self._apply_call(state.id, rec, ev.ts, data)
        return data

    def _apply_call(self, node_id: str, rec: SessionRecord, ts: float, call: LlmCallData) -> None:
        if call.cost_usd is not None:
            cost, known = call.cost_usd, True
        elif self.pricer is not None:
            cost, known = self.pricer(call)
        else:
            cost, known = 0.0, False
        rec.calls += 1
        if not call.ok:
            rec.errors += 1
        rec.input_tokens += call.input_tokens
        rec.output_tokens += call.output_tokens
        rec.cache_creation_tokens += call.cache_creation_tokens
        rec.cache_read_tokens += call.cache_read_tokens
        rec.cost_usd += cost
        rec.cost_unknown = rec.cost_unknown or not known
        rec.model = rec.model or call.model
        if rec.last_call_at is None or ts >= rec.last_call_at:
            rec.last_call_at = ts
            rec.last_latency_ms = call.latency_ms
        self.calls.append(
            CallRecord(
                node=node_id,
                session=rec.id,
                ts=ts,
                provider=call.provider,
                model=call.model,
                latency_ms=call.latency_ms,
                ok=call.ok,
                error=call.error,
                input_tokens=call.input_tokens,
                output_tokens=call.output_tokens,
                cost_usd=cost,
                cost_known=known,
            )
        )

    def _session(self, node_id: str, session_id: str) -> SessionRecord | None:
        """The node's record of a session, new if need be; None when the node is at its bound."""
        key = (node_id, session_id)
        rec = self.sessions.get(key)
        if rec is None:
            per_node = self._node_sessions.setdefault(node_id, {})
            if len(per_node) >= self.max_sessions_per_node and not self._forget_ended(node_id, per_node):
                self.node(node_id).sessions_refused += 1
                return None
            rec = self.sessions[key] = SessionRecord(node=node_id, id=session_id, state_since=0.0)
            per_node[session_id] = rec
        return rec

    def _forget_ended(self, node_id: str, per_node: dict[str, SessionRecord]) -> bool:
        """Drop the node's longest-ended sessions (a tenth of the bound at most); True if any went."""
        ended = sorted((r for r in per_node.values() if not r.active), key=lambda r: r.ended or r.last_event_at)
        gone = ended[: max(1, int(self.max_sessions_per_node * FORGET_FRACTION))]
        for rec in gone:
            del per_node[rec.id]
            del self.sessions[(node_id, rec.id)]
        self.node(node_id).sessions_forgotten += len(gone)
        return bool(gone)

    def apply_sessions(self, node_id: str, sessions: list[SessionInfo], now: float) -> None:
        """The agent's list of current sessions: upsert them; the node's others are over."""
        self.node(node_id)
        current = {info.id for info in sessions}
        # Others end first, so at the session bound the ones they replace have room.
        for sid, rec in self._node_sessions.get(node_id, {}).items():
            if sid not in current and rec.active:
                rec.state = "completed"
                rec.state_reason = "no longer reported by the agent"
                rec.state_since = now
                rec.ended = now
        for info in sessions:
            found = self._session(node_id, info.id)
            if found is None:
                continue
            rec = found
            rec.source = info.source
            rec.project = info.project or rec.project
            rec.cwd = info.cwd or rec.cwd
            rec.pid = info.pid if info.pid is not None else rec.pid
            rec.model = info.model or rec.model
            rec.title = info.title or rec.title
            rec.managed = info.managed or rec.managed
            rec.nice = info.nice
            if info.started is not None:
                rec.started = info.started if rec.started is None else min(rec.started, info.started)
            if rec.state != info.state:
                rec.state = info.state
                rec.state_since = now
            if info.state not in TERMINAL_STATES:
                rec.ended = None
        self.version += 1

    # --- reads ------------------------------------------------------------------------

    def online_nodes(self) -> list[NodeState]:
        return [n for n in self.nodes.values() if n.status == "online"]

    def calls_since(self, ts: float) -> list[CallRecord]:
        """Calls with a timestamp at or after ts, oldest first (calls arrive nearly in order)."""
        out: list[CallRecord] = []
        for call in reversed(self.calls):
            if call.ts >= ts:
                out.append(call)
            elif call.ts < ts - ORDER_SLACK_S:
                break
        out.reverse()
        return out

    def node_sessions(self, node_id: str) -> Iterator[SessionRecord]:
        return iter(list(self._node_sessions.get(node_id, {}).values()))
