"""KeyedTable: rows shown by id in display slots, sort by any column, filter chip with the count."""

from __future__ import annotations

from rich.markup import escape
from textual.app import App, ComposeResult

from heady_tui.ui.widgets.table import KeyedTable, sort_key

COLUMNS = [("name", "Name"), ("cost", "Cost"), ("age", "Age")]
ROWS = {
    "a": ("alpha", "$9.00", "2m00s"),
    "b": ("bravo", "$10.00", "45s"),
    "c": ("charlie", "$0.50", "1h"),
}


class TableApp(App[None]):
    def compose(self) -> ComposeResult:
        yield KeyedTable(COLUMNS, id="t")


async def _table(pilot) -> KeyedTable:
    table = pilot.app.query_one(KeyedTable)
    table.sync(ROWS)
    table.focus()
    await pilot.pause()
    return table


async def test_rows_show_in_the_given_order_and_a_reorder_keeps_the_cursor_on_its_id():
    async with TableApp().run_test() as pilot:
        table = await _table(pilot)
        table.move_cursor(row=table.row_of("b"))
        table.sync({"c": ROWS["c"], "b": ROWS["b"], "a": ROWS["a"]})
        await pilot.pause()
        assert table.ids() == ["c", "b", "a"]
        assert table.selected_key == "b"


async def test_a_changed_value_is_written_into_its_cell_only():
    async with TableApp().run_test() as pilot:
        table = await _table(pilot)
        table.sync({**ROWS, "b": ("bravo", "$11.00", "46s")})
        await pilot.pause()
        assert table.cell("b", "cost") == "$11.00"
        assert [str(cell) for cell in table.get_row_at(table.row_of("b"))] == ["bravo", "$11.00", "46s"]


async def test_cycling_the_sort_column_and_numbers_sort_by_value():
    async with TableApp().run_test() as pilot:
        table = await _table(pilot)
        table.action_cycle_sort()
        assert table.ids() == ["a", "b", "c"]  # by name
        table.action_cycle_sort()
        assert table.ids() == ["c", "a", "b"]  # by cost: $0.50 < $9.00 < $10.00
        table.action_cycle_sort()
        assert table.ids() == ["b", "a", "c"]  # by age: 45s < 2m00s < 1h
        assert str(table.border_subtitle) == "sort: Age ^"


async def test_reversing_the_sort():
    async with TableApp().run_test() as pilot:
        table = await _table(pilot)
        table.action_cycle_sort()
        table.action_cycle_sort()
        table.action_reverse_sort()
        assert table.ids() == ["b", "a", "c"]
        assert str(table.border_subtitle) == "sort: Cost v"


async def test_clicking_a_header_sorts_by_that_column_and_a_second_click_reverses():
    async with TableApp().run_test() as pilot:
        table = await _table(pilot)
        table.post_message(KeyedTable.HeaderSelected(table, table.ordered_columns[1].key, 1, table.ordered_columns[1].label))
        await pilot.pause()
        assert table.ids() == ["c", "a", "b"]
        table.post_message(KeyedTable.HeaderSelected(table, table.ordered_columns[1].key, 1, table.ordered_columns[1].label))
        await pilot.pause()
        assert table.ids() == ["b", "a", "c"]


async def test_a_filter_shows_as_a_chip_with_the_count():
    async with TableApp().run_test() as pilot:
        table = await _table(pilot)
        table.set_filter("RAV")
        table.sync(ROWS)
        await pilot.pause()
        assert table.ids() == ["b"]
        assert str(table.border_subtitle) == "filter: rav (1 of 3)"


async def test_filter_text_in_the_chip_is_not_read_as_markup():
    async with TableApp().run_test() as pilot:
        table = await _table(pilot)
        table.set_filter("[bold]x")
        table.sync(ROWS)
        await pilot.pause()
        # The title reads back as markup: the bracket escaped, so it shows as typed.
        assert str(table.border_subtitle) == escape("filter: [bold]x (0 of 3)")


def test_sort_keys_order_money_counts_percentages_and_durations_by_value():
    assert sort_key("$10.00") > sort_key("$9.99")
    assert sort_key("1.2M") > sort_key("950.0k")
    assert sort_key("100%") > sort_key("25%")
    assert sort_key("1m05s") > sort_key("59s")
    assert sort_key("zeta") > sort_key("42")  # text after numbers


class FitApp(App[None]):
    def compose(self) -> ComposeResult:
        yield KeyedTable(COLUMNS, id="t", fit=("name",))


async def test_a_name_column_cut_to_fit_shows_more_when_the_terminal_widens_and_the_cursor_stays():
    async with FitApp().run_test(size=(40, 12)) as pilot:
        table = pilot.app.query_one(KeyedTable)
        table.sync({**ROWS, "b": ("b" * 200, "$10.00", "45s")})
        table.focus()
        await pilot.pause()
        table.move_cursor(row=table.row_of("b"))
        narrow = table.get_row_at(table.row_of("b"))[0].plain
        await pilot.resize_terminal(80, 12)
        await pilot.pause()
        wide = table.get_row_at(table.row_of("b"))[0].plain
        assert narrow.endswith("\u2026") and wide.endswith("\u2026") and len(wide) > len(narrow)
        assert table.virtual_size.width <= table.scrollable_content_region.width
        assert table.selected_key == "b"


class TwoNamesApp(App[None]):
    def compose(self) -> ComposeResult:
        yield KeyedTable([("node", "Node"), ("title", "Title"), ("cost", "Cost")], id="t", fit=("node", "title"))


async def test_a_short_name_column_leaves_the_width_it_does_not_need_to_a_long_one():
    async with TwoNamesApp().run_test(size=(60, 12)) as pilot:
        table = pilot.app.query_one(KeyedTable)
        table.sync({"a": ("n1", "t" * 200, "$1.00")})
        await pilot.pause()
        title = table.get_row_at(0)[1].plain
        padding = 2 * table.cell_padding
        others = len("Node") + len("$1.00") + 2 * padding  # the short name column takes only its label's width
        assert title.endswith("\u2026")
        assert len(title) == table.scrollable_content_region.width - others - padding


SPARK_COLUMNS = [("node", "Node"), ("spark", "CPU 60s"), ("cost", "Cost")]


class TrailApp(App[None]):
    def compose(self) -> ComposeResult:
        yield KeyedTable(SPARK_COLUMNS, id="t", fit=("node",), trail=("spark",))


async def test_a_narrow_table_drops_a_trailing_columns_oldest_cells_before_cutting_a_name():
    async with TrailApp().run_test(size=(28, 8)) as pilot:
        table = pilot.app.query_one(KeyedTable)
        table.sync({"a": ("build-1", "abcdefghijkl", "$1.00")})
        await pilot.pause()
        node, spark, _ = (cell.plain for cell in table.get_row_at(0))
        assert node == "build-1"
        assert spark == "abcdefghijkl"[-len(spark):] and len(spark) < 12  # the newest cells, no ellipsis
        assert table.virtual_size.width <= table.scrollable_content_region.width
        assert table.trail_room == len(spark)


async def test_a_trailing_column_is_never_cut_below_its_header():
    async with TrailApp().run_test(size=(20, 8)) as pilot:
        table = pilot.app.query_one(KeyedTable)
        table.sync({"a": ("build-1", "abcdefghijkl", "$1.00")})
        await pilot.pause()
        assert table.get_row_at(0)[1].plain == "fghijkl" and table.trail_room == len("CPU 60s")


async def test_a_wide_table_reports_room_for_more_than_its_trailing_column_shows():
    async with TrailApp().run_test(size=(80, 8)) as pilot:
        table = pilot.app.query_one(KeyedTable)
        table.sync({"a": ("build-1", "abcdefghijkl", "$1.00")})
        await pilot.pause()
        assert table.get_row_at(0)[1].plain == "abcdefghijkl" and table.trail_room is not None and table.trail_room > 12
