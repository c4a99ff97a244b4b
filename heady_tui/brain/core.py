"""The Brain: holds the engines, is fed every stored frame, ticked by its host (the supervisor),
applies decisions through `host.command`, and writes the audit chain. It is the one place the UI,
the reports and the CLI read and act through (docs/internals.md; types in docs/engines.md).

This facade keeps the public API; the work is done by its parts: `CostLedger` (calls, costs,
budgets), `ConsentDesk` (requests and grants), `RebalanceRunner` (runs), `PolicyExecutor`
(session policies) and `HealingDispatcher` (healing cycles and tasks).
"""

from __future__ import annotations

import hashlib
from typing import Any

from heady_agent.protocol import Event, LlmCallData, Metrics
from heady_tui.audit import AuditEntry, Verification, canonical
from heady_tui.engine.consent import ConsentRequest, Grant, grantor
from heady_tui.engine.cost import CostSummary
from heady_tui.engine.detector import EquilibriumDetector, EquilibriumReading, NodeSample
from heady_tui.engine.healing import HealingCycle, HealingEngine, Task, WeakPoint
from heady_tui.engine.kpis import Kpi, rebalance_kpis
from heady_tui.engine.policies import NeedsAttention, PolicyEngine
from heady_tui.engine.rebalance import NodeView, RebalanceStatus
from heady_tui.records import Records

from .consent import ConsentDesk
from .cost_ledger import CostLedger
from .healing_dispatch import CYCLES_KEPT, HealingDispatcher
from .host import BrainContext, BrainHost
from .policy_exec import PolicyExecutor
from .rebalance_run import RebalanceRunner


class Brain:
    def __init__(self, host: BrainHost) -> None:
        self.host = host
        self.ctx = BrainContext(host)
        self.clock = host.clock
        self.config = host.config
        self.detector = EquilibriumDetector(self.config.detector)
        self.ledger = CostLedger(self.ctx)
        self.consent = ConsentDesk(self.ctx)
        self.rebalancer = RebalanceRunner(self.ctx, self.detector, self.consent, self.ledger)
        self.policy_exec = PolicyExecutor(self.ctx, PolicyEngine(self.config.policies))
        self.healing = HealingDispatcher(self.ctx, HealingEngine(self.config.healing), self.ledger)
        self._saved_detector: dict[str, Any] | None = None
        self._errors_high = False
        self.started = False

    @property
    def records(self) -> Records | None:
        return self.ctx.opened

    # --- lifecycle --------------------------------------------------------------------

    async def start(self) -> None:
        store = self.host.store
        assert store is not None
        records = self.ctx.opened = await Records.open(store, self.host.paths.audit_anchor)
        saved = await records.kv_get("detector")
        if isinstance(saved, dict):
            self.detector.import_state(saved)
            self._saved_detector = saved
        await self.policy_exec.load()
        await self.healing.load()
        await self.ledger.load()
        await self.consent.load()
        config_hash = hashlib.sha256(canonical(self.config.model_dump(mode="json")).encode()).hexdigest()
        await records.config_hash_check(config_hash, self.clock.now(), grantor())
        await self.rebalancer.load()
        self.started = True

    def on_frame(self, node_id: str, frame: Metrics | Event, data: object = None) -> None:
        """A stored frame; `data` is the event's data already validated (the fleet's), else it is validated here."""
        if isinstance(frame, Metrics):
            self.healing.on_metrics(node_id, frame)
        elif isinstance(frame, Event):
            if frame.kind == "llm.call":
                if not isinstance(data, LlmCallData):
                    try:
                        data = LlmCallData.model_validate(frame.data)
                    except ValueError:
                        return
                self.ledger.on_call(node_id, frame.session, frame.ts, data)
                self.healing.engine.count_calls(1)
            elif frame.kind == "agent.notice" and frame.data.get("severity") == "critical":
                self.healing.engine.trigger(f"critical notice from {node_id}")

    def on_node_status(self, node_id: str, status: str) -> None:
        self.healing.on_node_status(node_id, status)

    async def stop(self) -> None:
        if self.rebalancer.running and self.ctx.opened is not None:
            await self.rebalancer.stop_run("stopped", self.clock.now())
        self.started = False

    # --- the tick ---------------------------------------------------------------------

    async def tick(self) -> None:
        if self.ctx.opened is None:
            return
        now = self.clock.now()
        reading = await self._evaluate(now)
        errors = reading.metrics["error_rate"].value
        high = errors is not None and errors >= self.config.healing.trigger_error_rate
        if high and not self._errors_high:
            self.healing.engine.trigger(f"error rate {errors:.0%}")
        self._errors_high = high
        await self.rebalancer.recover(now)
        await self.consent.expire(now)
        await self.rebalancer.step(reading, now)
        await self.policy_exec.run(now)
        await self.healing.deploys(now)
        await self.healing.heal(now)
        await self.ledger.budgets(now)

    async def _evaluate(self, now: float) -> EquilibriumReading:
        records = self.ctx.records
        nodes = []
        for n in self.host.fleet.nodes.values():
            m = n.metrics
            nodes.append(NodeSample(n.id, n.status == "online", m.load[0] if m else None, n.cpu_count, m.queue_depth if m else 0, m.ts if m else None))
        reading, change = self.detector.evaluate(now, nodes, self.ledger.window(now))
        state = self.detector.export_state()
        if change is not None or reading.metric_changes:
            await records.level_changes_made(change, reading.metric_changes, state)
        elif state != self._saved_detector:
            await records.kv_set("detector", state)
        self._saved_detector = state
        if change is not None:
            self.ctx.publish("equilibrium.level", level=change.level, previous=change.previous, metrics=change.metrics)
        return reading

    # --- consent ----------------------------------------------------------------------

    def pending_consent(self) -> list[ConsentRequest]:
        return self.consent.pending()

    async def decide_consent(self, request_id: str, decision: str) -> Grant | None:
        """deny | single | session | persistent. Returns the grant made, or None for a denial.
        An allow starts a run of exactly the plan the request showed (unless a run is going)."""
        approval = await self.consent.decide(request_id, decision)
        if approval is None:
            return None
        await self.rebalancer.start_approved(approval, self.clock.now())
        return approval.grant

    def hold_consent(self, request_id: str) -> ConsentRequest:
        """A dialog shows this request: it stays as shown and answerable until released."""
        return self.consent.hold(request_id)

    async def release_consent(self, request_id: str) -> None:
        """The dialog closed; a request superseded while shown ends."""
        await self.consent.release(request_id)

    def grants(self, include_inactive: bool = False) -> list[Grant]:
        return self.consent.grants(include_inactive)

    async def grant(self, scope: str, reason: str) -> Grant:
        return await self.consent.grant(scope, reason)

    async def revoke_grant(self, grant_id: str) -> Grant:
        now = self.clock.now()
        g = await self.consent.revoke(grant_id, now)
        await self.rebalancer.revoked(grant_id, now)
        return g

    # --- rebalance --------------------------------------------------------------------

    def rebalance_status(self) -> RebalanceStatus | None:
        return self.rebalancer.status()

    def node_views(self) -> list[NodeView]:
        return self.rebalancer.node_views()

    async def rebalance_kpis(self, since: float, until: float) -> list[Kpi]:
        records = self.ctx.records
        return rebalance_kpis(await records.rebalances(since, until), await records.requests(since, until))

    # --- policies ---------------------------------------------------------------------

    def needs_attention(self) -> list[NeedsAttention]:
        return self.policy_exec.needs_attention()

    async def reset_policy(self, node: str, session: str, policy: str) -> bool:
        return await self.policy_exec.reset(node, session, policy)

    # --- healing ----------------------------------------------------------------------

    def tasks(self) -> list[Task]:
        return self.healing.tasks()

    def weak_points(self) -> list[WeakPoint]:
        return self.healing.weak_points()

    def healing_cycles(self, limit: int = CYCLES_KEPT) -> list[HealingCycle]:
        return self.healing.cycles(limit)

    async def approve_task(self, task_id: str) -> Task:
        return await self.healing.approve(task_id)

    async def reject_task(self, task_id: str) -> Task:
        return await self.healing.reject(task_id)

    async def notify_deploy(self, node: str | None = None) -> None:
        await self.healing.notify_deploy(node)

    # --- cost -------------------------------------------------------------------------

    def cost_summary(self) -> CostSummary:
        return self.ledger.summary()

    # --- readings and audit -----------------------------------------------------------

    def equilibrium(self) -> EquilibriumReading | None:
        """The latest reading (None before the first evaluation)."""
        return self.detector.last

    async def audit_entries(self, limit: int = 50) -> list[AuditEntry]:
        return await self.ctx.records.audit_entries(limit)

    async def verify_audit(self) -> Verification:
        return await self.ctx.records.verify_audit()
