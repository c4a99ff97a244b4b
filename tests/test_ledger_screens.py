"""The screens read the ledger: on the real app (App.run_test), the overview's sessions, the session
timeline's Cost column and the costs screen show what the store holds for the same sessions and calls."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from uikit import fixed_console, wait_until

from heady_tui.ui import formatting as fmt
from heady_tui.ui.views import session_key, session_label
from heady_tui.ui.widgets.table import KeyedTable


def cell(table: KeyedTable, row: str, column: str) -> str:
    """The cell of id `row` (rows live in display slots, not under their ids)."""
    return str(table.cell(row, column))


async def test_the_overview_sessions_table_shows_each_ledger_rows_title_or_id_and_cost(tmp_path: Path) -> None:
    async with fixed_console(tmp_path) as (app, pilot, clock):
        stored = await app.supervisor.store.sessions()
        table = app.screen.query_one("#sessions", KeyedTable)
        await wait_until(pilot, lambda: table.row_count == len(stored), "every stored session in the table")
        for rec in stored:
            key = session_key(rec.node, rec.id)
            assert cell(table, key, "session") == session_label(rec)
            assert cell(table, key, "cost") == fmt.money(rec.cost_usd) + ("?" if rec.cost_unknown else "")


async def test_the_session_timeline_shows_each_calls_stored_cost(tmp_path: Path) -> None:
    async with fixed_console(tmp_path) as (app, pilot, clock):
        sessions = app.screen.query_one("#sessions", KeyedTable)
        sessions.focus()
        await pilot.press("enter")
        await wait_until(pilot, lambda: getattr(app.screen, "VIEW", None) == "session", "the session screen")
        screen = app.screen
        calls = await app.supervisor.store.priced_calls(node=screen.node_id, session=screen.session_id)
        assert calls
        timeline = screen.query_one("#timeline", KeyedTable)
        await wait_until(pilot, lambda: all(f"{c.journal}:{c.seq}" in timeline.ids() for c in calls), "the calls in the timeline")
        assert [cell(timeline, f"{c.journal}:{c.seq}", "cost") for c in calls] == [fmt.money(c.cost_usd) for c in calls]


async def test_the_costs_screen_shows_the_stored_cost_per_model(tmp_path: Path) -> None:
    async with fixed_console(tmp_path) as (app, pilot, clock):
        per_model: dict[str, float] = defaultdict(float)
        for day in await app.supervisor.store.cost_days():
            per_model[day.model] += day.cost_usd
        await pilot.press("2")
        await wait_until(pilot, lambda: getattr(app.screen, "VIEW", None) == "costs", "the costs screen")
        # A compact screen shows one grouping at a time, by model first.
        table = app.screen.query_one("#cost-table" if app.screen.compact else "#cost-by_model", KeyedTable)
        await wait_until(pilot, lambda: table.row_count == len(per_model), "a row per model")
        assert {model: cell(table, model, "cost") for model in per_model} == {m: fmt.money(usd) for m, usd in per_model.items()}
