"""The Brain: holds the engines, is fed every stored frame, ticked by its host (the supervisor),
applies decisions through `host.command`, and writes the audit chain. It is the one place the UI,
the reports and the CLI read and act through (docs/internals.md; types in docs/engines.md).

This facade keeps the public API; the work is done by its parts: `CostLedger` (calls, costs,
budgets), `ConsentDesk` (requests and grants), `RebalanceRunner` (runs), `PolicyExecutor`
(session policies) and `HealingDispatcher` (healing cycles and tasks).

Only the brain holding the lease (`Lease`) acts. The others run view-only: they evaluate and show
the fleet and follow what the acting brain records, but send no command, ask no consent and write
nothing. Taking the lease over reloads the state the previous holder left (policies, tasks,
requests, runs to recover), so a crashed holder's open rebalance is reverted only then.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

from heady_agent.aio import cancel_and_wait
from heady_agent.protocol import Event, Metrics
from heady_tui.accounts import AccountWindow
from heady_tui.audit import AuditEntry, Verification, canonical
from heady_tui.engine.consent import ConsentRequest, Grant, grantor
from heady_tui.engine.cost import BurnNotice, CostSummary
from heady_tui.engine.detector import EquilibriumDetector, EquilibriumReading, NodeSample
from heady_tui.engine.healing import HealingCycle, HealingEngine, Task, WeakPoint
from heady_tui.engine.kpis import Kpi, rebalance_kpis
from heady_tui.engine.policies import NeedsAttention, PolicyEngine
from heady_tui.engine.rebalance import NodeView, RebalanceStatus
from heady_tui.ledger import PricedCall, TestRun
from heady_tui.records import LeaseClaim, Records, StaleFence

from .account_limits import AccountLimits
from .consent import ConsentDesk
from .cost_ledger import CostLedger
from .healing_dispatch import CYCLES_KEPT, HealingDispatcher
from .host import BrainContext, BrainHost
from .lease import ACTING, VIEW_ONLY, Lease, LeaseView, ViewOnlyError
from .policy_exec import PolicyExecutor
from .priority_exec import PriorityKeeper
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
        self.priority = PriorityKeeper(self.ctx)
        self.limits = AccountLimits(self.ctx, self.consent)
        self._saved_detector: dict[str, Any] | None = None
        self._errors_high = False
        self._acting_token: int | None = None  # the lease token this brain loaded its state for
        self._shown_role: tuple[str, str] | None = None  # (role, holder) last published
        self._renewer: asyncio.Task[None] | None = None
        self.started = False

    @property
    def records(self) -> Records | None:
        return self.ctx.opened

    # --- lifecycle --------------------------------------------------------------------

    async def start(self) -> None:
        store = self.host.store
        assert store is not None
        records = self.ctx.opened = await Records.open(store, self.host.paths.audit_anchor)
        lease = self.ctx.lease = Lease(records, self.clock, self.config.brain.lease_s)
        saved = await records.kv_get("detector")
        if isinstance(saved, dict):
            self.detector.import_state(saved)
            self._saved_detector = saved
        await self.ledger.load()
        await self._claim()
        if self._acting_token is None:
            await self._follow()
        self._renewer = asyncio.create_task(lease.renew_forever(), name="brain:lease")
        self.started = True

    # --- the lease --------------------------------------------------------------------

    @property
    def lease(self) -> Lease:
        assert self.ctx.lease is not None, "the brain is not started"
        return self.ctx.lease

    @property
    def view_only(self) -> bool:
        return self.ctx.lease is not None and not self.ctx.lease.held

    def lease_view(self) -> LeaseView | None:
        """This brain's role and the lease's holder, for the header and headless output."""
        return self.ctx.lease.view() if self.ctx.lease is not None else None

    def _require_acting(self) -> None:
        view = self.lease_view()
        if view is not None and view.role != ACTING:
            raise ViewOnlyError(f"view-only: the brain of {view.holder} acts on this fleet")

    async def _claim(self) -> None:
        """Renew or take the lease; on a change of role take over or stand down, and say so."""
        claim = await self.lease.claim()
        token = claim.row.token if claim.held else None
        if token != self._acting_token:
            if self._acting_token is not None:
                self._stand_down()
            self._acting_token = None
            if token is not None:
                await self._take_over()
                self._acting_token = token
        self._announce(claim)

    async def _take_over(self) -> None:
        """This brain now acts: start from what the previous holder recorded."""
        records = self.ctx.records
        await self._follow()
        self.ledger.cost.notices_sent = await records.budget_notices_sent()
        config_hash = hashlib.sha256(canonical(self.config.model_dump(mode="json")).encode()).hexdigest()
        await records.config_hash_check(config_hash, self.clock.now(), grantor())
        await self.priority.load()
        await self.rebalancer.load()

    def _stand_down(self) -> None:
        """Another brain holds the lease: drop the run in hand unreverted; the holder recovers it."""
        self.rebalancer.abandon()

    async def _follow(self) -> None:
        """Read what the acting brain recorded: policy states, tasks, grants and open requests."""
        await self.policy_exec.load()
        await self.healing.load()
        await self.consent.load()
        await self.limits.load()

    def _announce(self, claim: LeaseClaim) -> None:
        role = ACTING if claim.held else VIEW_ONLY
        shown = (role, claim.row.holder)
        if shown == self._shown_role:
            return
        self._shown_role = shown
        previous = claim.previous.holder if claim.previous is not None else None
        self.ctx.publish("brain.role", role=role, holder=claim.row.holder, fence=claim.row.token,
                         expires=claim.row.expires, previous=previous)

    def on_frame(self, node_id: str, frame: Metrics | Event) -> None:
        """A stored frame (its calls come priced through `on_calls`)."""
        if isinstance(frame, Metrics):
            self.healing.on_metrics(node_id, frame)
        elif frame.kind == "agent.notice" and frame.data.get("severity") == "critical":
            self.healing.engine.trigger(f"critical notice from {node_id}")

    def on_calls(self, calls: list[PricedCall]) -> None:
        """Calls the store just stored and priced."""
        if calls:
            self.ledger.on_calls(calls)
            self.healing.engine.count_calls(len(calls))

    def on_test_runs(self, runs: list[TestRun]) -> None:
        """Test runs the store just stored."""
        if runs:
            self.ledger.on_test_runs(runs)

    def on_node_status(self, node_id: str, status: str) -> None:
        self.healing.on_node_status(node_id, status)
        self.priority.node_status(node_id)

    async def stop(self) -> None:
        if self._renewer is not None:
            await cancel_and_wait([self._renewer])
            self._renewer = None
        lease = self.ctx.lease
        if lease is not None and lease.held:
            await lease.renew()  # a lease that lapsed unclaimed is still this brain's to stop cleanly
        if lease is not None and lease.acting(self.clock.now()):
            try:
                if self.rebalancer.running:
                    await self.rebalancer.stop_run("stopped", self.clock.now())
            except StaleFence as exc:
                lease.lost(exc)
            await lease.release()
        self.started = False

    # --- the tick ---------------------------------------------------------------------

    async def tick(self) -> None:
        if self.ctx.opened is None:
            return
        await self._claim()
        now = self.clock.now()
        if not self.lease.acting(now):
            self._evaluate_only(now)
            await self._follow()
            return
        try:
            await self._act(now)
        except StaleFence as exc:
            self.lease.lost(exc)  # the next tick's claim stands this brain down

    async def _act(self, now: float) -> None:
        reading = await self._evaluate(now)
        errors = reading.metrics["error_rate"].value
        high = errors is not None and errors >= self.config.healing.trigger_error_rate
        if high and not self._errors_high:
            self.healing.engine.trigger(f"error rate {errors:.0%}")
        self._errors_high = high
        await self.rebalancer.recover(now)
        await self.consent.expire(now)
        await self.rebalancer.step(reading, now)
        await self.priority.run(self._samples(), now)
        await self.policy_exec.run(now, leave=self.priority.held_paused())
        await self.limits.run(now)
        await self.healing.deploys(now)
        await self.healing.heal(now)
        await self.ledger.budgets(now)

    def _evaluate_only(self, now: float) -> None:
        """A view-only brain's reading: shown and published, never recorded (the acting brain records it)."""
        _, change = self.detector.evaluate(now, self._samples(), self.ledger.window(now))
        if change is not None:
            self.ctx.publish("equilibrium.level", level=change.level, previous=change.previous, metrics=change.metrics)

    def _samples(self) -> list[NodeSample]:
        nodes = []
        for n in self.host.fleet.nodes.values():
            m = n.metrics
            nodes.append(NodeSample(n.id, n.status == "online", m.load[0] if m else None, n.cpu_count, m.queue_depth if m else 0,
                                    m.ts if m else None, n.sample_interval_s or 0.0))
        return nodes

    async def _evaluate(self, now: float) -> EquilibriumReading:
        records = self.ctx.records
        reading, change = self.detector.evaluate(now, self._samples(), self.ledger.window(now))
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

    async def decide_consent(self, request_id: str, decision: str, by: str | None = None) -> Grant | None:
        """deny | single | session | persistent, by whom (user@host; this process's user by default).
        Returns the grant made, or None for a denial. An allow starts a run of exactly the plan the
        request showed (unless a run is going)."""
        self._require_acting()
        approval = await self.consent.decide(request_id, decision, by)
        if approval is None:
            return None
        if self.limits.owns(approval.request):
            await self.limits.start_approved(approval, self.clock.now())
        else:
            await self.rebalancer.start_approved(approval, self.clock.now())
        return approval.grant

    def hold_consent(self, request_id: str) -> ConsentRequest:
        """A dialog shows this request: it stays as shown and answerable until released."""
        self._require_acting()
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
        self._require_acting()
        return await self.policy_exec.reset(node, session, policy)

    # --- healing ----------------------------------------------------------------------

    def tasks(self) -> list[Task]:
        return self.healing.tasks()

    def awaiting_approval(self) -> list[Task]:
        return self.healing.awaiting_approval()

    def weak_points(self) -> list[WeakPoint]:
        return self.healing.weak_points()

    def healing_cycles(self, limit: int = CYCLES_KEPT) -> list[HealingCycle]:
        return self.healing.cycles(limit)

    async def approve_task(self, task_id: str) -> Task:
        self._require_acting()
        return await self.healing.approve(task_id)

    async def reject_task(self, task_id: str) -> Task:
        self._require_acting()
        return await self.healing.reject(task_id)

    async def notify_deploy(self, node: str | None = None) -> None:
        await self.healing.notify_deploy(node)

    # --- cost -------------------------------------------------------------------------

    def cost_summary(self) -> CostSummary:
        return self.ledger.summary()

    def costs_today_by_node(self) -> dict[str, float]:
        """Today's (UTC) cost per node, from the stored daily rollups and the calls stored since."""
        return self.ledger.today_by_node()

    def burn_alerts(self) -> list[BurnNotice]:
        """Sessions and the fleet burning over their configured $/h now (the header's alert)."""
        return self.ledger.over_burn()

    # --- account limits -------------------------------------------------------------

    def accounts(self) -> list[AccountWindow]:
        """Every account's 5-hour and weekly windows, as last derived (docs/engines.md "Account limits")."""
        return self.limits.windows

    # --- readings and audit -----------------------------------------------------------

    def equilibrium(self) -> EquilibriumReading | None:
        """The latest reading (None before the first evaluation)."""
        return self.detector.last

    async def audit_entries(self, limit: int = 50) -> list[AuditEntry]:
        return await self.ctx.records.audit_entries(limit)

    async def verify_audit(self) -> Verification:
        return await self.ctx.records.verify_audit()
