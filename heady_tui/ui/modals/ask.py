"""A one-line input dialog (prompt text, concurrency, nice value). Returns the text or None."""

from __future__ import annotations

from collections.abc import Callable

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Static


class AskModal(ModalScreen[str | None]):
    # The screen focuses this when it opens; focusing from on_mount races the screen's own
    # auto-focus, which can pick the scrolling body instead.
    AUTO_FOCUS = "#answer"
    BINDINGS = [Binding("escape", "cancel", "Cancel", id="ask_cancel")]

    def __init__(
        self,
        title: str,
        label: str,
        *,
        placeholder: str = "",
        value: str = "",
        validate: Callable[[str], str | None] | None = None,
    ) -> None:
        super().__init__()
        self._title = title
        self._label = label
        self._placeholder = placeholder
        self._value = value
        self._validate = validate  # text -> error message, or None when acceptable

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(self._title, classes="dialog-title", markup=False)
            yield Static(self._label, markup=False)
            yield Input(value=self._value, placeholder=self._placeholder, id="answer")
            yield Static("", id="ask-error", markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield Button("Cancel", id="cancel")
                yield Button("OK", id="ok", variant="primary")

    def _submit(self) -> None:
        text = self.query_one("#answer", Input).value
        error = self._validate(text) if self._validate else (None if text.strip() else "enter a value")
        if error:
            self.query_one("#ask-error", Static).update(error)
            return
        self.dismiss(text)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "ok":
            self._submit()
        else:
            self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)


def int_between(low: int, high: int) -> Callable[[str], str | None]:
    def check(text: str) -> str | None:
        try:
            value = int(text.strip())
        except ValueError:
            return f"not a whole number: {text.strip()!r}"
        if not low <= value <= high:
            return f"must be between {low} and {high}"
        return None

    return check
