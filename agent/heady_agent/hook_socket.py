"""The local Unix socket through which `heady-agent hook` hands Claude Code hook events to the agent.

Hooks run with the user's environment but never get the agent's token: the socket is the
credential. It lives in `<data dir>/hooks/`, a 0700 directory of the agent's user, and is itself
0600. One connection carries one JSON line (hooks.HANDED_FIELDS, or a status line's limits:
statusline.handed); nothing is answered, so the hook returns as soon as the line is written.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import statusline
from .hooks import HookSignal, handed_fields, hook_signal

log = logging.getLogger("heady_agent.hook_socket")

SOCKET_DIR = "hooks"
SOCKET_NAME = "agent.sock"
MAX_LINE_BYTES = 4096  # HANDED_FIELDS or a status line's limits, bounded, fit many times over
SEND_TIMEOUT_S = 0.5  # a hook never holds Claude Code up longer, agent or not
READ_TIMEOUT_S = 5.0
MAX_SOCKET_PATH_BYTES = 107  # sockaddr_un.sun_path on Linux, less its terminating NUL


def socket_path(data_dir: str | Path | None) -> Path:
    """Where the agent with this data dir (default: the user data dir) listens for hooks."""
    if data_dir is None:
        from .config import data_dir as default_data_dir

        base = default_data_dir()
    else:
        base = Path(data_dir).expanduser()
    return base / SOCKET_DIR / SOCKET_NAME


def send_hook(stdin: bytes, path: Path) -> bool:
    """Hand a hook's JSON to the agent; False (and nothing raised) when it is not JSON or no agent listens."""
    try:
        fields = handed_fields(json.loads(stdin.decode("utf-8")))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return False
    if not fields:
        return False
    return send_line(fields, path)


def send_line(fields: dict[str, Any], path: Path) -> bool:
    """One JSON line to the agent; False (and nothing raised) when no agent listens."""
    line = json.dumps(fields, separators=(",", ":")).encode() + b"\n"
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(SEND_TIMEOUT_S)
            sock.connect(str(path))
            sock.sendall(line)
    except OSError:
        return False
    return True


class HookSocketError(Exception):
    """The hook socket cannot be opened (path too long, directory not ours, another agent on it)."""


class HookListener:
    """Accepts hook lines on the socket and passes each session signal to `on_signal`, and each
    status line's limits (session id, `session.limits` data) to `on_limits`."""

    def __init__(self, path: Path, on_signal: Callable[[HookSignal], None],
                 on_limits: Callable[[str, dict[str, Any]], None] | None = None) -> None:
        self.path = path
        self._on_signal = on_signal
        self._on_limits = on_limits
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        if len(os.fsencode(self.path)) > MAX_SOCKET_PATH_BYTES:
            raise HookSocketError(f"hook socket path {self.path} is longer than {MAX_SOCKET_PATH_BYTES} bytes")
        folder = self.path.parent
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = folder.stat()
        if info.st_uid != os.getuid():
            raise HookSocketError(f"{folder} belongs to another user; hooks not accepted")
        os.chmod(folder, 0o700)
        if self.path.exists() or self.path.is_symlink():
            if not stat.S_ISSOCK(self.path.lstat().st_mode):
                raise HookSocketError(f"{self.path} exists and is not a socket; hooks not accepted")
            if listening(self.path):
                raise HookSocketError(f"another agent listens on {self.path}; hooks go there")
            self.path.unlink()  # left by an agent that did not stop cleanly
        self._server = await asyncio.start_unix_server(self._handle, path=str(self.path), limit=MAX_LINE_BYTES)
        os.chmod(self.path, 0o600)

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        await self._server.wait_closed()
        self._server = None
        self.path.unlink(missing_ok=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), READ_TIMEOUT_S)
            payload = json.loads(line.decode("utf-8"))
        except (ValueError, asyncio.TimeoutError, ConnectionError) as exc:  # too long, not JSON, cut
            log.debug("hook line dropped: %s", exc)
            payload = {}
        finally:
            writer.close()
        if isinstance(payload, dict) and payload.get("kind") == statusline.KIND:
            limits = statusline.received(payload)
            if limits is not None and self._on_limits is not None:
                self._on_limits(*limits)
            return
        signal = hook_signal(handed_fields(payload))
        if signal is not None:
            self._on_signal(signal)


def listening(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(SEND_TIMEOUT_S)
        try:
            sock.connect(str(path))
        except OSError:
            return False
    return True
