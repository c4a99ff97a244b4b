"""Every priced LLM call enters here once: the cost totals and budgets, and the recent-call windows
the detector and the healing loop read."""

from __future__ import annotations

from heady_agent.protocol import LlmCallData
from heady_tui.engine.cost import CostSummary, CostTracker, PricingTable
from heady_tui.engine.detector import CallWindow, WindowStats
from heady_tui.engine.healing import SessionCallWindows

from .host import BrainContext

MONTH_S = 32 * 86400  # calls reloaded on start: enough for month-to-date totals


class CostLedger:
    def __init__(self, ctx: BrainContext) -> None:
        self.ctx = ctx
        config = ctx.config
        self.pricing = PricingTable.load(config.cost)
        ctx.host.fleet.pricer = self.pricing.cost
        self.cost = CostTracker.from_config(config.cost, self.pricing.date)
        # Recent calls, kept up to date frame by frame so a tick reads windows instead of rescanning calls.
        self.calls = CallWindow(keep_s=config.detector.window_s)
        self.session_calls = SessionCallWindows(max(config.detector.window_s, config.healing.full_interval_s))
        self._window_stats: tuple[float, WindowStats] | None = None

    async def load(self) -> None:
        """Month-to-date costs from the stored calls, so totals and budgets survive a restart; the
        latest of them also refill the detector's and the healing loop's windows."""
        self.cost.notices_sent = await self.ctx.records.budget_notices_sent()
        store = self.ctx.host.store
        assert store is not None
        now = self.ctx.clock.now()
        recent = now - self.session_calls.keep_s
        for ev in await store.calls(now - MONTH_S):
            try:
                call = LlmCallData.model_validate(ev.data)
            except ValueError:
                continue
            self.add_call(ev.node, ev.session, ev.ts, call, windows=ev.ts >= recent)

    def add_call(self, node: str, session: str | None, ts: float, call: LlmCallData, *, windows: bool) -> None:
        cost, known = self.pricing.cost(call)
        rec = self.ctx.host.fleet.sessions.get((node, session)) if session else None
        self.cost.add(ts=ts, node=node, session=session, project=rec.project if rec else None, model=call.model, cost_usd=cost, known=known)
        if not windows:
            return
        self.calls.add(ts, call.latency_ms, call.ok, node, call.provider)
        self._window_stats = None
        if session is not None:
            self.session_calls.add((node, session), ts, call.latency_ms, call.ok, call.input_tokens + call.output_tokens, cost,
                                   call.provider)

    def on_call(self, node: str, session: str | None, ts: float, call: LlmCallData) -> None:
        """A live call; a replay of calls older than the windows only adds to the cost totals."""
        self.add_call(node, session, ts, call, windows=ts >= self.ctx.clock.now() - self.session_calls.keep_s)

    def window(self, now: float) -> WindowStats:
        """The detector window's calls, read once per tick (the healing cycle and the plan reuse it)."""
        if self._window_stats is None or self._window_stats[0] != now:
            self._window_stats = (now, self.calls.stats(now, self.ctx.config.detector.window_s))
        return self._window_stats[1]

    def summary(self) -> CostSummary:
        return self.cost.summary(self.ctx.clock.now())

    async def budgets(self, now: float) -> None:
        for notice in self.cost.budget_notices(now):
            await self.ctx.records.budget_notice(notice.budget, notice.period, notice.percent, now)
            self.ctx.publish("budget.notice", budget=notice.budget, percent=notice.percent,
                             spent_usd=round(notice.spent_usd, 4), budget_usd=notice.budget_usd)
