"""A DataTable that is updated by key: rows added, removed and changed in place, never rebuilt.

Over SSH every repainted cell costs bytes, so `sync` touches only cells whose value changed and
does it inside one batch_update. A filter (the `/` key) hides rows whose text does not contain it.

Every cell is shown through `plain()`: DataTable parses a `str` cell as Textual markup, and cells
carry agent-supplied names (`[@click=app.quit]` would be a live action). Converting here, at the one
place cells enter a table, makes every table safe without each screen remembering to.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rich.text import Text
from textual.widget import Widget
from textual.widgets import DataTable
from textual.widgets.data_table import CellDoesNotExist, RowDoesNotExist

Cell = str | Text

CELL_MAX = 80  # characters a cell shows; a longer name would push every other column off screen


def plain(value: Cell, limit: int = CELL_MAX) -> Text:
    """`value` as literal text (a `str` is never parsed as markup; a Text keeps its style), cut to
    `limit` cells with an ellipsis."""
    text = Text(value, end="") if isinstance(value, str) else value.copy()
    if text.cell_len > limit:
        text.truncate(limit, overflow="ellipsis")
    return text


def _plain(cell: Cell) -> str:
    return cell.plain if isinstance(cell, Text) else cell


class KeyedTable(DataTable):
    """Rows keyed by id; call `sync(rows)` with the complete wanted state, in display order."""

    DEFAULT_CSS = """
    KeyedTable { height: 1fr; }
    """

    def __init__(self, columns: Sequence[tuple[str, str]], **kwargs) -> None:
        super().__init__(cursor_type="row", zebra_stripes=False, **kwargs)
        self._column_spec = list(columns)  # (key, label)
        self._shown: dict[str, tuple[Cell, ...]] = {}
        self._order: list[str] = []
        self.filter_text = ""
        self.rows_total = 0
        self._style_check_due = True
        self._drawn_with: tuple | None = None

    def on_mount(self) -> None:
        for key, label in self._column_spec:
            self.add_column(label, key=key)

    def _style_signature(self) -> tuple:
        """Everything from the stylesheet that the table's cells are drawn with."""
        components = tuple(
            (name, tuple(sorted(self.get_component_styles(name).get_render_rules().items(), key=lambda kv: kv[0])))
            for name in sorted(self.COMPONENT_CLASSES)
        )
        return (tuple(sorted(self.styles.get_render_rules().items(), key=lambda kv: kv[0])), components)

    def notify_style_update(self) -> None:
        # Textual re-applies the stylesheet to every widget of a screen each time the screen is
        # shown, and DataTable then throws away every rendered cell. Decide at the next render (when
        # the component styles are settled too) whether anything it draws with actually changed:
        # switching back to a kept view then repaints from cache instead of re-rendering every cell.
        Widget.notify_style_update(self)
        self._style_check_due = True
        self.refresh()

    def render_lines(self, crop):
        if self._style_check_due:
            self._style_check_due = False
            signature = self._style_signature()
            if signature != self._drawn_with:
                self._drawn_with = signature
                super().notify_style_update()
        return super().render_lines(crop)

    def set_filter(self, text: str) -> None:
        self.filter_text = text.strip().lower()

    def _matches(self, cells: tuple[Cell, ...]) -> bool:
        if not self.filter_text:
            return True
        return any(self.filter_text in _plain(cell).lower() for cell in cells)

    @property
    def selected_key(self) -> str | None:
        if not self.row_count:
            return None
        try:
            row_key, _ = self.coordinate_to_cell_key(self.cursor_coordinate)
        except CellDoesNotExist:
            return None
        return row_key.value

    def sync(self, rows: Mapping[str, Sequence[Cell]], *, filtered: bool = False) -> None:
        """Make the table show exactly `rows` (after the filter, unless the caller has `filtered`
        them on more than the cells show), keeping the cursor on its row."""
        self.rows_total = len(rows)
        wanted = {key: tuple(cells) for key, cells in rows.items() if filtered or self._matches(tuple(cells))}
        order = list(wanted)
        keys = [key for key, _ in self._column_spec]
        with self.app.batch_update():
            selected = self.selected_key
            for key in [k for k in self._shown if k not in wanted]:
                try:
                    self.remove_row(key)
                except RowDoesNotExist:
                    pass
                del self._shown[key]
            for key, cells in wanted.items():
                old = self._shown.get(key)
                if old is None:
                    self.add_row(*(plain(cell) for cell in cells), key=key)
                elif old != cells:
                    for column, before, after in zip(keys, old, cells):
                        if before != after:
                            self.update_cell(key, column, plain(after))
                self._shown[key] = cells
            if order != self._order and [k for k in self._order if k in wanted] != order:
                self._reorder(order)
            self._order = order
            if selected is not None and selected in wanted:
                index = self.get_row_index(selected)
                if index != self.cursor_row:
                    self.move_cursor(row=index, animate=False, scroll=False)

    def _reorder(self, order: list[str]) -> None:
        # DataTable.sort hands its key function a row's cell values only, not its key: the identities
        # of the cell objects the table holds (get_row) name the row.
        rank = {tuple(map(id, self.get_row(key))): i for i, key in enumerate(order)}
        self.sort(key=lambda cells: rank.get(tuple(map(id, cells)), len(rank)))

    def clear_rows(self) -> None:
        self.clear()
        self._shown.clear()
        self._order = []
