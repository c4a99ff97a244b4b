"""The `?` help screen, built from the action registry, and the "terminal too small" screen."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Static

from ..actions import ACTIONS

if TYPE_CHECKING:
    from ..application import HeadyApp

SCREEN_TITLES = {
    "app": "Everywhere",
    "overview": "Overview",
    "node": "Node detail",
    "session": "Session detail",
    "costs": "Costs",
    "healing": "Healing",
    "permissions": "Permissions",
    "audit": "Audit",
}


class HelpScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape", "dismiss", "Close", id="help_close"),
        Binding("question_mark", "dismiss", "Close", show=False, id="help_close_q"),
    ]

    def __init__(self, view: str) -> None:
        super().__init__()
        self.view = view

    def rows(self) -> list[tuple[str, str, str, str]]:
        """(keys, description, where, note) of every action available here, this screen's first."""
        app = cast("HeadyApp", self.app)
        read_only = app.read_only
        ordered = sorted(
            ACTIONS, key=lambda a: (a.screen not in ("app", self.view), list(SCREEN_TITLES).index(a.screen))
        )
        return [
            (app.get_key_display_for(a), a.description, SCREEN_TITLES[a.screen], "confirms" if a.destructive else "")
            for a in ordered
            if not (read_only and a.changes_state)
        ]

    def compose(self) -> ComposeResult:
        table = Table(box=None, show_header=True, header_style="bold", expand=True, pad_edge=False)
        table.add_column("Key", no_wrap=True)
        table.add_column("Action")
        table.add_column("Where", no_wrap=True)
        table.add_column("", no_wrap=True)
        for row in self.rows():
            table.add_row(*row)
        with Vertical(classes="dialog"):
            yield Static("Keys", classes="dialog-title")
            with VerticalScroll(classes="dialog-body"):
                yield Static(table)
            yield Static("ctrl+p: command palette. Remap keys with [ui] keymap (action id = keys).", markup=False)

    async def action_dismiss(self, result: None = None) -> None:
        self.dismiss(None)


class TooSmallScreen(Screen):
    """Shown instead of a broken layout while the terminal is smaller than the console needs."""

    def __init__(self, min_width: int, min_height: int) -> None:
        super().__init__()
        self.min_width = min_width
        self.min_height = min_height

    def compose(self) -> ComposeResult:
        yield Static(id="too-small")

    def on_mount(self) -> None:
        self.show_size(self.app.size.width, self.app.size.height)

    def show_size(self, width: int, height: int) -> None:
        self.query_one("#too-small", Static).update(
            f"Terminal too small: {width}x{height}\nheady needs at least {self.min_width}x{self.min_height}."
        )
