"""Chaos: agents killed -9 and restarted, connections cut at random, the console killed -9 and
restarted, all while frames stream. At the end the console has stored each agent's journal
exactly: no gap, no duplicate, one stream per node."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sqlite3
import sys
import time
from pathlib import Path

import pytest

from agentkit import AgentProcess

pytestmark = pytest.mark.slow

CHAOS_S = 18.0
CATCH_UP_S = 30.0


class CuttableProxy:
    """A TCP relay between the console and one agent whose connections the test can cut."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.writers: set[asyncio.StreamWriter] = set()
        self.server: asyncio.Server | None = None
        self.cuts = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self.writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self.writers -= {writer, up_writer}

    def cut(self) -> None:
        self.cuts += 1
        for w in list(self.writers):
            w.transport.abort()

    async def stop(self) -> None:
        self.cut()
        if self.server is not None:
            self.server.close()


class Console:
    """`heady run --headless` as a child process, pointed at the proxies by a config file."""

    def __init__(self, tmp_path: Path, config: Path) -> None:
        self.tmp_path = tmp_path
        self.config = config
        self.data = tmp_path / "console-data"
        self.log = tmp_path / "console.log"
        self.proc: asyncio.subprocess.Process | None = None
        self.kills = 0

    async def start(self) -> None:
        env = {**os.environ, "XDG_DATA_HOME": str(self.tmp_path / "xdg")}
        with open(self.log, "ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "heady_tui", "run", "--headless", "--config", str(self.config),
                "--data-dir", str(self.data), stdout=asyncio.subprocess.DEVNULL, stderr=log, env=env,
            )  # fmt: skip

    async def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()
        self.kills += 1

    async def terminate(self) -> int | None:
        if self.proc is None or self.proc.returncode is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.proc.wait(), 30)


def journal(path: Path) -> tuple[str, list[int]]:
    with sqlite3.connect(path) as db:
        jid = db.execute("SELECT value FROM meta WHERE key = 'journal_id'").fetchone()[0]
        return jid, [r[0] for r in db.execute("SELECT seq FROM frames ORDER BY seq")]


def console_db(data: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{data / 'heady.db'}?mode=ro", uri=True)


def cursors(data: Path) -> dict[str, tuple[str, int]]:
    if not (data / "heady.db").exists():
        return {}
    try:
        with console_db(data) as db:
            return {n: (j, s) for n, j, s in db.execute("SELECT node, journal, seq FROM cursors")}
    except sqlite3.OperationalError:
        return {}  # schema not there yet


def stored(data: Path, node: str) -> tuple[list[str], list[int]]:
    with console_db(data) as db:
        streams = [r[0] for r in db.execute("SELECT journal FROM streams WHERE node = ?", (node,))]
        seqs = [r[0] for r in db.execute(
            "SELECT seq FROM metrics JOIN streams s ON s.id = stream WHERE s.node = ? "
            "UNION ALL SELECT seq FROM events JOIN streams s ON s.id = stream WHERE s.node = ? ORDER BY seq",
            (node, node),
        )]  # fmt: skip
    return streams, seqs


async def test_chaos_loses_nothing_and_duplicates_nothing(tmp_path):
    rng = random.Random(20261121)
    agents = [AgentProcess(tmp_path, f"n{i}", speed=30, node_index=i, node_count=2) for i in range(2)]
    for agent in agents:
        await agent.start()
    proxies = [CuttableProxy(a.port) for a in agents]
    for proxy in proxies:
        await proxy.start()
    config = tmp_path / "config.toml"
    config.write_text("".join(
        f'[[nodes]]\nname = "{a.name}"\nurl = "ws://127.0.0.1:{p.port}/ws"\ntoken = "{a.token}"\n\n'
        for a, p in zip(agents, proxies)
    ))  # fmt: skip
    console = Console(tmp_path, config)
    await console.start()
    agent_kills = 0
    try:
        deadline = time.monotonic() + CHAOS_S
        while time.monotonic() < deadline:
            await asyncio.sleep(rng.uniform(0.5, 1.5))
            action = rng.choice(("cut", "cut", "agent", "console"))
            if action == "cut":
                rng.choice(proxies).cut()
            elif action == "agent":
                victim = rng.choice(agents)
                victim.kill9()
                agent_kills += 1
                await asyncio.sleep(rng.uniform(0.1, 1.0))
                await victim.start()
            else:
                await console.kill9()
                await asyncio.sleep(rng.uniform(0.1, 1.0))
                await console.start()
        assert agent_kills and console.kills and sum(p.cuts for p in proxies), "every kind of chaos happened"

        targets = {a.name: journal(a.journal_path) for a in agents}
        catch_up = time.monotonic() + CATCH_UP_S
        while True:
            seen = cursors(console.data)
            if all(seen.get(name, ("", 0))[1] >= seqs[-1] for name, (_, seqs) in targets.items()):
                break
            assert time.monotonic() < catch_up, f"console did not catch up: {seen} vs {[s[-1] for _, s in targets.values()]}; log: {console.log.read_text()[-2000:]}"
            await asyncio.sleep(0.2)
        assert await console.terminate() == 0
        for agent in agents:
            await agent.terminate()
        for agent in agents:
            jid, journal_seqs = journal(agent.journal_path)
            streams, stored_seqs = stored(console.data, agent.name)
            assert streams == [jid]
            assert stored_seqs[-1] >= targets[agent.name][1][-1]
            # The agent journals on after the console stopped; up to what the console stored, equal.
            expected = [seq for seq in journal_seqs if seq <= stored_seqs[-1]]
            assert stored_seqs == expected, f"{agent.name}: stored differs from the journal"
    finally:
        if console.proc is not None and console.proc.returncode is None:
            await console.kill9()
        for proxy in proxies:
            await proxy.stop()
        for agent in agents:
            await agent.terminate()
