"""Agents the console starts itself, as real child processes on loopback with a random token.

Embedded: `heady` with no [[nodes]] runs one agent for this machine, named "local".
Demo: `heady demo` runs N synthetic agents named sim-1..sim-N playing one scenario.

Each child gets its own generated config (mode 0600, it holds the token) and data dir under
<data dir>/agents/<name>, so its journal survives console restarts and the console resumes from its
cursor. Children stop when the console stops, and die with it if it is killed: each child asks the
kernel for SIGTERM when its parent dies (prctl PR_SET_PDEATHSIG, Linux) before running the agent.
The kernel ties that to the thread that started the child, so `start()` runs on the event loop's
thread, which lives as long as the console.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from heady_agent.config import AgentConfig, ConfigError, agent_environment
from heady_agent.files import open_private, private_dir

from .config import NodeConfig
from .filemodes import operator_umask

log = logging.getLogger("heady.launcher")

READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0

# Run in the child before the agent: die with the parent, and not start at all if it is already gone.
_BOOT = """\
import ctypes, os, runpy, signal, sys
parent = int(sys.argv[1])
try:
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
except (OSError, AttributeError):
    pass
if os.getppid() != parent:
    sys.exit(0)
sys.argv = ["heady-agent", *sys.argv[2:]]
runpy.run_module("heady_agent", run_name="__main__", alter_sys=True)
"""


class LaunchError(ConfigError):
    """An agent the console needs could not be started (one line, with the log file to read)."""


@dataclass
class AgentSpec:
    name: str
    agent: dict[str, Any]  # the [agent] table of the generated config
    args: list[str] = field(default_factory=list)  # extra heady-agent flags (scenario, node index...)


@dataclass
class _Child:
    spec: AgentSpec
    dir: Path
    token: str
    proc: subprocess.Popen[bytes] | None = None
    url: str = ""

    @property
    def log_path(self) -> Path:
        return self.dir / "agent.log"

    def log_tail(self, lines: int = 5) -> str:
        try:
            return " | ".join(self.log_path.read_text(errors="replace").strip().splitlines()[-lines:])
        except OSError:
            return ""


def toml_table(table: str, values: Mapping[str, object]) -> str:
    """A TOML document of one `[table]`; None values are left out (TOML has no null)."""
    return tomli_w.dumps({table: _without_none(values)})


def _without_none(value: object) -> object:
    if isinstance(value, Mapping):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_without_none(v) for v in value]
    return value


class AgentLauncher:
    def __init__(self, data_dir: Path, specs: list[AgentSpec], *, ready_timeout_s: float = READY_TIMEOUT_S) -> None:
        self.root = data_dir / "agents"
        self.specs = specs
        self.ready_timeout_s = ready_timeout_s
        self.children: dict[str, _Child] = {}

    async def start(self) -> list[NodeConfig]:
        """Start every agent and wait until each listens; LaunchError names the one that did not."""
        try:
            for spec in self.specs:
                self.children[spec.name] = self._spawn(spec)
            await asyncio.gather(*(self._wait_ready(c) for c in self.children.values()))
        except BaseException:
            await self.stop()
            raise
        return [
            NodeConfig(name=c.spec.name, url=c.url, token=c.token) for c in self.children.values()
        ]

    def _spawn(self, spec: AgentSpec) -> _Child:
        private_dir(self.root)
        child_dir = private_dir(self.root / spec.name)
        child = _Child(spec=spec, dir=child_dir, token=secrets.token_urlsafe(32))
        section = {**spec.agent, "listen": "127.0.0.1:0", "token": child.token, "token_env": None, "token_file": None}
        config_file = child_dir / "config.toml"
        fd = open_private(config_file, "w")  # it holds the token
        with os.fdopen(fd, "w") as fh:
            fh.write(toml_table("agent", section))
        ready = child_dir / "ready"
        ready.unlink(missing_ok=True)
        argv = [
            sys.executable, "-c", _BOOT, str(os.getpid()),
            "--config", str(config_file), "--listen", "127.0.0.1:0",
            "--ready-file", str(ready), "--data-dir", str(child_dir), *spec.args,
        ]  # fmt: skip
        # Explicit: the console's node tokens, provider admin keys and webhook URLs stay with the console.
        env = agent_environment(spec.agent)
        # The operator's umask, not the console's 077: the agent sets its own files' modes explicitly,
        # and the sessions it starts must create files as the operator's other programs do.
        with os.fdopen(open_private(child.log_path, "a"), "ab") as log_file:
            child.proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file, env=env, start_new_session=True,
                umask=operator_umask(),
            )
        return child

    async def _wait_ready(self, child: _Child) -> None:
        assert child.proc is not None
        ready = child.dir / "ready"
        deadline = time.monotonic() + self.ready_timeout_s
        while not ready.exists():
            if child.proc.poll() is not None:
                raise LaunchError(
                    f"agent {child.spec.name} exited with {child.proc.returncode} "
                    f"(log {child.log_path}): {child.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise LaunchError(f"agent {child.spec.name} not ready after {self.ready_timeout_s:g} s (log {child.log_path})")
            await asyncio.sleep(0.05)
        child.url = ready.read_text().strip()

    async def stop(self) -> None:
        """SIGTERM every child, wait, SIGKILL what is left."""
        for child in self.children.values():
            if child.proc is not None and child.proc.poll() is None:
                child.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for child in self.children.values():
            proc = child.proc
            if proc is None:
                continue
            while proc.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            if proc.poll() is None:
                log.warning("agent %s did not stop on SIGTERM; killing it", child.spec.name)
                proc.kill()
                proc.wait()
        self.children.clear()


def embedded_launcher(agent: AgentConfig, data_dir: Path) -> AgentLauncher:
    """One agent for this machine, named "local", with the sources of the [agent] section."""
    section = agent.model_dump(exclude_none=True)
    return AgentLauncher(data_dir, [AgentSpec(name="local", agent=section)])


def demo_launcher(
    data_dir: Path, *, nodes: int, scenario: str, speed: float = 1.0, seed: int = 0, interval_s: float = 1.0
) -> AgentLauncher:
    """N synthetic agents sim-1..sim-N, each playing its part of one scenario, under <data_dir>/agents/."""
    specs = []
    for index in range(nodes):
        name = f"sim-{index + 1}"
        section = {"sources": ["synthetic"], "interval_s": interval_s, "node_id": name}
        args = [
            "--scenario", scenario, "--node-index", str(index), "--node-count", str(nodes),
            "--seed", str(seed), "--speed", str(speed), "--node-id", name,
        ]  # fmt: skip
        specs.append(AgentSpec(name=name, agent=section, args=args))
    return AgentLauncher(data_dir, specs)
