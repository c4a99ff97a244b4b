"""A rebalance run from plan to stop: planned when the equilibrium turns critical, started on a grant
(or asked for), stepped once per tick with every change journalled before it is sent, stopped and
reverted, and recovered after a console crash."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from heady_agent.protocol import REVERSIBLE
from heady_tui.engine.consent import Grant
from heady_tui.engine.detector import EquilibriumDetector, EquilibriumReading
from heady_tui.engine.rebalance import (
    BYTES_PER_MB,
    NodeView,
    PlannedAction,
    RebalancePlan,
    RebalanceRun,
    RebalanceStatus,
    SessionView,
    build_plan,
    may_receive,
    revert_of,
)
from heady_tui.records import QueueTransit

from .consent import Approval, ConsentDesk
from .cost_ledger import CostLedger
from .host import CONSOLE, BrainContext, Outcome

log = logging.getLogger("heady.brain")


class RebalanceRunner:
    def __init__(self, ctx: BrainContext, detector: EquilibriumDetector, consent: ConsentDesk, ledger: CostLedger) -> None:
        self.ctx = ctx
        self.detector = detector
        self.consent = consent
        self.ledger = ledger
        self.run: RebalanceRun | None = None
        self.last_run: RebalanceStatus | None = None
        self.peak_cpu_percent = 0.0  # highest node CPU seen during the current run, stored when it stops
        self._change_seq = 0
        self._recovering: list[dict[str, Any]] = []
        self._recover_runs: list[str] = []
        self._recovered: dict[str, int] = {}  # run id -> changes reverted since this console started
        self._transit: list[QueueTransit] = []  # queued items no node holds, to be placed
        self._transit_retry_at: dict[tuple[str, int], float] = {}

    async def load(self) -> None:
        """Runs that never stopped (a console crash): their reversible changes are reverted once nodes are back."""
        self._recover_runs = await self.ctx.records.open_runs()
        self._recovering = await self.ctx.records.unreverted_changes()
        self._transit = await self.ctx.records.queue_transit()
        self._transit_retry_at = {}

    @property
    def running(self) -> bool:
        return self.run is not None and self.run.running

    def status(self) -> RebalanceStatus | None:
        return self.run.status if self.run is not None else self.last_run

    def node_views(self) -> list[NodeView]:
        by_node = self.ledger.window(self.ctx.clock.now()).by_node
        drained = {ch["node"] for ch in self._applied_changes() if ch["action"] == "node.drain"}
        fleet = self.ctx.host.fleet
        views = []
        for n in fleet.nodes.values():
            m = n.metrics
            sessions = tuple(SessionView(s.id, s.state, s.managed, s.nice, s.priority) for s in fleet.node_sessions(n.id) if s.active)
            calls, failed = by_node.get(n.id, (0, 0))
            views.append(NodeView(
                node=n.id,
                online=n.status == "online" and m is not None,
                cpu_percent=m.cpu if m else 0.0,
                mem_available_mb=(m.mem_available / BYTES_PER_MB) if m and m.mem_available else float(n.mem_total) / BYTES_PER_MB,
                utilisation=(m.load[0] / max(1, n.cpu_count)) if m else 0.0,
                queue_depth=m.queue_depth if m else 0,
                error_rate=failed / calls if calls else None,
                drained=n.id in drained,
                running_managed=sum(1 for s in sessions if s.managed and s.state == "running"),
                sessions=sessions,
                metrics_only=n.metrics_only,
            ))
        return views

    def _applied_changes(self) -> list[dict[str, Any]]:
        return self.run.status.step_results if self.run is not None and self.run.running else []

    async def step(self, reading: EquilibriumReading, now: float) -> None:
        """One tick: advance or stop the run; with none, plan one when the level is critical."""
        if self.run is not None and self.run.running:
            self.peak_cpu_percent = max([self.peak_cpu_percent, *(v.cpu_percent for v in self.node_views())])
            reason = self.run.observe(reading.level, now)
            if reason is not None:
                await self.stop_run(reason, now)
                return
            step = self.run.next_step(now)
            if step is not None:
                await self._apply_step(step, now)
            return
        config = self.ctx.config
        cfg = config.rebalance
        if not cfg.enabled or reading.level != "critical":
            return
        plan = build_plan(self.node_views(), reading.values(), config.detector, cfg)
        if not plan.actions:
            return
        fp = plan.fingerprint
        if await self.consent.denied(fp, now):
            return
        g = await self.consent.take_grant(fp, now)
        if g is not None:
            await self._start_run(plan, g, now)
            return
        if cfg.auto_activate:
            await self._start_run(plan, None, now)
            return
        reason = f"equilibrium critical ({', '.join(f'{k}={v:g}' for k, v in reading.breaches().items())}): {plan.priority} rebalance"
        await self.consent.ask(plan, reason, now)

    async def start_approved(self, approval: Approval, now: float) -> bool:
        """Run the plan the operator allowed, exactly as shown. False when a run is already going
        (the grant stays for a later plan it covers) or the grant no longer covers the plan."""
        if self.running or not await self.consent.use(approval, now):
            return False
        await self._start_run(approval.plan, approval.grant, now)
        return True

    async def _start_run(self, plan: RebalancePlan, g: Grant | None, now: float) -> None:
        caps = plan.caps.tightest(g.caps if g else None)
        plan = replace(plan, caps=caps) if caps != plan.caps else plan
        run_id = f"run-{secrets.token_hex(4)}"
        self.run = RebalanceRun(run_id, plan, g.id if g else None, now, self.ctx.config.rebalance)
        self.peak_cpu_percent = max([0.0, *(v.cpu_percent for v in self.node_views())])
        self._change_seq = 0
        await self.ctx.records.run_started(run_id, self.run.status.grant_id, plan.priority, now, plan.to_dict(),
                                           g.grantor if g else CONSOLE)
        self.ctx.publish("rebalance.started", run=run_id, grant=self.run.status.grant_id, priority=plan.priority,
                         actions=[a.note for a in plan.actions])
        step = self.run.next_step(now)
        if step is not None:
            await self._apply_step(step, now)

    async def _journalled(self, run_id: str, node: str, action: str, target: str | None, args: dict[str, Any],
                          planned: PlannedAction, now: float) -> Outcome:
        assert self.run is not None
        records = self.ctx.records
        self._change_seq += 1
        seq = self._change_seq
        await records.journal_change(run_id, seq, node, action, target, args)
        ok, error, detail = await self.ctx.command(node, action, target, args)
        revert_action, revert_args = revert_of(action, target, args, detail, planned) if ok else (None, {})
        step = {"action": action, "node": node, "target": target, "ok": ok, "error": error, "note": planned.note}
        await records.change_applied(run_id, seq, ok, revert_action, revert_args, step, now=now, actor=CONSOLE)
        self.run.status.step_results.append(step)
        self.ctx.publish("rebalance.step", run=run_id, action=action, node=node, target=target, ok=ok, error=error)
        return ok, error, detail

    async def _apply_step(self, step: PlannedAction, now: float) -> None:
        assert self.run is not None
        run_id = self.run.status.run_id
        if step.kind != "move":
            args: dict[str, Any] = {}
            if step.kind == "concurrency":
                args = {"value": step.value}
            elif step.kind == "renice":
                args = {"nice": step.value}
            await self._journalled(run_id, step.node, step.action, step.target, args, step, now)
            return
        # A move: take items off the source, offer them to the target, hand back whatever it rejects.
        views = {v.node: v for v in self.node_views()}
        target = views.get(step.to_node or "")
        why = may_receive(target, self.run.status.plan.caps) if target is not None else "unknown node"
        if why is not None:
            self.run.status.step_results.append({"action": "queue.move", "node": step.node, "target": step.to_node, "ok": False,
                                                 "error": f"skipped: {step.to_node} may not receive work ({why})"})
            self.ctx.publish("rebalance.step", run=run_id, action="queue.move", node=step.node, target=step.to_node,
                             ok=False, error=f"skipped: {why}")
            return
        ok, _, detail = await self._journalled(run_id, step.node, "queue.move", None, {"count": step.count}, step, now)
        items = detail.get("items", []) if ok else []
        if not items:
            return
        # From here until a node accepts them the items exist only in this console: recorded first, so a
        # crash before the target's answer leaves them to `recover` instead of losing them.
        target_node = step.to_node or ""
        transit = QueueTransit(run_id, self._change_seq, step.node, target_node, target_node, items, now)
        await self.ctx.records.transit_taken(transit)
        ok, error, detail = await self._journalled(run_id, target_node, "queue.accept", None, {"items": items}, step, now)
        rejected = detail.get("rejected", []) if ok else items
        if not rejected:
            await self.ctx.records.transit_placed(run_id, transit.seq)
            return
        transit = replace(transit, heading=step.node, items=rejected)
        await self.ctx.records.transit_heading(transit)
        back_ok, back_error, back = await self._journalled(run_id, step.node, "queue.accept", None, {"items": rejected}, step, now)
        left = back.get("rejected", []) if back_ok else rejected
        if not left:
            await self.ctx.records.transit_placed(run_id, transit.seq)
            return
        log.error("rebalance %s: %d items could not be handed back to %s (%s); offered again later",
                  run_id, len(left), step.node, back_error or "rejected")
        transit = replace(transit, items=left)
        await self.ctx.records.transit_heading(transit)
        self._transit.append(transit)

    async def stop_run(self, reason: str, now: float) -> None:
        assert self.run is not None
        records = self.ctx.records
        run = self.run
        reverted = 0
        for ch in await records.unreverted_changes(run.status.run_id):
            if await self._revert(ch):
                reverted += 1
        restored = reason == "balanced" or self.detector.level == "balanced"
        status = run.stop(reason, now, restored=restored, reverted=reverted)
        duration = now - status.started_at
        await records.run_stopped(status.run_id, now=now, reason=reason, restored=restored,
                                  time_to_restore_s=status.time_to_restore_s, reverted=reverted, duration_s=duration, actor=CONSOLE,
                                  peak_cpu_percent=self.peak_cpu_percent)
        self.ctx.publish("rebalance.stopped", run=status.run_id, reason=reason, restored=restored, duration_s=duration, reverted=reverted)
        self.last_run, self.run = status, None

    def abandon(self) -> None:
        """Another brain took the fleet over: forget the run in hand without reverting it; its open
        record is the new holder's to recover."""
        if self.run is not None:
            self.last_run, self.run = self.run.status, None
        self._recovering, self._recover_runs, self._recovered = [], [], {}
        self._transit, self._transit_retry_at = [], {}

    async def revoked(self, grant_id: str, now: float) -> None:
        """A grant was revoked: the run it started stops."""
        if self.run is not None and self.run.running and self.run.status.grant_id == grant_id:
            await self.stop_run("revoked", now)

    async def _revert(self, ch: Mapping[str, Any]) -> bool:
        action = ch["revert_action"] or REVERSIBLE.get(ch["action"])
        if action is None:
            return False
        args = ch["revert_args"]
        if "per_managed" in args:
            oks = [(await self.ctx.command(ch["node"], action, ch["target"], {"value": v, "managed": m}))[0]
                   for m, v in args["per_managed"].items()]
            ok = all(oks)
        else:
            ok, error, _ = await self.ctx.command(ch["node"], action, ch["target"], args)
            if not ok:
                log.warning("revert %s on %s failed: %s", action, ch["node"], error)
        if ok:
            await self.ctx.records.change_reverted(ch["run_id"], ch["seq"], now=self.ctx.clock.now(), actor=CONSOLE, details={
                "node": ch["node"], "action": action, "target": ch["target"], "args": args, "ok": ok, "reverts": ch["action"]})
        return ok

    async def recover(self, now: float) -> None:
        """After a crash: place the queued items a run left in transit, revert what it left applied
        once its node is online, then close the run."""
        await self._place_transit(now)
        if not self._recover_runs:
            return
        online = {n.id for n in self.ctx.host.fleet.online_nodes()}
        waiting = []
        for ch in self._recovering:
            if ch["node"] not in online or not await self._revert(ch):
                waiting.append(ch)
            else:
                self._recovered[ch["run_id"]] = self._recovered.get(ch["run_id"], 0) + 1
        self._recovering = waiting
        for run_id in list(self._recover_runs):
            if any(ch["run_id"] == run_id for ch in waiting):
                continue
            self._recover_runs.remove(run_id)
            reverted = self._recovered.pop(run_id, 0)
            await self.ctx.records.run_stopped(run_id, now=now, reason="crashed", restored=False, time_to_restore_s=None,
                                               reverted=reverted, duration_s=0.0, actor=CONSOLE)
            self.ctx.publish("rebalance.stopped", run=run_id, reason="crashed", restored=False, duration_s=0.0, reverted=reverted)

    async def _place_transit(self, now: float) -> None:
        """Offer items in transit to where they were heading (a move's target, or back to its source),
        then to the other node; what neither takes is offered again a step interval later. An offer
        whose answer a crash lost is made again: an item may then run twice, never be lost."""
        if not self._transit:
            return
        online = {n.id for n in self.ctx.host.fleet.online_nodes()}
        waiting = []
        for t in self._transit:
            key = (t.run_id, t.seq)
            if now < self._transit_retry_at.get(key, 0.0):
                waiting.append(t)
                continue
            remaining = t.items
            placed: dict[str, int] = {}
            other = t.source if t.heading == t.target else t.target
            for node in (t.heading, other):
                if not remaining or node not in online:
                    continue
                ok, error, detail = await self.ctx.command(node, "queue.accept", None, {"items": remaining})
                self.ctx.publish("rebalance.step", run=t.run_id, action="queue.accept", node=node, target=None, ok=ok, error=error)
                if ok:
                    rejected = detail.get("rejected", [])
                    if len(rejected) < len(remaining):
                        placed[node] = len(remaining) - len(rejected)
                    remaining = rejected
            if placed:
                await self.ctx.records.transit_reconciled(t, placed, remaining, now=now, actor=CONSOLE)
            if remaining:
                self._transit_retry_at[key] = now + self.ctx.config.rebalance.step_interval_s
                waiting.append(replace(t, items=remaining))
            else:
                self._transit_retry_at.pop(key, None)
        self._transit = waiting
