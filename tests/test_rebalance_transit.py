"""Queued work a console was moving when it died is placed by the next console, not lost.

`heady run --headless` runs as a real child process against two real synthetic agents on loopback
(queue-overflow: one node's queue past its threshold) and rebalances under a persistent grant. The
run's `queue.move` takes items off the overloaded node; when the target agent receives the
`queue.accept` that would place them, the console is killed with SIGKILL and the target does not take
them: the items are now on neither node. A new Supervisor on the same data dir offers them to the
target again, or hands them back to the source when the target is gone, and audits where they went.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentkit import running_agent, wait_until

from heady_agent.sources.base import CommandError, SessionSource
from heady_agent.protocol import Command
from heady_tui.config import Paths, load_config
from heady_tui.supervisor import Supervisor

WAIT_S = 90.0
Items = list[dict[str, Any]]


@dataclass
class Crash:
    """The console to kill, and where and with what it was killed."""

    pid: int = 0
    node: str | None = None
    items: Items = field(default_factory=list)


@dataclass
class AcceptSpy:
    """Wraps a real agent's source: the first queue.accept any node receives kills the console that
    sent it and is not carried out; later ones go through, recorded with the agent's answer."""

    name: str
    source: SessionSource
    crash: Crash
    accepted: list[tuple[Items, dict[str, Any]]] = field(default_factory=list)

    def install(self) -> None:
        real = self.source.command

        async def command(cmd: Command) -> dict[str, Any]:
            if cmd.action == "queue.accept" and self.crash.node is None:
                self.crash.node, self.crash.items = self.name, list(cmd.args["items"])
                os.kill(self.crash.pid, signal.SIGKILL)
                raise CommandError("failed", "the console died before this answer")
            detail = await real(cmd)
            if cmd.action == "queue.accept":
                self.accepted.append((list(cmd.args["items"]), detail))
            return detail

        self.source.command = command  # type: ignore[method-assign]


def queued(source: SessionSource) -> set[str]:
    """The synthetic source's queue, by each item's unique argument."""
    return {item["args"][0] for item in source._queue}  # type: ignore[attr-defined]


def names(items: Items) -> set[str]:
    return {item["args"][0] for item in items}


def heady(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "heady_tui", *args], capture_output=True, text=True, timeout=60)


@dataclass
class Crashed:
    paths: Paths
    spies: dict[str, AcceptSpy]
    agents: dict[str, AsyncExitStack]
    crash: Crash

    @property
    def target(self) -> str:
        assert self.crash.node is not None
        return self.crash.node

    @property
    def source(self) -> str:
        return next(name for name in self.spies if name != self.target)


@asynccontextmanager
async def console_killed_between_move_and_accept(tmp_path: Path) -> AsyncIterator[Crashed]:
    agents = {f"n{i}": AsyncExitStack() for i in range(2)}
    crash = Crash()
    spies: dict[str, AcceptSpy] = {}
    nodes = []
    try:
        for i, (name, stack) in enumerate(agents.items()):
            agent = await stack.enter_async_context(running_agent(
                tmp_path, scenario="queue-overflow", node_index=i, node_count=2, speed=10.0, name=name,
                extra={"interval_s": 0.25}))  # fmt: skip
            spies[name] = AcceptSpy(name, agent.server.sources[0], crash)
            spies[name].install()
            nodes.append(f'[[nodes]]\nname = "{name}"\nurl = "{agent.url}"\ntoken = "{agent.token}"\n')
        config_file, data_dir = tmp_path / "config.toml", tmp_path / "data"
        config_file.write_text("\n".join(nodes) + (
            "[detector]\nevaluation_interval_s = 0.25\nfor_seconds = 1\nclear_seconds = 2\nkeep_firing_seconds = 1\n"
            "[rebalance]\nstep_interval_s = 0.25\nbalanced_checks = 1000\nmax_duration_s = 600\n"))
        common = ("--config", str(config_file), "--data-dir", str(data_dir))
        assert heady("permissions", "grant", "--scope", "persistent", "--reason", "transit test", *common).returncode == 0
        grant_id = json.loads(heady("permissions", "list", "--json", *common).stdout)[0]["id"]
        with open(tmp_path / "console.stderr", "wb") as stderr:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "heady_tui", "run", "--headless", *common,
                stdout=asyncio.subprocess.DEVNULL, stderr=stderr)
            crash.pid = proc.pid
            try:
                await asyncio.wait_for(proc.wait(), WAIT_S)
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
        assert proc.returncode == -signal.SIGKILL and crash.node is not None, "the console was not killed at its queue.accept"
        # The operator revokes the grant before restarting, so the new console does not rebalance again.
        assert heady("permissions", "revoke", grant_id, *common).returncode == 0
        yield Crashed(Paths(config_file, data_dir), spies, agents, crash)
    finally:
        for stack in agents.values():
            await stack.aclose()


@asynccontextmanager
async def restarted_console(crashed: Crashed) -> AsyncIterator[Supervisor]:
    sup = Supervisor(load_config(crashed.paths, required=True), crashed.paths)
    await sup.start()
    try:
        yield sup
    finally:
        await sup.stop()


async def transit_audit(sup: Supervisor) -> list[dict[str, Any]]:
    """The `rebalance.transit` audit entries, once there is one."""
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while True:
        entries = [e.details for e in await sup.brain.audit_entries(5000) if e.action == "rebalance.transit"]
        if entries:
            return entries
        assert asyncio.get_running_loop().time() < deadline, "no rebalance.transit audit entry"
        await asyncio.sleep(0.05)


async def placed_on_target_again(crashed: Crashed, sup: Supervisor) -> None:
    target = crashed.spies[crashed.target]
    await wait_until(lambda: bool(target.accepted), timeout=WAIT_S, what="the items offered to the target again")
    offered, answer = target.accepted[0]
    assert names(offered) == names(crashed.crash.items)
    assert answer["accepted"] == len(offered) and answer["rejected"] == []
    assert not crashed.spies[crashed.source].accepted
    [entry] = await transit_audit(sup)
    assert {"source": crashed.source, "target": crashed.target, "items": len(offered),
            "placed": {crashed.target: len(offered)}, "remaining": 0}.items() <= entry.items()  # fmt: skip
    assert await sup.brain.ctx.records.queue_transit() == []
    assert (await sup.brain.verify_audit()).ok


async def test_a_new_console_offers_the_items_in_transit_to_the_target_again_and_audits_it(tmp_path):
    async with console_killed_between_move_and_accept(tmp_path) as crashed:
        moved = names(crashed.crash.items)
        assert moved, "the killed console had taken items"
        assert not moved & (queued(crashed.spies[crashed.source].source) | queued(crashed.spies[crashed.target].source))
        async with restarted_console(crashed) as sup:
            await placed_on_target_again(crashed, sup)


async def test_items_in_transit_go_back_to_their_source_when_the_target_is_gone(tmp_path):
    async with console_killed_between_move_and_accept(tmp_path) as crashed:
        await crashed.agents[crashed.target].aclose()
        async with restarted_console(crashed) as sup:
            source = crashed.spies[crashed.source]
            await wait_until(lambda: bool(source.accepted), timeout=WAIT_S, what="the items handed back to the source")
            offered, answer = source.accepted[0]
            assert names(offered) == names(crashed.crash.items)
            assert answer["accepted"] == len(offered)
            [entry] = await transit_audit(sup)
            assert entry["placed"] == {crashed.source: len(offered)} and entry["remaining"] == 0
            assert await sup.brain.ctx.records.queue_transit() == []
