"""The console on real agents (synthetic source over loopback WebSockets), driven by Pilot."""

from __future__ import annotations

from heady_tui.ui.widgets.panels import EventLog, StatusBar
from heady_tui.ui.widgets.table import KeyedTable
from uikit import live_console, wait_until


def status_text(app) -> str:
    return str(app.screen.query_one(StatusBar).content)


async def test_overview_lists_every_node_online_with_its_sessions(tmp_path):
    async with live_console(tmp_path, nodes=2) as (app, pilot):
        nodes = app.screen.query_one("#nodes", KeyedTable)
        await wait_until(pilot, lambda: nodes.row_count == 2 and "2/2 online" in status_text(app), "both nodes online")
        sessions = app.screen.query_one("#sessions", KeyedTable)
        await wait_until(pilot, lambda: sessions.row_count > 0, "sessions from the synthetic source")


async def test_event_log_shows_supervisor_events_as_they_happen(tmp_path):
    async with live_console(tmp_path, nodes=1) as (app, pilot):
        log = app.screen.query_one(EventLog)
        await wait_until(pilot, lambda: any(e.name == "node.online" for e in app.recent_events), "node.online")
        assert any("node.online" in line.text for line in log.lines)
