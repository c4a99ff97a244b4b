"""Account limits in the console's ledger: the store keeps each session's account and every limit
report a client made; the windows are derived from them (official, else estimate); the guard
decides notices and pauses."""

from __future__ import annotations

from pathlib import Path

import pytest

from heady_agent.protocol import Event
from heady_tui.accounts import ESTIMATE, FIVE_HOUR, OFFICIAL, WEEK, AccountUsage, LimitReport, derive_windows, window_of
from heady_tui.config import CostConfig, LimitGuardConfig
from heady_tui.engine.cost import PricingTable
from heady_tui.engine.limit_guard import LimitGuard, PausedAccount
from heady_tui.store import Store

T0 = 1_800_057_600.0
ACCOUNT = "openai:ana@example.com"
LIMITS = {"primary": {"used_percent": 3.0, "window_minutes": 300, "resets_at": T0 + 3600},
          "secondary": {"used_percent": 0.5, "window_minutes": 10080, "resets_at": T0 + 86400}}


@pytest.fixture
async def store(tmp_path: Path) -> Store:
    s = await Store.open(tmp_path / "heady.db", pricing=PricingTable.load(CostConfig()))
    yield s
    await s.close()


def event(seq: int, kind: str, session: str, data: dict) -> Event:
    return Event(journal="j1", seq=seq, ts=T0 + seq, kind=kind, session=session, data=data)


def call(**extra: object) -> dict:
    return {"provider": "openai", "model": "gpt-5-codex", "input_tokens": 1000, "output_tokens": 100, **extra}


async def test_a_calls_rate_limits_are_stored_as_its_sessions_account_reports(store: Store) -> None:
    await store.ingest("n1", "j1", [event(1, "session.started", "s1", {"source": "codex", "account": ACCOUNT, "plan": "pro"}),
                                    event(2, "llm.call", "s1", call(rate_limits=LIMITS))])
    reports = await store.limit_reports(0.0)
    assert [(r.account, r.window, r.node, r.session, r.used_percent, r.resets_at) for r in reports] == [
        (ACCOUNT, FIVE_HOUR, "n1", "s1", 3.0, T0 + 3600), (ACCOUNT, WEEK, "n1", "s1", 0.5, T0 + 86400)]
    rec = await store.session("n1", "s1")
    assert rec is not None and (rec.account, rec.plan) == (ACCOUNT, "pro")


async def test_a_status_lines_limits_are_reported_without_touching_the_session(store: Store) -> None:
    await store.ingest("n1", "j1", [event(1, "session.started", "s1", {"source": "claude-code", "account": ACCOUNT})])
    before = await store.session("n1", "s1")
    await store.ingest("n1", "j1", [event(2, "session.limits", "s1", {"primary": LIMITS["primary"]})])
    assert [r.used_percent for r in await store.limit_reports(0.0)] == [3.0]
    assert await store.session("n1", "s1") == before


async def test_limits_of_a_session_without_an_account_are_not_reported_nor_make_a_session(store: Store) -> None:
    await store.ingest("n1", "j1", [event(1, "session.limits", "ghost", {"primary": LIMITS["primary"]})])
    assert await store.limit_reports(0.0) == [] and await store.session("n1", "ghost") is None


async def test_bad_limits_are_counted_and_store_nothing(store: Store) -> None:
    result = await store.ingest("n1", "j1", [event(1, "session.started", "s1", {"source": "codex", "account": ACCOUNT}),
                                             event(2, "session.limits", "s1", {"primary": {"used_percent": 140}})])
    assert result.bad_events == 1 and await store.limit_reports(0.0) == []


async def test_the_accounts_spend_is_summed_over_its_nodes_and_sessions_in_each_window(store: Store) -> None:
    for node in ("n1", "n2"):
        await store.ingest(node, "j1", [event(1, "session.started", "s1", {"source": "codex", "account": ACCOUNT}),
                                        event(2, "llm.call", "s1", call()),
                                        event(3, "session.started", "s2", {"source": "codex", "account": "openai:other"}),
                                        event(4, "llm.call", "s2", call())])
    calls = await store.priced_calls()
    usage = {(u.account, u.window): u for u in await store.account_usage(T0 + 10, burn_window_s=600)}
    ours = usage[(ACCOUNT, FIVE_HOUR)]
    assert ours.nodes == ("n1", "n2") and ours.sessions == 2 and ours.first_ts == T0 + 2
    assert ours.cost_usd == pytest.approx(sum(c.cost_usd for c in calls if c.session == "s1")) and ours.cost_usd > 0
    assert ours.recent_cost_usd == ours.cost_usd
    assert usage[(ACCOUNT, WEEK)].cost_usd == ours.cost_usd


def test_a_clients_window_is_known_by_its_length_else_by_its_slot():
    assert [window_of("primary", 300), window_of("secondary", 10080), window_of("primary", None), window_of("secondary", 0)] == [
        FIVE_HOUR, WEEK, FIVE_HOUR, WEEK]


def report(ts: float, used: float, resets: float | None = T0 + 3600, node: str = "n1") -> LimitReport:
    return LimitReport(ACCOUNT, FIVE_HOUR, ts, node, "s1", used, 300, resets)


def test_the_newest_report_of_the_running_window_is_the_official_figure_with_the_burn_between_reports():
    [w] = derive_windows([report(T0, 40.0), report(T0 + 900, 43.0, node="n2"), report(T0 + 1800, 46.0)], [], {},
                         now=T0 + 1800, burn_window_s=1800)
    assert (w.basis, w.used_percent, w.resets_at, w.nodes) == (OFFICIAL, 46.0, T0 + 3600, ("n1", "n2"))
    assert w.burn_percent_per_h == pytest.approx(12.0)
    assert w.full_at == pytest.approx(T0 + 1800 + 54.0 / 12.0 * 3600)


def test_a_window_that_has_reset_falls_back_to_the_estimate():
    usage = AccountUsage(ACCOUNT, FIVE_HOUR, cost_usd=5.0, recent_cost_usd=1.0, first_ts=T0 + 100, nodes=("n1",), sessions=1)
    [w] = derive_windows([report(T0, 99.0)], [usage], {(ACCOUNT, FIVE_HOUR): 20.0}, now=T0 + 3600, burn_window_s=1800)
    assert (w.basis, w.used_percent, w.limit_usd, w.resets_at) == (ESTIMATE, 25.0, 20.0, T0 + 100 + 5 * 3600)
    assert w.burn_percent_per_h == pytest.approx(10.0)  # $1 in half an hour of a $20 window


def test_an_estimate_without_a_budget_shows_the_spend_and_no_share():
    usage = AccountUsage(ACCOUNT, WEEK, cost_usd=5.0, recent_cost_usd=0.0, first_ts=T0, nodes=("n1",), sessions=1)
    [w] = derive_windows([], [usage], {}, now=T0 + 60, burn_window_s=1800)
    assert (w.basis, w.used_percent, w.used_usd, w.burn_percent_per_h, w.full_at) == (ESTIMATE, None, 5.0, None, None)


def windows(used: float, resets: float = T0 + 3600):
    return derive_windows([report(T0, used, resets)], [], {}, now=T0 + 1, burn_window_s=1800)


def test_the_guard_notices_once_per_crossing_of_the_warn_share():
    guard = LimitGuard(LimitGuardConfig())
    assert guard.evaluate(windows(79.0), T0)[0] == []
    [notice] = guard.evaluate(windows(80.0), T0)[0]
    assert (notice.account, notice.window, notice.used_percent, notice.basis) == (ACCOUNT, FIVE_HOUR, 80.0, OFFICIAL)
    assert guard.evaluate(windows(90.0), T0)[0] == []
    guard.evaluate(windows(10.0), T0)
    assert len(guard.evaluate(windows(85.0), T0)[0]) == 1


def test_the_guard_wants_a_pause_at_the_pause_share_while_the_window_has_not_reset():
    guard = LimitGuard(LimitGuardConfig(pause_share=0.95))
    assert guard.evaluate(windows(94.0), T0)[1] == []
    [need] = guard.evaluate(windows(95.0), T0)[1]
    assert (need.account, need.resets_at) == (ACCOUNT, T0 + 3600)
    assert guard.evaluate(windows(100.0, resets=T0), T0)[1] == []  # it resets now: nothing to wait for


def test_a_paused_accounts_full_window_is_still_named_for_the_sessions_that_start_later():
    guard = LimitGuard(LimitGuardConfig())
    guard.paused[ACCOUNT] = PausedAccount(ACCOUNT, FIVE_HOUR, T0 + 3600, [("n0", "s1")], "r-1", "g-1", T0)
    [need] = guard.evaluate(windows(100.0), T0)[1]
    assert need.account == ACCOUNT


def test_a_disabled_guard_decides_nothing():
    assert LimitGuard(LimitGuardConfig(enabled=False)).evaluate(windows(100.0), T0) == ([], [])


def test_pause_share_below_warn_share_is_a_config_error():
    with pytest.raises(ValueError, match="pause_share must not be below warn_share"):
        LimitGuardConfig(warn_share=0.9, pause_share=0.5)
