"""Yes/no confirmation for destructive actions. Cancel has the focus, so Enter never destroys."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static


class ConfirmModal(ModalScreen[bool]):
    # The screen focuses this when it opens; focusing from on_mount races the screen's own
    # auto-focus, which can pick the scrolling body instead.
    AUTO_FOCUS = "#cancel"
    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="confirm_cancel"),
        Binding("n", "cancel", "No", show=False, id="confirm_no"),
        Binding("y", "confirm", "Yes", show=False, id="confirm_yes"),
    ]

    def __init__(self, title: str, body: str, confirm_label: str = "Confirm") -> None:
        super().__init__()
        self._title = title
        self._body = body  # captured when the dialog opens: the target cannot move under it
        self._confirm_label = confirm_label

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog dialog-danger"):
            yield Static(self._title, classes="dialog-title", markup=False)
            yield Static(self._body, classes="dialog-body", markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield Button("Cancel (n)", id="cancel", variant="default")
                yield Button(f"{self._confirm_label} (y)", id="confirm", variant="error")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "confirm")

    def action_cancel(self) -> None:
        self.dismiss(False)

    def action_confirm(self) -> None:
        self.dismiss(True)
