"""One table row in full: every column's label and whole value, for cells the table had to cut."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from ..widgets.table import Cell


class RowModal(ModalScreen[None]):
    AUTO_FOCUS = "#close"
    BINDINGS = [
        Binding("escape", "close", "Close", id="row_close"),
        Binding("enter", "close", "Close", show=False, id="row_close_enter"),
    ]

    def __init__(self, title: str, fields: Sequence[tuple[str, Cell]]) -> None:
        super().__init__()
        self._title = title
        self.fields = fields

    def compose(self) -> ComposeResult:
        width = max((len(label) for label, _ in self.fields), default=0)
        body = Text()
        for label, value in self.fields:
            # Values are node data: appended as Text, never parsed as markup.
            body.append(f"{label:<{width}}  ", style="bold")
            body.append_text(value if isinstance(value, Text) else Text(value))
            body.append("\n")
        body.rstrip()
        with Vertical(classes="dialog"):
            yield Static(self._title, classes="dialog-title", markup=False)
            with VerticalScroll(classes="dialog-body"):
                yield Static(body)
            with Horizontal(classes="dialog-buttons"):
                yield Button("Close (Esc)", id="close", variant="default")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(None)

    def action_close(self) -> None:
        self.dismiss(None)
