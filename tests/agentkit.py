"""Test kit: real heady-agents on loopback, in-process or as child processes.

    async with running_agent(tmp_path, sources=("synthetic",)) as agent:
        async with ws_connect(agent.url, agent.token) as ws: ...

    proc = AgentProcess(tmp_path, "a", sources=("managed",), managed=[{...}])
    await proc.start(); proc.kill9(); await proc.start()   # same port, same journal
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from heady_agent.config import AgentConfig
from heady_agent.server import AgentServer
from heady_tui.launcher import toml_table

READY_TIMEOUT_S = 30.0
DEFAULT_INTERVAL_S = 0.5


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def agent_section(
    *,
    sources: Iterable[str],
    token: str | None,
    scenario: str,
    node_index: int,
    node_count: int,
    speed: float,
    managed: Iterable[Mapping[str, Any]],
    listen: str,
    extra: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The `[agent]` table for a test agent (plain data, so it can go to TOML or to AgentConfig)."""
    section: dict[str, Any] = {
        "listen": listen,
        "token": token,
        "token_env": None,
        "interval_s": DEFAULT_INTERVAL_S,
        "sources": list(sources),
        "synthetic": {"scenario": scenario, "node_index": node_index, "node_count": node_count, "speed": speed},
        "managed": [dict(m) for m in managed],
    }
    for key, value in (extra or {}).items():
        if isinstance(value, dict) and isinstance(section.get(key), dict):
            section[key] = {**section[key], **value}
        else:
            section[key] = value
    return {k: v for k, v in section.items() if v is not None}


@dataclass
class RunningAgent:
    url: str
    token: str | None
    server: AgentServer
    journal_path: Path


@asynccontextmanager
async def running_agent(
    tmp_path: Path,
    *,
    sources: Iterable[str] = ("synthetic",),
    token: str | None = "t0k",
    scenario: str = "calm",
    node_index: int = 0,
    node_count: int = 1,
    speed: float = 1.0,
    managed: Iterable[Mapping[str, Any]] = (),
    extra: Mapping[str, Any] | None = None,
    name: str | None = None,
    clock: Any = None,
) -> AsyncIterator[RunningAgent]:
    """An AgentServer in this event loop on 127.0.0.1:<free port>, journal under tmp_path/<name>/."""
    name = name or f"agent{node_index}"
    section = agent_section(
        sources=sources,
        token=token,
        scenario=scenario,
        node_index=node_index,
        node_count=node_count,
        speed=speed,
        managed=managed,
        listen="127.0.0.1:0",
        extra={"node_id": name, **(extra or {})},
    )
    config = AgentConfig.model_validate(section)
    journal_path = tmp_path / name / "agent-journal.db"
    kwargs = {"clock": clock} if clock is not None else {}
    server = AgentServer(config, journal_path=journal_path, **kwargs)
    await server.start()
    try:
        yield RunningAgent(url=server.url, token=token, server=server, journal_path=journal_path)
    finally:
        await server.stop()


class AgentProcess:
    """`python -m heady_agent --config FILE --ready-file F` as a real child process.

    The first start binds a free port; restarts reuse it, so a console reconnects to the same URL.
    """

    def __init__(
        self,
        tmp_path: Path,
        name: str,
        *,
        sources: Iterable[str] = ("synthetic",),
        token: str | None = "t0k",
        scenario: str = "calm",
        node_index: int = 0,
        node_count: int = 1,
        speed: float = 1.0,
        managed: Iterable[Mapping[str, Any]] = (),
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.token = token
        self.dir = tmp_path / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.config_path = self.dir / "config.toml"
        self.ready_path = self.dir / "ready"
        self.log_path = self.dir / "agent.log"
        self.journal_path = self.dir / "agent-journal.db"
        self._section = dict(
            sources=tuple(sources),
            token=token,
            scenario=scenario,
            node_index=node_index,
            node_count=node_count,
            speed=speed,
            managed=tuple(managed),
            extra={"node_id": name, **(extra or {})},
        )
        self.port = 0
        self.url = ""
        self.proc: subprocess.Popen[bytes] | None = None

    def _write_config(self) -> None:
        section = agent_section(listen=f"127.0.0.1:{self.port}", **self._section)  # type: ignore[arg-type]
        self.config_path.write_text(toml_table("agent", section))

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    async def start(self) -> None:
        """Start the child and wait until it listens (its ready file names the URL)."""
        self._write_config()
        self.ready_path.unlink(missing_ok=True)
        env = {
            **os.environ,
            "XDG_CONFIG_HOME": str(self.dir / "xdg-config"),
            "XDG_DATA_HOME": str(self.dir / "xdg-data"),
        }
        env.pop("HEADY_AGENT_TOKEN", None)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable, "-m", "heady_agent",
                    "--config", str(self.config_path),
                    "--ready-file", str(self.ready_path),
                    "--data-dir", str(self.dir),
                ],
                stdout=log,
                stderr=log,
                env=env,
                start_new_session=True,
            )
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not self.ready_path.exists():
            if self.proc.poll() is not None:
                raise RuntimeError(f"agent {self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.kill9()
                raise RuntimeError(f"agent {self.name} not ready after {READY_TIMEOUT_S} s:\n{self.log_tail()}")
            await asyncio.sleep(0.05)
        self.url = self.ready_path.read_text().strip()
        self.port = int(self.url.rsplit(":", 1)[1].split("/", 1)[0])

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> None:
        """SIGKILL the agent, as a crash would (managed children run in their own process groups and outlive it)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=READY_TIMEOUT_S)

    async def terminate(self) -> int | None:
        """SIGTERM and wait for a clean exit; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + READY_TIMEOUT_S
            while self.proc.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            if self.proc.poll() is None:
                self.kill9()
        return self.proc.returncode

    async def restart(self) -> None:
        await self.terminate()
        await self.start()

    async def __aenter__(self) -> AgentProcess:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.terminate()


def ws_connect(url: str, token: str | None, **kwargs: Any) -> connect:
    """A plain websockets client with the bearer token (use as `async with`)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    kwargs.setdefault("close_timeout", 2)  # a peer that stopped reading must not stall teardown
    return connect(url, additional_headers=headers, open_timeout=READY_TIMEOUT_S, **kwargs)


async def recv_json(ws: ClientConnection, timeout: float = READY_TIMEOUT_S) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def recv_until(
    ws: ClientConnection, predicate: Callable[[dict[str, Any]], bool], timeout: float = READY_TIMEOUT_S
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Read frames until one matches; returns it and every frame read before it."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            types = sorted({f.get("type", "?") for f in seen})
            raise AssertionError(f"no matching frame within {timeout} s (saw {len(seen)} frames: {types})")
        frame = await recv_json(ws, remaining)
        if predicate(frame):
            return frame, seen
        seen.append(frame)


async def command(ws: ClientConnection, action: str, target: str | None = None, args: dict[str, Any] | None = None,
                  *, cmd_id: str | None = None) -> dict[str, Any]:
    """Send a command and return its result frame (other frames in between are skipped)."""
    cmd_id = cmd_id or f"c-{time.monotonic_ns()}"
    await ws.send(json.dumps({"type": "command", "id": cmd_id, "action": action, "target": target, "args": args or {}}))
    result, _ = await recv_until(ws, lambda f: f.get("type") == "result" and f.get("id") == cmd_id)
    return result


async def wait_until(condition: Callable[[], bool], timeout: float = READY_TIMEOUT_S, what: str = "condition") -> None:
    """Poll until condition() holds; fails the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not hold within {timeout} s")
        await asyncio.sleep(0.05)
