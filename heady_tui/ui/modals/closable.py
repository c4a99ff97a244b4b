"""A dialog that only informs: Esc or Enter (or its one button) closes it."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import ModalScreen
from textual.widgets import Button


class ClosableModal(ModalScreen[None]):
    # The screen focuses this when it opens; focusing from on_mount races the screen's own
    # auto-focus, which can pick the scrolling body instead.
    AUTO_FOCUS = "#close"
    BINDINGS = [
        Binding("escape", "close", "Close", id="dialog_close"),
        Binding("enter", "close", "Close", show=False, id="dialog_close_enter"),
    ]

    def compose_close(self) -> ComposeResult:
        with Horizontal(classes="dialog-buttons"):
            yield Button("Close (Esc)", id="close", variant="default")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(None)

    def action_close(self) -> None:
        self.dismiss(None)
