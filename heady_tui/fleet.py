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
    SessionEndedData,
    SessionInfo,
    SessionStartedData,
    SessionStateData,
    parse_event_data,
)

RING_SIZE = 600  # 10 minutes of samples at the agent's default 1 s interval
CALL_RING_SIZE = 100_000  # recent llm.calls kept for the detector's windows
TERMINAL_STATES = ("completed", "error")
# A session on a node that sent nothing for its timeout: not ended, but not known to be running.
UNKNOWN_STATE = "unknown"
# A session that waits for a person (reason permission, input or question); since = state_since.
WAITING_STATE = "waiting"
NODE_OFFLINE_REASON = "node offline"
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
    # What the console shows (connecting | online | offline | error), derived in one place,
    # Fleet._derive_status, from what the link reports and how long ago the last frame arrived.
    status: str = "connecting"
    since: float = 0.0
    last_error: str | None = None
    link_status: str = "connecting"  # what the link last reported
    link_since: float = 0.0
    # Liveness, on the console's clock: when the last frame arrived, when the console started
    # waiting for this node, and how long without frames makes it offline (None: not tracked).
    last_frame_at: float | None = None
    watched_since: float | None = None
    timeout_s: float | None = None
    stale: bool = False  # no frame for timeout_s: the node is offline and its sessions unknown
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
    def live(self) -> bool:
        """Active and known to be so: what the console counts as live (not `unknown`)."""
        return self.active and self.state != UNKNOWN_STATE

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
    def __init__(self, pricer: Pricer | None = None, *, call_ring: int = CALL_RING_SIZE) -> None:
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
        """What the link reports (connecting | online | offline | error); an agent that says hello is alive."""
        state = self.node(node_id)
        state.link_status = status
        state.link_since = since
        state.last_error = error
        if status == "online":
            self._seen(state, since)
        self._derive_status(state, since)
        self.version += 1

    # --- liveness ---------------------------------------------------------------------

    def track(self, node_id: str, now: float, timeout_s: float) -> None:
        """Start the node's liveness clock: without frames for timeout_s it goes offline."""
        state = self.node(node_id)
        state.watched_since = now
        state.timeout_s = timeout_s
        self._derive_status(state, now)

    def frames_arrived(self, node_id: str, now: float) -> None:
        """Frames from the node reached the console at `now` (console clock)."""
        state = self.node(node_id)
        if self._seen(state, now):
            self.version += 1

    def update_liveness(self, now: float) -> list[NodeState]:
        """Re-derive every node's status at `now`; returns the nodes that went silent (newly stale)."""
        silent = []
        for state in self.nodes.values():
            was_stale = state.stale
            if self._derive_status(state, now):
                self.version += 1
                if state.stale and not was_stale:
                    silent.append(state)
        return silent

    def frame_age(self, node: NodeState, now: float) -> float | None:
        """Seconds since the node's last frame (None before the first one)."""
        return None if node.last_frame_at is None else max(0.0, now - node.last_frame_at)

    def _seen(self, state: NodeState, now: float) -> bool:
        if state.last_frame_at is None or now > state.last_frame_at:
            state.last_frame_at = now
        return self._derive_status(state, now)

    def _derive_status(self, state: NodeState, now: float) -> bool:
        """The one place a node's shown status is decided; returns whether it changed."""
        seen = state.last_frame_at if state.last_frame_at is not None else state.watched_since
        stale = state.timeout_s is not None and seen is not None and now - seen >= state.timeout_s
        if state.link_status == "error":
            status, since = "error", state.link_since
        elif stale:
            status, since = "offline", seen if seen is not None else state.link_since
        elif state.link_status == "online" or state.timeout_s is None:  # untracked: as the link says
            status, since = state.link_status, state.link_since
        else:  # the link dropped less than timeout_s after the last frame: it is reconnecting
            status, since = "connecting", state.link_since
        changed = (status, since, stale) != (state.status, state.since, state.stale)
        state.status, state.since = status, since
        if stale and not state.stale:
            self._sessions_unknown(state.id, now)
        state.stale = stale
        return changed

    def _sessions_unknown(self, node_id: str, now: float) -> None:
        """A silent node's live sessions: their state can no longer be known (never `running`)."""
        for rec in self._node_sessions.get(node_id, {}).values():
            if rec.active and rec.state != UNKNOWN_STATE:
                rec.state = UNKNOWN_STATE
                rec.state_reason = NODE_OFFLINE_REASON
                rec.state_since = now

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
        rec.last_event_at = max(rec.last_event_at, ev.ts)
        if isinstance(data, SessionStartedData):
            rec.source = data.source
            rec.project = data.project or rec.project
            rec.cwd = data.cwd or rec.cwd
            rec.pid = data.pid if data.pid is not None else rec.pid
            rec.model = data.model or rec.model
            rec.title = data.title or rec.title
            rec.managed = data.managed or rec.managed
            rec.started = ev.ts if rec.started is None else min(rec.started, ev.ts)
        elif isinstance(data, SessionStateData):
            # Replays may deliver older states after a fresher sessions snapshot: time decides.
            if ev.ts >= rec.state_since:
                rec.state = data.state
                rec.state_reason = data.reason
                rec.state_since = ev.ts
        elif isinstance(data, SessionEndedData):
            rec.ended = ev.ts
            rec.exit_code = data.exit_code
            if ev.ts >= rec.state_since:
                rec.state = "error" if (data.exit_code or 0) != 0 else "completed"
                rec.state_reason = data.reason
                rec.state_since = ev.ts
        elif isinstance(data, LlmCallData):
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

    def _session(self, node_id: str, session_id: str) -> SessionRecord:
        key = (node_id, session_id)
        rec = self.sessions.get(key)
        if rec is None:
            rec = self.sessions[key] = SessionRecord(node=node_id, id=session_id, state_since=0.0)
            self._node_sessions.setdefault(node_id, {})[session_id] = rec
        return rec

    def apply_sessions(self, node_id: str, sessions: list[SessionInfo], now: float) -> None:
        """The agent's list of current sessions: upsert them; the node's others are over."""
        self.node(node_id)
        current = set()
        for info in sessions:
            current.add(info.id)
            rec = self._session(node_id, info.id)
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
                rec.state_reason = None  # the reason belonged to the state it replaces
                rec.state_since = now
            if info.state not in TERMINAL_STATES:
                rec.ended = None
        for sid, rec in self._node_sessions.get(node_id, {}).items():
            if sid not in current and rec.active:
                rec.state = "completed"
                rec.state_reason = "no longer reported by the agent"
                rec.state_since = now
                rec.ended = now
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

    def waiting_sessions(self) -> list[SessionRecord]:
        """Live sessions waiting for a person, the longest-waiting first: what needs the operator now."""
        waiting = [rec for rec in self.sessions.values() if rec.live and rec.state == WAITING_STATE]
        return sorted(waiting, key=lambda rec: (rec.state_since, rec.node, rec.id))

    def node_sessions(self, node_id: str) -> Iterator[SessionRecord]:
        return iter(list(self._node_sessions.get(node_id, {}).values()))
