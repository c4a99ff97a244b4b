"""The `l` view: the console's recent notices and errors, newest first, so a toast missed is not lost."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import ModalScreen

from .. import formatting as fmt
from ..widgets.table import KeyedTable

if TYPE_CHECKING:
    from ..application import HeadyApp


class LogScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape", "close", "Close", id="log_close"),
        Binding("l", "close", "Close", show=False, id="log_close_l"),
    ]

    def compose(self) -> ComposeResult:
        table = KeyedTable([("time", "Time"), ("kind", "Kind"), ("text", "Message")], id="log-entries", fit=("text",))
        table.border_title = "Log: notices and errors, newest first (Esc closes)"
        yield table

    def on_mount(self) -> None:
        app: HeadyApp = self.app  # type: ignore[assignment]
        table = self.query_one(KeyedTable)
        rows = {
            str(index): (fmt.clock_time(entry.ts), entry.severity, Text(entry.text, end=""))
            for index, entry in reversed(list(enumerate(app.log_entries)))
        }
        table.sync(rows)
        table.focus()

    def action_close(self) -> None:
        self.dismiss(None)
