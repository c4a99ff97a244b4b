"""Test kit for the session ledger: the heady CLI as a real child process, a demo run on real
synthetic agents, and frames for feeding a supervisor by hand."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from agentkit import running_agent, wait_until
from dpkit import supervisor_on
from heady_agent.protocol import Event

from heady_tui.config import NodeConfig
from heady_tui.supervisor import Supervisor

TIMEOUT_S = 60.0


async def heady(tmp_path: Path, *args: str) -> tuple[int, str, str]:
    """`python -m heady_tui ARGS` with its own XDG directories; (exit code, stdout, stderr)."""
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "xdg-config"), "XDG_DATA_HOME": str(tmp_path / "xdg-data")}
    env.pop("HEADY_CONFIG", None)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "heady_tui", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env
    )
    out, err = await asyncio.wait_for(proc.communicate(), TIMEOUT_S)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def sessions_list_json(tmp_path: Path, data_dir: Path) -> list[dict[str, Any]]:
    config = tmp_path / "cli-config.toml"
    config.write_text("")  # no nodes: every node and session comes from the store
    code, out, err = await heady(tmp_path, "sessions", "list", "--json", "--config", str(config), "--data-dir", str(data_dir))
    assert code == 0, err
    rows: list[dict[str, Any]] = json.loads(out)
    return rows


@asynccontextmanager
async def demo_run(tmp_path: Path, *, scenario: str = "runaway-cost", speed: float = 20.0, calls: int = 6) -> AsyncIterator[Supervisor]:
    """A supervisor on one real synthetic agent until some session has made `calls` calls."""
    async with running_agent(tmp_path, scenario=scenario, speed=speed, name="n1") as agent:
        node = NodeConfig(name="n1", url=agent.url, token=agent.token)
        async with supervisor_on(tmp_path, [node]) as sup:
            await wait_until(lambda: any(s.calls >= calls for s in sup.fleet.sessions.values()), TIMEOUT_S, "a session with calls")
            yield sup


def call_event(seq: int, ts: float, session: str, *, model: str = "claude-sonnet-4-5", input_tokens: int = 1000,
               output_tokens: int = 500, cache_read: int = 0, journal: str = "j1") -> Event:  # fmt: skip
    data = {"provider": "anthropic", "model": model, "input_tokens": input_tokens, "output_tokens": output_tokens,
            "cache_creation_tokens": 0, "cache_read_tokens": cache_read, "latency_ms": 800.0, "ok": True}  # fmt: skip
    return Event(journal=journal, seq=seq, ts=ts, kind="llm.call", session=session, data=data)


def started_event(seq: int, ts: float, session: str, project: str | None, journal: str = "j1") -> Event:
    return Event(journal=journal, seq=seq, ts=ts, kind="session.started", session=session,
                 data={"source": "claude-code", "project": project, "model": "claude-sonnet-4-5"})  # fmt: skip
