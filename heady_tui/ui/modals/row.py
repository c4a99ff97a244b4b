"""One table row in full: every column's label and whole value, for cells the table had to cut."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.widgets import Static

from ..widgets.table import Cell
from .closable import ClosableModal


class RowModal(ClosableModal):
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
            yield from self.compose_close()
