"""Session sources by name, imported only when a config names them (keeps the agent light)."""

from __future__ import annotations

import importlib

from .base import SessionSource

_REGISTRY: dict[str, tuple[str, str]] = {
    "claude-code": ("claude_code", "ClaudeCodeSource"),
    "codex": ("codex", "CodexSource"),
    "managed": ("managed", "ManagedSource"),
    "synthetic": ("synthetic", "SyntheticSource"),
    "opencode": ("opencode", "OpencodeSource"),
    "ingest": ("opencode", "OpencodeSource"),  # the old name of "opencode"
}


def source_names() -> tuple[str, ...]:
    return tuple(_REGISTRY)


def load_source(name: str) -> type[SessionSource]:
    """The source class registered under `name`; KeyError for an unknown name."""
    try:
        module_name, class_name = _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown source {name!r} (known: {', '.join(_REGISTRY)})") from None
    module = importlib.import_module(f"{__name__}.{module_name}")
    return getattr(module, class_name)
