"""Claude Code hooks: what a hook's JSON says about a session, and the hook entries in its settings.json.

A hook is a command Claude Code runs at a point of its loop with a JSON object on stdin
(`hook_event_name`, `session_id`, and per event `notification_type`, `tool_name`, ...). The ones
below say whether the session waits for a person; `heady-agent hook` hands them to the agent
(hook_socket.py), which sets the session's state. Facts: docs/sources.md "Claude Code hooks".
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

HookState = Literal["running", "idle", "waiting"]

# Notification types (Claude Code 2.x) that mean a person is needed, and for what.
WAITING_NOTIFICATIONS: dict[str, str] = {
    "permission_prompt": "permission",
    "idle_prompt": "input",
    "elicitation_dialog": "question",
}
# Events after which the session works again, or has finished its turn.
RESUMING_EVENTS: dict[str, HookState] = {"PostToolUse": "running", "UserPromptSubmit": "running", "Stop": "idle"}
# Installed in settings.json, in this order; each gets one entry running HOOK_SUBCOMMAND.
HOOK_EVENTS = ("PermissionRequest", "Notification", "PostToolUse", "Stop", "UserPromptSubmit")
HOOK_SUBCOMMAND = "hook"
HOOK_TIMEOUT_S = 5  # Claude Code's per-hook timeout; the command returns in milliseconds
# The fields a hook hands over; everything else (tool_input, prompts) stays on the machine's disk.
HANDED_FIELDS = ("hook_event_name", "session_id", "notification_type", "tool_name")
FIELD_CHARS = 200
SETTINGS_FILE = "settings.json"
BACKUP_SUFFIX = ".heady-backup"


@dataclass(frozen=True)
class HookSignal:
    """A session's state as one hook tells it."""

    session_id: str
    state: HookState
    reason: str


def handed_fields(payload: object) -> dict[str, str]:
    """The part of a hook's JSON the agent needs: known string fields, bounded."""
    if not isinstance(payload, dict):
        return {}
    return {
        key: value[:FIELD_CHARS]
        for key in HANDED_FIELDS
        if isinstance(value := payload.get(key), str) and value
    }


def hook_signal(fields: Mapping[str, object]) -> HookSignal | None:
    """The state a hook's fields put the session in, or None when they say nothing about it."""
    session_id = fields.get("session_id")
    event = fields.get("hook_event_name")
    if not isinstance(session_id, str) or not session_id or not isinstance(event, str):
        return None
    if event == "PermissionRequest":
        return HookSignal(session_id, "waiting", "permission")
    if event == "Notification":
        reason = WAITING_NOTIFICATIONS.get(str(fields.get("notification_type")))
        return HookSignal(session_id, "waiting", reason) if reason else None
    state = RESUMING_EVENTS.get(event)
    if state is None:
        return None
    return HookSignal(session_id, state, f"claude-code {event}")


# --- settings.json ------------------------------------------------------------------------------


class HooksError(Exception):
    """settings.json cannot be read or written as it is; one line naming the file."""


def settings_path(environ: Mapping[str, str]) -> Path:
    """The user settings Claude Code reads: in $CLAUDE_CONFIG_DIR (its first entry) when set, else ~/.claude."""
    configured = [p.strip() for p in environ.get("CLAUDE_CONFIG_DIR", "").split(",") if p.strip()]
    root = Path(configured[0]).expanduser() if configured else Path("~/.claude").expanduser()
    return root / SETTINGS_FILE


def hook_command(data_dir: str | None) -> str:
    """The shell command a hook runs: this agent's executable, so it works outside any virtualenv's PATH."""
    found = shutil.which("heady-agent")
    argv = [found] if found else [sys.executable, "-m", "heady_agent"]
    if data_dir:
        argv += ["--data-dir", str(Path(data_dir).expanduser().resolve())]
    return shlex.join([*argv, HOOK_SUBCOMMAND])


def _is_ours(entry: object) -> bool:
    if not isinstance(entry, dict):
        return False
    inner = entry.get("hooks")
    return isinstance(inner, list) and any(
        isinstance(h, dict) and isinstance(h.get("command"), str) and _runs_hook(h["command"]) for h in inner
    )


def _runs_hook(command: str) -> bool:
    try:
        argv = shlex.split(command)
    except ValueError:
        return False
    if not argv or argv[-1] != HOOK_SUBCOMMAND:
        return False
    return os.path.basename(argv[0]) == "heady-agent" or argv[1:3] == ["-m", "heady_agent"]


def _read(path: Path) -> tuple[bytes | None, dict[str, object]]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None, {}
    except OSError as exc:
        raise HooksError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        data = json.loads(raw.decode("utf-8")) if raw.strip() else {}
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HooksError(f"{path}: not valid JSON ({exc}); left as it is") from None
    if not isinstance(data, dict):
        raise HooksError(f"{path}: not a JSON object; left as it is")
    hooks = data.get("hooks", {})
    if not isinstance(hooks, dict) or not all(isinstance(v, list) for v in hooks.values()):
        raise HooksError(f"{path}: `hooks` is not an object of lists; left as it is")
    return raw, data


def _dump(data: Mapping[str, object]) -> bytes:
    # Claude Code writes settings.json this way: 2-space indent, raw UTF-8, final newline.
    return (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def _write(path: Path, content: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(content)
    if path.exists():
        os.chmod(tmp, path.stat().st_mode & 0o777)
    os.replace(tmp, path)


def installed(path: Path) -> bool:
    """Every HOOK_EVENTS entry runs our hook command."""
    try:
        _, data = _read(path)
    except HooksError:
        return False
    hooks = data.get("hooks", {})
    assert isinstance(hooks, dict)
    return all(any(_is_ours(e) for e in hooks.get(event, [])) for event in HOOK_EVENTS)


def install(path: Path, command: str) -> bool:
    """Add the hook to each HOOK_EVENTS list, keeping the user's keys and hooks. False when already there.

    The first install keeps the file as it was in `<file>.heady-backup` (absent file: no backup), so
    uninstall can put back the same bytes."""
    raw, data = _read(path)
    if installed(path):
        return False
    hooks = data.setdefault("hooks", {})
    assert isinstance(hooks, dict)
    for event in HOOK_EVENTS:
        entries = hooks.setdefault(event, [])
        assert isinstance(entries, list)
        if not any(_is_ours(e) for e in entries):
            entries.append({"hooks": [{"type": "command", "command": command, "timeout": HOOK_TIMEOUT_S}]})
    backup = path.with_name(path.name + BACKUP_SUFFIX)
    if raw is not None and not backup.exists():
        backup.write_bytes(raw)
    _write(path, _dump(data))
    return True


def uninstall(path: Path) -> bool:
    """Take our hook out. When the file is otherwise what install() left, the backup's bytes come back
    exactly; when the user changed it since, only our entries go. False when nothing was installed."""
    raw, data = _read(path)
    hooks = data.get("hooks")
    if not isinstance(hooks, dict) or not any(_is_ours(e) for entries in hooks.values() for e in entries):
        return False
    for event in list(hooks):
        kept = [e for e in hooks[event] if not _is_ours(e)]
        if kept:
            hooks[event] = kept
        else:
            del hooks[event]
    if not hooks:
        del data["hooks"]
    backup = path.with_name(path.name + BACKUP_SUFFIX)
    try:
        before = backup.read_bytes()
    except FileNotFoundError:
        before = None
    if before is not None and _same_data(before, data):
        _write(path, before)
    elif before is None and not data:
        path.unlink()  # install created the file
    else:
        _write(path, _dump(data))
    backup.unlink(missing_ok=True)
    return True


def _same_data(raw: bytes, data: Mapping[str, object]) -> bool:
    try:
        return bool(json.loads(raw.decode("utf-8")) == data)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return False
