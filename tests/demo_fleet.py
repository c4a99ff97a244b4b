"""A demo fleet without sockets: synthetic sources (the demo's agents' source) on one ManualClock,
their journalled events fed to a real Supervisor (real store, real brain) through its link sink,
as a link feeds it, and the brain ticked every `detector.evaluation_interval_s`. Deterministic for
a seed; simulated minutes take seconds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from heady_agent.clock import ManualClock
from heady_agent.config import AgentConfig
from heady_agent.protocol import Event, Hello, JournalInfo, NodeInfo
from heady_agent.sources.synthetic import SyntheticSource
from sourcekit import SqliteSourceContext

from heady_tui.config import Config, Paths
from heady_tui.engine.healing import HealingCycle
from heady_tui.supervisor import Supervisor


class DemoFleet:
    def __init__(self, tmp_path: Path, scenario: str, *, nodes: int = 3, seed: int = 0,
                 config: dict[str, Any] | None = None) -> None:
        self.clock = ManualClock()
        self.names = [f"sim-{i + 1}" for i in range(nodes)]
        self.sources: list[SyntheticSource] = []
        self.contexts: list[SqliteSourceContext] = []
        for i, name in enumerate(self.names):
            agent = AgentConfig(sources=["synthetic"],
                                synthetic={"scenario": scenario, "node_index": i, "node_count": nodes, "seed": seed})
            ctx = SqliteSourceContext(tmp_path / f"{name}.db", agent, self.clock, node_id=name)
            source = SyntheticSource(ctx)
            source.begin()
            self.sources.append(source)
            self.contexts.append(ctx)
        # The console's own tick loop is pushed out of the way: `run` ticks the brain on the manual clock.
        self.interval = Config().detector.evaluation_interval_s
        merged = {**(config or {}), "detector": {**(config or {}).get("detector", {}), "evaluation_interval_s": 1e6}}
        self.sup = Supervisor(Config.model_validate(merged), Paths(tmp_path / "config.toml", tmp_path / "data"), clock=self.clock)
        self._sent = dict.fromkeys(self.names, 0)
        self.cycles: list[HealingCycle] = []
        self.elapsed = 0.0

    async def start(self) -> None:
        await self.sup.start()
        for name in self.names:
            hello = Hello(protocol=1, node=NodeInfo(id=name, hostname=name, agent_version="1.0", os="Linux (simulated)",
                                                     cpu_count=8, mem_total=32 << 30),
                          journal=JournalInfo(id=f"j-{name}", first_seq=1, last_seq=0), simulated=True)
            await self.sup.link_hello(name, hello, None)
            self.sup.link_status(name, "online", None)
        await self._feed()

    async def stop(self) -> None:
        await self.sup.stop()
        for ctx in self.contexts:
            ctx.close()

    async def _feed(self) -> None:
        for name, ctx in zip(self.names, self.contexts):
            fresh = ctx.events(since_seq=self._sent[name])
            if fresh:
                frames = [Event(journal=f"j-{name}", seq=e.seq, ts=e.ts, kind=e.kind, session=e.session, data=e.data,
                                simulated=True) for e in fresh]
                await self.sup.link_frames(name, f"j-{name}", frames)
                self._sent[name] = fresh[-1].seq

    async def run(self, seconds: float) -> None:
        """Simulate `seconds`, feeding the console every second and ticking its brain on its interval."""
        for _ in range(round(seconds)):
            self.clock.advance(1.0)
            self.elapsed += 1.0
            for source in self.sources:
                source.tick()
            await self._feed()
            if self.elapsed % self.interval == 0:
                known = {c.id for c in self.cycles}
                await self.sup.brain.tick()
                self.cycles += [c for c in self.sup.brain.healing_cycles() if c.id not in known]

    def issues(self) -> list[str]:
        """Every issue message of every weak point the cycles so far reported, in order, once each."""
        seen: dict[str, None] = {}
        for cycle in self.cycles:
            for wp in cycle.weak_points:
                for message in wp["issues"]:
                    seen[message] = None
        return list(seen)
