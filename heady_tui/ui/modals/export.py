"""The report export dialog (`e`): pick a format and a range, write the report, show where it went.

The dialog only asks and shows; the app hands it `export(fmt, since_text) -> Path`, which does the
work off the UI (see HeadyApp.export_report). The dialog stays open after writing so the operator
can read the path; an error is one line and the dialog stays editable.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, RadioButton, RadioSet, Static

from ...report import FORMATS, ReportError
from ...store import StoreError

FORMAT_LABELS = {"html": "HTML (one self-contained file)", "md": "Markdown", "json": "JSON"}
DEFAULT_RANGE = "24h"

Exporter = Callable[[str, str], Awaitable[Path]]


class ExportModal(ModalScreen[Path | None]):
    """Dismisses with the path written, or None when closed before writing anything."""

    # The screen focuses this when it opens; focusing from on_mount races the screen's own
    # auto-focus, which can pick the scrolling body instead.
    AUTO_FOCUS = "#export-since"

    BINDINGS = [Binding("escape", "close", "Close", id="export_close")]

    def __init__(self, export: Exporter) -> None:
        super().__init__()
        self._export = export
        self.written: Path | None = None

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="export"):
            yield Static("Export the session report", classes="dialog-title")
            yield Static("Format:")
            with RadioSet(id="export-format"):
                for fmt in FORMATS:
                    yield RadioButton(FORMAT_LABELS[fmt], value=fmt == "html", id=f"format-{fmt}")
            yield Static("Range: since how long ago (90m, 24h, 7d) or an ISO time (2027-01-15T08:00Z):")
            yield Input(value=DEFAULT_RANGE, id="export-since")
            yield Static("", id="export-result", markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield Button("Close (esc)", id="close")
                yield Button("Export (enter)", id="write", variant="primary")

    @property
    def format(self) -> str:
        pressed = self.query_one("#export-format", RadioSet).pressed_button
        return pressed.id.removeprefix("format-") if pressed is not None and pressed.id else "html"

    def _show(self, line: str, *, error: bool) -> None:
        result = self.query_one("#export-result", Static)
        result.update(line)
        result.set_class(error, "-error")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._write()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "write":
            self._write()
        else:
            self.action_close()

    def _write(self) -> None:
        button = self.query_one("#write", Button)
        if button.disabled:
            return  # one export at a time
        button.disabled = True
        self._show(f"writing the {self.format} report...", error=False)
        self._run(self.format, self.query_one("#export-since", Input).value)

    @work(exclusive=True, group="export", exit_on_error=False)
    async def _run(self, fmt: str, since_text: str) -> None:
        try:
            path = await self._export(fmt, since_text)
        except (ReportError, StoreError, OSError) as exc:
            self._show(f"not written: {exc}", error=True)
        else:
            self.written = path
            self._show(f"wrote {path}", error=False)
            self.notify(f"report written: {path}", markup=False)
        finally:
            self.query_one("#write", Button).disabled = False

    def action_close(self) -> None:
        self.dismiss(self.written)
