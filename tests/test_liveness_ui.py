"""Liveness on screen (the real app, App.run_test): the header counts only what is known, and a
silent node's sessions read `unknown (node offline)`."""

from __future__ import annotations

from heady_tui.ui.widgets.panels import StatusBar
from heady_tui.ui.widgets.table import KeyedTable
from uikit import fixed_console, wait_until

SILENT = "build-2"
TIMEOUT_S = 10.0


def go_silent(app, clock) -> int:
    """Track the sample fleet's nodes, let SILENT stop sending while the others go on; returns the
    number of SILENT's live sessions before it went silent."""
    supervisor = app.supervisor
    fleet = supervisor.fleet
    now = clock.now()
    for name in fleet.nodes:
        fleet.track(name, now, TIMEOUT_S)
        fleet.frames_arrived(name, now)
    silent_live = sum(1 for rec in fleet.node_sessions(SILENT) if rec.live)
    clock.advance(TIMEOUT_S)
    for name in fleet.nodes:
        if name != SILENT:
            fleet.frames_arrived(name, clock.now())
    supervisor.check_liveness()
    return silent_live


async def test_the_header_counts_only_known_sessions_as_live(tmp_path):
    async with fixed_console(tmp_path) as (app, pilot, clock):
        silent_live = go_silent(app, clock)
        live, unknown = app.reader.session_counts()
        assert silent_live > 0 and unknown == silent_live
        status = app.screen.query_one(StatusBar)
        await wait_until(pilot, lambda: f"{live} live  {unknown} unknown (node offline)" in str(status.content), "the header")


async def test_a_silent_nodes_sessions_read_unknown_node_offline(tmp_path):
    async with fixed_console(tmp_path) as (app, pilot, clock):
        go_silent(app, clock)
        table = app.screen.query_one("#sessions", KeyedTable)
        app.refresh_now(force=True)
        await pilot.pause()
        cells = {str(cell) for i in range(table.row_count) for cell in table.get_row_at(i)}
        assert "unknown (node offline)" in cells
        assert all(rec.state != "running" for rec in app.supervisor.fleet.node_sessions(SILENT))
