"""What every console screen shares: bindings from the action registry, read-only checks,
the status bar, the filter bar and the footer, and the hook the app's refresh timer calls."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

from textual.app import ComposeResult
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import DataTable

from ..actions import bindings_for, changes_state
from ..widgets.panels import FilterBar, KeyBar, StatusBar
from ..widgets.table import KeyedTable

if TYPE_CHECKING:
    from ..application import HeadyApp

W = TypeVar("W", bound=Widget)


class LiveScreen(Screen):
    VIEW = "overview"
    TITLE_TEXT = "Overview"
    SHOWS_AGES = True  # shows times relative to now, which move with the clock alone

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # Before super(): Textual merges a class's BINDINGS when the class is created.
        cls.BINDINGS = bindings_for(cls.VIEW)
        super().__init_subclass__(**kwargs)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.last_stamp: object = None
        self._parts: dict[str, Any] = {}
        self._filter_target: KeyedTable | None = None

    def part(self, selector: str, expect_type: type[W]) -> W:
        """query_one, remembered: refreshes run often, and keep working on a screen being torn down."""
        found = self._parts.get(selector)
        if found is None:
            found = self._parts[selector] = self.query_one(selector, expect_type)
        return found

    @property
    def heady(self) -> "HeadyApp":
        return self.app  # type: ignore[return-value]

    def compose_header(self) -> ComposeResult:
        yield StatusBar(id="status")

    def compose_footer(self) -> ComposeResult:
        yield FilterBar(id="filter")
        yield KeyBar(id="keys")

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if self.heady.read_only and changes_state(self.VIEW, action):
            return False
        return True

    def refresh_view(self) -> None:
        """Read the supervisor and update widgets; called by the app's throttled refresh."""

    def on_screen_resume(self) -> None:
        # A kept view shown again: paint what is current now (if anything changed since it was
        # last painted) rather than at the next change.
        if self.is_mounted and not self.heady.frozen:
            self.heady.refresh_now()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        table = event.data_table
        key = table.key_for(event.row_key) if isinstance(table, KeyedTable) else None
        if isinstance(table, KeyedTable) and key is not None:
            self.open_row(table, key)

    def open_row(self, table: KeyedTable, key: str) -> None:
        """Enter on a row: screens with a view of the thing open it; the rest show the row in full."""
        self.heady.show_row(table, key)

    def filter_table(self) -> KeyedTable | None:
        focused = self.focused
        if isinstance(focused, KeyedTable):
            return focused
        tables = list(self.query(KeyedTable))
        return tables[0] if tables else None

    def on_filter_bar_applied(self, message: FilterBar.Applied) -> None:
        table = self._filter_target  # the table that had the focus when `/` was pressed
        if table is not None:
            table.set_filter(message.text)
            self.last_stamp = None
            self.refresh_view()
        if message.done:
            bar = self.query_one(FilterBar)
            bar.remove_class("-active")
            if table is not None:
                table.focus()

    def open_filter(self) -> None:
        bar = self.query_one(FilterBar)
        table = self._filter_target = self.filter_table()
        bar.value = table.filter_text if table else ""
        bar.add_class("-active")
        bar.focus()
