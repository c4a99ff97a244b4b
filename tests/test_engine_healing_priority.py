"""Healing engine: weak-point severity, task priority and its dispatch order, one task per weak point."""

from __future__ import annotations

import pytest

from heady_tui.config import HealingConfig
from heady_tui.engine.healing import (
    CallSummary,
    CallView,
    HealingEngine,
    HealingInput,
    NodeHealth,
    SessionHealth,
    Task,
    by_severity,
    task_priority,
)


def inp(now, nodes=(), sessions=(), *, projected=0.0, budget=None) -> HealingInput:
    return HealingInput(now, tuple(nodes), tuple(sessions), {}, projected, budget)


def online(name="n1", now=0.0, version="1.0") -> NodeHealth:
    return NodeHealth(name, "online", 0.0, now, version, 0.0)


def silent(name="n1", last_seen=0.0) -> NodeHealth:
    return NodeHealth(name, "online", 0.0, last_seen, "1.0", 0.0)


def offline(name="n1") -> NodeHealth:
    return NodeHealth(name, "offline", 0.0, None, "1.0", None)


def spender(node="n1", session="s1", active=True, managed=None) -> SessionHealth:
    calls = CallSummary.of([CallView(float(i), 900.0, True, 100, 0.30) for i in range(6)])
    return SessionHealth(node, session, "running", active, managed, "anthropic", 100.0, calls)


def over_budget(now, session=None, active=True):
    """One online node whose session (the top spender) makes the day's projection exceed a $1 budget."""
    return inp(now, [online(now=now)], [session or spender(active=active)], projected=5.0, budget=1.0)


def test_an_offline_node_is_a_critical_weak_point_a_silent_one_a_warning():
    he = HealingEngine(HealingConfig(group_wait_s=0))
    cycle = he.run_cycle(inp(100, [offline("n1"), silent("n2", last_seen=0.0)]), "full")
    assert {wp["subject"]: wp["severity"] for wp in cycle.weak_points} == {"n1": "critical", "n2": "warning"}


def test_a_weak_point_becomes_critical_once_when_a_critical_issue_joins_it():
    he = HealingEngine(HealingConfig(group_wait_s=60))
    first = he.run_cycle(inp(100, [silent("n1", last_seen=0.0)]), "full")
    second = he.run_cycle(inp(110, [offline("n1")]), "full")
    later = [he.run_cycle(inp(120 + i, [offline("n1")]), "full") for i in range(5)]
    [wp] = second.weak_points
    assert first.critical == [] and second.critical == [wp["id"]] and wp["severity"] == "critical"
    assert all(c.critical == [] for c in later) and {w["id"] for c in later for w in c.weak_points} == {wp["id"]}


def test_weak_points_are_ordered_critical_first_then_the_longest_open():
    he = HealingEngine(HealingConfig(group_wait_s=60))
    he.run_cycle(inp(100, [silent("old-warning", 0.0)]), "full")
    he.run_cycle(inp(110, [silent("old-warning", 0.0), offline("new-critical"), silent("new-warning", 0.0)]), "full")
    he.run_cycle(inp(120, [silent("old-warning", 0.0), offline("new-critical"), silent("new-warning", 0.0),
                           offline("newest-critical")]), "full")
    ordered = [wp.subject for wp in by_severity(list(he.weak_points.values()))]
    assert ordered == ["new-critical", "newest-critical", "old-warning", "new-warning"]


@pytest.mark.parametrize(("strategy", "severity", "priority"), [
    ("environment_sync", "warning", "low"),
    ("optimize_sessions", "warning", "normal"),
    ("cost_control", "warning", "normal"),
    ("cost_control", "critical", "high"),
    ("revive_agent", "warning", "high"),
    ("revive_agent", "critical", "critical"),
    ("repair_endpoint", "critical", "critical"),
])
def test_task_priority_comes_from_the_strategy_raised_a_step_when_critical(strategy, severity, priority):
    assert task_priority(strategy, severity) == priority


def test_a_task_carries_the_priority_of_its_weak_point_when_it_is_made():
    he = HealingEngine(HealingConfig(group_wait_s=0))
    he.run_cycle(inp(100, [offline("down"), silent("quiet", 0.0), online("old", 100, version="0.9"),
                           online("a", 100), online("b", 100)]), "full")
    assert {(t.subject, t.strategy): t.priority for t in he.tasks.values()} == {
        ("down", "revive_agent"): "critical", ("quiet", "revive_agent"): "high", ("old", "environment_sync"): "low"}


def test_waiting_tasks_are_dispatched_highest_priority_first_within_the_node_limit():
    he = HealingEngine(HealingConfig(group_wait_s=0, max_tasks_per_node=1, auto_dispatch=["revive_agent", "environment_sync"]))
    low = Task("t-low", "environment_sync", "n1", "n1", "wp-1", 0.0, 0.0, 1e9, "suggested", [], "resync", priority="low")
    top = Task("t-top", "revive_agent", "n1", "n1", "wp-2", 5.0, 5.0, 1e9, "suggested", [], "reconnect", priority="critical")
    he.tasks = {t.id: t for t in (low, top)}
    cycle = he.run_cycle(inp(10), "light")
    assert cycle.dispatch == ["t-top"] and (low.state, top.state) == ("suggested", "dispatched")
    he.finish("t-top", True, "back", 11)
    assert he.run_cycle(inp(12), "light").dispatch == ["t-low"]


def test_a_weak_point_whose_task_succeeded_gets_no_new_task_while_its_condition_holds():
    he = HealingEngine(HealingConfig(group_wait_s=0, auto_dispatch=["cost_control"]))
    [first] = he.run_cycle(over_budget(0), "full").tasks_created
    he.finish(first, True, "1 command(s) ok", 1)
    created = [he.run_cycle(over_budget(t), "full").tasks_created for t in range(2, 92, 6)]
    assert created == [[]] * len(created) and list(he.tasks) == [first]


def test_once_the_condition_clears_a_new_episode_gets_a_new_task():
    he = HealingEngine(HealingConfig(group_wait_s=0, auto_dispatch=["cost_control"]))
    [first] = he.run_cycle(over_budget(0), "full").tasks_created
    he.finish(first, True, "1 command(s) ok", 1)
    he.run_cycle(inp(10, [online(now=10)], [spender()], projected=0.5, budget=1.0), "full")  # back under budget
    [second] = he.run_cycle(over_budget(20), "full").tasks_created
    assert second != first and he.tasks[second].weak_point != he.tasks[first].weak_point


def test_a_weak_point_whose_task_failed_stays_quiet_until_its_condition_clears():
    he = HealingEngine(HealingConfig(group_wait_s=0, auto_dispatch=["cost_control"]))
    [first] = he.run_cycle(over_budget(0), "full").tasks_created
    he.finish(first, False, "session.pause on n1 failed: unknown_session", 1)
    assert [he.run_cycle(over_budget(t), "full").tasks_created for t in (5, 10)] == [[], []]


def test_a_weak_point_whose_task_expired_gets_another_task():
    he = HealingEngine(HealingConfig(group_wait_s=0, task_expiry_s=50))
    [first] = he.run_cycle(inp(0, [offline()]), "full").tasks_created
    he.run_cycle(inp(60, [offline()]), "full")  # the cycle that finds it expired
    [second] = he.run_cycle(inp(61, [offline()]), "full").tasks_created
    assert he.tasks[first].state == "expired" and he.tasks[second].weak_point == he.tasks[first].weak_point


def test_no_task_is_made_for_a_session_that_has_ended():
    he = HealingEngine(HealingConfig(group_wait_s=10))
    he.run_cycle(over_budget(0), "full")
    # A light cycle does not run the cost analyzer, so the weak point is still open; its session ended.
    cycle = he.run_cycle(inp(20, [online(now=20)], [spender(active=False)], projected=5.0, budget=1.0), "light")
    assert cycle.tasks_created == [] and he.tasks == {}


def test_the_cost_weak_point_names_the_top_running_spender_not_one_already_paused():
    he = HealingEngine(HealingConfig(group_wait_s=0))
    paused = SessionHealth("n1", "s1", "paused", True, None, "anthropic", 100.0,
                           CallSummary.of([CallView(float(i), 900.0, True, 100, 2.0) for i in range(6)]))
    cycle = he.run_cycle(inp(10, [online(now=10)], [paused, spender(session="s2")], projected=5.0, budget=1.0), "full")
    assert [wp["subject"] for wp in cycle.weak_points if wp["analyzer"] == "cost"] == ["n1/s2"]


def test_an_open_task_restored_at_a_start_is_adopted_by_the_new_weak_point_not_duplicated():
    before = HealingEngine(HealingConfig(group_wait_s=0, auto_dispatch=[]))
    [task_id] = before.run_cycle(inp(0, [offline()]), "full").tasks_created
    after = HealingEngine(HealingConfig(group_wait_s=0, auto_dispatch=[]))
    after.restore([before.tasks[task_id].to_dict()])
    cycle = after.run_cycle(inp(10, [offline()]), "full")
    assert cycle.tasks_created == [] and list(after.tasks) == [task_id]
    assert [wp["task_id"] for wp in cycle.weak_points] == [task_id]
