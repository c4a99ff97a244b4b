"""An operator action or a screen loader failed: say what failed and why, until dismissed."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static

from .closable import ClosableModal


class ErrorModal(ClosableModal):
    def __init__(self, title: str, message: str) -> None:
        super().__init__()
        self._title = title
        self._message = message

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog dialog-danger"):
            yield Static(self._title, classes="dialog-title", markup=False)
            yield Static(self._message, classes="dialog-body", markup=False)
            yield Static("l shows this and earlier errors in the log.", classes="dialog-hint", markup=False)
            yield from self.compose_close()
