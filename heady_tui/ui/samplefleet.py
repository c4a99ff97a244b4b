"""A deterministic fleet for snapshot tests, screenshots and the UI benchmark.

It drives a real Supervisor (real store, fleet and brain) through the same entry points the
node links use (hello, status, frames, sessions) with data computed from fixed formulas and a
ManualClock, without sockets: every run paints the same screen.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass

from heady_agent.clock import ManualClock
from heady_agent.protocol import Detail, Event, Hello, JournalInfo, Metrics, NodeInfo, ProcessRow, SessionInfo, Sessions, SessionState

from ..brain import Brain
from ..config import Config, Paths
from ..engine.cost import PricingTable
from ..store import Store
from ..supervisor import Supervisor

# 2027-01-15 14:00:00 UTC: a fixed moment, mid-day, so "today" has a history.
FIXED_START = 1_800_021_600.0
MODELS = ("claude-sonnet-4-5", "claude-opus-4-5", "gpt-5-codex", "claude-haiku-4-5")
SOURCES = ("claude-code", "codex", "managed", "claude-code")
PROJECTS = ("api-gateway", "billing", "web-app", "infra", "search", "mobile")
# The sample team's two subscriptions: Codex reports its limits with each call, Claude Code's are estimated.
CODEX_ACCOUNT = "openai:team@example.com"
CLAUDE_ACCOUNT = "claude:team@example.com"


@dataclass(frozen=True)
class NodeSpec:
    name: str
    cores: int
    base_cpu: float
    queue: int
    online: bool = True


DEFAULT_NODES = (
    NodeSpec("build-1", 8, 40.0, 40),
    NodeSpec("build-2", 8, 55.0, 120),
    NodeSpec("gpu-1", 16, 70.0, 15),
    NodeSpec("edge-1", 4, 32.0, 0, online=False),
)


def spec_fleet(nodes: int, sessions_per_node: int) -> tuple[tuple[NodeSpec, ...], int]:
    specs = tuple(
        NodeSpec(f"node-{i:03d}", 4 + 4 * (i % 4), 20.0 + (i * 37) % 70, (i * 13) % 60, online=i % 50 != 49)
        for i in range(nodes)
    )
    return specs, sessions_per_node


async def open_offline(config: Config, paths: Paths, clock: ManualClock, *, simulated: bool = True) -> Supervisor:
    """A Supervisor with its store and brain open but no links: fed by `feed_fleet`."""
    supervisor = Supervisor(config, paths, clock=clock, simulated=simulated)
    paths.data_dir.mkdir(parents=True, exist_ok=True)
    pricing = PricingTable.load(config.cost)
    supervisor.fleet.pricing = pricing
    supervisor.store = await Store.open(paths.database, metric_rollup_s=config.store.metric_rollup_s, pricing=pricing,
                                        priority=supervisor.priority)
    supervisor.brain = Brain(supervisor)
    await supervisor.brain.start()
    return supervisor


async def close_offline(supervisor: Supervisor) -> None:
    if supervisor.brain is not None:
        await supervisor.brain.stop()
    if supervisor.store is not None:
        await supervisor.store.close()


def _hello(spec: NodeSpec, index: int, simulated: bool) -> Hello:
    return Hello(
        protocol=1,
        node=NodeInfo(
            id=spec.name,
            hostname=f"{spec.name}.lab",
            agent_version="0.1.0",
            os="Linux 6.8",
            cpu_count=spec.cores,
            mem_total=spec.cores * 4 * 2**30,
            labels={"rack": f"r{index % 3 + 1}"},
        ),
        journal=JournalInfo(id=f"j-{spec.name}", first_seq=1, last_seq=0),
        simulated=simulated,
    )


def _processes(spec: NodeSpec, index: int, sessions: list[SessionInfo], now: float) -> Detail:
    rows = [
        ProcessRow(pid=s.pid or 0, name="claude" if s.source != "codex" else "codex", user="dev",
                   cpu=round(spec.base_cpu / (i + 2), 1), rss=(300 + 40 * i) * 2**20, session=s.id)
        for i, s in enumerate(sessions)
    ]
    rows.append(ProcessRow(pid=900 + index, name="heady-agent", user="heady", cpu=0.4, rss=38 * 2**20))
    return Detail(ts=now, processes=rows)


async def feed_fleet(
    supervisor: Supervisor,
    clock: ManualClock,
    nodes: tuple[NodeSpec, ...] = DEFAULT_NODES,
    *,
    sessions_per_node: int = 3,
    samples: int = 60,
    calls_per_session: int = 4,
    tick_every: int = 5,
    through_store: bool = True,
) -> None:
    """`samples` seconds of history per node, delivered second by second as the clock advances
    (the brain evaluates every `tick_every` seconds, so the equilibrium has a history too), then
    the sessions' snapshot and a process list per node. All values come from fixed formulas.

    `through_store=False` hands frames straight to the fleet and the brain (what the supervisor
    does after storing them), for large fleets where the store's writes are not what is measured."""
    simulated = supervisor.simulated
    start = clock.now()
    streams: dict[str, list[Metrics | Event]] = {}
    snapshots: dict[str, list[SessionInfo]] = {}
    for index, spec in enumerate(nodes):
        supervisor.fleet.node(spec.name)
        await supervisor.link_hello(spec.name, _hello(spec, index, simulated), None)
        supervisor.link_status(spec.name, "online", None)
        streams[spec.name], snapshots[spec.name] = _stream(spec, index, start, samples, sessions_per_node,
                                                          calls_per_session, simulated)
    for second in range(samples):
        until = start + second + 1
        for spec in nodes:
            stream = streams[spec.name]
            due = [f for f in stream if f.ts < until]
            if due:
                streams[spec.name] = stream[len(due):]
                if through_store:
                    await supervisor.link_frames(spec.name, f"j-{spec.name}", due)
                else:
                    calls = supervisor.fleet.apply_frames(spec.name, due)
                    assert supervisor.brain is not None
                    for frame in due:
                        supervisor.brain.on_frame(spec.name, frame)
                    supervisor.brain.on_calls(calls)
        clock.advance(1)
        if supervisor.brain is not None and (second + 1) % tick_every == 0:
            await supervisor.brain.tick()
    for index, spec in enumerate(nodes):
        await supervisor.link_sessions(spec.name, Sessions(sessions=snapshots[spec.name]))
        supervisor.link_detail(spec.name, _processes(spec, index, snapshots[spec.name], clock.now()))
        if not spec.online:
            supervisor.link_status(spec.name, "offline", "connection refused")


async def wobble(supervisor: Supervisor, clock: ManualClock, *, steps: int | None = None, interval_s: float = 1.0) -> None:
    """Live data after feed_fleet: every `interval_s` of wall time the clock moves a second and each
    online node sends a metrics frame with its CPU a few points off, `steps` times (None: until
    cancelled)."""
    fleet = supervisor.fleet
    seq = {n.id: n.last_seq for n in fleet.nodes.values()}
    step = 0
    while steps is None or step < steps:
        await asyncio.sleep(interval_s)
        step += 1
        clock.advance(1.0)
        for index, node in enumerate(fleet.nodes.values()):
            m = node.metrics
            if m is None or node.status != "online":
                continue
            seq[node.id] += 1
            cpu = max(0.0, min(100.0, m.cpu + ((step + index) % 5 - 2)))
            fleet.apply_frame(node.id, Metrics(journal=node.journal or "", seq=seq[node.id], ts=clock.now(), cpu=cpu,
                                               load=list(m.load), mem=m.mem, swap=m.swap, queue_depth=m.queue_depth))
        supervisor.changed()  # what the supervisor does after applying a batch of frames


def _stream(
    spec: NodeSpec, index: int, start: float, samples: int, sessions_per_node: int, calls_per_session: int, simulated: bool
) -> tuple[list[Metrics | Event], list[SessionInfo]]:
    """One node's frames in time order (seq increasing) and its sessions at the end."""
    journal = f"j-{spec.name}"
    timed: list[tuple[float, int, dict]] = []
    for i in range(samples):
        wave = math.sin((i + index * 7) / 6.0)
        cpu = max(0.0, min(100.0, spec.base_cpu + 15 * wave))
        timed.append((start + i, 0, dict(
            type="metrics", cpu=round(cpu, 1), load=[round(spec.cores * cpu / 100, 2), 1.0, 1.0],
            mem=round(40 + 20 * math.cos(i / 9.0 + index), 1), swap=0.0, mem_available=spec.cores * 2**30,
            queue_depth=spec.queue + (i % 5), procs=200 + index,
        )))
    sessions = []
    for s in range(sessions_per_node):
        sid = f"{spec.name[:2]}{index:03d}-s{s}"
        model = MODELS[(index + s) % len(MODELS)]
        project = PROJECTS[(index + s) % len(PROJECTS)]
        source = SOURCES[s % len(SOURCES)]
        began = start + s * 3
        pid = 4000 + index * 10 + s
        account = CODEX_ACCOUNT if source == "codex" else CLAUDE_ACCOUNT
        timed.append((began, 1, dict(type="event", kind="session.started", session=sid, data={
            "source": source, "project": project, "cwd": f"/srv/{project}", "pid": pid, "model": model, "title": None,
            "account": account})))
        for c in range(calls_per_session):
            failed = (c * 3 + s * 5 + index * 7) % 19 == 0  # about 6 %: above the threshold, below critical
            at = began + 10 + c * 9
            limits = {"primary": {"used_percent": 40.0 + (at - start) / 4, "window_minutes": 300, "resets_at": start + 7200},
                      "secondary": {"used_percent": 18.0, "window_minutes": 10080, "resets_at": start + 4 * 86400}}
            timed.append((at, 1, dict(type="event", kind="llm.call", session=sid, data={
                "provider": "openai" if model.startswith("gpt") else "anthropic", "model": model,
                "input_tokens": 1200 + 300 * c + 50 * s, "output_tokens": 400 + 80 * c,
                "cache_creation_tokens": 0, "cache_read_tokens": 8000 * (c + 1), "cost_usd": None,
                "latency_ms": 900 + 150 * c + 40 * index, "ok": not failed, "error": "rate_limit" if failed else None,
                "rate_limits": limits if source == "codex" and not failed else None})))
        state: SessionState = ("running", "idle", "paused", "running")[s % 4]
        timed.append((began + 50, 1, dict(type="event", kind="session.state", session=sid,
                                           data={"state": state, "reason": None})))
        sessions.append(SessionInfo(id=sid, source=source, project=project, model=model, state=state,
                                    started=began, pid=pid, account=account))
    frames: list[Metrics | Event] = []
    for seq, (ts, _, body) in enumerate(sorted(timed, key=lambda t: (t[0], t[1])), start=1):
        kind = body.pop("type")
        frame_type: type[Metrics] | type[Event] = Metrics if kind == "metrics" else Event
        frames.append(frame_type(journal=journal, seq=seq, ts=ts, simulated=simulated, **body))
    return frames, sessions
