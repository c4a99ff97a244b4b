"""The Healing screen on the fixed fleet: the approvals queue by priority, weak points by severity and coloured by it."""

from __future__ import annotations

from heady_tui.ui.widgets.table import KeyedTable
from test_healing_brain import ticks, upgrade
from uikit import fast_config, fixed_console, wait_until

HEALING = {"group_wait_s": 0, "light_interval_s": 1, "full_interval_s": 2, "auto_dispatch": []}
NO_REBALANCE = {"enabled": False}  # its consent dialog would cover the screen under test


async def test_the_approvals_queue_shows_each_tasks_priority_highest_first(tmp_path):
    async with fixed_console(tmp_path, config=fast_config(healing=HEALING, rebalance=NO_REBALANCE)) as (app, pilot, clock):
        await upgrade(app.supervisor, "gpu-1", "0.0.9")
        await ticks(app.supervisor, clock, 3)
        await pilot.press("3")
        approvals = app.screen.query_one("#approvals", KeyedTable)
        await wait_until(pilot, lambda: approvals.row_count == 2, "two tasks in the approvals queue")
        assert [(str(approvals.cell(k, "subject")), str(approvals.cell(k, "priority"))) for k in approvals.ids()] == [
            ("edge-1", "critical"), ("gpu-1", "low")]


async def test_weak_points_are_listed_critical_first_and_coloured_by_severity(tmp_path):
    async with fixed_console(tmp_path, config=fast_config(healing={**HEALING, "group_wait_s": 60}, rebalance=NO_REBALANCE)) as (app, pilot, clock):
        await upgrade(app.supervisor, "gpu-1", "0.0.9")
        await ticks(app.supervisor, clock, 3)
        await pilot.press("3")
        weak = app.screen.query_one("#weak-points", KeyedTable)
        await wait_until(pilot, lambda: weak.row_count == 2, "two open weak points")
        rows = [(str(weak.cell(k, "subject")), weak.cell(k, "severity")) for k in weak.ids()]
        assert [(subject, str(severity)) for subject, severity in rows] == [("edge-1", "critical"), ("gpu-1", "warning")]
        colours = [severity.style for _, severity in rows]
        assert colours == [app.styled_text("critical", "critical").style, app.styled_text("warning", "warning").style]
        assert colours[0] != colours[1]
