"""The healing loop carried out: triggers (error spikes, critical notices, deploys, agent upgrades,
nodes back online), cycles when due, the dispatch of the tasks they create, and the approvals and
rejections queued from the CLI (`heady healing approve|reject`)."""

from __future__ import annotations

from collections import deque
from heady_agent.protocol import Metrics
from heady_tui.engine.consent import grantor
from heady_tui.engine.healing import (HealingCycle, HealingEngine, HealingError, HealingInput, NodeHealth,
                                     SessionHealth, Task, WeakPoint, awaiting_approval, by_severity)

from .cost_ledger import CostLedger
from .host import CONSOLE, BrainContext

SKEW_SAMPLES = 10  # clock skew = the least-delayed of the node's last metrics frames
CYCLES_KEPT = 50


class HealingDispatcher:
    def __init__(self, ctx: BrainContext, engine: HealingEngine, ledger: CostLedger) -> None:
        self.ctx = ctx
        self.engine = engine
        self.ledger = ledger
        self._cycles: deque[HealingCycle] = deque(maxlen=CYCLES_KEPT)
        self._skew: dict[str, deque[float]] = {}
        self._versions: dict[str, str] = {}
        self._came_back: list[str] = []

    async def load(self) -> None:
        """The tasks as recorded (at a takeover, and each tick of a view-only brain)."""
        saved = await self.ctx.records.tasks()
        self.engine.tasks.clear()
        self.engine.restore(saved)

    # --- what the brain is fed ----------------------------------------------------------

    def on_metrics(self, node_id: str, frame: Metrics) -> None:
        skew = self._skew.get(node_id)
        if skew is None:
            skew = self._skew[node_id] = deque(maxlen=SKEW_SAMPLES)
        skew.append(frame.ts - self.ctx.clock.now())

    def on_node_status(self, node_id: str, status: str) -> None:
        if status == "online":
            self._came_back.append(node_id)

    # --- reads and operator actions -----------------------------------------------------

    def tasks(self) -> list[Task]:
        return sorted(self.engine.tasks.values(), key=lambda t: t.created)

    def awaiting_approval(self) -> list[Task]:
        """The approvals queue: the highest priority first, then the oldest."""
        return awaiting_approval(self.engine.tasks.values())

    def weak_points(self) -> list[WeakPoint]:
        """The open ones, critical first, then the longest open."""
        return by_severity([wp for wp in self.engine.weak_points.values() if wp.state == "open"])

    def cycles(self, limit: int = CYCLES_KEPT) -> list[HealingCycle]:
        return list(self._cycles)[-limit:]

    async def approve(self, task_id: str, actor: str | None = None) -> Task:
        task = self.engine.approve(task_id, self.ctx.clock.now())
        await self._task_event("task.dispatched", task, audit_action="task.dispatch", actor=actor or grantor())
        await self._dispatch(task)
        return task

    async def reject(self, task_id: str, actor: str | None = None) -> Task:
        task = self.engine.reject(task_id, self.ctx.clock.now())
        await self._task_event("task.failed", task, audit_action="task.result", actor=actor or grantor())
        return task

    async def decisions(self) -> None:
        """Carry out the approvals and rejections queued from the CLI, as their operator's. One the task
        no longer waits for (it expired, or the console decided first) is recorded as refused."""
        for d in await self.ctx.records.take_task_decisions():
            decide = self.approve if d["decision"] == "approve" else self.reject
            try:
                await decide(d["task"], d["actor"])
            except HealingError as exc:
                now = self.ctx.clock.now()
                await self.ctx.records.audit(now, d["actor"], "task.decision_refused",
                                             {"task": d["task"], "decision": d["decision"], "error": str(exc)})
                self.ctx.publish("task.decision_refused", task=d["task"], decision=d["decision"], error=str(exc))

    async def notify_deploy(self, node: str | None = None) -> None:
        await self.ctx.records.notify_deploy(self.ctx.clock.now(), node, "console", grantor())

    # --- each tick ----------------------------------------------------------------------

    async def deploys(self, now: float) -> None:
        for notice in await self.ctx.records.take_deploy_notices():
            self.engine.trigger(f"deploy on {notice['node'] or 'all nodes'}")
        for n in self.ctx.host.fleet.nodes.values():
            old = self._versions.get(n.id)
            if n.agent_version and old and old != n.agent_version:
                self.engine.trigger(f"agent {old} -> {n.agent_version} on {n.id}")
            if n.agent_version:
                self._versions[n.id] = n.agent_version

    def _healing_input(self, now: float) -> HealingInput:
        fleet = self.ctx.host.fleet
        nodes = tuple(
            NodeHealth(n.id, n.status, n.since, n.metrics.ts if n.metrics else None, n.agent_version,
                       max(self._skew[n.id]) if self._skew.get(n.id) else None)
            for n in fleet.nodes.values()
        )
        sessions = []
        for s in fleet.sessions.values():
            calls = self.ledger.session_calls.summary(s.key, now)
            sessions.append(SessionHealth(s.node, s.id, s.state, s.active, s.managed, calls.provider, s.last_event_at, calls,
                                          self.ledger.session_tests.summary(s.key, now)))
        providers = self.ledger.window(now).by_provider
        cost = self.ledger.cost
        return HealingInput(now, nodes, tuple(sessions), providers, cost.projected_today(now), cost.daily_budget_usd)

    async def heal(self, now: float) -> None:
        await self.decisions()
        for node in self._came_back:
            for task in self.engine.node_back(node, now):
                await self._task_event("task.done", task, audit_action="task.result")
        self._came_back.clear()
        kind = self.engine.due(now)
        if kind is None:
            return
        before = {t.id: t.state for t in self.engine.tasks.values()}
        cycle = self.engine.run_cycle(self._healing_input(now), kind)
        self._cycles.append(cycle)
        await self.ctx.records.save_cycle(cycle.id, cycle.at, cycle.kind, cycle.to_dict(), cycle.weak_points)
        self.ctx.publish("healing.cycle", cycle=cycle.id, kind=cycle.kind, weak_points=len(cycle.weak_points),
                         tasks=len(cycle.tasks_created), summary=cycle.summary)
        for wp_id in cycle.critical:
            wp = next(w for w in self.engine.weak_points.values() if w.id == wp_id)
            self.ctx.publish("healing.critical", weak_point=wp.id, subject=wp.subject, node=wp.node, strategy=wp.strategy,
                             analyzer=wp.analyzer, issues=list(wp.issues))
        for task_id in cycle.tasks_created:
            await self._task_event("task.created", self.engine.tasks[task_id])
        for task in self.engine.tasks.values():
            if task.state == "expired" and before.get(task.id) in ("suggested", "pending-approval", "dispatched"):
                await self._task_event("task.failed", task, audit_action="task.result")
        for task_id in cycle.dispatch:
            task = self.engine.tasks[task_id]
            await self._task_event("task.dispatched", task, audit_action="task.dispatch")
            await self._dispatch(task)
        for task_id in cycle.recovered:
            await self._resume_backed_off(self.engine.tasks[task_id])

    # --- dispatch -----------------------------------------------------------------------

    async def _dispatch(self, task: Task) -> None:
        """Carry out a dispatched task's commands; revive_agent waits for its node to come back."""
        now = self.ctx.clock.now()
        if task.strategy == "revive_agent":
            if task.node is not None:
                await self.ctx.host.reconnect(task.node)
            return
        if task.strategy == "repair_endpoint":
            await self._back_off(task)
            return
        if not task.commands:
            # A recommendation only: nothing was done, so the task did not succeed; the reason is the advice.
            self.engine.finish(task.id, False, f"heady cannot act on this: {task.recommendation}", now)
            await self._task_event("task.failed", task, audit_action="task.result")
            return
        for cmd in task.commands:
            ok, error, _ = await self.ctx.command(cmd["node"], cmd["action"], cmd.get("target"), cmd.get("args", {}))
            if not ok:
                self.engine.finish(task.id, False, f"{cmd['action']} on {cmd['node']} failed: {error}", now)
                await self._task_event("task.failed", task, audit_action="task.result")
                return
        self.engine.finish(task.id, True, f"{len(task.commands)} command(s) ok", now)
        await self._task_event("task.done", task, audit_action="task.result")

    async def _back_off(self, task: Task) -> None:
        """repair_endpoint: pause the provider's running sessions; the task waits for the provider to recover."""
        paused, failed = [], []
        for cmd in task.commands:
            ok, error, _ = await self.ctx.command(cmd["node"], cmd["action"], cmd.get("target"), cmd.get("args", {}))
            if ok:
                paused.append(cmd)
            else:
                failed.append(f"{cmd['node']}/{cmd.get('target')}: {error}")
        self.engine.backed_off(task.id, paused, failed, self.ctx.clock.now())
        if task.state == "dispatched":
            await self.ctx.records.save_task(task.to_dict())  # the sessions to resume survive a restart
        else:
            await self._task_event(f"task.{task.state}", task, audit_action="task.result")

    async def _resume_backed_off(self, task: Task) -> None:
        """The provider recovered (or the task expired waiting): resume what repair_endpoint paused."""
        failed = []
        for cmd in task.on_recovery:
            ok, error, _ = await self.ctx.command(cmd["node"], cmd["action"], cmd.get("target"), cmd.get("args", {}))
            if not ok:
                failed.append(f"{cmd['node']}/{cmd.get('target')}: {error}")
        expired = task.state == "expired"
        self.engine.resumed(task.id, failed, self.ctx.clock.now())
        if expired:
            await self.ctx.records.save_task(task.to_dict(), audit_action="task.result", now=self.ctx.clock.now(), actor=CONSOLE)
        else:
            await self._task_event("task.done", task, audit_action="task.result")

    async def _task_event(self, name: str, task: Task, *, audit_action: str | None = None, actor: str = CONSOLE) -> None:
        await self.ctx.records.save_task(task.to_dict(), audit_action=audit_action, now=self.ctx.clock.now(), actor=actor)
        self.ctx.publish(name, task=task.id, strategy=task.strategy, node=task.node, subject=task.subject, state=task.state,
                         priority=task.priority)
