"""The console's two themes and its one severity vocabulary: ok / careful / warning / critical.

Severity colours are theme variables ($sev-ok ... $sev-critical) so the stylesheet and the
cells of every table use the same ones; the light theme picks darker tones that stay readable on
a white terminal.
"""

from __future__ import annotations

from functools import lru_cache

from rich.style import Style
from rich.text import Text
from textual.app import App
from textual.theme import Theme

DARK = Theme(
    name="heady-dark",
    primary="#5fafd7",
    secondary="#87afd7",
    accent="#d7af5f",
    warning="#e5b449",
    error="#ef6461",
    success="#6cc070",
    foreground="#d0d4d8",
    background="#121417",
    surface="#1a1d21",
    panel="#22262b",
    dark=True,
    variables={
        "sev-ok": "#6cc070",
        "sev-careful": "#5fafd7",
        "sev-warning": "#e5b449",
        "sev-critical": "#ef6461",
        "sev-muted": "#7d848c",
        "heady-border": "#3d444c",
        "footer-key-foreground": "#5fafd7",
    },
)

LIGHT = Theme(
    name="heady-light",
    primary="#0b5a8c",
    secondary="#1f6fa8",
    accent="#8a5a00",
    warning="#9a6200",
    error="#b3261e",
    success="#1e7a33",
    foreground="#1d2125",
    background="#fafafa",
    surface="#f0f1f3",
    panel="#e4e6ea",
    dark=False,
    variables={
        "sev-ok": "#1e7a33",
        "sev-careful": "#0b5a8c",
        "sev-warning": "#9a6200",
        "sev-critical": "#b3261e",
        "sev-muted": "#5c636b",
        "heady-border": "#98a2ad",
        "footer-key-foreground": "#0b5a8c",
    },
)

THEMES = {"dark": DARK, "light": LIGHT}


def register(app: App, choice: str) -> None:
    for theme in THEMES.values():
        app.register_theme(theme)
    app.theme = THEMES[choice].name


@lru_cache(maxsize=64)
def _style(colour: str | None, bold: bool) -> Style:
    return Style(color=colour, bold=bold) if colour else Style(bold=bold)


def styled(app: App, text: str, severity: str, *, bold: bool = False) -> Text:
    """`text` coloured by severity from the app's current theme (plain text, never markup)."""
    return Text(text, style=_style(app.theme_variables.get(f"sev-{severity}"), bold), end="")
