"""`heady-agent statusline`: Claude Code's status line command. Claude Code runs it with a JSON object
on stdin (`session_id`, `model`, `cost`, and for a claude.ai login, once an answer has come,
`rate_limits`: `five_hour` and `seven_day`, each `used_percentage` (0-100, one decimal) and
`resets_at` (epoch seconds)); it prints one line for Claude Code to show and hands the session's
limits to the running agent over the hook socket (hook_socket.py), which sends them to the console
as `session.limits`. The format is recorded from real Claude Code (tests/test_statusline_real.py);
facts: docs/sources.md "Claude Code's account and status line".
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from pathlib import Path
from typing import Any

from .sources.common import plain_text
from .sources.jsonl import parse_ts

KIND = "statusline"  # the `kind` of a status line's line on the hook socket
# Claude Code's window names, as the protocol's primary (5 h) and secondary (weekly) windows.
WINDOWS = (("five_hour", "primary", 300, "5h"), ("seven_day", "secondary", 7 * 24 * 60, "7d"))
MODEL_CHARS = 40
SESSION_CHARS = 200
TIME_CHARS = 40  # an ISO 8601 time with an offset fits many times over


def _percent(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value) if 0.0 <= value <= 100.0 else None


def rate_limits(payload: dict[str, Any]) -> dict[str, Any] | None:
    """The status line's `rate_limits` as `session.limits` data (protocol.RateLimits); None without any."""
    raw = payload.get("rate_limits")
    if not isinstance(raw, dict):
        return None
    out: dict[str, Any] = {}
    for name, slot, minutes, _ in WINDOWS:
        window = raw.get(name)
        used = _percent(window.get("used_percentage")) if isinstance(window, dict) else None
        if window is None or used is None:
            continue
        resets_at = parse_ts(window.get("resets_at"))
        out[slot] = {"used_percent": used, "window_minutes": minutes, "resets_at": resets_at}
    return out or None


def handed(payload: dict[str, Any]) -> dict[str, Any] | None:
    """What goes to the agent: the session and its windows' two fields, nothing else of the payload."""
    session = payload.get("session_id")
    raw = payload.get("rate_limits")
    if not isinstance(session, str) or not session or not isinstance(raw, dict):
        return None
    windows = {
        name: {key: _scalar(raw[name].get(key)) for key in ("used_percentage", "resets_at")}
        for name, _, _, _ in WINDOWS
        if isinstance(raw.get(name), dict)
    }
    return {"kind": KIND, "session_id": session[:SESSION_CHARS], "rate_limits": windows} if windows else None


def _scalar(value: Any) -> Any:
    """A number, or a short string (an ISO time); anything else is not handed over."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    return value if isinstance(value, str) and len(value) <= TIME_CHARS else None


def received(line: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """(session id, `session.limits` data) of a status line's line on the hook socket."""
    session = line.get("session_id")
    limits = rate_limits(line)
    if not isinstance(session, str) or not session or limits is None:
        return None
    return session[:SESSION_CHARS], limits


def configured(settings: Path) -> bool:
    """Claude Code's settings.json runs `heady-agent statusline` as its status line."""
    try:
        data = json.loads(settings.read_bytes())
    except (OSError, ValueError):
        return False
    line = data.get("statusLine") if isinstance(data, dict) else None
    command = line.get("command") if isinstance(line, dict) else None
    return isinstance(command, str) and command.split()[-1:] == [KIND] and "heady" in command


def _clock(ts: float | None) -> str:
    try:
        return datetime.fromtimestamp(ts).strftime("%H:%M") if ts is not None else "?"
    except (OverflowError, OSError, ValueError):
        return "?"


def status_text(payload: dict[str, Any], *, connected: bool) -> str:
    """The one line Claude Code shows: model, each window's use and reset, the session's cost."""
    parts = []
    model = payload.get("model")
    name = model.get("display_name") if isinstance(model, dict) else None
    if isinstance(name, str) and plain_text(name, MODEL_CHARS):
        parts.append(plain_text(name, MODEL_CHARS))
    limits = rate_limits(payload) or {}
    for _, slot, _, label in WINDOWS:
        window = limits.get(slot)
        if window is not None:
            parts.append(f"{label} {window['used_percent']:.0f}% (resets {_clock(window['resets_at'])})")
    cost = payload.get("cost")
    usd = cost.get("total_cost_usd") if isinstance(cost, dict) else None
    if isinstance(usd, (int, float)) and not isinstance(usd, bool) and math.isfinite(usd) and usd >= 0:
        parts.append(f"${usd:.2f}")
    parts.append("heady" if connected else "heady: no agent")
    return " · ".join(parts)
