"""Entry point of the console UI: `run_app(supervisor, config, args)`.

Textual reads TEXTUAL_FPS and TEXTUAL_COLOR_SYSTEM when it is first imported, so `run_app` sets
them (from `[ui] fps` and `--color`) before importing the application module; `HeadyApp` is
exported from here lazily for the same reason.
"""

from __future__ import annotations

import os
from typing import Any

from ..config import Config
from .backend import ConsoleBackend, Operator

# --color -> Textual's colour system (Rich names); "none" means NO_COLOR, which Textual honours.
COLOR_SYSTEMS = {"truecolor": "truecolor", "256": "256", "16": "standard"}


def configure_terminal(config: Config, color: str) -> None:
    """Set the environment Textual reads at import time. An explicit TEXTUAL_FPS wins."""
    os.environ.setdefault("TEXTUAL_FPS", str(config.ui.fps))
    if color == "none":
        os.environ["NO_COLOR"] = "1"
    elif color in COLOR_SYSTEMS:
        os.environ["TEXTUAL_COLOR_SYSTEM"] = COLOR_SYSTEMS[color]


def run_app(supervisor: ConsoleBackend, config: Config, args: Any, operator: Operator | None = None) -> int:
    """Run the console until the operator quits; returns the exit status. `operator` for a console
    that is not this process's supervisor (an attached one)."""
    color = getattr(args, "color", None) or "auto"
    configure_terminal(config, color)
    from .application import HeadyApp

    app = HeadyApp(
        supervisor,
        config,
        operator=operator,
        read_only=bool(getattr(args, "read_only", False)),
        theme=getattr(args, "theme", None),
    )
    result = app.run()
    return int(app.return_code or 0) if result is None else int(result)


def __getattr__(name: str) -> Any:
    if name == "HeadyApp":
        from .application import HeadyApp

        return HeadyApp
    raise AttributeError(name)
