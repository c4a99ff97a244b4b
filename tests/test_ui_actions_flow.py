"""Operator actions run as workers; failures become one error dialog and a log entry; the `l` log,
`y` copy, bulk confirmation with the count, and the node's drain/concurrency shown where it is."""

from __future__ import annotations

from heady_tui.ui.modals.error import ErrorModal
from heady_tui.ui.screens.healing import command_summary
from heady_tui.ui.screens.log import LogScreen
from heady_tui.ui.widgets.table import KeyedTable
from uikit import fixed_console, wait_until


async def test_an_action_that_raises_shows_an_error_dialog_and_logs_it(tmp_path):
    async with fixed_console(tmp_path) as (app, pilot, clock):
        async def broken() -> None:
            raise RuntimeError("the node hung up")

        app.act("drain build-1", broken, "drained")
        modal = await wait_until(pilot, lambda: isinstance(app.screen, ErrorModal) and app.screen, "the error dialog")
        assert modal is app.screen
        assert any("drain build-1: RuntimeError: the node hung up" in e.text for e in app.log_entries)
        await pilot.press("escape")
        assert not isinstance(app.screen, ErrorModal)


async def test_a_refused_action_is_a_notice_in_the_log_not_a_dialog(tmp_path):
    async with fixed_console(tmp_path) as (app, pilot, clock):
        async def refused() -> None:
            raise ValueError("no such task")

        app.act("approve task t-1", refused, "approved")
        await wait_until(pilot, lambda: any("no such task" in e.text for e in app.log_entries), "the notice")
        assert not isinstance(app.screen, ErrorModal)


async def test_the_action_key_returns_before_the_action_finishes(tmp_path):
    async with fixed_console(tmp_path) as (app, pilot, clock):
        import asyncio

        release = asyncio.Event()

        async def slow() -> None:
            await release.wait()

        app.act("slow thing", slow, "slow thing done")
        await pilot.press("2")  # the next key is handled while the action still waits
        assert getattr(app.screen, "VIEW", None) == "costs"
        release.set()
        await wait_until(pilot, lambda: any(e.text == "slow thing done" for e in app.log_entries), "the result")


async def test_l_opens_the_log_of_recent_notices_newest_first(tmp_path):
    async with fixed_console(tmp_path) as (app, pilot, clock):
        app.notify("first notice")
        app.notify("second notice")
        await pilot.press("l")
        assert isinstance(app.screen, LogScreen)
        table = app.screen.query_one(KeyedTable)
        texts = [str(table.row(key)[2]) for key in table.ids()]
        assert texts.index("second notice") < texts.index("first notice")


async def test_y_copies_the_selected_session_id_and_says_so(tmp_path):
    async with fixed_console(tmp_path) as (app, pilot, clock):
        sessions = app.screen.query_one("#sessions", KeyedTable)
        sessions.focus()
        await pilot.pause()
        selected = sessions.selected_key.split("\x1f")[1]
        await pilot.press("y")
        assert app.clipboard == selected
        assert any(e.text == f"copied {selected}" for e in app.log_entries)


def test_bulk_commands_are_summarised_with_their_count():
    commands = [{"node": "n1", "action": "session.pause", "target": f"s{i}"} for i in range(16)]
    assert command_summary(commands) == "16 sessions"
    assert command_summary([{"node": "n1", "action": "node.drain"}, {"node": "n2", "action": "node.drain"}]) == "2 nodes"


async def test_concurrency_set_from_the_console_shows_on_the_node_and_in_the_next_question(tmp_path):
    async with fixed_console(tmp_path) as (app, pilot, clock):
        from dataclasses import replace

        app._node_controls["build-1"] = replace(app.node_controls("build-1"), concurrency=3, drained=True)
        nodes = app.screen.query_one("#nodes", KeyedTable)
        nodes.focus()
        nodes.move_cursor(row=nodes.row_of("build-1"))
        await pilot.press("enter")
        await wait_until(pilot, lambda: getattr(app.screen, "VIEW", None) == "node", "the node screen")
        await wait_until(pilot, lambda: "concurrency 3" in str(app.screen.query_one("#node-info").content), "the node info")
        assert "DRAINED" in str(app.screen.query_one("#node-info").content)
        await pilot.press("c")
        answer = await wait_until(pilot, lambda: app.screen.query("#answer") and app.screen.query_one("#answer"), "the dialog")
        assert answer.value == "3"


async def test_the_palette_offers_heady_themes_and_no_textual_screenshot_maximize_or_second_quit(tmp_path):
    async with fixed_console(tmp_path) as (app, pilot, clock):
        titles = [command.title for command in app.get_system_commands(app.screen)]
        assert titles == ["Theme: dark", "Theme: light"]


async def test_the_light_theme_from_the_palette_applies(tmp_path):
    async with fixed_console(tmp_path) as (app, pilot, clock):
        light = next(c for c in app.get_system_commands(app.screen) if c.title == "Theme: light")
        light.callback()
        await pilot.pause()
        assert app.theme == "heady-light"
