"""Priority classes carried out: each node's gate on high-priority managed starts, and load shedding
of background sessions on loaded nodes (heady_tui/engine/priority.py decides). Every gate change and
every shedding step or revert is sent through the fenced command path and audited with its outcome;
the shedding state is saved with each step's audit entry, so a brain that takes over reverts it."""

from __future__ import annotations

import logging
from dataclasses import asdict

from heady_tui.engine.detector import NodeSample
from heady_tui.engine.priority import HIGH, NONE, LoadShedder, NodeLoad, PriorityGate, SessionFacts, ShedStep, gate_for

from .host import CONSOLE, BrainContext

log = logging.getLogger("heady.brain")

SHEDDING_KEY = "priority.shedding"  # engine_kv: the shedder's state


class PriorityKeeper:
    def __init__(self, ctx: BrainContext) -> None:
        self.ctx = ctx
        self.shedder = LoadShedder(ctx.config.priority)
        self._gates: dict[str, PriorityGate] = {}  # node -> the gate last sent to its agent

    async def load(self) -> None:
        saved = await self.ctx.records.kv_get(SHEDDING_KEY)
        self.shedder.import_state(saved if isinstance(saved, dict) else {})

    def node_status(self, node: str) -> None:
        """A node reconnected or went away: its agent may have restarted without the gate."""
        self._gates.pop(node, None)

    def held_paused(self) -> set[tuple[str, str]]:
        """Sessions shedding paused: the resume-on-idle policy leaves them to the revert."""
        return {(node, sid) for node, st in self.shedder.nodes.items() for sid in st.paused}

    async def run(self, samples: list[NodeSample], now: float) -> None:
        await self._gate(now)
        await self._shed(samples, now)

    async def _gate(self, now: float) -> None:
        fleet = self.ctx.host.fleet
        cap = self.ctx.config.priority.max_high_per_node
        for node in fleet.online_nodes():
            if not node.managed:
                continue
            high = [name for name, project in node.managed.items()
                    if fleet.priority.class_of(node.id, source="managed", project=project, managed=name) == HIGH]
            gate = gate_for(high, [(s.managed, s.priority) for s in fleet.node_sessions(node.id) if s.live], cap)
            last = self._gates.get(node.id)
            if last == gate or (last is None and not gate.high):
                continue  # unchanged, or nothing to hold on a node never gated
            ok, error, _ = await self.ctx.command(node.id, "queue.set_priority", None, gate.args())
            # Sent once per change: a refused gate is audited, not retried every tick.
            self._gates[node.id] = gate
            details = {"node": node.id, **gate.args(), "ok": ok, "error": error}
            await self.ctx.records.audit(now, CONSOLE, "priority.gate", details)
            self.ctx.publish("priority.gate", **details)

    async def _shed(self, samples: list[NodeSample], now: float) -> None:
        fleet = self.ctx.host.fleet
        loads = [NodeLoad(s.node, s.online, s.utilisation,
                          tuple(SessionFacts(r.id, r.state, r.nice, r.priority) for r in fleet.node_sessions(s.node) if r.live))
                 for s in samples]
        for step in self.shedder.evaluate(loads, now):
            ok, error, detail = await self.ctx.command(step.node, step.action, step.session, step.args)
            self.shedder.applied(step, ok, detail)
            await self._record(step, ok, error, now)

    async def _record(self, step: ShedStep, ok: bool, error: str | None, now: float) -> None:
        action = "priority.shed" if step.stage != NONE else "priority.restore"
        details = {**asdict(step), "ok": ok, "error": error}
        if not ok:
            log.warning("%s %s of %s on %s failed: %s", action, step.action, step.session, step.node, error)
        await self.ctx.records.kv_set_audited(SHEDDING_KEY, self.shedder.export_state(), (now, CONSOLE, action, details))
        self.ctx.publish(action, **details)
