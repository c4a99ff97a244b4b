"""Account limits carried out: every `limits.refresh_s` the account windows are derived from the
stored limit reports and calls (heady_tui.accounts) and stored; the limit_guard's notices are
published, a full account's running sessions are paused with the operator's consent, and resumed
once the window has reset. Pauses and resumes are audited."""

from __future__ import annotations

from heady_tui.accounts import FIVE_HOUR, WEEK, WINDOW_S, AccountWindow, derive_windows
from heady_tui.engine.consent import ConsentRequest
from heady_tui.engine.limit_guard import LimitGuard, PausedAccount, PauseNeed
from heady_tui.engine.rebalance import Caps, PlannedAction, RebalancePlan
from heady_tui.events import iso_utc

from .consent import Approval, ConsentDesk, topic_of
from .host import CONSOLE, BrainContext

GUARD_STATE = "limit_guard"  # engine_kv key of the guard's state
TOPIC_PREFIX = "limit_guard:"  # a consent request's topic: limit_guard:<account>
# A paused session stays paused; the others of an account still draw on it.
PAUSABLE_STATES = ("running", "idle", "waiting", "compacted")


def _topic(account: str) -> str:
    return f"{TOPIC_PREFIX}{account}"


class AccountLimits:
    def __init__(self, ctx: BrainContext, consent: ConsentDesk) -> None:
        self.ctx = ctx
        self.consent = consent
        self.guard = LimitGuard(ctx.config.policies.limit_guard)
        self.windows: list[AccountWindow] = []
        self._next_refresh = float("-inf")

    async def load(self) -> None:
        """The guard's state and the windows as the acting brain last recorded them."""
        records = self.ctx.records
        raw = await records.kv_get(GUARD_STATE)
        if isinstance(raw, dict):
            self.guard.import_state(raw)
        self.windows = await records.account_windows()

    def owns(self, request: ConsentRequest) -> bool:
        return topic_of(request).startswith(TOPIC_PREFIX)

    async def run(self, now: float) -> None:
        before = self.guard.export_state()
        for paused in self.guard.due(now):
            await self._resume(paused, now)
        if now >= self._next_refresh:
            self._next_refresh = now + self.ctx.config.limits.refresh_s
            await self.refresh(now)
        if self.guard.export_state() != before:
            await self.ctx.records.kv_set(GUARD_STATE, self.guard.export_state())

    async def refresh(self, now: float) -> None:
        store = self.ctx.host.store
        assert store is not None
        cfg = self.ctx.config.limits
        budgets: dict[tuple[str, str], float] = {}
        for account, budget in cfg.accounts.items():
            if budget.five_hour_usd is not None:
                budgets[(account, FIVE_HOUR)] = budget.five_hour_usd
            if budget.weekly_usd is not None:
                budgets[(account, WEEK)] = budget.weekly_usd
        reports = await store.limit_reports(now - WINDOW_S[WEEK])
        usage = await store.account_usage(now, cfg.burn_window_s)
        self.windows = derive_windows(reports, usage, budgets, now=now, burn_window_s=cfg.burn_window_s)
        await self.ctx.records.save_account_windows(self.windows)
        notices, needs = self.guard.evaluate(self.windows, now)
        for n in notices:
            self.ctx.publish("budget.notice", budget=n.budget, percent=round(n.used_percent, 1), spent_usd=round(n.used_usd, 4),
                             budget_usd=n.limit_usd, account=n.account, window=n.window, basis=n.basis,
                             resets_at=iso_utc(n.resets_at) if n.resets_at is not None else None)  # fmt: skip
        for need in needs:
            await self._pause_or_ask(need, now)

    def _plan(self, need: PauseNeed, now: float) -> RebalancePlan:
        until = iso_utc(need.resets_at)
        # Sessions this pause already holds are left out: one the operator resumed by hand stays resumed.
        held = set(self.guard.paused[need.account].sessions) if need.account in self.guard.paused else set()
        actions = tuple(
            PlannedAction("pause", rec.node, "session.pause", target=rec.id, note=f"pause {rec.node}/{rec.id} until {until}")
            for rec in sorted(self.ctx.host.fleet.sessions.values(), key=lambda r: r.key)
            if rec.account == need.account and rec.live and rec.state in PAUSABLE_STATES and (rec.node, rec.id) not in held
        )
        return RebalancePlan(priority="high", actions=actions, caps=Caps.from_config(self.ctx.config.rebalance),
                             estimated_duration_s=need.resets_at - now,
                             breaches={f"{need.account} {need.window} used %": round(need.used_percent, 1)})  # fmt: skip

    async def _pause_or_ask(self, need: PauseNeed, now: float) -> None:
        plan = self._plan(need, now)
        if not plan.actions:
            return  # nothing of the account runs: nothing to pause
        fp = plan.fingerprint
        if await self.consent.denied(fp, now):
            return
        about: dict[str, str | float] = {"account": need.account, "window": need.window, "resets_at": need.resets_at}
        granted = await self.consent.take_grant(fp, now)
        if granted is not None:
            await self._pause(need.account, need.window, need.resets_at, plan, "", granted.id, now)
            return
        reason = (f"account {need.account}: {need.window} window {need.used_percent:.0f}% used ({need.basis}); "
                  f"pause its {len(plan.actions)} sessions until it resets at {iso_utc(need.resets_at)}")  # fmt: skip
        await self.consent.ask(plan, reason, now, topic=_topic(need.account), about=about)

    async def start_approved(self, approval: Approval, now: float) -> bool:
        """The operator allowed pausing an account: pause exactly the sessions the request showed."""
        plan, raw = approval.plan, approval.request.plan
        account, window, until = raw.get("account"), raw.get("window"), raw.get("resets_at")
        if not isinstance(account, str) or not isinstance(window, str) or not isinstance(until, (int, float)):
            return False
        if not await self.consent.use(approval, now):
            return False
        await self._pause(account, window, float(until), plan, approval.request.id, approval.grant.id, now)
        await self.ctx.records.kv_set(GUARD_STATE, self.guard.export_state())
        return True

    async def _pause(self, account: str, window: str, until: float, plan: RebalancePlan, request: str, grant: str,
                     now: float) -> None:  # fmt: skip
        # A second pause of an account (sessions that started since the first) joins the first: one
        # resume after the reset for all of them.
        paused = self.guard.paused.get(account)
        if paused is None:
            paused = PausedAccount(account, window, until, [], request, grant, now)
            self.guard.paused[account] = paused
        paused.until = max(paused.until, until)
        # Recorded before the commands go out: a crash now still resumes them after the reset.
        await self.ctx.records.kv_set(GUARD_STATE, self.guard.export_state())
        failed = []
        newly: list[str] = []
        for action in plan.actions:
            assert action.target is not None
            ok, error, _ = await self.ctx.command(action.node, "session.pause", action.target, {})
            if ok:
                paused.sessions.append((action.node, action.target))
                newly.append(f"{action.node}/{action.target}")
            else:
                failed.append(f"{action.node}/{action.target}: {error}")
            self.ctx.publish("policy.action", policy="limit_guard", node=action.node, session=action.target,
                             action="session.pause", attempt=1, ok=ok, reason=f"account {account} {window} full", error=error)
        await self.ctx.records.kv_set(GUARD_STATE, self.guard.export_state())
        await self.ctx.records.audit(now, CONSOLE, "limits.pause", {
            "account": account, "window": window, "until": until, "request": request or None, "grant": grant,
            "sessions": newly, "failed": failed})  # fmt: skip

    async def _resume(self, paused: PausedAccount, now: float) -> None:
        failed = []
        for node, session in paused.sessions:
            ok, error, _ = await self.ctx.command(node, "session.resume", session, {})
            if not ok:
                failed.append(f"{node}/{session}: {error}")
            self.ctx.publish("policy.action", policy="limit_guard", node=node, session=session, action="session.resume",
                             attempt=1, ok=ok, reason=f"account {paused.account} {paused.window} window reset", error=error)
        del self.guard.paused[paused.account]
        await self.ctx.records.audit(now, CONSOLE, "limits.resume", {
            "account": paused.account, "window": paused.window, "sessions": [f"{n}/{s}" for n, s in paused.sessions],
            "failed": failed})  # fmt: skip
