"""Healing: grouping with group_wait, inhibition, per-node limit, auto-dispatch vs approval, expiry."""

from __future__ import annotations

from dataclasses import astuple

import pytest

from heady_tui.config import HealingConfig
from heady_tui.engine.healing import (
    CallSummary,
    CallView,
    HealingEngine,
    HealingError,
    HealingInput,
    NodeHealth,
    SessionCallWindows,
    SessionHealth,
)


def inp(now, nodes=(), sessions=(), providers=None) -> HealingInput:
    return HealingInput(now, tuple(nodes), tuple(sessions), providers or {}, 0.0, None)


def offline(name="n1", since=0.0) -> NodeHealth:
    return NodeHealth(name, "offline", since, None, "1.0", None)


def slow_session(node="n1") -> SessionHealth:
    calls = CallSummary.of([CallView(float(i), 70_000.0, True, 100, 0.01) for i in range(6)])
    return SessionHealth(node, "s1", "running", True, "reviewer", "anthropic", 100.0, calls)


def test_weak_point_waits_group_wait_before_a_task_is_created():
    he = HealingEngine(HealingConfig(group_wait_s=30))
    assert he.run_cycle(inp(0, [offline()]), "full").tasks_created == []
    cycle = he.run_cycle(inp(30, [offline()]), "full")
    assert len(cycle.tasks_created) == 1 and he.tasks[cycle.tasks_created[0]].strategy == "revive_agent"


def test_what_clears_by_itself_is_never_dispatched():
    he = HealingEngine(HealingConfig(group_wait_s=30))
    he.run_cycle(inp(0, [offline()]), "full")
    cycle = he.run_cycle(inp(40, [NodeHealth("n1", "online", 20, 40, "1.0", 0.0)]), "full")
    assert cycle.tasks_created == [] and he.tasks == {}


def test_node_weak_point_suppresses_session_issues_on_that_node():
    he = HealingEngine(HealingConfig(group_wait_s=0))
    cycle = he.run_cycle(inp(0, [offline()], [slow_session()]), "full")
    assert cycle.suppressed >= 1
    assert all(wp["subject_kind"] == "node" for wp in cycle.weak_points)


def test_auto_dispatch_strategies_dispatch_the_rest_wait_for_approval():
    he = HealingEngine(HealingConfig(group_wait_s=0, auto_dispatch=["revive_agent"]))
    online = NodeHealth("n1", "online", 0, 100, "1.0", 0.0)
    he.run_cycle(inp(100, [online, offline("n2")], [slow_session()]), "full")
    states = {t.strategy: t.state for t in he.tasks.values()}
    assert states == {"revive_agent": "dispatched", "optimize_sessions": "pending-approval"}


def test_at_most_max_tasks_per_node_are_dispatched():
    he = HealingEngine(HealingConfig(group_wait_s=0, max_tasks_per_node=1, auto_dispatch=["optimize_sessions", "cost_control"]))
    calls = CallSummary.of([CallView(float(i), 70_000.0, True, 100, 0.9) for i in range(6)])
    s = SessionHealth("n1", "s1", "running", True, "reviewer", "anthropic", 100.0, calls)
    cycle = he.run_cycle(inp(100, [NodeHealth("n1", "online", 0, 100, "1.0", 0.0)], [s]), "full")
    assert len(cycle.dispatch) == 1
    assert sorted(t.state for t in he.tasks.values()) == ["dispatched", "suggested"]


def test_revive_task_is_done_when_the_node_is_back_and_expires_otherwise():
    he = HealingEngine(HealingConfig(group_wait_s=0, task_expiry_s=100))
    he.run_cycle(inp(0, [offline("n1"), offline("n2")]), "full")
    done = he.node_back("n1", 10)
    assert [t.state for t in done] == ["done"]
    he.run_cycle(inp(200, [offline("n2")]), "full")
    assert sorted(t.state for t in he.tasks.values())[:2] == ["done", "expired"]


def test_unknown_strategy_in_auto_dispatch_is_refused():
    with pytest.raises(ValueError, match="unknown strategy 'reboot'"):
        HealingConfig(auto_dispatch=["reboot"])


def test_triggers_force_a_full_cycle():
    he = HealingEngine(HealingConfig(trigger_every_calls=10))
    he.run_cycle(inp(0), "full")
    assert he.due(1) is None
    he.count_calls(10)
    assert he.due(2).startswith("triggered:")


def test_approving_an_unknown_task_is_a_clear_error():
    with pytest.raises(HealingError, match="no task with id 't-x'"):
        HealingEngine(HealingConfig()).approve("t-x", 0)


def running_on(provider: str, session: str, node: str = "n1") -> SessionHealth:
    return SessionHealth(node, session, "running", True, None, provider, 100.0, CallSummary())


def backed_off_repair(he: HealingEngine):
    """A failing provider's repair_endpoint task, approved and carried out (two sessions paused)."""
    sessions = [running_on("anthropic", "s1"), running_on("anthropic", "s2"), running_on("openai", "s3")]
    failing = {"anthropic": (20, 10), "openai": (20, 0)}
    he.run_cycle(inp(0, sessions=sessions, providers=failing), "light")
    task = next(t for t in he.tasks.values() if t.strategy == "repair_endpoint")
    assert task.state == "pending-approval" and [c["target"] for c in task.commands] == ["s1", "s2"]
    he.approve(task.id, 1)
    he.backed_off(task.id, task.commands, [], 1)
    return task


def test_repair_endpoint_waits_dispatched_while_the_provider_still_fails():
    he = HealingEngine(HealingConfig(group_wait_s=0))
    task = backed_off_repair(he)
    cycle = he.run_cycle(inp(10, providers={"anthropic": (15, 6)}), "light")
    assert cycle.recovered == [] and task.state == "dispatched"
    assert [(c["action"], c["target"]) for c in task.on_recovery] == [("session.resume", "s1"), ("session.resume", "s2")]


@pytest.mark.parametrize("providers", [{"anthropic": (30, 1)}, {}], ids=["healthy traffic", "a quiet window"])
def test_repair_endpoint_resumes_what_it_paused_when_the_provider_recovers(providers):
    he = HealingEngine(HealingConfig(group_wait_s=0))
    task = backed_off_repair(he)
    cycle = he.run_cycle(inp(70, providers=providers), "light")
    assert cycle.recovered == [task.id]
    he.resumed(task.id, [], 71)
    assert task.state == "done" and task.on_recovery == [] and "resumed 2 of 2" in task.result


def test_repair_endpoint_that_expires_waiting_still_resumes_its_sessions():
    he = HealingEngine(HealingConfig(group_wait_s=0, task_expiry_s=100))
    task = backed_off_repair(he)
    cycle = he.run_cycle(inp(200, providers={"anthropic": (20, 10)}), "light")
    assert task.state == "expired" and cycle.recovered == [task.id]
    he.resumed(task.id, ["n1/s2: unknown_session"], 201)
    assert task.state == "expired" and "resumed 1 of 2 session(s) anyway" in task.result


def test_repair_endpoint_with_nothing_paused_is_done_at_once():
    he = HealingEngine(HealingConfig(group_wait_s=0))
    he.run_cycle(inp(0, providers={"anthropic": (20, 10)}), "light")
    task = next(iter(he.tasks.values()))
    he.approve(task.id, 1)
    assert he.backed_off(task.id, [], [], 1).state == "done"


def test_restore_brings_back_open_tasks_and_those_with_sessions_to_resume_only():
    he = HealingEngine(HealingConfig(group_wait_s=0))
    waiting = backed_off_repair(he)
    saved = [t.to_dict() for t in he.tasks.values()]
    closed = {**saved[0], "id": "t-closed", "state": "done", "on_recovery": []}
    fresh = HealingEngine(HealingConfig())
    fresh.restore([*saved, closed])
    assert list(fresh.tasks) == [waiting.id] and fresh.tasks[waiting.id].on_recovery == waiting.on_recovery


def test_a_session_window_sums_what_a_rescan_of_its_calls_gives():
    windows = SessionCallWindows(keep_s=300)
    calls = [CallView(1000.0 + i, 500.0 + i, i % 3 != 0, 100 + i, 0.01 * i) for i in range(40)] + \
            [CallView(1040.0 + i, 900.0, False, 10, 0.5) for i in range(4)]
    for c in calls:
        windows.add(("n1", "s1"), *astuple(c), "anthropic")
    assert windows.summary(("n1", "s1"), 1100.0) == CallSummary.of(calls, "anthropic")


def test_a_session_window_forgets_calls_older_than_it_keeps_and_a_failure_run_it_no_longer_holds():
    windows = SessionCallWindows(keep_s=300)
    for i in range(10):
        windows.add(("n1", "s1"), *astuple(CallView(1000.0 + i, 100.0, False, 10, 0.1)), "anthropic")
    windows.add(("n1", "s1"), *astuple(CallView(1400.0, 100.0, False, 10, 0.1)), "anthropic")
    summary = windows.summary(("n1", "s1"), 1400.0)
    assert (summary.calls, summary.failed, summary.failed_run, len(summary.recent)) == (1, 1, 1, 1)
    assert windows.summary(("n1", "s1"), 2000.0) == CallSummary()


def test_a_late_call_is_counted_in_its_own_time():
    windows = SessionCallWindows(keep_s=300)
    windows.add(("n1", "s1"), *astuple(CallView(1100.0, 100.0, True, 10, 0.1)), "anthropic")
    windows.add(("n1", "s1"), *astuple(CallView(1050.0, 100.0, True, 10, 0.1)), "anthropic")  # a replayed call
    assert windows.summary(("n1", "s1"), 1360.0).calls == 1  # 1050 is out of the window, 1100 is in
