"""EquilibriumDetector: metric definitions, pending/firing, hysteresis, unknown nodes, persistence."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from heady_tui.config import DetectorConfig
from heady_tui.engine.detector import CallSample, CallWindow, EquilibriumDetector, NodeSample, compute_metrics

CFG = DetectorConfig(for_seconds=10, clear_seconds=15, keep_firing_seconds=10, exit_ratio=0.9, evaluation_interval_s=1)


def nodes(queue: int, t: float) -> list[NodeSample]:
    return [NodeSample("a", True, 1.0, 4, queue, t), NodeSample("b", True, 1.0, 4, 0, t)]


def run(det: EquilibriumDetector, queue_at, start: float = 0.0, seconds: int = 60, step: float = 1.0):
    readings = []
    t = start
    while t <= start + seconds:
        reading, _ = det.evaluate(t, nodes(queue_at(t), t), [])
        readings.append(reading)
        t += step
    return readings


def test_variance_is_coefficient_of_variation_of_utilisation():
    values = compute_metrics(
        [NodeSample("a", True, 4.0, 4, 0, 1), NodeSample("b", True, 0.0, 4, 0, 1)], [], now=1, window_s=60, min_calls=20
    )
    assert values["node_load_variance"] == 1.0  # utils 1.0 and 0.0: mean 0.5, stdev 0.5


def test_variance_is_zero_when_the_fleet_is_idle():
    values = compute_metrics(
        [NodeSample("a", True, 0.3, 4, 0, 1), NodeSample("b", True, 0.0, 4, 0, 1)], [], now=1, window_s=60, min_calls=20
    )
    assert values["node_load_variance"] == 0.0  # mean utilisation 0.0375 < 0.10


def test_queue_depth_sums_only_online_nodes():
    values = compute_metrics(
        [NodeSample("a", True, 1, 1, 700, 1), NodeSample("b", False, 1, 1, 900, 1)], [], now=1, window_s=60, min_calls=20
    )
    assert values["task_queue_depth"] == 700


def test_error_rate_and_p95_need_min_calls_in_the_window():
    calls = [CallSample(50.0, 100.0 * i, i % 4 != 0) for i in range(1, 20)]
    values = compute_metrics([], calls, now=60, window_s=60, min_calls=20)
    assert values["error_rate"] is None and values["response_time_p95"] is None
    calls.append(CallSample(55.0, 2000.0, True))
    values = compute_metrics([], calls, now=60, window_s=60, min_calls=20)
    assert values["error_rate"] == 4 / 20
    assert values["response_time_p95"] == 1900.0  # nearest rank 19 of 20


def test_calls_older_than_the_window_are_ignored():
    calls = [CallSample(0.0, 1.0, False)] * 30 + [CallSample(61.0, 1.0, True)] * 20
    assert compute_metrics([], calls, now=70, window_s=60, min_calls=20)["error_rate"] == 0.0


def test_a_breach_is_pending_until_it_holds_for_seconds_then_fires():
    det = EquilibriumDetector(CFG)
    readings = run(det, lambda t: 2000, seconds=12)
    queue = [r.metrics["task_queue_depth"] for r in readings]
    assert queue[5].state == "pending" and queue[5].level == "balanced"
    assert queue[10].level == "critical" and queue[10].state == "firing"


def test_a_pending_breach_that_clears_is_dropped_without_firing():
    det = EquilibriumDetector(CFG)
    readings = run(det, lambda t: 2000 if t < 5 else 0, seconds=40)
    assert all(r.metrics["task_queue_depth"].level == "balanced" for r in readings)
    assert readings[-1].metrics["task_queue_depth"].state == "ok"


def test_firing_level_holds_above_its_lower_exit_value():
    det = EquilibriumDetector(CFG)
    # enters critical at > 1000; stays while above 900 (exit ratio 0.9), even for a long time
    readings = run(det, lambda t: 2000 if t < 20 else 950, seconds=120)
    assert readings[-1].metrics["task_queue_depth"].level == "critical"


def test_firing_level_clears_after_clear_seconds_below_exit():
    det = EquilibriumDetector(CFG)
    readings = run(det, lambda t: 2000 if t < 20 else 0, seconds=60)
    levels = [r.metrics["task_queue_depth"].level for r in readings]
    assert levels[33] == "critical"  # 14 s below exit: not yet
    assert levels[36] == "balanced"


def test_a_node_without_data_for_two_evaluations_is_unknown_not_balanced():
    det = EquilibriumDetector(CFG)
    det.evaluate(0, [NodeSample("a", True, 1, 4, 0, 0)], [])
    det.evaluate(1, [NodeSample("a", True, 1, 4, 0, 1)], [])
    det.evaluate(2, [NodeSample("a", True, 1, 4, 0, 1)], [])
    reading, _ = det.evaluate(3, [NodeSample("a", True, 1, 4, 0, 1)], [])
    assert reading.unknown_nodes == ["a"] and reading.level == "unknown"


def test_level_change_is_reported_once():
    det = EquilibriumDetector(CFG)
    changes = []
    for t in range(0, 30):
        _, change = det.evaluate(float(t), nodes(2000, float(t)), [])
        if change:
            changes.append(change.level)
    assert changes == ["balanced", "critical"]


def metric_changes(det: EquilibriumDetector, name: str, times, queue_at=lambda t: 0, calls=()) -> list[tuple[float, str, str, float | None]]:
    out = []
    for t in times:
        reading, _ = det.evaluate(float(t), nodes(queue_at(t), float(t)), list(calls))
        out += [(c.at, c.previous, c.level, c.value) for c in reading.metric_changes if c.metric == name]
    return out


def test_a_metric_change_is_its_firing_level_changing_with_the_value_at_that_moment():
    det = EquilibriumDetector(CFG)
    changes = metric_changes(det, "task_queue_depth", range(0, 60), lambda t: 1500 if 5 <= t < 20 else 100)
    assert changes == [(0, "unknown", "balanced", 100.0), (15, "balanced", "critical", 1500.0), (35, "critical", "balanced", 100.0)]


def test_a_pending_breach_that_clears_records_no_metric_change():
    det = EquilibriumDetector(CFG)
    changes = metric_changes(det, "task_queue_depth", range(0, 30), lambda t: 1500 if 5 <= t < 12 else 100)
    assert changes == [(0, "unknown", "balanced", 100.0)]


def test_a_metric_without_enough_calls_is_unknown_until_they_arrive():
    det = EquilibriumDetector(CFG)
    assert metric_changes(det, "error_rate", range(0, 3)) == []  # unknown from the start: nothing changed
    calls = [CallSample(3.5 + i / 100, 100.0, True) for i in range(CFG.min_calls)]
    assert metric_changes(det, "error_rate", [4], calls=calls) == [(4, "unknown", "balanced", 0.0)]


def test_a_firing_metric_whose_calls_stop_stays_firing_until_it_clears_then_reads_unknown():
    det = EquilibriumDetector(CFG)
    failed = [CallSample(0.5 + i / 100, 100.0, False) for i in range(CFG.min_calls)]
    changes = metric_changes(det, "error_rate", range(1, 100), calls=failed)  # the calls leave the 60 s window at 61
    assert changes == [(1, "unknown", "balanced", 1.0), (11, "balanced", "critical", 1.0), (76, "critical", "unknown", None)]


def test_recorded_metric_levels_survive_a_restart_through_export_and_import():
    first = EquilibriumDetector(CFG)
    metric_changes(first, "task_queue_depth", range(0, 15), lambda t: 1500)
    second = EquilibriumDetector(CFG)
    second.import_state(first.export_state())
    reading, _ = second.evaluate(15.0, nodes(1500, 15.0), [])
    assert reading.metric_changes == ()


def test_trend_projects_seconds_to_critical():
    det = EquilibriumDetector(CFG)
    readings = run(det, lambda t: 100 + 10 * t, seconds=30)  # +600 per minute
    q = readings[-1].metrics["task_queue_depth"]
    assert abs(q.trend_per_min - 600) < 1e-6
    assert abs(q.seconds_to_critical - (1000 - 400) / 10) < 1e-6


def test_pending_timer_survives_a_restart_through_export_and_import():
    first = EquilibriumDetector(CFG)
    run(first, lambda t: 2000, seconds=6)
    second = EquilibriumDetector(CFG)
    second.import_state(first.export_state())
    reading, _ = second.evaluate(10.0, nodes(2000, 10.0), [])
    assert reading.metrics["task_queue_depth"].level == "critical"


def test_import_of_garbage_starts_fresh():
    det = EquilibriumDetector(CFG)
    det.import_state({"metrics": {"task_queue_depth": {"level": "bogus", "pending_since": {"critical": "x"}}}})
    reading, _ = det.evaluate(0, nodes(0, 0), [])
    assert reading.metrics["task_queue_depth"].level == "balanced"


@settings(max_examples=60, deadline=None)
@given(high=st.integers(1, 9), low=st.integers(1, 30), cycles=st.integers(1, 8), value=st.integers(1001, 100_000))
def test_square_wave_shorter_than_for_seconds_never_fires(high, low, cycles, value):
    det = EquilibriumDetector(CFG)
    period = high + low
    readings = run(det, lambda t: value if (t % period) < high else 0, seconds=period * cycles)
    assert all(r.metrics["task_queue_depth"].level == "balanced" for r in readings)


@settings(max_examples=60, deadline=None)
@given(dip=st.integers(901, 1000), seconds=st.integers(20, 200))
def test_hysteresis_a_firing_level_never_drops_above_its_exit_value(dip, seconds):
    det = EquilibriumDetector(CFG)
    readings = run(det, lambda t: 5000 if t < 15 else dip, seconds=15 + seconds)
    assert readings[-1].metrics["task_queue_depth"].level == "critical"


_call = st.tuples(st.floats(0, 200, allow_nan=False), st.one_of(st.none(), st.floats(0, 10_000, allow_nan=False)),
                  st.booleans(), st.sampled_from(("a", "b", "c")))


@settings(max_examples=200, deadline=None)
@given(calls=st.lists(_call, max_size=120), now=st.floats(0, 220, allow_nan=False), window=st.sampled_from((1.0, 7.5, 60.0)))
def test_a_call_window_read_incrementally_equals_a_rescan_of_its_calls(calls, now, window):
    """Fed in any order (replays arrive late), read over any window: counts, per node, nearest-rank P95."""
    cw = CallWindow()
    for ts, latency, ok, node in calls:
        cw.add(ts, latency, ok, node, "p")
    inside = [c for c in calls if now - window < c[0] <= now]
    latencies = sorted(c[1] for c in inside if c[1] is not None)
    stats = cw.stats(now, window)
    assert (stats.calls, stats.failed, stats.latencies) == (len(inside), sum(1 for c in inside if not c[2]), len(latencies))
    assert stats.p95_ms == (latencies[max(1, math.ceil(0.95 * len(latencies))) - 1] if latencies else None)
    assert stats.by_node == {n: (sum(1 for c in inside if c[3] == n), sum(1 for c in inside if c[3] == n and not c[2]))
                             for n in {c[3] for c in inside}}


def test_a_call_window_drops_the_seconds_wholly_older_than_it_keeps():
    cw = CallWindow(keep_s=60)
    for t in range(0, 200):
        cw.add(t + 0.5, 100.0, t % 10 != 0, "a", "p")
    assert cw.stats(199.9, 60).calls == 60
    # A wider read finds only what was kept: the seconds from 139 (which holds part of the last 60 s) on.
    assert cw.stats(199.9, 300).calls == 61


def test_a_node_sampled_every_step_is_judged_between_its_samples():
    det = EquilibriumDetector(CFG)
    readings = [det.evaluate(float(t), [NodeSample("prom", True, 1, 4, 0, float(t - t % 15), 15.0)], [])[0]
                for t in range(0, 60, 2)]
    assert all(r.unknown_nodes == [] for r in readings) and readings[-1].level == "balanced"


def test_a_node_sampled_every_step_is_unknown_once_its_samples_stop():
    det = EquilibriumDetector(CFG)
    readings = [det.evaluate(float(t), [NodeSample("prom", True, 1, 4, 0, 0.0, 15.0)], [])[0] for t in range(0, 36, 2)]
    assert [r.at for r in readings if r.unknown_nodes == ["prom"]][0] == 34.0
