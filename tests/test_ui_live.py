"""The console on real agents (synthetic source over loopback WebSockets), driven by Pilot."""

from __future__ import annotations

from heady_tui.ui.modals.ask import AskModal
from heady_tui.ui.modals.confirm import ConfirmModal
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


async def test_quitting_the_app_stops_the_supervisor_it_started(tmp_path):
    async with live_console(tmp_path, nodes=1) as (app, pilot):
        supervisor = app.supervisor
        assert supervisor.started
        await pilot.press("q")
    assert not supervisor.started


async def test_node_detail_shows_the_agent_process_list_while_open(tmp_path):
    async with live_console(tmp_path, nodes=1) as (app, pilot):
        await wait_until(pilot, lambda: app.supervisor.fleet.nodes["node0"].status == "online", "node0 online")
        app.open_node("node0")
        await wait_until(pilot, lambda: getattr(app.screen, "VIEW", None) == "node" and app.screen.is_mounted, "the node screen")
        procs = app.screen.query_one("#processes", KeyedTable)
        await wait_until(pilot, lambda: procs.row_count > 0, "per-process rows from the focused agent")
        await pilot.press("escape")
        await wait_until(pilot, lambda: "node0" not in app.supervisor.details, "focus released")


async def test_drain_from_node_detail_confirms_then_drains_the_real_agent(tmp_path):
    async with live_console(tmp_path, nodes=1) as (app, pilot):
        await wait_until(pilot, lambda: app.supervisor.fleet.nodes["node0"].status == "online", "node0 online")
        app.open_node("node0")
        await wait_until(pilot, lambda: getattr(app.screen, "VIEW", None) == "node", "the node screen")
        await pilot.press("d")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmModal), "the drain confirmation")
        await pilot.press("y")
        await wait_until(pilot, lambda: app.command_results, "the agent's answer")
        node, action, target, result = app.command_results[-1]
        assert (node, action, result.ok, result.detail.get("drained")) == ("node0", "node.drain", True, True)


async def test_kill_from_session_detail_ends_the_session_on_the_agent(tmp_path):
    async with live_console(tmp_path, nodes=1) as (app, pilot):
        fleet = app.supervisor.fleet
        record = await wait_until(pilot, lambda: next((r for r in fleet.sessions.values() if r.active), None), "a live session")
        app.open_session(record.node, record.id)
        await wait_until(pilot, lambda: getattr(app.screen, "VIEW", None) == "session", "the session screen")
        await pilot.press("k")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmModal), "the kill confirmation")
        assert app.focused.id == "cancel"
        await pilot.press("y")
        await wait_until(pilot, lambda: not fleet.sessions[(record.node, record.id)].active, "the session to end")
        assert app.command_results[-1][3].ok


async def test_prompt_from_session_detail_sends_the_text(tmp_path):
    async with live_console(tmp_path, nodes=1) as (app, pilot):
        fleet = app.supervisor.fleet
        record = await wait_until(
            pilot, lambda: next((r for r in fleet.sessions.values() if r.active and r.state != "paused"), None), "a live session"
        )
        app.open_session(record.node, record.id)
        await wait_until(pilot, lambda: getattr(app.screen, "VIEW", None) == "session", "the session screen")
        await pilot.press("i")
        await wait_until(pilot, lambda: isinstance(app.screen, AskModal), "the prompt dialog")
        await pilot.press(*"go on", "enter")
        await wait_until(pilot, lambda: app.command_results, "the agent's answer")
        node, action, target, result = app.command_results[-1]
        assert (action, target) == ("session.prompt", record.id)
        assert result.ok or result.error == "session_paused"
