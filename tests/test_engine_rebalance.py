"""Rebalance planning: priority, caps on targets, nothing moved to a node over its limits; the run's bounds."""

from __future__ import annotations

from heady_tui.config import DetectorConfig, RebalanceConfig
from heady_tui.engine.rebalance import Caps, NodeView, RebalanceRun, build_plan, priority_of

DET = DetectorConfig()
CFG = RebalanceConfig()


def node(name, queue=0, cpu=10.0, mem=8000.0, errors=None, **kw) -> NodeView:
    return NodeView(name, True, cpu, mem, 0.5, queue, errors, **kw)


def test_priority_follows_design():
    assert priority_of({"task_queue_depth": 1001}, DET, CFG) == "critical"
    assert priority_of({"error_rate": 0.11}, DET, CFG) == "critical"
    assert priority_of({"node_load_variance": 0.51}, DET, CFG) == "high"
    assert priority_of({"response_time_p95": 5001}, DET, CFG) == "high"
    assert priority_of({"node_load_variance": 0.4}, DET, CFG) == "medium"


def test_critical_plan_moves_queued_work_to_healthy_nodes():
    plan = build_plan([node("a", 1500), node("b"), node("c")], {"task_queue_depth": 1500}, DET, CFG)
    moves = [a for a in plan.actions if a.kind == "move"]
    assert {m.to_node for m in moves} == {"b", "c"} and all(m.node == "a" for m in moves)
    assert all(m.count <= CFG.max_moves_per_step for m in moves)


def test_no_work_moves_to_a_node_over_cpu_or_under_free_memory():
    plan = build_plan([node("a", 1500), node("hot", cpu=95), node("tight", mem=100), node("ok")], {"task_queue_depth": 1500}, DET, CFG)
    targets = {a.to_node for a in plan.actions if a.kind == "move"}
    assert targets == {"ok"}
    assert "hot" in plan.excluded and "tight" in plan.excluded


def test_no_work_moves_to_a_metrics_only_node():
    plan = build_plan([node("a", 1500), node("prom:9100", metrics_only=True), node("ok")], {"task_queue_depth": 1500}, DET, CFG)
    assert {a.to_node for a in plan.actions if a.kind == "move"} == {"ok"}
    assert plan.excluded["prom:9100"] == "metrics-only"


def test_failing_nodes_are_drained_and_emptied_in_a_critical_plan():
    plan = build_plan([node("bad", 100, errors=0.9), node("good")], {"error_rate": 0.5}, DET, CFG)
    kinds = [(a.kind, a.node) for a in plan.actions]
    assert ("drain", "bad") in kinds and ("move", "bad") in kinds


def test_a_queue_backlog_raises_concurrency_on_healthy_nodes():
    plan = build_plan([node("a", 1500, running_managed=3), node("b", running_managed=2)], {"task_queue_depth": 1500}, DET, CFG)
    assert {(a.node, a.value) for a in plan.actions if a.kind == "concurrency"} == {("a", 4), ("b", 3)}


def test_failing_calls_lower_concurrency_instead_of_raising_it():
    # A provider rate-limiting a third of the calls: more at once would only add to what it refuses.
    nodes = [node("a", 1500, errors=0.3, running_managed=3), node("b", errors=0.3, running_managed=1)]
    plan = build_plan(nodes, {"task_queue_depth": 1500, "error_rate": 0.3}, DET, CFG)
    assert {(a.node, a.value) for a in plan.actions if a.kind == "concurrency"} == {("a", 2)}


def test_fingerprint_ignores_counts_but_not_targets():
    a = build_plan([node("a", 1500), node("b")], {"task_queue_depth": 1500}, DET, CFG)
    b = build_plan([node("a", 1600), node("b")], {"task_queue_depth": 1600}, DET, CFG)
    c = build_plan([node("a", 1500), node("b"), node("c")], {"task_queue_depth": 1500}, DET, CFG)
    assert a.fingerprint == b.fingerprint != c.fingerprint


def test_grant_caps_only_narrow_the_config_caps():
    caps = Caps.from_config(CFG).tightest({"max_cpu_percent": 50, "max_duration_s": 10_000})
    assert caps.max_cpu_percent == 50 and caps.max_duration_s == CFG.max_duration_s


def test_run_stops_after_balanced_checks_in_a_row():
    plan = build_plan([node("a", 1500), node("b")], {"task_queue_depth": 1500}, DET, CFG)
    run = RebalanceRun("r", plan, None, 0.0, CFG)
    assert [run.observe(level, t) for t, level in enumerate(["critical", "balanced", "balanced", "critical", "balanced", "balanced", "balanced"])][-1] == "balanced"


def test_run_stops_at_max_duration():
    plan = build_plan([node("a", 1500), node("b")], {"task_queue_depth": 1500}, DET, CFG)
    run = RebalanceRun("r", plan, None, 0.0, CFG)
    assert run.observe("critical", CFG.max_duration_s - 1) is None
    assert run.observe("critical", CFG.max_duration_s) == "max_duration"


def test_run_hands_out_one_step_per_step_interval():
    plan = build_plan([node("a", 1500), node("b"), node("c")], {"task_queue_depth": 1500}, DET, CFG)
    run = RebalanceRun("r", plan, None, 0.0, CFG)
    assert run.next_step(0.0) is not None
    assert run.next_step(0.5) is None
    assert run.next_step(CFG.step_interval_s) is not None


def test_a_high_plan_renices_the_hot_nodes_sessions_but_never_a_high_priority_one():
    from heady_tui.engine.rebalance import SessionView

    hot = NodeView("hot", True, 95.0, 8000.0, 2.0, 0, None, sessions=(
        SessionView("bulk", "running", None, 0, "normal"), SessionView("urgent", "running", None, 0, "high")))
    plan = build_plan([hot, node("cool")], {"node_load_variance": 0.9}, DET, CFG)
    assert [(a.kind, a.target) for a in plan.actions if a.kind == "renice"] == [("renice", "bulk")]
