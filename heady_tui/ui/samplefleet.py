"""A deterministic fleet for snapshot tests, screenshots and the UI benchmark.

It drives a real Supervisor (real store, fleet and brain) through the same entry points the
node links use (hello, status, frames, sessions) with data computed from fixed formulas and a
ManualClock, without sockets: every run paints the same screen.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from heady_agent.clock import ManualClock
from heady_agent.protocol import Event, Hello, JournalInfo, Metrics, NodeInfo, SessionInfo, Sessions

from ..brain import Brain
from ..config import Config, Paths
from ..store import Store
from ..supervisor import Supervisor

# 2027-01-15 14:00:00 UTC: a fixed moment, mid-day, so "today" has a history.
FIXED_START = 1_800_021_600.0
MODELS = ("claude-sonnet-4-5", "claude-opus-4-5", "gpt-5-codex", "claude-haiku-4-5")
SOURCES = ("claude-code", "codex", "managed", "claude-code")
PROJECTS = ("api-gateway", "billing", "web-app", "infra", "search", "mobile")


@dataclass(frozen=True)
class NodeSpec:
    name: str
    cores: int
    base_cpu: float
    queue: int
    online: bool = True


DEFAULT_NODES = (
    NodeSpec("build-1", 8, 35.0, 40),
    NodeSpec("build-2", 8, 62.0, 120),
    NodeSpec("gpu-1", 16, 82.0, 15),
    NodeSpec("edge-1", 4, 12.0, 0, online=False),
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
    supervisor.store = await Store.open(paths.database, metric_rollup_s=config.store.metric_rollup_s)
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


async def feed_fleet(
    supervisor: Supervisor,
    clock: ManualClock,
    nodes: tuple[NodeSpec, ...] = DEFAULT_NODES,
    *,
    sessions_per_node: int = 3,
    samples: int = 60,
    calls_per_session: int = 4,
) -> None:
    """History of `samples` seconds per node, then sessions with calls, all at fixed values."""
    simulated = supervisor.simulated
    start = clock.now() - samples
    for index, spec in enumerate(nodes):
        supervisor.fleet.node(spec.name)
        await supervisor.link_hello(spec.name, _hello(spec, index, simulated), None)
        supervisor.link_status(spec.name, "online", None)
        journal = f"j-{spec.name}"
        frames: list[Metrics | Event] = []
        seq = 0
        for i in range(samples):
            seq += 1
            wave = math.sin((i + index * 7) / 6.0)
            cpu = max(0.0, min(100.0, spec.base_cpu + 15 * wave))
            frames.append(
                Metrics(
                    journal=journal,
                    seq=seq,
                    ts=start + i,
                    cpu=round(cpu, 1),
                    load=[round(spec.cores * cpu / 100, 2), 1.0, 1.0],
                    mem=round(40 + 20 * math.cos(i / 9.0 + index), 1),
                    swap=0.0,
                    mem_available=spec.cores * 2**30,
                    queue_depth=spec.queue + (i % 5),
                    procs=200 + index,
                    simulated=simulated,
                )
            )
        sessions = []
        for s in range(sessions_per_node):
            sid = f"{spec.name[:2]}{index:03d}-s{s}"
            model = MODELS[(index + s) % len(MODELS)]
            began = start + s * 3
            seq += 1
            frames.append(
                Event(
                    journal=journal, seq=seq, ts=began, kind="session.started", session=sid, simulated=simulated,
                    data={"source": SOURCES[s % len(SOURCES)], "project": PROJECTS[(index + s) % len(PROJECTS)],
                          "cwd": f"/srv/{PROJECTS[(index + s) % len(PROJECTS)]}", "pid": 4000 + index * 10 + s,
                          "model": model, "title": None},
                )
            )
            for c in range(calls_per_session):
                seq += 1
                frames.append(
                    Event(
                        journal=journal, seq=seq, ts=began + 10 + c * 9, kind="llm.call", session=sid, simulated=simulated,
                        data={"provider": "openai" if model.startswith("gpt") else "anthropic", "model": model,
                              "input_tokens": 1200 + 300 * c + 50 * s, "output_tokens": 400 + 80 * c,
                              "cache_creation_tokens": 0, "cache_read_tokens": 8000 * (c + 1),
                              "cost_usd": None, "latency_ms": 900 + 150 * c + 40 * index, "ok": (c + s + index) % 7 != 6,
                              "error": None if (c + s + index) % 7 != 6 else "rate_limit"},
                    )
                )
            state = ("running", "idle", "paused", "running")[s % 4]
            seq += 1
            frames.append(
                Event(journal=journal, seq=seq, ts=began + 50, kind="session.state", session=sid, simulated=simulated,
                      data={"state": state, "reason": None})
            )
            sessions.append(
                SessionInfo(id=sid, source=SOURCES[s % len(SOURCES)], project=PROJECTS[(index + s) % len(PROJECTS)],
                            model=model, state=state, started=began, pid=4000 + index * 10 + s)
            )
        await supervisor.link_frames(spec.name, journal, frames)
        await supervisor.link_sessions(spec.name, Sessions(sessions=sessions))
        if not spec.online:
            supervisor.link_status(spec.name, "offline", "connection refused")
    if supervisor.brain is not None:
        await supervisor.brain.tick()
