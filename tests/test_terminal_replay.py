"""What Textual wrote while an operator used `heady demo` (recorded by scripts/record/terminal.py),
replayed into a terminal emulator twice: as written, and through ScreenDiff. After every write both
terminals show the same characters in the same colours."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyte

from heady_tui.ui.terminal import ScreenDiff

FIXTURE = Path(__file__).parent / "fixtures/terminal/demo-writes.jsonl.gz"


def recorded_writes() -> list[tuple[int, int, str]]:
    return [tuple(json.loads(line)) for line in gzip.decompress(FIXTURE.read_bytes()).decode().splitlines()]


class Terminal:
    def __init__(self, columns: int, rows: int) -> None:
        self.screen = pyte.Screen(columns, rows)
        self.stream = pyte.Stream(self.screen)

    def resize(self, columns: int, rows: int) -> None:
        if (self.screen.columns, self.screen.lines) != (columns, rows):
            self.screen.resize(rows, columns)

    def cells(self) -> list[list[pyte.screens.Char]]:
        return [[self.screen.buffer[y][x] for x in range(self.screen.columns)] for y in range(self.screen.lines)]


def test_the_recording_covers_screens_a_resize_and_idle_time():
    writes = recorded_writes()
    assert len({(columns, rows) for columns, rows, _ in writes}) == 2 and len(writes) > 200


def test_through_screen_diff_the_terminal_shows_what_textuals_own_writes_show_after_every_write():
    writes = recorded_writes()
    columns, rows, _ = writes[0]
    as_written, diffed = Terminal(columns, rows), Terminal(columns, rows)
    diff = ScreenDiff()
    for index, (columns, rows, data) in enumerate(writes):
        as_written.resize(columns, rows)
        diffed.resize(columns, rows)
        as_written.stream.feed(data)
        diffed.stream.feed(diff.frame(data, (columns, rows)))
        assert diffed.cells() == as_written.cells(), f"the screens differ after write {index}"


def test_screen_diff_sends_a_small_part_of_what_textual_writes():
    sent = written = 0
    diff = ScreenDiff()
    for columns, rows, data in recorded_writes():
        written += len(data.encode())
        sent += len(diff.frame(data, (columns, rows)).encode())
    assert sent < written / 4
