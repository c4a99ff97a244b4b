"""What the console shows of states that were invisible: compactions, a machine with no sessions
yet, a database another process holds locked, names too long for an 80x24 terminal."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

from heady_agent.clock import ManualClock
from heady_agent.protocol import Event
from heady_tui.config import Config, Paths
from heady_tui.store import Store
from heady_tui.supervisor import Supervisor
from heady_tui.ui.application import HeadyApp
from heady_tui.ui.samplefleet import FIXED_START, close_offline, open_offline
from heady_tui.ui.views import session_key
from heady_tui.ui.widgets.table import KeyedTable
from textual.widgets import Static
from uikit import fixed_console, wait_until

SESSION = "bu000-s0"  # the first session of the sample fleet's first node, build-1


async def compact_twice(app: HeadyApp, clock: ManualClock) -> None:
    """The agent reports the session's context compacted twice, through the link's own entry point."""
    supervisor = app.supervisor
    node = supervisor.fleet.nodes["build-1"]
    assert node.journal is not None
    frames = [Event(journal=node.journal, seq=node.last_seq + i, ts=clock.now() + i, kind="session.state", session=SESSION,
                    data={"state": state}) for i, state in enumerate(("compacted", "running", "compacted"), start=1)]  # fmt: skip
    await supervisor.link_frames("build-1", node.journal, frames)
    app.refresh_now(force=True)


async def test_the_node_screen_lists_how_often_each_session_was_compacted(tmp_path):
    async with fixed_console(tmp_path) as (app, pilot, clock):
        await compact_twice(app, clock)
        app.open_node("build-1")
        table = await wait_until(pilot, lambda: next(iter(app.screen.query("#node-sessions").results(KeyedTable)), None), "the node screen")
        column = [key for key, _ in table._column_spec].index("compactions")
        key = session_key("build-1", SESSION)
        await wait_until(pilot, lambda: key in table.ids(), "the session's row")
        row = table.get_row_at(table.ids().index(key))
        assert str(row[column]) == "2"


async def test_the_session_screen_says_how_often_its_context_was_compacted(tmp_path):
    async with fixed_console(tmp_path) as (app, pilot, clock):
        await compact_twice(app, clock)
        app.open_session("build-1", SESSION)
        info = await wait_until(pilot, lambda: next(iter(app.screen.query("#session-info").results(Static)), None), "the session screen")
        await wait_until(pilot, lambda: "compactions 2" in str(info.content), "the compaction count")


async def empty_machine(tmp_path: Path, agent: dict) -> tuple[HeadyApp, Supervisor]:
    """The console on this machine (no [[nodes]], not a demo) before any session is seen."""
    config = Config.model_validate({"agent": agent})
    paths = Paths(tmp_path / "config.toml", tmp_path / "console")
    supervisor = await open_offline(config, paths, ManualClock(FIXED_START), simulated=False)
    return HeadyApp(supervisor, config, manage_supervisor=False), supervisor


async def test_with_no_session_on_this_machine_the_overview_says_where_each_source_was_looked_for(tmp_path):
    claude_home = tmp_path / "claude-home"
    claude_home.mkdir()
    app, supervisor = await empty_machine(tmp_path, {"sources": ["claude-code"], "claude_code": {"roots": [str(claude_home)]}})
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            panel = app.screen.query_one("#empty-state", Static)
            await wait_until(pilot, lambda: panel.display, "the empty-state panel")
            lines = str(panel.content).splitlines()
    finally:
        await close_offline(supervisor)
    assert lines[0] == "No sessions on this machine yet. heady looked for:"
    assert f"  claude-code: found {claude_home}" in lines
    assert '  codex: off (add "codex" to [agent] sources)' in lines
    assert '  opencode: off (add "opencode" to [agent] sources)' in lines
    assert lines[-1] == f"Sources are set in [agent] of {tmp_path / 'config.toml'} (see config.example.toml)."


async def test_the_empty_state_names_a_missing_directory_of_an_enabled_source(tmp_path):
    missing = tmp_path / "no-codex-here"
    app, supervisor = await empty_machine(tmp_path, {"sources": ["codex"], "codex": {"roots": [str(missing)]}})
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            panel = app.screen.query_one("#empty-state", Static)
            await wait_until(pilot, lambda: panel.display, "the empty-state panel")
            text = str(panel.content)
    finally:
        await close_offline(supervisor)
    assert f"  codex: nothing at {missing}" in text.splitlines()


async def test_the_empty_state_goes_once_a_session_is_seen(tmp_path):
    app, supervisor = await empty_machine(tmp_path, {"sources": ["claude-code"]})
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            panel = app.screen.query_one("#empty-state", Static)
            await wait_until(pilot, lambda: panel.display, "the empty-state panel")
            started = Event(journal="j-local", seq=1, ts=FIXED_START, kind="session.started", session="s-1",
                            data={"source": "claude-code", "project": "api"})  # fmt: skip
            await supervisor.link_frames("local", "j-local", [started])
            app.refresh_now(force=True)
            await wait_until(pilot, lambda: not panel.display, "the panel to go")
    finally:
        await close_offline(supervisor)


LOCK_HOLDER = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.read()
db.execute("ROLLBACK")
"""


async def test_a_database_another_process_holds_locked_ends_the_console_with_one_line_and_loses_nothing(tmp_path):
    paths = Paths(tmp_path / "config.toml", tmp_path / "console")
    paths.data_dir.mkdir()
    store = await Store.open(paths.database)
    started = Event(journal="j1", seq=1, ts=FIXED_START, kind="session.started", session="kept", data={"source": "codex"})
    await store.ingest("n1", "j1", [started])
    await store.close()
    holder = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(paths.database)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        config = Config.model_validate({"nodes": [{"name": "n1", "url": "ws://127.0.0.1:9/ws", "token": "t" * 16}]})
        app = HeadyApp(Supervisor(config, paths), config)
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_until(pilot, lambda: app.return_value is not None, "the console to end", timeout=60)
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)
    assert app.return_value == 1
    error = app.supervisor_error or ""
    assert "locked" in error and str(paths.database) in error and "\n" not in error
    with sqlite3.connect(paths.database) as db:
        assert db.execute("SELECT id FROM sessions").fetchall() == [("kept",)]



async def start_long_named_session(app: HeadyApp, clock: ManualClock) -> str:
    supervisor = app.supervisor
    node = supervisor.fleet.nodes["build-1"]
    assert node.journal is not None
    started = Event(journal=node.journal, seq=node.last_seq + 1, ts=clock.now(), kind="session.started", session="s-long",
                    data={"source": "claude-code", "project": "P" * 5000, "model": "M" * 300})  # fmt: skip
    await supervisor.link_frames("build-1", node.journal, [started])
    app.refresh_now(force=True)
    return session_key("build-1", "s-long")


def drawn(table: KeyedTable, key: str, column: str) -> str:
    """The cell as the table draws it (cut to its column's width)."""
    return table.get_cell(str(table.ids().index(key)), column).plain


async def test_at_80x24_long_names_are_cut_with_an_ellipsis_and_every_column_stays_on_screen(tmp_path):
    async with fixed_console(tmp_path, size=(80, 24)) as (app, pilot, clock):
        key = await start_long_named_session(app, clock)
        table = app.screen.query_one("#sessions", KeyedTable)
        await wait_until(pilot, lambda: key in table.ids(), "the long-named session's row")
        await pilot.pause()
        project, model = drawn(table, key, "project"), drawn(table, key, "model")
        assert project.startswith("PPP") and project.endswith("\u2026")
        assert model.startswith("MMM") and model.endswith("\u2026")
        assert table.virtual_size.width <= table.scrollable_content_region.width


async def test_a_wider_terminal_shows_more_of_a_long_name(tmp_path):
    async with fixed_console(tmp_path, size=(80, 24)) as (app, pilot, clock):
        key = await start_long_named_session(app, clock)
        table = app.screen.query_one("#sessions", KeyedTable)
        await wait_until(pilot, lambda: key in table.ids(), "the long-named session's row")
        narrow = len(drawn(table, key, "project"))
        await pilot.resize_terminal(130, 30)
        await wait_until(pilot, lambda: len(drawn(table, key, "project")) > narrow, "a longer cut of the project")
        assert table.virtual_size.width <= table.scrollable_content_region.width


async def test_the_node_screen_at_80x24_keeps_tokens_cost_and_compactions_on_screen(tmp_path):
    async with fixed_console(tmp_path, size=(80, 24)) as (app, pilot, clock):
        key = await start_long_named_session(app, clock)
        app.open_node("build-1")
        table = await wait_until(pilot, lambda: next(iter(app.screen.query("#node-sessions").results(KeyedTable)), None),
                                 "the node screen")  # fmt: skip
        await wait_until(pilot, lambda: key in table.ids(), "the long-named session's row")
        await pilot.pause()
        assert table.virtual_size.width <= table.scrollable_content_region.width


async def test_in_the_wide_layout_at_its_narrowest_the_nodes_table_narrows_its_sparklines_instead_of_scrolling(tmp_path):
    async with fixed_console(tmp_path, size=(140, 44)) as (app, pilot, clock):
        table = app.screen.query_one("#nodes", KeyedTable)
        await wait_until(pilot, lambda: table.trail_room is not None and table.trail_room < 12, "the sparklines narrowed")
        app.refresh_now(force=True)
        await pilot.pause()
        spark = drawn(table, "build-1", "cpu_spark")
        assert len(spark) == table.trail_room and drawn(table, "build-1", "since") != ""
        assert table.virtual_size.width <= table.scrollable_content_region.width
