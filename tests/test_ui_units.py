"""Pure parts of the UI: formatting, sparklines, the action registry, terminal setup, view rows."""

from __future__ import annotations

import os
from collections.abc import Iterator
from unittest.mock import patch

import pytest

from heady_agent.protocol import Metrics
from heady_tui.config import Config
from heady_tui.fleet import Fleet
from heady_tui.ui import formatting as fmt
from heady_tui.ui.actions import ACTIONS, bindings_for
from heady_tui.ui.app import configure_terminal
from heady_tui.ui.views import NodeRows
from heady_tui.ui.widgets.spark import bar, sparkline


def test_sparkline_scales_between_fixed_bounds_and_pads_short_history_on_the_left():
    assert sparkline([0, 50, 100], 5, low=0, high=100) == "  ▁▅█"


def test_sparkline_has_an_ascii_form_for_terminals_without_block_glyphs():
    assert sparkline([0, 100], 2, low=0, high=100, ascii_only=True) == "_@"


def test_flat_history_draws_a_flat_line_not_an_error():
    assert sparkline([3, 3, 3], 3) == "▁▁▁"


def test_bar_clamps_overspend_to_full():
    assert bar(1.7, 4) == "████"


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, "-"), (0.004, "$0.00"), (12.345, "$12.3"), (250, "$250"), (4000, "$4,000")],
)
def test_money(value, expected):
    assert fmt.money(value) == expected


@pytest.mark.parametrize(("seconds", "expected"), [(45, "45s"), (125, "2m"), (3700, "1h01m"), (90000, "1d01h")])
def test_duration(seconds, expected):
    assert fmt.duration(seconds) == expected


@pytest.mark.parametrize(
    ("value", "severity"), [(10, "ok"), (0.85 * 500, "careful"), (600, "warning"), (1000, "critical")]
)
def test_threshold_severity_uses_one_vocabulary(value, severity):
    assert fmt.threshold_severity(value, 500, 1000) == severity


def test_every_action_id_is_unique_and_every_binding_carries_its_id():
    ids = [a.id for a in ACTIONS]
    assert len(ids) == len(set(ids))
    for screen in {a.screen for a in ACTIONS}:
        assert all(b.id for b in bindings_for(screen))


def test_every_destructive_action_is_also_marked_as_changing_state():
    assert all(a.changes_state for a in ACTIONS if a.destructive)


def test_keys_do_not_clash_within_a_screen_or_with_the_global_ones():
    global_keys = {a.key for a in ACTIONS if a.screen == "app"}
    for screen in {a.screen for a in ACTIONS} - {"app"}:
        keys = [a.key for a in ACTIONS if a.screen == screen and a.key != "enter"]
        assert len(keys) == len(set(keys)), screen
        assert not set(keys) & global_keys, screen


@pytest.fixture
def environ() -> Iterator[None]:
    """configure_terminal writes os.environ itself; what it sets must not reach later tests (NO_COLOR
    would turn every later snapshot colourless)."""
    with patch.dict(os.environ):
        yield


def test_configure_terminal_sets_fps_from_config_unless_already_set(monkeypatch, environ):
    monkeypatch.delenv("TEXTUAL_FPS", raising=False)
    configure_terminal(Config.model_validate({"ui": {"fps": 20}}), "auto")
    assert os.environ["TEXTUAL_FPS"] == "20"
    monkeypatch.setenv("TEXTUAL_FPS", "12")
    configure_terminal(Config.model_validate({"ui": {"fps": 20}}), "auto")
    assert os.environ["TEXTUAL_FPS"] == "12"


@pytest.mark.parametrize(("color", "system"), [("truecolor", "truecolor"), ("256", "256"), ("16", "standard")])
def test_color_flag_maps_to_textual_color_system(monkeypatch, environ, color, system):
    monkeypatch.delenv("TEXTUAL_COLOR_SYSTEM", raising=False)
    configure_terminal(Config(), color)
    assert os.environ["TEXTUAL_COLOR_SYSTEM"] == system


def test_color_none_sets_no_color(monkeypatch, environ):
    monkeypatch.delenv("NO_COLOR", raising=False)
    configure_terminal(Config(), "none")
    assert os.environ["NO_COLOR"] == "1"


def _metrics(seq: int, cpu: float) -> Metrics:
    return Metrics(journal="j", seq=seq, ts=1_800_000_000.0 + seq, cpu=cpu, load=[1, 1, 1], mem=40, swap=0, queue_depth=3)


def test_node_rows_are_reused_until_the_node_changes():
    fleet = Fleet()
    fleet.set_status("a", "online", 1000.0)
    fleet.set_status("b", "online", 1000.0)
    fleet.apply_frame("a", _metrics(1, 10))
    fleet.apply_frame("b", _metrics(1, 20))
    rows = NodeRows()
    first = rows.rows(fleet, 1001.5, costs_today={}, spark_width=8, compact=False)
    fleet.apply_frame("b", _metrics(2, 90))
    second = rows.rows(fleet, 1001.5, costs_today={}, spark_width=8, compact=False)
    assert second["a"] is first["a"]
    assert second["b"] is not first["b"] and ("90%", "critical") in second["b"]


def test_a_run_whose_steps_are_all_done_says_it_is_watching_for_balance_until_its_time_cap():
    from heady_tui.config import DetectorConfig, RebalanceConfig
    from heady_tui.engine.rebalance import NodeView, RebalanceRun, build_plan
    from heady_tui.ui.views import rebalance_line

    cfg = RebalanceConfig()
    nodes = [NodeView("a", True, 10.0, 8000.0, 0.5, 1500, None), NodeView("b", True, 10.0, 8000.0, 0.5, 0, None)]
    run = RebalanceRun("r-1", build_plan(nodes, {"task_queue_depth": 1500}, DetectorConfig(), cfg), None, 0.0, cfg)
    t = 0.0
    while run.next_step(t) is not None:
        t += cfg.step_interval_s
    run.observe("balanced", t)
    text, _ = rebalance_line(run.status, cfg.balanced_checks)
    until = fmt.clock_time(cfg.max_duration_s)
    assert text == (f"rebalance r-1: {run.status.steps_total} steps done, watching for balance "
                    f"(1/{cfg.balanced_checks} balanced checks, stops by {until} at the latest)")


def test_the_consent_plan_says_the_run_watches_for_balance_after_its_steps_up_to_its_time_cap():
    from heady_tui.ui.modals.consent import plan_text

    plan = {"priority": "critical", "actions": [], "caps": {"max_duration_s": 300}, "estimated_duration_s": 8}
    assert "Estimated duration: steps 8s, then watching for balance for up to 5m in all" in plan_text("r", plan, {}, 24)
