"""Every stored LLM call enters here once, already priced by the store: the cost totals, burn
rates and budgets, and the recent-call windows the detector and the healing loop read; and every
stored test run, for the healing loop's window of each session's test runs."""

from __future__ import annotations

from heady_tui.engine.cost import BurnNotice, CostSummary, CostTracker
from heady_tui.engine.detector import CallWindow, WindowStats
from heady_tui.engine.healing import SessionCallWindows
from heady_tui.engine.tests_window import SessionTestRuns
from heady_tui.ledger import PricedCall, TestRun, day_of

from .host import BrainContext

MONTH_S = 32 * 86400  # daily rollups reloaded on start: enough for month-to-date totals


class CostLedger:
    def __init__(self, ctx: BrainContext) -> None:
        self.ctx = ctx
        config = ctx.config
        store = ctx.host.store
        self.cost = CostTracker.from_config(config.cost, store.pricing.version if store is not None else "")
        # Recent calls, kept up to date call by call so a tick reads windows instead of rescanning calls.
        self.calls = CallWindow(keep_s=config.detector.window_s)
        self.session_calls = SessionCallWindows(max(config.detector.window_s, config.healing.full_interval_s))
        self.session_tests = SessionTestRuns(self.session_calls.keep_s)
        self._window_stats: tuple[float, WindowStats] | None = None

    async def load(self) -> None:
        """Totals from the store's daily rollups and session ledger, so totals, budgets and burn rates
        survive a restart; the latest stored calls refill the burn window and the detector's and the
        healing loop's windows. Nothing is priced here: the store priced each call as it stored it."""
        self.cost.notices_sent = await self.ctx.records.budget_notices_sent()
        store = self.ctx.host.store
        assert store is not None
        now = self.ctx.clock.now()
        for row in await store.cost_days(day_of(now - MONTH_S)):
            self.cost.add_total(day=row.day, node=row.node, project=row.project, model=row.model, calls=row.calls,
                                unpriced=row.unpriced_calls, cost_usd=row.cost_usd)  # fmt: skip
        for rec in await store.sessions(active_since=now - MONTH_S):
            self.cost.add_session(rec.node, rec.id, rec.cost_usd, rec.first_activity)
        keep = max(self.session_calls.keep_s, self.cost.burn_window_s)
        for call in await store.priced_calls(now - keep):
            self._windows(call, now)
        self.on_test_runs(await store.test_runs(now - self.session_tests.keep_s))

    def on_calls(self, calls: list[PricedCall]) -> None:
        """Calls just stored: their totals, and the windows for those recent enough."""
        now = self.ctx.clock.now()
        for call in calls:
            self.cost.add(ts=call.ts, node=call.node, session=call.session, project=call.project, model=call.model,
                          cost_usd=call.cost_usd, known=call.priced)  # fmt: skip
            self._windows(call, now, burn=False)

    def on_test_runs(self, runs: list[TestRun]) -> None:
        """Test runs just stored (or reloaded at start): the healing window of those recent enough."""
        horizon = self.ctx.clock.now() - self.session_tests.keep_s
        for run in runs:
            if run.ts >= horizon:
                self.session_tests.add((run.node, run.session), run.ts, run.ok)

    def _windows(self, call: PricedCall, now: float, *, burn: bool = True) -> None:
        # A replay of calls older than the windows only adds to the cost totals.
        if burn and call.ts >= now - self.cost.burn_window_s:
            self.cost.add_recent(ts=call.ts, node=call.node, session=call.session, cost_usd=call.cost_usd)
        if call.ts < now - self.session_calls.keep_s:
            return
        self.calls.add(call.ts, call.latency_ms, call.ok, call.node, call.provider)
        self._window_stats = None
        if call.session is not None:
            self.session_calls.add((call.node, call.session), call.ts, call.latency_ms, call.ok, call.input_tokens + call.output_tokens,
                                   call.cost_usd, call.provider)  # fmt: skip

    def window(self, now: float) -> WindowStats:
        """The detector window's calls, read once per tick (the healing cycle and the plan reuse it)."""
        if self._window_stats is None or self._window_stats[0] != now:
            self._window_stats = (now, self.calls.stats(now, self.ctx.config.detector.window_s))
        return self._window_stats[1]

    def summary(self) -> CostSummary:
        return self.cost.summary(self.ctx.clock.now())

    def today_by_node(self) -> dict[str, float]:
        return self.cost.today_by_node(self.ctx.clock.now())

    async def budgets(self, now: float) -> None:
        for notice in self.cost.budget_notices(now):
            await self.ctx.records.budget_notice(notice.budget, notice.period, notice.percent, now)
            self.ctx.publish("budget.notice", budget=notice.budget, percent=notice.percent,
                             spent_usd=round(notice.spent_usd, 4), budget_usd=notice.budget_usd)
        for burn in self.cost.burn_notices(now):
            self.ctx.publish("budget.notice", budget="burn_rate", scope=burn.scope, node=burn.node, session=burn.session,
                             rate_usd_per_h=round(burn.rate_usd_per_h, 4), limit_usd_per_h=burn.limit_usd_per_h)

    def over_burn(self) -> list[BurnNotice]:
        """What burns over its $/h limit now: the header's alert."""
        return self.cost.over_burn(self.ctx.clock.now())
