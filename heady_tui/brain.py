"""The Brain: holds the engines, is fed every stored frame, ticked by the supervisor, applies
decisions through `supervisor.command`, and writes the audit chain. It is the one place the UI,
the reports and the CLI read and act through (docs/internals.md; types in docs/engines.md).
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections import deque
from dataclasses import replace
from typing import Any

from heady_agent.protocol import REVERSIBLE, Event, LlmCallData, Metrics
from heady_tui.audit import AuditEntry, Verification, canonical
from heady_tui.engine.consent import (
    DECISIONS,
    ConsentError,
    ConsentRequest,
    Grant,
    grantor,
    new_denial,
    new_grant,
    new_request,
    snoozed,
    usable_grant,
)
from heady_tui.engine.cost import CostSummary, CostTracker, PricingTable
from heady_tui.engine.detector import CallWindow, EquilibriumDetector, EquilibriumReading, NodeSample, WindowStats
from heady_tui.engine.healing import (
    HealingEngine,
    HealingInput,
    NodeHealth,
    SessionCallWindows,
    SessionHealth,
    Task,
    WeakPoint,
)
from heady_tui.engine.policies import NeedsAttention, PolicyEngine, SessionSnapshot
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
from heady_tui.records import Records

log = logging.getLogger("heady.brain")
SKEW_SAMPLES = 10  # clock skew = the least-delayed of the node's last metrics frames
CYCLES_KEPT = 50
CONSOLE = "console"  # actor of automatic decisions in the audit chain


class Brain:
    def __init__(self, supervisor: Any) -> None:
        self.supervisor = supervisor
        self.clock = supervisor.clock
        self.config = supervisor.config
        self.pricing = PricingTable.load(self.config.cost)
        supervisor.fleet.pricer = self.pricing.cost
        self.detector = EquilibriumDetector(self.config.detector)
        self.policies = PolicyEngine(self.config.policies)
        self.healing = HealingEngine(self.config.healing)
        self.cost = CostTracker.from_config(self.config.cost, self.pricing.date)
        # Recent calls, kept up to date frame by frame so a tick reads windows instead of rescanning calls.
        self.calls = CallWindow(keep_s=self.config.detector.window_s)
        self.session_calls = SessionCallWindows(max(self.config.detector.window_s, self.config.healing.full_interval_s))
        self._window_stats: tuple[float, WindowStats] | None = None
        self.records: Records | None = None
        self.run: RebalanceRun | None = None
        self.last_run: RebalanceStatus | None = None
        self._requests: dict[str, ConsentRequest] = {}
        self._grants: list[Grant] = []
        self._cycles: deque[dict[str, Any]] = deque(maxlen=CYCLES_KEPT)
        self._skew: dict[str, deque[float]] = {}
        self._versions: dict[str, str] = {}
        self._came_back: list[str] = []
        self._recovering: list[dict[str, Any]] = []
        self._recover_runs: list[str] = []
        self._recovered: dict[str, int] = {}  # run id -> changes reverted since this console started
        self._saved_detector: dict[str, Any] | None = None
        self._change_seq = 0
        self._errors_high = False
        self.started = False

    @property
    def fleet(self) -> Any:
        return self.supervisor.fleet

    # --- lifecycle --------------------------------------------------------------------

    async def start(self) -> None:
        self.records = await Records.open(self.supervisor.store, self.supervisor.paths.audit_anchor)
        saved = await self.records.kv_get("detector")
        if isinstance(saved, dict):
            self.detector.import_state(saved)
            self._saved_detector = saved
        self.policies.load(await self.records.policy_states())
        self.healing.restore(await self.records.tasks())
        self.cost.notices_sent = await self.records.budget_notices_sent()
        await self._load_costs()
        self._grants = await self.records.grants()
        for r in await self.records.requests(state="requested"):
            self._requests[r.id] = r
        config_hash = hashlib.sha256(canonical(self.config.model_dump(mode="json")).encode()).hexdigest()
        await self.records.config_hash_check(config_hash, self.clock.now(), grantor())
        # Runs that never stopped (a console crash): their reversible changes are reverted once nodes are back.
        self._recover_runs = await self.records.open_runs()
        self._recovering = await self.records.unreverted_changes()
        self.started = True

    async def _load_costs(self) -> None:
        """Month-to-date costs from the stored calls, so totals and budgets survive a restart; the
        latest of them also refill the detector's and the healing loop's windows."""
        assert self.records is not None
        now = self.clock.now()
        month_start = now - 32 * 86400
        recent = now - self.session_calls.keep_s
        for ev in await self.supervisor.store.calls(month_start):
            try:
                call = LlmCallData.model_validate(ev.data)
            except ValueError:
                continue
            self._add_call(ev.node, ev.session, ev.ts, call, windows=ev.ts >= recent)

    def _add_call(self, node: str, session: str | None, ts: float, call: LlmCallData, *, windows: bool) -> None:
        cost, known = self.pricing.cost(call)
        rec = self.fleet.sessions.get((node, session)) if session else None
        self.cost.add(ts=ts, node=node, session=session, project=rec.project if rec else None, model=call.model, cost_usd=cost, known=known)
        if not windows:
            return
        self.calls.add(ts, call.latency_ms, call.ok, node, call.provider)
        self._window_stats = None
        if session is not None:
            self.session_calls.add((node, session), ts, call.latency_ms, call.ok, call.input_tokens + call.output_tokens, cost,
                                   call.provider)

    def on_frame(self, node_id: str, frame: Any, data: Any = None) -> None:
        """A stored frame; `data` is the event's data already validated (the fleet's), else it is validated here."""
        if isinstance(frame, Metrics):
            skew = self._skew.get(node_id)
            if skew is None:
                skew = self._skew[node_id] = deque(maxlen=SKEW_SAMPLES)
            skew.append(frame.ts - self.clock.now())
        elif isinstance(frame, Event):
            if frame.kind == "llm.call":
                if not isinstance(data, LlmCallData):
                    try:
                        data = LlmCallData.model_validate(frame.data)
                    except ValueError:
                        return
                # A replay of calls older than the windows only adds to the cost totals.
                self._add_call(node_id, frame.session, frame.ts, data,
                               windows=frame.ts >= self.clock.now() - self.session_calls.keep_s)
                self.healing.count_calls(1)
            elif frame.kind == "agent.notice" and frame.data.get("severity") == "critical":
                self.healing.trigger(f"critical notice from {node_id}")

    def on_node_status(self, node_id: str, status: str) -> None:
        if status == "online":
            self._came_back.append(node_id)

    async def stop(self) -> None:
        if self.run is not None and self.run.running and self.records is not None:
            await self._stop_run("stopped", self.clock.now())
        self.started = False

    # --- the tick ---------------------------------------------------------------------

    async def tick(self) -> None:
        if self.records is None:
            return
        now = self.clock.now()
        reading = await self._evaluate(now)
        errors = reading.metrics["error_rate"].value
        high = errors is not None and errors >= self.config.healing.trigger_error_rate
        if high and not self._errors_high:
            self.healing.trigger(f"error rate {errors:.0%}")
        self._errors_high = high
        await self._recover(now)
        await self._expire_requests(now)
        await self._rebalance(reading, now)
        await self._run_policies(now)
        await self._deploys(now)
        await self._heal(now)
        await self._budgets(now)

    async def _evaluate(self, now: float) -> EquilibriumReading:
        assert self.records is not None
        nodes = []
        for n in self.fleet.nodes.values():
            m = n.metrics
            nodes.append(NodeSample(n.id, n.status == "online", m.load[0] if m else None, n.cpu_count, m.queue_depth if m else 0, m.ts if m else None))
        reading, change = self.detector.evaluate(now, nodes, self._window(now))
        state = self.detector.export_state()
        if change is not None or reading.metric_changes:
            await self.records.level_changes_made(change, reading.metric_changes, state)
        elif state != self._saved_detector:
            await self.records.kv_set("detector", state)
        self._saved_detector = state
        if change is not None:
            self.supervisor.publish("equilibrium.level", level=change.level, previous=change.previous, metrics=change.metrics)
        return reading

    # --- consent ----------------------------------------------------------------------

    def pending_consent(self) -> list[ConsentRequest]:
        return sorted((r for r in self._requests.values() if r.state == "requested"), key=lambda r: r.created)

    async def decide_consent(self, request_id: str, decision: str) -> Grant | None:
        """deny | single | session | persistent. Returns the grant made, or None for a denial."""
        assert self.records is not None
        if decision not in DECISIONS:
            raise ConsentError(f"unknown decision {decision!r} (known: {', '.join(DECISIONS)})")
        req = self._requests.get(request_id)
        if req is None or req.state != "requested":
            raise ConsentError(f"no open consent request {request_id!r}")
        now = self.clock.now()
        by = grantor()
        req.decided_at, req.decision = now, decision
        if decision == "deny":
            denial = new_denial(req.fingerprint, now=now, config=self.config.consent, reason=req.reason, by=by)
            req.state = "denied"
            await self.records.add_denial(denial, req.id)
            self.supervisor.publish("consent.denied", request=req.id, grantor=by, snooze_until=denial.snooze_until)
            return None
        g = new_grant(decision, now=now, config=self.config.consent, reason=req.reason, caps=req.plan.get("caps"),
                      by=by, fingerprint=req.fingerprint)
        await self.records.add_grant(g, actor=by, now=now)
        req.state, req.grant_id = "granted", g.id
        await self.records.save_request(req)
        self._grants = await self.records.grants()
        self.supervisor.publish("consent.granted", request=req.id, grant=g.id, scope=g.scope, grantor=by)
        return g

    def grants(self, include_inactive: bool = False) -> list[Grant]:
        now = self.clock.now()
        return [g for g in self._grants if include_inactive or g.status(now) == "active"]

    async def grant(self, scope: str, reason: str) -> Grant:
        assert self.records is not None
        now = self.clock.now()
        g = new_grant(scope, now=now, config=self.config.consent, reason=reason)
        await self.records.add_grant(g, actor=g.grantor, now=now)
        self._grants = await self.records.grants()
        self.supervisor.publish("consent.granted", request=None, grant=g.id, scope=g.scope, grantor=g.grantor)
        return g

    async def revoke_grant(self, grant_id: str) -> Grant:
        assert self.records is not None
        now = self.clock.now()
        g = await self.records.revoke_grant(grant_id, actor=grantor(), now=now)
        self._grants = await self.records.grants()
        if self.run is not None and self.run.running and self.run.status.grant_id == grant_id:
            await self._stop_run("revoked", now)
        return g

    async def _expire_requests(self, now: float) -> None:
        assert self.records is not None
        for req in self.pending_consent():
            if now >= req.expires:
                req.state = "expired"
                await self.records.save_request(req)
                self.supervisor.publish("consent.expired", request=req.id)
        self._grants = await self.records.grants()  # grants made by `heady permissions` in another process

    # --- rebalance --------------------------------------------------------------------

    def rebalance_status(self) -> RebalanceStatus | None:
        return self.run.status if self.run is not None else self.last_run

    def _window(self, now: float) -> WindowStats:
        """The detector window's calls, read once per tick (the healing cycle and the plan reuse it)."""
        if self._window_stats is None or self._window_stats[0] != now:
            self._window_stats = (now, self.calls.stats(now, self.config.detector.window_s))
        return self._window_stats[1]

    def node_views(self) -> list[NodeView]:
        by_node = self._window(self.clock.now()).by_node
        drained = {ch["node"] for ch in self._applied_changes() if ch["action"] == "node.drain"}
        views = []
        for n in self.fleet.nodes.values():
            m = n.metrics
            sessions = tuple(SessionView(s.id, s.state, s.managed, s.nice) for s in self.fleet.node_sessions(n.id) if s.active)
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
            ))
        return views

    def _applied_changes(self) -> list[dict[str, Any]]:
        return self.run.status.step_results if self.run is not None and self.run.running else []

    async def _rebalance(self, reading: EquilibriumReading, now: float) -> None:
        assert self.records is not None
        if self.run is not None and self.run.running:
            reason = self.run.observe(reading.level, now)
            if reason is not None:
                await self._stop_run(reason, now)
                return
            step = self.run.next_step(now)
            if step is not None:
                await self._apply_step(step, now)
            return
        cfg = self.config.rebalance
        if not cfg.enabled or reading.level != "critical":
            return
        plan = build_plan(self.node_views(), reading.values(), self.config.detector, cfg)
        if not plan.actions:
            return
        fp = plan.fingerprint
        if snoozed(await self.records.denials(now - self.config.consent.deny_snooze_s), fp, now):
            return
        g = usable_grant(self._grants, fp, now)
        if g is not None and await self.records.use_grant(g.id, now, fp):
            self._grants = await self.records.grants()
            await self._start_run(plan, g, now)
            return
        if cfg.auto_activate:
            await self._start_run(plan, None, now)
            return
        open_requests = self.pending_consent()
        if any(r.fingerprint == fp for r in open_requests):
            return
        for stale in open_requests:  # the plan changed materially: the old question no longer applies
            stale.state = "expired"
            await self.records.save_request(stale)
            self.supervisor.publish("consent.expired", request=stale.id)
        reason = f"equilibrium critical ({', '.join(f'{k}={v:g}' for k, v in reading.breaches().items())}): {plan.priority} rebalance"
        req = new_request(plan.to_dict(), fp, now=now, config=self.config.consent, reason=reason)
        self._requests[req.id] = req
        await self.records.save_request(req)
        self.supervisor.publish("consent.requested", request=req.id, reason=reason, priority=plan.priority,
                                actions=[a.note for a in plan.actions])

    async def _start_run(self, plan: RebalancePlan, g: Grant | None, now: float) -> None:
        assert self.records is not None
        caps = plan.caps.tightest(g.caps if g else None)
        plan = replace(plan, caps=caps) if caps != plan.caps else plan
        run_id = f"run-{secrets.token_hex(4)}"
        self.run = RebalanceRun(run_id, plan, g.id if g else None, now, self.config.rebalance)
        self._change_seq = 0
        await self.records.run_started(run_id, self.run.status.grant_id, plan.priority, now, plan.to_dict(), g.grantor if g else CONSOLE)
        self.supervisor.publish("rebalance.started", run=run_id, grant=self.run.status.grant_id, priority=plan.priority,
                                actions=[a.note for a in plan.actions])
        step = self.run.next_step(now)
        if step is not None:
            await self._apply_step(step, now)

    async def _command(self, node: str, action: str, target: str | None, args: dict[str, Any]) -> tuple[bool, str | None, dict[str, Any]]:
        result = await self.supervisor.command(node, action, target, args)
        return result.ok, result.error, dict(result.detail)

    async def _journalled(self, run_id: str, node: str, action: str, target: str | None, args: dict[str, Any],
                          planned: PlannedAction, now: float) -> tuple[bool, str | None, dict[str, Any]]:
        assert self.records is not None and self.run is not None
        self._change_seq += 1
        seq = self._change_seq
        await self.records.journal_change(run_id, seq, node, action, target, args)
        ok, error, detail = await self._command(node, action, target, args)
        revert_action, revert_args = revert_of(action, target, args, detail, planned) if ok else (None, {})
        step = {"action": action, "node": node, "target": target, "ok": ok, "error": error, "note": planned.note}
        await self.records.change_applied(run_id, seq, ok, revert_action, revert_args, step, now=now, actor=CONSOLE)
        self.run.status.step_results.append(step)
        self.supervisor.publish("rebalance.step", run=run_id, action=action, node=node, target=target, ok=ok, error=error)
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
            self.supervisor.publish("rebalance.step", run=run_id, action="queue.move", node=step.node, target=step.to_node,
                                    ok=False, error=f"skipped: {why}")
            return
        ok, _, detail = await self._journalled(run_id, step.node, "queue.move", None, {"count": step.count}, step, now)
        items = detail.get("items", []) if ok else []
        if not items:
            return
        ok, error, detail = await self._journalled(run_id, step.to_node or "", "queue.accept", None, {"items": items}, step, now)
        rejected = detail.get("rejected", []) if ok else items
        if rejected:
            back_ok, back_error, _ = await self._journalled(run_id, step.node, "queue.accept", None, {"items": rejected}, step, now)
            if not back_ok:
                log.error("rebalance %s: %d items could not be handed back to %s: %s", run_id, len(rejected), step.node, back_error)

    async def _stop_run(self, reason: str, now: float) -> None:
        assert self.records is not None and self.run is not None
        run = self.run
        reverted = 0
        for ch in await self.records.unreverted_changes(run.status.run_id):
            if await self._revert(ch):
                reverted += 1
        restored = reason == "balanced" or self.detector.level == "balanced"
        status = run.stop(reason, now, restored=restored, reverted=reverted)
        duration = now - status.started_at
        await self.records.run_stopped(status.run_id, now=now, reason=reason, restored=restored,
                                       time_to_restore_s=status.time_to_restore_s, reverted=reverted, duration_s=duration, actor=CONSOLE)
        self.supervisor.publish("rebalance.stopped", run=status.run_id, reason=reason, restored=restored, duration_s=duration, reverted=reverted)
        self.last_run, self.run = status, None

    async def _revert(self, ch: dict[str, Any]) -> bool:
        assert self.records is not None
        action = ch["revert_action"] or REVERSIBLE.get(ch["action"])
        if action is None:
            return False
        args = ch["revert_args"]
        if "per_managed" in args:
            oks = [(await self._command(ch["node"], action, ch["target"], {"value": v, "managed": m}))[0] for m, v in args["per_managed"].items()]
            ok = all(oks)
        else:
            ok, error, _ = await self._command(ch["node"], action, ch["target"], args)
            if not ok:
                log.warning("revert %s on %s failed: %s", action, ch["node"], error)
        if ok:
            await self.records.change_reverted(ch["run_id"], ch["seq"], now=self.clock.now(), actor=CONSOLE, details={
                "node": ch["node"], "action": action, "target": ch["target"], "args": args, "ok": ok, "reverts": ch["action"]})
        return ok

    async def _recover(self, now: float) -> None:
        """After a crash: revert what a run left applied, once its node is online; then close the run."""
        assert self.records is not None
        if not self._recover_runs:
            return
        online = {n.id for n in self.fleet.online_nodes()}
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
            await self.records.run_stopped(run_id, now=now, reason="crashed", restored=False, time_to_restore_s=None,
                                           reverted=reverted, duration_s=0.0, actor=CONSOLE)
            self.supervisor.publish("rebalance.stopped", run=run_id, reason="crashed", restored=False, duration_s=0.0, reverted=reverted)

    # --- policies ---------------------------------------------------------------------

    def needs_attention(self) -> list[NeedsAttention]:
        return self.policies.needs_attention()

    async def reset_policy(self, node: str, session: str, policy: str) -> bool:
        assert self.records is not None
        if not self.policies.reset(node, session, policy):
            return False
        st = self.policies.states[(node, session, policy)]
        await self.records.save_policy_state(st)
        await self.records.audit(self.clock.now(), grantor(), "policy.reset", {"node": node, "session": session, "policy": policy})
        return True

    async def _run_policies(self, now: float) -> None:
        assert self.records is not None
        held = self.policies.held()
        online = {n.id for n in self.fleet.online_nodes()}
        snaps = [SessionSnapshot(s.node, s.id, s.state, s.state_since, s.managed, s.cost_usd, s.active)
                 for s in self.fleet.sessions.values()
                 if s.node in online and (self.policies.watches(s.state, s.cost_usd) or s.key in held)]
        decisions, attention = self.policies.evaluate(snaps, now)
        for d in decisions:
            # The attempt is saved before the command goes out: a crash now never replays it.
            await self.records.save_policy_state(self.policies.states[(d.node, d.session, d.policy)])
            ok, error, _ = await self._command(d.node, d.action, d.session, d.args)
            st = self.policies.record_outcome(d, ok, error)
            await self.records.policy_action(at=now, policy=d.policy, node=d.node, session=d.session, action=d.action,
                                             attempt=d.attempt, outcome=st.last_outcome or "", state=st, actor=CONSOLE)
            self.supervisor.publish("policy.action", policy=d.policy, node=d.node, session=d.session, action=d.action,
                                    attempt=d.attempt, ok=ok, reason=d.reason, error=error)
        for a in attention:
            await self.records.save_policy_state(self.policies.states[(a.node, a.session, a.policy)])
            await self.records.audit(now, CONSOLE, "policy.needs_attention", {"policy": a.policy, "node": a.node, "session": a.session, "attempts": a.attempts})
            self.supervisor.publish("policy.needs_attention", policy=a.policy, node=a.node, session=a.session, attempts=a.attempts)

    # --- healing ----------------------------------------------------------------------

    def tasks(self) -> list[Task]:
        return sorted(self.healing.tasks.values(), key=lambda t: t.created)

    def weak_points(self) -> list[WeakPoint]:
        return [wp for wp in self.healing.weak_points.values() if wp.state == "open"]

    def healing_cycles(self, limit: int = CYCLES_KEPT) -> list[dict[str, Any]]:
        return list(self._cycles)[-limit:]

    async def approve_task(self, task_id: str) -> Task:
        task = self.healing.approve(task_id, self.clock.now())
        await self._task_event("task.dispatched", task, audit_action="task.dispatch", actor=grantor())
        await self._dispatch(task)
        return task

    async def reject_task(self, task_id: str) -> Task:
        task = self.healing.reject(task_id, self.clock.now())
        await self._task_event("task.failed", task, audit_action="task.result", actor=grantor())
        return task

    async def notify_deploy(self, node: str | None = None) -> None:
        assert self.records is not None
        await self.records.notify_deploy(self.clock.now(), node, "console", grantor())

    async def _deploys(self, now: float) -> None:
        assert self.records is not None
        for notice in await self.records.take_deploy_notices():
            self.healing.trigger(f"deploy on {notice['node'] or 'all nodes'}")
        for n in self.fleet.nodes.values():
            old = self._versions.get(n.id)
            if n.agent_version and old and old != n.agent_version:
                self.healing.trigger(f"agent {old} -> {n.agent_version} on {n.id}")
            if n.agent_version:
                self._versions[n.id] = n.agent_version

    def _healing_input(self, now: float) -> HealingInput:
        nodes = tuple(
            NodeHealth(n.id, n.status, n.since, n.metrics.ts if n.metrics else None, n.agent_version,
                       max(self._skew[n.id]) if self._skew.get(n.id) else None)
            for n in self.fleet.nodes.values()
        )
        sessions = []
        for s in self.fleet.sessions.values():
            calls = self.session_calls.summary(s.key, now)
            sessions.append(SessionHealth(s.node, s.id, s.state, s.active, s.managed, calls.provider, s.last_event_at, calls))
        providers = self._window(now).by_provider
        return HealingInput(now, nodes, tuple(sessions), providers, self.cost.projected_today(now), self.cost.daily_budget_usd)

    async def _heal(self, now: float) -> None:
        assert self.records is not None
        for node in self._came_back:
            for task in self.healing.node_back(node, now):
                await self._task_event("task.done", task, audit_action="task.result")
        self._came_back.clear()
        kind = self.healing.due(now)
        if kind is None:
            return
        before = {t.id: t.state for t in self.healing.tasks.values()}
        cycle = self.healing.run_cycle(self._healing_input(now), kind)
        body = cycle.to_dict()
        self._cycles.append(body)
        await self.records.save_cycle(cycle.id, cycle.at, cycle.kind, body, cycle.weak_points)
        self.supervisor.publish("healing.cycle", cycle=cycle.id, kind=cycle.kind, weak_points=len(cycle.weak_points),
                                tasks=len(cycle.tasks_created), summary=cycle.summary)
        for task_id in cycle.tasks_created:
            await self._task_event("task.created", self.healing.tasks[task_id])
        for task in self.healing.tasks.values():
            if task.state == "expired" and before.get(task.id) in ("suggested", "pending-approval", "dispatched"):
                await self._task_event("task.failed", task, audit_action="task.result")
        for task_id in cycle.dispatch:
            task = self.healing.tasks[task_id]
            await self._task_event("task.dispatched", task, audit_action="task.dispatch")
            await self._dispatch(task)
        for task_id in cycle.recovered:
            await self._resume_backed_off(self.healing.tasks[task_id])

    async def _dispatch(self, task: Task) -> None:
        """Carry out a dispatched task's commands; revive_agent waits for its node to come back."""
        now = self.clock.now()
        if task.strategy == "revive_agent":
            link = self.supervisor.links.get(task.node)
            if link is not None and link.status != "online":
                link.backoff.reset()
                await link.stop()
                link.start()
            return
        if task.strategy == "repair_endpoint":
            await self._back_off(task)
            return
        results = []
        for cmd in task.commands:
            ok, error, _ = await self._command(cmd["node"], cmd["action"], cmd.get("target"), cmd.get("args", {}))
            results.append(ok)
            if not ok:
                self.healing.finish(task.id, False, f"{cmd['action']} on {cmd['node']} failed: {error}", now)
                await self._task_event("task.failed", task, audit_action="task.result")
                return
        self.healing.finish(task.id, True, task.recommendation if not results else f"{len(results)} command(s) ok", now)
        await self._task_event("task.done", task, audit_action="task.result")

    async def _back_off(self, task: Task) -> None:
        """repair_endpoint: pause the provider's running sessions; the task waits for the provider to recover."""
        paused, failed = [], []
        for cmd in task.commands:
            ok, error, _ = await self._command(cmd["node"], cmd["action"], cmd.get("target"), cmd.get("args", {}))
            if ok:
                paused.append(cmd)
            else:
                failed.append(f"{cmd['node']}/{cmd.get('target')}: {error}")
        self.healing.backed_off(task.id, paused, failed, self.clock.now())
        assert self.records is not None
        if task.state == "dispatched":
            await self.records.save_task(task.to_dict())  # the sessions to resume survive a restart
        else:
            await self._task_event(f"task.{task.state}", task, audit_action="task.result")

    async def _resume_backed_off(self, task: Task) -> None:
        """The provider recovered (or the task expired waiting): resume what repair_endpoint paused."""
        failed = []
        for cmd in task.on_recovery:
            ok, error, _ = await self._command(cmd["node"], cmd["action"], cmd.get("target"), cmd.get("args", {}))
            if not ok:
                failed.append(f"{cmd['node']}/{cmd.get('target')}: {error}")
        expired = task.state == "expired"
        self.healing.resumed(task.id, failed, self.clock.now())
        if expired:
            assert self.records is not None
            await self.records.save_task(task.to_dict(), audit_action="task.result", now=self.clock.now(), actor=CONSOLE)
        else:
            await self._task_event("task.done", task, audit_action="task.result")

    async def _task_event(self, name: str, task: Task, *, audit_action: str | None = None, actor: str = CONSOLE) -> None:
        assert self.records is not None
        await self.records.save_task(task.to_dict(), audit_action=audit_action, now=self.clock.now(), actor=actor)
        self.supervisor.publish(name, task=task.id, strategy=task.strategy, node=task.node, subject=task.subject, state=task.state)

    # --- cost -------------------------------------------------------------------------

    def cost_summary(self) -> CostSummary:
        return self.cost.summary(self.clock.now())

    async def _budgets(self, now: float) -> None:
        assert self.records is not None
        for notice in self.cost.budget_notices(now):
            await self.records.budget_notice(notice.budget, notice.period, notice.percent, now)
            self.supervisor.publish("budget.notice", budget=notice.budget, percent=notice.percent,
                                    spent_usd=round(notice.spent_usd, 4), budget_usd=notice.budget_usd)

    # --- readings and audit -----------------------------------------------------------

    def equilibrium(self) -> EquilibriumReading | None:
        """The latest reading (None before the first evaluation)."""
        return self.detector.last

    async def audit_entries(self, limit: int = 50) -> list[AuditEntry]:
        assert self.records is not None
        return await self.records.audit_entries(limit)

    async def verify_audit(self) -> Verification:
        assert self.records is not None
        return await self.records.verify_audit()
