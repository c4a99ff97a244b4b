"""A DataTable that shows rows by id, sending only the cells that changed.

Over SSH every repainted cell costs bytes. DataTable.update_cell repaints the whole table, and a
reorder (DataTable.sort) does too, so this table keeps its rows in display slots: slot i is always
row i, and `sync` writes a row's cells into the slot it should show in. A value that moved, a
reorder, a new sort order all become cell updates, each repainting only its own cell's region.
Rows are added and removed at the end only. `s` cycles the sort column, `S` reverses it (a header
click does both; the keys are the app's `sort` actions); `/` filters. Sort and filter show in the table's bottom border with the count.

Every cell is shown through `plain()`: DataTable parses a `str` cell as Textual markup, and cells
carry agent-supplied names (`[@click=app.quit]` would be a live action). Converting here, at the one
place cells enter a table, makes every table safe without each screen remembering to.

Name columns (`fit`) share what the other columns leave of the table's width, so a long project or
model is cut with an ellipsis instead of pushing the cost off an 80-column terminal, and a wide
terminal shows long session titles whole instead of leaving the width blank.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence

from rich.cells import cell_len
from rich.text import Text
from textual.coordinate import Coordinate
from textual.widget import Widget
from textual.widgets import DataTable
from textual.widgets.data_table import ColumnKey, RowDoesNotExist, RowKey

Cell = str | Text

CELL_MAX = 80  # characters a cell shows; a longer name would push every other column off screen
FIT_MIN = 8  # a name column is never cut below this many cells, however narrow the table
TRAIL_MIN = 4  # a trailing column (a sparkline) keeps at least its newest this many cells


def plain(value: Cell, limit: int = CELL_MAX) -> Text:
    """`value` as literal text (a `str` is never parsed as markup; a Text keeps its style), cut to
    `limit` cells with an ellipsis."""
    text = Text(value, end="") if isinstance(value, str) else value.copy()
    if text.cell_len > limit:
        text.truncate(limit, overflow="ellipsis")
    return text


# "$1.16", "222.6k", "29%", "3h05m", "2h": a number with an optional unit, the whole cell.
_QUANTITY = re.compile(r"^[$~<>]?(-?\d+(?:\.\d+)?)([kMGB%]?)$")
_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
_SCALE = {"": 1.0, "%": 1.0, "k": 1e3, "M": 1e6, "G": 1e9, "B": 1e9}


def tail(value: Cell, limit: int) -> Text:
    """The last `limit` cells of `value` (a sparkline's newest points), without an ellipsis."""
    text = plain(value)
    if text.cell_len > limit:
        text = text[len(text) - limit :]
    return text


def _plain(cell: Cell) -> str:
    return cell.plain if isinstance(cell, Text) else cell


def sort_key(cell: Cell) -> tuple[int, float, str]:
    """Numbers (money, counts with k/M, percentages, durations) sort by value, before text."""
    text = _plain(cell).strip().replace(",", "")
    match = _QUANTITY.match(text)
    if match:
        return (0, float(match.group(1)) * _SCALE[match.group(2)], "")
    duration = _DURATION.match(text) if text else None
    if duration and any(duration.groups()):
        d, h, m, s = (int(part or 0) for part in duration.groups())
        return (0, float(((d * 24 + h) * 60 + m) * 60 + s), "")
    return (1, 0.0, text.lower())


class KeyedTable(DataTable):
    """Rows keyed by id; call `sync(rows)` with the complete wanted state, in display order."""

    DEFAULT_CSS = """
    KeyedTable { height: 1fr; }
    """
    _cells_only = False  # a class default: DataTable.__init__ already refreshes

    def __init__(
        self, columns: Sequence[tuple[str, str]], *, fit: Collection[str] = (), trail: Collection[str] = (), **kwargs
    ) -> None:
        super().__init__(cursor_type="row", zebra_stripes=False, **kwargs)
        self._column_spec = list(columns)  # (key, label)
        self._fit = [i for i, (key, _) in enumerate(self._column_spec) if key in fit]  # name columns cut to fit
        # Columns whose newest cells are at the right (sparklines): they give up their oldest cells
        # first when the table is too narrow, before any name is cut.
        self._trail = [i for i, (key, _) in enumerate(self._column_spec) if key in trail]
        self.trail_room: int | None = None  # cells a trailing column has room for now (None: not measured)
        self._limits = tuple(CELL_MAX for _ in self._column_spec)  # cells each column shows
        self._slots: list[str] = []  # the id shown in each slot, slot i being row i
        self._shown: list[tuple[Cell, ...]] = []
        self._last_rows: dict[str, tuple[Cell, ...]] = {}
        self._last_total: int | None = None
        self.filter_text = ""
        self.rows_total = 0
        self.sort_column: int | None = None
        self.sort_reverse = False
        self._style_check_due = True
        self._drawn_with: tuple | None = None
        self._subtitle = ""

    def on_mount(self) -> None:
        self._add_columns()

    def _add_columns(self) -> None:
        for key, label in self._column_spec:
            self.add_column(label, key=key)

    def on_resize(self) -> None:
        if (self._fit or self._trail) and self._slots:
            self._resync()

    # --- name and trailing columns cut to fit the width -------------------------------------

    def _fitted_limits(self, rows: Sequence[tuple[Cell, ...]]) -> tuple[int, ...]:
        """Per column, the cells it may show. Trailing columns first give up their oldest cells
        (never below their header or TRAIL_MIN) while the table is wider than its width; then the name columns share
        what the width leaves after the other columns at their widest value. A name column narrower
        than an equal share keeps only what it needs and leaves the rest to the longer ones."""
        width = self.scrollable_content_region.width
        if not (self._fit or self._trail) or width <= 0:
            return self._limits
        padding = 2 * self.cell_padding
        widest = [
            max([cell_len(label), *(cell_len(_plain(row[i])) for row in rows)])
            for i, (_, label) in enumerate(self._column_spec)
        ]
        limits = [CELL_MAX] * len(widest)
        over = sum(widest) + padding * len(widest) - width  # cells too many at every column's widest
        rooms = []
        for n, i in enumerate(self._trail):
            share = -(-over // (len(self._trail) - n))  # negative: room to spare
            floor = max(TRAIL_MIN, cell_len(self._column_spec[i][1]))  # the header is never cut
            give = max(0, min(widest[i] - floor, share))
            limits[i] = widest[i] - give
            rooms.append(max(floor, widest[i] - share))
            over -= give
        self.trail_room = min(rooms) if rooms else None
        left = width - sum((limits[i] if i in self._trail else widest[i]) + padding
                           for i in range(len(widest)) if i not in self._fit)
        left -= padding * len(self._fit)
        by_need = sorted(self._fit, key=lambda i: widest[i])
        for n, i in enumerate(by_need):
            share = max(FIT_MIN, left // (len(by_need) - n))
            limits[i] = min(CELL_MAX, widest[i], share)
            left -= limits[i]
        return tuple(limits)

    def _cut(self, column: int, cell: Cell, limit: int) -> Text:
        return tail(cell, limit) if column in self._trail else plain(cell, limit)

    def _limits_matter(self, limits: tuple[int, ...], rows: Sequence[tuple[Cell, ...]]) -> bool:
        """Whether new limits change a cell shown now (a longer name, or one cut that now fits)."""
        if limits == self._limits:
            return False
        return any(cell_len(_plain(row[i])) > min(limits[i], self._limits[i]) for i in self._fit + self._trail for row in rows)

    def _rebuild(self) -> None:
        """Every row again, under the new limits: DataTable never narrows a column it has widened,
        so the columns are made again too (a whole repaint: a resize, or a wider value elsewhere)."""
        self.clear(columns=True)
        self._add_columns()
        self._slots.clear()
        self._shown.clear()

    # --- painting only what changed --------------------------------------------------------

    def refresh(self, *regions, repaint: bool = True, layout: bool = False, recompose: bool = False):
        # While `sync` writes cells, DataTable's whole-table repaint after each update_cell is
        # replaced by a repaint of that cell's region alone (refresh_coordinate, below).
        if self._cells_only and not regions and not layout and not recompose:
            return self
        return super().refresh(*regions, repaint=repaint, layout=layout, recompose=recompose)

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

    # --- filter and sort --------------------------------------------------------------------

    def set_filter(self, text: str) -> None:
        self.filter_text = text.strip().lower()

    def _matches(self, cells: tuple[Cell, ...]) -> bool:
        if not self.filter_text:
            return True
        return any(self.filter_text in _plain(cell).lower() for cell in cells)

    def action_cycle_sort(self) -> None:
        """No sort (the screen's own order) -> first column -> ... -> last column -> no sort."""
        count = len(self._column_spec)
        self.sort_column = 0 if self.sort_column is None else (self.sort_column + 1 if self.sort_column + 1 < count else None)
        self._resync()

    def action_reverse_sort(self) -> None:
        if self.sort_column is None:
            self.sort_column = 0
        else:
            self.sort_reverse = not self.sort_reverse
        self._resync()

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        event.stop()
        if self.sort_column == event.column_index:
            self.sort_reverse = not self.sort_reverse
        else:
            self.sort_column, self.sort_reverse = event.column_index, False
        self._resync()

    def _resync(self) -> None:
        self.sync(self._last_rows, filtered=True, total=self._last_total)

    def _ordered(self, rows: dict[str, tuple[Cell, ...]]) -> list[tuple[str, tuple[Cell, ...]]]:
        items = list(rows.items())
        column = self.sort_column
        if column is None:
            return items[::-1] if self.sort_reverse else items
        return sorted(items, key=lambda item: sort_key(item[1][column]), reverse=self.sort_reverse)

    def _update_subtitle(self, shown: int, total: int) -> None:
        parts = []
        if self.sort_column is not None:
            label = self._column_spec[self.sort_column][1]
            parts.append(f"sort: {label} {'v' if self.sort_reverse else '^'}")
        if self.filter_text:
            parts.append(f"filter: {self.filter_text} ({shown} of {total})")
        subtitle = "  ".join(parts)
        if subtitle != self._subtitle:
            self._subtitle = subtitle
            # A Text, not a string: the filter is typed text and must not be read as markup.
            self.border_subtitle = Text(subtitle) if subtitle else None

    # --- rows --------------------------------------------------------------------------------

    @property
    def selected_key(self) -> str | None:
        row = self.cursor_row
        return self._slots[row] if self.row_count and 0 <= row < len(self._slots) else None

    def ids(self) -> list[str]:
        """The ids shown, top to bottom."""
        return list(self._slots)

    def row_of(self, key: str) -> int:
        """The row index showing id `key` (ValueError if it is not shown)."""
        return self._slots.index(key)

    def row(self, key: str) -> tuple[Cell, ...]:
        return self._shown[self.row_of(key)]

    def fields(self, key: str) -> list[tuple[str, Cell]]:
        """The row of id `key` as (column label, whole value) pairs, uncut."""
        return [(label, value) for (_, label), value in zip(self._column_spec, self.row(key))]

    def cell(self, key: str, column: str) -> Cell:
        """The cell of id `key` in the column keyed `column`, as shown."""
        return self.row(key)[[k for k, _ in self._column_spec].index(column)]

    def key_for(self, row_key: RowKey) -> str | None:
        """The id shown in the row DataTable names `row_key` (its slot)."""
        try:
            return self._slots[self.get_row_index(row_key)]
        except (RowDoesNotExist, IndexError):
            return None

    def sync(self, rows: Mapping[str, Sequence[Cell]], *, filtered: bool = False, total: int | None = None) -> None:
        """Make the table show exactly `rows` (after the filter, unless the caller has `filtered`
        them on more than the cells show; then `total` is how many there were before), sorted by
        the chosen column if any, keeping the cursor on its row."""
        wanted = {key: tuple(cells) for key, cells in rows.items() if filtered or self._matches(tuple(cells))}
        self._last_rows, self._last_total = wanted, (total if filtered else len(rows))
        self.rows_total = self._last_total if self._last_total is not None else len(wanted)
        ordered = self._ordered(wanted)
        keys = [key for key, _ in self._column_spec]
        with self.app.batch_update():
            selected = self.selected_key
            limits = self._fitted_limits([cells for _, cells in ordered])
            if self._limits_matter(limits, [cells for _, cells in ordered]):
                self._limits = limits
                self._rebuild()
            else:
                self._limits = limits
            while len(self._slots) > len(ordered):
                self.remove_row(str(len(self._slots) - 1))
                self._slots.pop()
                self._shown.pop()
            self._cells_only = True
            try:
                for slot, (key, cells) in enumerate(ordered):
                    if slot == len(self._slots):
                        break
                    self._slots[slot] = key
                    old = self._shown[slot]
                    if old == cells:
                        continue
                    for column, (before, after) in enumerate(zip(old, cells)):
                        if before != after:
                            # A value wider than its column widens it (a whole repaint, rare)
                            # rather than being cut: "10m" must not show as "10".
                            shown = self._cut(column, after, limits[column])
                            wider = shown.cell_len > self.columns[ColumnKey(keys[column])].content_width
                            self.update_cell(str(slot), keys[column], shown, update_width=wider)
                            self.refresh_coordinate(Coordinate(slot, column))
                    self._shown[slot] = cells
            finally:
                self._cells_only = False
            for slot in range(len(self._slots), len(ordered)):
                key, cells = ordered[slot]
                self.add_row(*(self._cut(column, cell, limit) for column, (cell, limit) in enumerate(zip(cells, limits))),
                             key=str(slot))
                self._slots.append(key)
                self._shown.append(cells)
            if selected is not None and selected in wanted:
                index = self._slots.index(selected)
                if index != self.cursor_row:
                    self.move_cursor(row=index, animate=False, scroll=False)
            self._update_subtitle(len(ordered), self.rows_total)

    def clear_rows(self) -> None:
        self.clear()
        self._slots.clear()
        self._shown.clear()
        self._last_rows = {}
