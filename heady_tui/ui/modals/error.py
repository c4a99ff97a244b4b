"""An operator action or a screen loader failed: say what failed and why, until dismissed."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static


class ErrorModal(ModalScreen[None]):
    # The screen focuses this when it opens; focusing from on_mount races the screen's own
    # auto-focus, which can pick the scrolling body instead.
    AUTO_FOCUS = "#close"
    BINDINGS = [
        Binding("escape", "close", "Close", id="error_close"),
        Binding("enter", "close", "Close", show=False, id="error_close_enter"),
    ]

    def __init__(self, title: str, message: str) -> None:
        super().__init__()
        self._title = title
        self._message = message

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog dialog-danger"):
            yield Static(self._title, classes="dialog-title", markup=False)
            yield Static(self._message, classes="dialog-body", markup=False)
            yield Static("l shows this and earlier errors in the log.", classes="dialog-hint", markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield Button("Close (Esc)", id="close", variant="default")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(None)

    def action_close(self) -> None:
        self.dismiss(None)
