"""Enter on a row: node and session rows open their screens; any other row shows in full."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text

from heady_tui.ui.modals.row import RowModal
from heady_tui.ui.widgets.table import KeyedTable
from uikit import fixed_console, wait_until


def shown(table: KeyedTable, key: str) -> list[str]:
    """The row's cells as the table draws them (cut to the column's width)."""
    row = table.get_row_at(table.row_of(key))
    return [cell.plain if isinstance(cell, Text) else str(cell) for cell in row]


async def test_enter_on_an_audit_row_shows_every_column_in_full(tmp_path: Path) -> None:
    async with fixed_console(tmp_path, size=(80, 24)) as (app, pilot, clock):
        await pilot.press("5")
        table = await wait_until(pilot, lambda: app.screen.query(KeyedTable).first() if app.screen.query(KeyedTable) else None,
                                 "the audit table")  # fmt: skip
        await wait_until(pilot, lambda: table.row_count > 0, "audit entries")
        table.focus()
        key = max(table.ids(), key=lambda k: len(str(table.cell(k, "details"))))
        table.move_cursor(row=table.row_of(key))
        assert shown(table, key)[4].endswith("\u2026")  # cut to fit 80 columns
        await pilot.press("enter")
        modal = await wait_until(pilot, lambda: app.screen if isinstance(app.screen, RowModal) else None, "the row")
        assert dict(modal.fields)["Details"] == table.cell(key, "details")
        await pilot.press("escape")
        await wait_until(pilot, lambda: not isinstance(app.screen, RowModal), "the row closed")


async def test_enter_on_a_session_row_still_opens_the_session_screen(tmp_path: Path) -> None:
    async with fixed_console(tmp_path) as (app, pilot, clock):
        table = app.screen.query_one("#sessions", KeyedTable)
        await wait_until(pilot, lambda: table.row_count > 0, "sessions")
        table.focus()
        await pilot.press("enter")
        await wait_until(pilot, lambda: getattr(app.screen, "VIEW", None) == "session", "the session screen")


async def test_the_accounts_table_cuts_account_and_node_names_to_fit_a_120_column_terminal(tmp_path: Path) -> None:
    async with fixed_console(tmp_path, size=(120, 36)) as (app, pilot, clock):
        await pilot.press("2")
        table = await wait_until(pilot, lambda: next(iter(app.screen.query("#cost-accounts")), None), "the accounts table")
        assert isinstance(table, KeyedTable)
        await wait_until(pilot, lambda: table.row_count > 0, "accounts")
        assert table.virtual_size.width <= table.scrollable_content_region.width
