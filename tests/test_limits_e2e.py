"""Account limits across machines, in the real supervisor against real synthetic agents on loopback:
two nodes' sessions of one account add up in its window, and the limit_guard warns, asks to pause
the account's sessions, pauses them on a grant and resumes them after the reset (ManualClock)."""

from __future__ import annotations

import asyncio
import time
from contextlib import AsyncExitStack
from typing import Any

from agentkit import running_agent, wait_until
from heady_agent.clock import ManualClock
from heady_agent.protocol import Event
from heady_tui.accounts import FIVE_HOUR, WEEK, AccountWindow
from heady_tui.config import Config, Paths
from heady_tui.events import HeadyEvent
from heady_tui.supervisor import Supervisor
from heady_tui.ui.samplefleet import CODEX_ACCOUNT
from test_consent_lifecycle import ON_BUILD_1, brain_on_sample_fleet
from uikit import tick

ACCOUNT = "synthetic:anthropic"  # the synthetic agents' Claude sessions share it across nodes
REFRESH_S = 30.0
FAST: dict[str, Any] = {
    "detector": {"evaluation_interval_s": 0.1},
    "policies": {"resume_on_idle": {"enabled": False}, "restart_on_compaction": {"enabled": False},
                 "kill_on_cost": {"enabled": False}},
    "cost": {"max_session_burn_usd_per_h": None},
    "limits": {"refresh_s": REFRESH_S},
}


async def _fleet(tmp_path, stack: AsyncExitStack, clock: ManualClock, events: list[HeadyEvent], agents: list[Any],
                 overrides: dict[str, Any] | None = None) -> Supervisor:
    nodes = []
    for i in range(2):
        agent = await stack.enter_async_context(
            running_agent(tmp_path, scenario="calm", node_index=i, node_count=2, name=f"n{i}", extra={"interval_s": 0.25}))
        nodes.append({"name": f"n{i}", "url": agent.url, "token": agent.token})
        agents.append(agent)
    config = Config.model_validate({"nodes": nodes, **FAST, **(overrides or {})})
    sup = Supervisor(config, Paths(tmp_path / "config.toml", tmp_path / "data"), clock=clock)
    sup.subscribe(events.append)
    await sup.start()
    stack.push_async_callback(sup.stop)
    return sup


def _live_of(sup: Supervisor, node: str) -> list[str]:
    return [r.id for r in sup.fleet.sessions.values() if r.node == node and r.account == ACCOUNT and r.live]


def _window(sup: Supervisor, window: str) -> AccountWindow | None:
    assert sup.brain is not None
    return next((w for w in sup.brain.accounts() if w.account == ACCOUNT and w.window == window), None)


async def _refreshed(sup: Supervisor, clock: ManualClock, check: Any, what: str) -> None:
    """Step the clock a refresh at a time until the brain's derived windows satisfy `check`. A step
    waits for the brain's refresh at the current time, so the clock never runs past a window's reset
    while the brain lags behind."""
    assert sup.brain is not None
    brain = sup.brain
    stepped_at = float("-inf")

    def stepped() -> bool:
        nonlocal stepped_at
        if check():
            return True
        windows = brain.accounts()
        if not windows or max(w.updated for w in windows) >= stepped_at:
            clock.advance(REFRESH_S)
            stepped_at = clock.now()
        return False

    await wait_until(stepped, timeout=60, what=what)


def named(events: list[HeadyEvent], name: str, **match: Any) -> list[HeadyEvent]:
    return [e for e in events if e.name == name and all(e.details.get(k) == v for k, v in match.items())]


async def test_two_nodes_spending_on_one_account_add_up_in_its_estimated_window(tmp_path):
    clock = ManualClock(time.time())
    async with AsyncExitStack() as stack:
        agents = [await stack.enter_async_context(running_agent(tmp_path, sources=(), name=f"n{i}")) for i in range(2)]
        config = Config.model_validate({
            "nodes": [{"name": f"n{i}", "url": a.url, "token": a.token} for i, a in enumerate(agents)], **FAST,
            "limits": {"refresh_s": REFRESH_S, "accounts": {ACCOUNT: {"five_hour_usd": 2.0}}}})
        sup = Supervisor(config, Paths(tmp_path / "config.toml", tmp_path / "data"), clock=clock)
        await sup.start()
        stack.push_async_callback(sup.stop)
        call = {"provider": "anthropic", "model": "claude-sonnet-4-5", "input_tokens": 100_000, "output_tokens": 10_000}
        for node, agent in enumerate(agents):
            agent.server.context.emit("session.started", f"s{node}", {"source": "test", "account": ACCOUNT})
            agent.server.context.emit("session.started", f"other{node}", {"source": "test", "account": "claude:someone-else"})
            for _ in range(node + 1):
                agent.server.context.emit("llm.call", f"s{node}", call)
            agent.server.context.emit("llm.call", f"other{node}", call)
        ours = [("n0", "s0"), ("n1", "s1")]
        await wait_until(lambda: [sup.fleet.sessions[k].calls if k in sup.fleet.sessions else 0 for k in ours] == [1, 2],
                         timeout=60, what="the calls of both nodes")
        spent = sum(sup.fleet.sessions[k].cost_usd for k in ours)
        assert spent > 0
        await _refreshed(sup, clock, lambda: (w := _window(sup, FIVE_HOUR)) is not None and w.nodes == ("n0", "n1"),
                         "the 5-hour window with both nodes")
        window = _window(sup, FIVE_HOUR)
        assert window is not None and window.basis == "estimate" and window.limit_usd == 2.0
        assert abs(window.used_usd - spent) < 1e-9 and window.sessions == 2
        assert window.used_percent is not None and abs(window.used_percent - spent / 2.0 * 100) < 1e-9
        week = _window(sup, WEEK)
        assert week is not None and week.used_percent is None and abs(week.used_usd - spent) < 1e-9  # no weekly budget
        assert sup.brain is not None and sup.brain.records is not None
        assert [w.to_dict() for w in await sup.brain.records.account_windows()] == [w.to_dict() for w in sup.brain.accounts()]


async def test_official_reports_from_two_nodes_make_one_window_with_its_burn_rate_and_time_to_the_limit(tmp_path):
    clock = ManualClock(time.time())
    events: list[HeadyEvent] = []
    agents: list[Any] = []
    async with AsyncExitStack() as stack:
        sup = await _fleet(tmp_path, stack, clock, events, agents)
        await wait_until(lambda: _live_of(sup, "n0") and _live_of(sup, "n1"), timeout=60, what="the account live on both nodes")
        now = clock.now()
        resets = now + 3 * 3600
        for agent, node, used, ago in ((agents[0], "n0", 40.0, 600.0), (agents[1], "n1", 46.0, 0.0)):
            agent.server.context.emit("session.limits", _live_of(sup, node)[0], {
                "primary": {"used_percent": used, "window_minutes": 300, "resets_at": resets},
                "secondary": {"used_percent": 12.0, "window_minutes": 10080, "resets_at": now + 5 * 86400}}, ts=now - ago)
        await _refreshed(sup, clock, lambda: (w := _window(sup, FIVE_HOUR)) is not None and w.basis == "official"
                         and w.used_percent == 46.0, "the official 5-hour window")
        window = _window(sup, FIVE_HOUR)
        assert window is not None and window.resets_at == resets and {"n0", "n1"} <= set(window.nodes)
        assert window.burn_percent_per_h is not None and abs(window.burn_percent_per_h - 36.0) < 1e-6
        assert window.full_at is not None and abs(window.full_at - (window.updated + 54.0 / 36.0 * 3600)) < 1e-3
        week = _window(sup, WEEK)
        assert week is not None and (week.basis, week.used_percent) == ("official", 12.0)


async def test_the_guard_warns_asks_pauses_the_account_on_a_grant_and_resumes_it_after_the_reset(tmp_path):
    clock = ManualClock(time.time())
    events: list[HeadyEvent] = []
    agents: list[Any] = []
    async with AsyncExitStack() as stack:
        sup = await _fleet(tmp_path, stack, clock, events, agents)
        assert sup.brain is not None
        await wait_until(lambda: _live_of(sup, "n0") and _live_of(sup, "n1"), timeout=60, what="the account live on both nodes")
        resets = clock.now() + 2 * 3600

        def report(used: float) -> None:
            agents[0].server.context.emit("session.limits", _live_of(sup, "n0")[0], {
                "primary": {"used_percent": used, "window_minutes": 300, "resets_at": resets}}, ts=clock.now())

        report(85.0)
        await _refreshed(sup, clock, lambda: bool(named(events, "budget.notice", account=ACCOUNT)), "the 80 % notice")
        [notice] = named(events, "budget.notice", account=ACCOUNT)
        assert (notice.details["window"], notice.details["percent"], notice.details["basis"]) == (FIVE_HOUR, 85.0, "official")
        assert not named(events, "consent.requested")

        report(100.0)
        topic = f"limit_guard:{ACCOUNT}"
        await _refreshed(sup, clock, lambda: bool(named(events, "consent.requested", topic=topic)), "the pause request")
        [request] = [r for r in sup.brain.pending_consent() if r.plan.get("topic") == topic]
        targets = {(a["node"], a["target"]) for a in request.plan["actions"]}
        assert {n for n, _ in targets} == {"n0", "n1"} and all(a["action"] == "session.pause" for a in request.plan["actions"])
        assert len(named(events, "budget.notice", account=ACCOUNT)) == 1  # still over 80 %: no second notice

        await sup.brain.decide_consent(request.id, "single")
        paused = {(e.details["node"], e.details["session"]) for e in named(events, "policy.action", policy="limit_guard",
                                                                            action="session.pause", ok=True)}
        assert paused and paused <= targets
        await wait_until(lambda: all(sup.fleet.sessions[k].state == "paused" for k in paused if sup.fleet.sessions[k].live),
                         timeout=30, what="the account's sessions paused")
        assert not named(events, "policy.action", action="session.resume")

        clock.advance(resets - clock.now())
        # Resumes go out one command at a time: wait for all of them.
        await wait_until(lambda: len(named(events, "policy.action", policy="limit_guard", action="session.resume")) >= len(paused),
                         timeout=30, what="the resumes after the reset")
        resumed = {(e.details["node"], e.details["session"]) for e in named(events, "policy.action", policy="limit_guard",
                                                                             action="session.resume")}
        assert resumed == paused
        for _ in range(600):  # the audit entry follows the last resume
            actions = [e.action for e in await sup.brain.audit_entries(1000)]
            if "limits.resume" in actions:
                break
            await asyncio.sleep(0.05)
        assert actions.index("limits.pause") < actions.index("limits.resume")


async def test_a_session_that_starts_after_the_pause_is_asked_about_and_the_paused_ones_are_not(tmp_path):
    clock = ManualClock(time.time())
    events: list[HeadyEvent] = []
    agents: list[Any] = []
    topic = f"limit_guard:{ACCOUNT}"
    async with AsyncExitStack() as stack:
        sup = await _fleet(tmp_path, stack, clock, events, agents)
        assert sup.brain is not None
        await wait_until(lambda: _live_of(sup, "n0"), timeout=60, what="the account live on n0")
        agents[0].server.context.emit("session.limits", _live_of(sup, "n0")[0], {
            "primary": {"used_percent": 100.0, "window_minutes": 300, "resets_at": clock.now() + 2 * 3600}}, ts=clock.now())
        await _refreshed(sup, clock, lambda: bool(named(events, "consent.requested", topic=topic)), "the pause request")
        [first] = [r for r in sup.brain.pending_consent() if r.plan.get("topic") == topic]
        await sup.brain.decide_consent(first.id, "single")
        held = {(a["node"], a["target"]) for a in first.plan["actions"]}

        def later() -> set[tuple[str, str]]:
            return {(a["node"], a["target"]) for r in sup.brain.pending_consent() if r.plan.get("topic") == topic
                    and r.id != first.id for a in r.plan["actions"]}  # fmt: skip

        # The synthetic fleet keeps starting sessions of the account: those are asked about next.
        await _refreshed(sup, clock, lambda: bool(later()), "a request for sessions that started after the pause")
        assert not later() & held  # what the first pause holds is not asked about again


async def test_a_pause_request_and_a_rebalance_request_stay_open_side_by_side(tmp_path):
    async with brain_on_sample_fleet(tmp_path) as (sup, clock):
        brain = sup.brain
        assert brain is not None
        node = sup.fleet.nodes["build-1"]
        assert node.journal is not None
        full = Event(journal=node.journal, seq=node.last_seq + 1, ts=clock.now(), kind="session.limits", session="bu000-s1",
                     data={"primary": {"used_percent": 100.0, "window_minutes": 300, "resets_at": clock.now() + 3600}})
        await sup.link_frames("build-1", node.journal, [full])
        clock.advance(sup.config.limits.refresh_s)
        topics = lambda: {r.plan.get("topic", "rebalance") for r in brain.pending_consent()}  # noqa: E731
        for _ in range(40):
            await tick(sup, clock, ON_BUILD_1)
            if "rebalance" in topics():
                break
        [rebalance] = [r for r in brain.pending_consent() if "topic" not in r.plan]
        assert topics() == {"rebalance", f"limit_guard:{CODEX_ACCOUNT}"}
        await brain.decide_consent(rebalance.id, "single")
        assert topics() == {f"limit_guard:{CODEX_ACCOUNT}"}
