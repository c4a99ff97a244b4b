"""Send the terminal only the cells that changed ([ui] cell_diff, on by default).

Textual's partial update rewrites each changed line from its left edge to the end of the change,
with a full colour sequence per segment: most of what an unattended console sends over SSH is
cells the terminal already shows. `ScreenDiff` keeps what the terminal shows (character and style
per cell), applies each frame Textual writes to that copy, and sends only the cells that differ,
as curses does.

It reads exactly what Textual writes in a frame: cursor positioning (CSI row;col H), SGR
(CSI ... m), CR, LF, the synchronized-update brackets and printable text. Anything else (start-up
modes, the alternate screen, a clear) goes through untouched and makes the copy forget the
screen, so later frames are sent whole where they paint until the copy knows the screen again; a
change of terminal size does the same. Rows where a wide or zero-width character is written or
overwritten are sent as Textual wrote them, because terminals differ in what a half-overwritten
wide character leaves.
"""

from __future__ import annotations

import os
import re
import sys

from rich.cells import cell_len
from textual.app import App
from textual.drivers.linux_driver import LinuxDriver

SYNC_START = "\x1b[?2026h"
SYNC_END = "\x1b[?2026l"
# Unchanged cells between two changes on a row are re-sent rather than jumped over when there are
# at most this many: a cursor move costs about as many bytes.
MAX_GAP = 6

_TOKEN = re.compile(
    r"\x1b\[(\d+);(\d+)H"  # 1, 2: cursor position
    r"|\x1b\[([0-9;]*)m"  # 3: SGR
    r"|(\r\n|\r|\n)"  # 4: line controls
    r"|(\x1b\[\?2026[hl])"  # 5: synchronized update
    r"|([^\x00-\x1f\x7f-\x9f]+)"  # 6: printable text
)

# (character, SGR parameters since the last reset or "", cells it takes: 0 for a wide character's second half)
Cell = tuple[str, str, int]

_widths: dict[str, int] = {}  # cell widths of the non-ASCII characters seen (box drawing, sparklines)


def width_of(text: str) -> int:
    """Cells `text` takes on the terminal (rich's measure, the one Textual lays out with)."""
    if text.isascii():
        return len(text)
    width = _widths.get(text)
    if width is None:
        if len(_widths) >= 4096:  # agents' text can bring any character: stay bounded
            _widths.clear()
        width = _widths[text] = cell_len(text)
    return width


class ScreenDiff:
    """What the terminal shows, and the smallest write that makes it show the next frame."""

    def __init__(self) -> None:
        self._rows: dict[int, list[Cell | None]] = {}  # None: not known
        self._cursor: tuple[int, int] | None = None  # where the terminal's cursor is (0-based)
        self._style: str | None = None  # the terminal's current SGR; None: not known
        self._input_style = ""  # the SGR Textual's own writes left the terminal in
        self._size: tuple[int, int] | None = None
        self._sync_held = False  # a SYNC_START not yet sent: it goes out with the frame, if any

    def forget(self) -> None:
        """Know nothing of the screen (a redraw, a resize, output we do not read)."""
        self._rows.clear()
        self._cursor = None
        self._style = None
        self._input_style = ""

    def frame(self, data: str, size: tuple[int, int] | None) -> str:
        """What to write instead of `data` (a Textual write) on a terminal of `size` (columns, rows)."""
        if size is None or size != self._size:
            self._size = size
            self.forget()
        if data == SYNC_START:
            self._sync_held = True
            return ""
        if data == SYNC_END:
            if self._sync_held:  # nothing was sent between the brackets
                self._sync_held = False
                return ""
            return data
        out = self._diff(data, *size) if size is not None else None
        if out is None:
            self.forget()
            out = data
        if out and self._sync_held:
            out = SYNC_START + out
            self._sync_held = False
        return out

    def _diff(self, data: str, columns: int, rows: int) -> str | None:
        """The write for `data`, or None when `data` holds anything this does not read (or would
        scroll or wrap the terminal)."""
        before: dict[tuple[int, int], Cell | None] = {}
        whole_rows: set[int] = set()  # rows sent as written (wide or zero-width characters)
        cursor = self._cursor
        style = self._input_style
        pos = 0
        for match in _TOKEN.finditer(data):
            if match.start() != pos:
                return None
            pos = match.end()
            if match.group(1) is not None:
                cursor = (int(match.group(1)) - 1, int(match.group(2)) - 1)
            elif match.group(3) is not None:
                params = match.group(3)
                if params in ("", "0"):
                    style = ""
                elif params.startswith("0;"):
                    style = params[2:]
                else:
                    style = f"{style};{params}" if style else params
            elif match.group(4) is not None:
                if cursor is None:
                    return None
                control = match.group(4)
                cursor = (cursor[0] + (control != "\r"), 0 if "\r" in control else cursor[1])
            elif match.group(6) is not None:
                if cursor is None:
                    return None
                cursor = self._put(match.group(6), style, cursor, columns, before, whole_rows)
            # (group 5: synchronized-update brackets inside a frame change no cell)
            if cursor is None or cursor[0] >= rows or cursor[1] > columns:
                return None
        if pos != len(data) or cursor is None:
            return None
        self._input_style = style
        return self._write(before, whole_rows, cursor)

    def _put(
        self,
        text: str,
        style: str,
        cursor: tuple[int, int],
        columns: int,
        before: dict[tuple[int, int], Cell | None],
        whole_rows: set[int],
    ) -> tuple[int, int] | None:
        """Apply printable text at the cursor; the cursor after it, None if it would wrap."""
        y, x = cursor
        row = self._rows.setdefault(y, [])

        def set_cell(at: int, cell: Cell | None) -> None:
            before.setdefault((y, at), row[at])
            row[at] = cell

        for char in text:
            width = 1 if char.isascii() else width_of(char)
            if width == 0:  # joins the character before it
                whole_rows.add(y)
                at = x - 1
                half = row[at] if 0 < at < len(row) else None
                if half is not None and half[2] == 0:
                    at -= 1  # the second half of a wide character: join the first
                lead = row[at] if 0 <= at < len(row) else None
                if lead is not None:
                    set_cell(at, (lead[0] + char, lead[1], lead[2]))
                continue
            if x + width > columns:
                return None
            if len(row) < x + width + 1:
                row.extend([None] * (x + width + 1 - len(row)))
            old = row[x]
            if width == 1 and (old is None or old[2] == 1):  # the common case, kept cheap
                if (y, x) not in before:
                    before[(y, x)] = old
                row[x] = (char, style, 1)
                x += 1
                continue
            whole_rows.add(y)
            for at in range(x, x + width):
                # Overwriting half of a wide character blanks its other half on the terminal.
                old = row[at]
                if old is not None and old[2] == 0 and at > 0:
                    set_cell(at - 1, None)
                elif old is not None and old[2] == 2:
                    set_cell(at + 1, None)
            if width == 2:
                set_cell(x + 1, ("", style, 0))
            set_cell(x, (char, style, width))
            x += width
        return (y, x)

    def _write(self, before: dict[tuple[int, int], Cell | None], whole_rows: set[int], cursor: tuple[int, int]) -> str:
        touched: dict[int, list[int]] = {}
        changed: dict[int, list[int]] = {}
        for (y, x), old in before.items():
            touched.setdefault(y, []).append(x)
            if self._rows[y][x] != old:
                changed.setdefault(y, []).append(x)
        for y in whole_rows & changed.keys():
            changed[y] = touched[y]
        out: list[str] = []
        for y in sorted(changed):
            row = self._rows[y]
            for x in sorted(changed[y]):
                cell = row[x]
                if cell is None or cell[2] == 0:
                    continue  # a wide character's second half goes out with its first
                if self._cursor is not None and self._cursor[0] == y and 0 <= x - self._cursor[1] <= MAX_GAP:
                    self._send_gap(out, row, y, x)
                if self._cursor != (y, x):
                    out.append(f"\x1b[{y + 1};{x + 1}H")
                self._send(out, cell)
                self._cursor = (y, x + cell[2])
        if out and self._style != "":
            out.append("\x1b[0m")
            self._style = ""
        if self._cursor != cursor:  # where Textual leaves it (an input's caret)
            out.append(f"\x1b[{cursor[0] + 1};{cursor[1] + 1}H")
            self._cursor = cursor
        return "".join(out)

    def _send_gap(self, out: list[str], row: list[Cell | None], y: int, x: int) -> None:
        """Re-send the unchanged cells between the cursor and x when that is shorter than a move."""
        assert self._cursor is not None
        start = self._cursor[1]
        gap = row[start:x]
        if any(cell is None or cell[2] != 1 or len(cell[0]) != 1 for cell in gap):
            return
        for cell in gap:
            assert cell is not None
            self._send(out, cell)
        self._cursor = (y, x)

    def _send(self, out: list[str], cell: Cell) -> None:
        char, style, _ = cell
        if style != self._style:
            out.append(f"\x1b[0;{style}m" if style else "\x1b[0m")
            self._style = style
        out.append(char)


def terminal_size() -> tuple[int, int] | None:
    """The size of the terminal Textual draws on (its standard error), None when it is not one."""
    if sys.__stderr__ is None:
        return None
    try:
        size = os.get_terminal_size(sys.__stderr__.fileno())
    except (OSError, ValueError):
        return None
    return (size.columns, size.lines)


class CellDiffDriver(LinuxDriver):
    """Textual's terminal driver, writing through the app's ScreenDiff."""

    def __init__(self, app: App[object], *, debug: bool = False, mouse: bool = True, size: tuple[int, int] | None = None) -> None:
        super().__init__(app, debug=debug, mouse=mouse, size=size)
        screen = getattr(app, "screen_diff", None)
        self._screen_diff = screen if isinstance(screen, ScreenDiff) else ScreenDiff()

    def write(self, data: str) -> None:
        out = self._screen_diff.frame(data, terminal_size())
        if out:
            super().write(out)
