"""The Textual console against a hostile agent: agent text is shown literally, never as markup, and
never as terminal escapes; a stored hostile name does not crash the next start-up's replay."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text

from heady_tui.config import Config, Paths
from heady_tui.supervisor import Supervisor
from heady_tui.ui.application import HeadyApp
from heady_tui.ui.views import session_key
from heady_tui.ui.widgets.table import CELL_MAX, KeyedTable
from hostile_agent import MARKUP_CLICK, MARKUP_CLOSE, TOKEN, HostileAgent, hostile_stream, once
from uikit import FAST_DETECTOR, wait_until


def console_on(url: str, tmp_path: Path) -> HeadyApp:
    config = Config.model_validate(
        {"nodes": [{"name": "hostile", "url": url, "token": TOKEN}], "detector": FAST_DETECTOR, "ui": {"refresh_hz": 20}}
    )
    supervisor = Supervisor(config, Paths(tmp_path / "config.toml", tmp_path / "console"))
    return HeadyApp(supervisor, config)


def shown(table: KeyedTable, row: str) -> list[Text]:
    return list(table.get_row_at(table.row_of(row)))


def literal_or_cut(shown: str, literal: str) -> bool:
    """The text as sent (never read as markup), or its start cut with an ellipsis to fit a column."""
    return shown == literal or (shown.endswith("\u2026") and literal.startswith(shown[:-1]))


def row_of(table: KeyedTable, session: str) -> str | None:
    return next((key for key in table.ids() if key == session_key("hostile", session)), None)


async def test_a_project_named_as_markup_is_shown_literally(tmp_path):
    async with HostileAgent(once(hostile_stream())) as agent:
        app = console_on(agent.url, tmp_path)
        async with app.run_test(size=(200, 50)) as pilot:
            table = app.screen.query_one("#sessions", KeyedTable)
            click = await wait_until(pilot, lambda: row_of(table, "s-click"), "the hostile session's row")
            close = await wait_until(pilot, lambda: row_of(table, "s-close"), "the hostile session's row")
            assert any(literal_or_cut(cell.plain, MARKUP_CLICK) for cell in shown(table, click))
            assert any(literal_or_cut(cell.plain, MARKUP_CLOSE) for cell in shown(table, close))


async def test_clicking_across_a_markup_named_row_does_not_run_its_action(tmp_path):
    async with HostileAgent(once(hostile_stream())) as agent:
        app = console_on(agent.url, tmp_path)
        async with app.run_test(size=(200, 50)) as pilot:
            table = app.screen.query_one("#sessions", KeyedTable)
            row = table.row_of(await wait_until(pilot, lambda: row_of(table, "s-click"), "the hostile session's row"))
            for x in range(1, table.size.width - 1, 2):
                await pilot.click(table, offset=(x, row + 1))  # +1: the header line
            assert app.is_running
            assert app.return_code is None


async def test_a_name_of_100k_characters_is_cut_with_an_ellipsis(tmp_path):
    async with HostileAgent(once(hostile_stream())) as agent:
        app = console_on(agent.url, tmp_path)
        async with app.run_test(size=(200, 50)) as pilot:
            table = app.screen.query_one("#sessions", KeyedTable)
            cells = shown(table, await wait_until(pilot, lambda: row_of(table, "s-huge"), "the huge session's row"))
            project = next(cell.plain for cell in cells if cell.plain.startswith("HHH"))
            assert len(project) <= CELL_MAX and project.endswith("\u2026")
            assert table.virtual_size.width <= table.scrollable_content_region.width


async def test_no_escape_sequence_reaches_the_session_table(tmp_path):
    async with HostileAgent(once(hostile_stream())) as agent:
        app = console_on(agent.url, tmp_path)
        async with app.run_test(size=(200, 50)) as pilot:
            table = app.screen.query_one("#sessions", KeyedTable)
            await wait_until(pilot, lambda: sum(1 for k in table.ids() if "s-" in k) >= 10, "every hostile session")
            text = "".join(cell.plain for key in table.ids() for cell in shown(table, key))
            assert not any(ch in text for ch in ("\x1b", "\x9b", "\x07", "\u202e"))


async def test_a_stored_markup_name_does_not_crash_the_next_start(tmp_path):
    async with HostileAgent(once(hostile_stream())) as agent:
        app = console_on(agent.url, tmp_path)
        async with app.run_test(size=(200, 50)) as pilot:
            table = app.screen.query_one("#sessions", KeyedTable)
            await wait_until(pilot, lambda: row_of(table, "s-close"), "the hostile session's row")
    # The agent is gone; the next start replays the stored events.
    app = console_on("ws://127.0.0.1:9/ws", tmp_path)
    async with app.run_test(size=(200, 50)) as pilot:
        table = app.screen.query_one("#sessions", KeyedTable)
        await wait_until(pilot, lambda: row_of(table, "s-close"), "the replayed session's row")
        assert app.is_running
