"""The live model of the fleet: nodes, sessions, metric rings. Pure: no I/O, no clock.

The supervisor feeds it stored frames in order, and the session ledger's rows as the store
committed them (`apply_ledger`); the UI and the brain read it. A fleet without a store (the UI's
sample fleet, unit tests) applies events itself with the ledger's rules (heady_tui/ledger.py).
`Fleet.version` increases on every change so readers can skip unchanged refreshes.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from heady_agent.protocol import (
    Event,
    FrameError,
    Hello,
    Metrics,
    SessionInfo,
    parse_event_data,
)

from .ledger import (
    TERMINAL_STATES,
    UNPRICED,
    CallPricer,
    PricedCall,
    PriorityRules,
    UNKNOWN_STATE,
    WAITING_STATE,
    SessionRecord,
    apply_event,
    apply_snapshot,
    mark_unknown,
)

__all__ = ["RING_SIZE", "SPARKLINE_WIDTH", "SPARKLINE_WIDTH_COMPACT", "SPARKLINE_WINDOW_S", "TERMINAL_STATES", "UNKNOWN_STATE", "WAITING_STATE", "Fleet", "NodeMetrics", "NodeState", "Ring", "SessionRecord"]

RING_SIZE = 600  # 10 minutes of samples at the agent's default 1 s interval
SPARKLINE_WIDTH = 12
SPARKLINE_WINDOW_S = 60.0  # the time the nodes table's sparklines span ("CPU 60s"), whatever their width
SPARKLINE_WIDTH_COMPACT = 8
MAX_SESSIONS_PER_NODE = 2000  # StoreConfig.max_sessions_per_node's default
FORGET_FRACTION = 0.1  # of the bound, forgotten at once: one sort per that many new sessions, not one per session


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
    managed: dict[str, str | None] = field(default_factory=dict)  # managed name -> its sessions' project (hello)
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
    sessions_forgotten: int = 0  # ended sessions dropped to stay within the bound
    sessions_refused: int = 0  # events and reports of sessions past the bound, all of them live
    source: str = "agent"  # "prometheus": a metrics-only node, read from Prometheus, that takes no commands
    # Seconds between a metrics-only node's samples (its Prometheus step); None: an agent's, about one per evaluation.
    sample_interval_s: float | None = None

    def recent(self, ring: Ring, seconds: float, buckets: int) -> list[float]:
        """`ring`'s samples over the last `seconds` of the node's own clock (up to its newest sample,
        so a skewed node clock does not empty it), as at most `buckets` values oldest first: each the
        highest sample in its slice of that time. A slice without a sample holds the value before
        it; slices before the first sample are left out."""
        count = min(len(ring), len(self.sample_ts))
        if count == 0 or buckets <= 0:
            return []
        limit = 64
        stamps = self.sample_ts.values(min(limit, count))
        while len(stamps) < count and stamps[0] > stamps[-1] - seconds:
            limit *= 4
            stamps = self.sample_ts.values(min(limit, count))
        values = ring.values(len(stamps))
        # Slices on fixed boundaries of time: a slice's value changes only while it is the newest,
        # so the line steps once a slice instead of shifting with every sample.
        step = seconds / buckets
        last = math.floor(stamps[-1] / step)
        slices: list[float | None] = [None] * buckets
        for ts, value in zip(stamps, values):
            i = buckets - 1 - (last - math.floor(ts / step))
            if i >= 0:
                held = slices[i]
                slices[i] = value if held is None else max(held, value)
        out: list[float] = []
        for held in slices:
            if held is not None:
                out.append(held)
            elif out:
                out.append(out[-1])
        return out

    @property
    def metrics_only(self) -> bool:
        """Read from Prometheus, not from an agent: it takes no commands."""
        return self.source != "agent"

    @property
    def utilisation(self) -> float | None:
        if self.metrics is None:
            return None
        return self.metrics.load[0] / max(1, self.cpu_count)

    @property
    def queue_depth(self) -> int:
        return self.metrics.queue_depth if self.metrics else 0




class Fleet:
    def __init__(self, pricing: CallPricer | None = None, *, max_sessions_per_node: int = MAX_SESSIONS_PER_NODE) -> None:
        self.max_sessions_per_node = max_sessions_per_node
        self.nodes: dict[str, NodeState] = {}
        self.sessions: dict[tuple[str, str], SessionRecord] = {}
        # The same records per node, so per-node reads stay cheap with thousands of sessions.
        self._node_sessions: dict[str, dict[str, SessionRecord]] = {}
        # Only for a fleet fed events without a store; the store prices and classifies the console's sessions.
        self.pricing: CallPricer = pricing or UNPRICED
        self.priority = PriorityRules()
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
        mark_unknown(self._node_sessions.get(node_id, {}).values(), now)

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
        state.managed = {entry.name: entry.project for entry in info.managed}
        state.simulated = hello.simulated
        if state.journal is not None and state.journal != hello.journal.id:
            state.journal_reset = True
        state.journal = hello.journal.id
        self.version += 1

    def apply_frames(self, node_id: str, frames: Iterable[Metrics | Event]) -> list[PricedCall]:
        """Frames without a store (see apply_frame); returns the calls among them, priced."""
        calls = []
        for frame in frames:
            call = self.apply_frame(node_id, frame)
            if call is not None:
                calls.append(call)
        return calls

    def apply_frame(self, node_id: str, frame: Metrics | Event) -> PricedCall | None:
        """Apply one frame without a store: its node part, and an event with the ledger's rules.
        Returns the call an llm.call event made, priced, else None."""
        state = self.apply_node_frame(node_id, frame)
        if isinstance(frame, Metrics):
            return None
        return self._apply_event(state, frame)

    def apply_node_frame(self, node_id: str, frame: Metrics | Event) -> NodeState:
        """A stored frame's part of its node: seq, journal and metrics (sessions come from the ledger)."""
        state = self.nodes.get(node_id) or self.node(node_id)
        if frame.seq > state.last_seq or (frame.journal and frame.journal != state.journal):
            state.last_seq = frame.seq
        if frame.journal:
            state.journal = frame.journal
        self.version += 1
        if isinstance(frame, Metrics):
            self._apply_metrics(state, frame)
        return state

    def apply_ledger(self, sessions: Iterable[SessionRecord], *, bad_events: dict[str, int] | None = None) -> None:
        """Session ledger rows as the store committed them: they replace the fleet's records."""
        for rec in sessions:
            self._admit(rec)
        for node_id, count in (bad_events or {}).items():
            self.node(node_id).bad_events += count
        self.version += 1

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

    def _apply_event(self, state: NodeState, ev: Event) -> PricedCall | None:
        if ev.kind in ("agent.notice", "session.limits") or ev.session is None:
            return None  # limits belong to the account (the brain's account windows), not the session row
        try:
            data = parse_event_data(ev.kind, ev.data)
        except FrameError:
            state.bad_events += 1  # counted and shown per node; the rest of the stream goes on
            return None
        rec = self._session(state.id, ev.session)
        if rec is None:
            return None
        call = apply_event(rec, data, pricing=self.pricing, node=state.id, journal=ev.journal or "", seq=ev.seq, ts=ev.ts)
        self.priority.classify(rec)  # as the store's ledger does for every row it changes
        return call

    def _session(self, node_id: str, session_id: str) -> SessionRecord | None:
        """The node's record of a session, new if need be; None when the node is at its bound."""
        rec = self.sessions.get((node_id, session_id))
        if rec is None:
            rec = SessionRecord(node=node_id, id=session_id, state_since=0.0)
            if not self._admit(rec):
                return None
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

    def _admit(self, rec: SessionRecord) -> bool:
        """Keep the record unless its node is at the bound with every kept session live (counted)."""
        per_node = self._node_sessions.setdefault(rec.node, {})
        if rec.id not in per_node and len(per_node) >= self.max_sessions_per_node and not self._forget_ended(rec.node, per_node):
            self.node(rec.node).sessions_refused += 1
            return False
        per_node[rec.id] = self.sessions[rec.key] = rec
        return True

    def apply_sessions(self, node_id: str, sessions: list[SessionInfo], now: float) -> None:
        """The agent's list of current sessions, without a store (the ledger's rule)."""
        self.node(node_id)
        # The snapshot on a copy: the sessions it no longer lists end first, so at the bound the
        # ones replacing them have room; new records then pass the bound like the ledger's.
        kept = self._node_sessions.setdefault(node_id, {})
        listed = {info.id for info in sessions}
        for rec in apply_snapshot(dict(kept), node_id, sessions, now):
            self.priority.classify(rec)
            if rec.id in listed and rec.id not in kept:  # kept ones changed in place; forgotten ones stay so
                self._admit(rec)
        self.version += 1

    def remove_sessions(self, keys: Iterable[tuple[str, str]]) -> None:
        """Drop these records: a fleet mirroring another console's (heady attach) follows its removals."""
        for node_id, session_id in keys:
            self.sessions.pop((node_id, session_id), None)
            self._node_sessions.get(node_id, {}).pop(session_id, None)
        self.version += 1

    # --- reads ------------------------------------------------------------------------

    def online_nodes(self) -> list[NodeState]:
        return [n for n in self.nodes.values() if n.status == "online"]

    def waiting_sessions(self) -> list[SessionRecord]:
        """Live sessions waiting for a person, the longest-waiting first: what needs the operator now."""
        waiting = [rec for rec in self.sessions.values() if rec.live and rec.state == WAITING_STATE]
        return sorted(waiting, key=lambda rec: (rec.state_since, rec.node, rec.id))

    def node_sessions(self, node_id: str) -> Iterator[SessionRecord]:
        return iter(list(self._node_sessions.get(node_id, {}).values()))
