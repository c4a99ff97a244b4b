"""The supervisor against real agents on loopback (synthetic source at a high event rate) with the
real store on a tmp SQLite file: everything journalled is stored once, acked, and shown."""

from __future__ import annotations

import os
import signal
import sqlite3
from pathlib import Path

from agentkit import AgentProcess, running_agent, wait_until
from dpkit import supervisor_on
from heady_tui.config import NodeConfig



def journal_seqs(path: Path, upto: int) -> list[int]:
    with sqlite3.connect(path) as db:
        return [r[0] for r in db.execute("SELECT seq FROM frames WHERE seq <= ? ORDER BY seq", (upto,))]


def journal_id(path: Path) -> str:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT value FROM meta WHERE key = 'journal_id'").fetchone()[0]


def supervising(tmp_path: Path, agents, link_options_extra=None, **kwargs):
    nodes = [NodeConfig(name=name, url=a.url, token=a.token) for name, a in agents.items()]
    return supervisor_on(tmp_path, nodes, link_options_extra, **kwargs)


async def test_every_journalled_frame_is_stored_exactly_once(tmp_path):
    async with running_agent(tmp_path, name="n1", speed=40, node_count=2) as a1, \
            running_agent(tmp_path, name="n2", speed=40, node_index=1, node_count=2) as a2:  # fmt: skip
        async with supervising(tmp_path, {"n1": a1, "n2": a2}) as sup:
            await wait_until(lambda: all(sup.fleet.nodes[n].last_seq >= 150 for n in ("n1", "n2")), what="streaming")
            for name, agent in (("n1", a1), ("n2", a2)):
                journal, cursor = await sup.store.cursor(name)
                assert journal == journal_id(agent.journal_path)
                assert await sup.store.stored_seqs(name, journal) == journal_seqs(agent.journal_path, cursor)


async def test_the_fleet_shows_nodes_sessions_and_metrics(tmp_path):
    async with running_agent(tmp_path, name="n1", speed=40) as a1:
        async with supervising(tmp_path, {"n1": a1}) as sup:
            await wait_until(lambda: len(sup.fleet.nodes["n1"].cpu) >= 3 and sup.fleet.sessions, what="fleet filled")
            state = sup.fleet.nodes["n1"]
            assert state.status == "online" and state.hostname and state.simulated
            assert state.journal == journal_id(a1.journal_path)
            online = [e for e in sup.test_events if e.name == "node.online"]
            assert online[0].details["node"] == "n1" and online[0].details["journal"] == state.journal


async def test_a_restarted_console_resumes_from_its_cursor_without_duplicates(tmp_path):
    async with running_agent(tmp_path, name="n1", speed=40) as a1:
        async with supervising(tmp_path, {"n1": a1}) as sup:
            await wait_until(lambda: sup.fleet.nodes["n1"].last_seq >= 50, what="first run")
            sessions_before = set(sup.fleet.sessions)
        async with supervising(tmp_path, {"n1": a1}, stats_interval_s=0.2) as sup:
            assert sessions_before <= set(sup.fleet.sessions)  # rebuilt from the store before any frame arrived
            await wait_until(lambda: any(e.name == "ingest.stats" for e in sup.test_events), what="ingest stats")
            stats = [e.details for e in sup.test_events if e.name == "ingest.stats"]
            assert sum(s["duplicates"] for s in stats) == 0 and sum(s["stored"] for s in stats) > 0
            journal, cursor = await sup.store.cursor("n1")
            assert await sup.store.stored_seqs("n1", journal) == journal_seqs(a1.journal_path, cursor)


async def test_a_restarted_agent_is_reconnected_and_nothing_is_lost(tmp_path):
    async with running_agent(tmp_path, name="n1", speed=40) as a1:
        url, journal_path = a1.url, a1.journal_path
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        async with supervising(tmp_path, {"n1": a1}) as sup:
            await wait_until(lambda: sup.fleet.nodes["n1"].last_seq >= 30, what="streaming")
            await a1.server.stop()
            await wait_until(lambda: sup.fleet.nodes["n1"].status != "online", what="offline seen")
            async with running_agent(tmp_path, name="n1", speed=40, extra={"listen": f"127.0.0.1:{port}"}) as again:
                assert again.journal_path == journal_path
                last = sup.fleet.nodes["n1"].last_seq
                await wait_until(lambda: sup.fleet.nodes["n1"].last_seq > last + 20, what="resumed")
                journal, cursor = await sup.store.cursor("n1")
                assert await sup.store.stored_seqs("n1", journal) == journal_seqs(journal_path, cursor)
            assert [e.name for e in sup.test_events if e.name.startswith("node.")][:3] == ["node.online", "node.offline", "node.online"]


async def test_commands_reach_the_agent_and_return_its_result(tmp_path):
    async with running_agent(tmp_path, name="n1", speed=10) as a1:
        async with supervising(tmp_path, {"n1": a1}) as sup:
            await wait_until(lambda: sup.fleet.nodes["n1"].status == "online", what="online")
            result = await sup.command("n1", "node.drain")
            assert result.ok and result.detail.get("drained") is True


async def test_focus_brings_per_process_detail(tmp_path):
    async with running_agent(tmp_path, name="n1", speed=10) as a1:
        async with supervising(tmp_path, {"n1": a1}) as sup:
            await wait_until(lambda: sup.fleet.nodes["n1"].status == "online", what="online")
            sup.focus("n1", True)
            await wait_until(lambda: "n1" in sup.details, what="detail frame")
            assert sup.details["n1"].processes
            sup.focus("n1", False)
            assert "n1" not in sup.details


async def test_the_brain_sees_every_stored_frame_once(tmp_path):
    async with running_agent(tmp_path, name="n1", speed=40) as a1:
        async with supervising(tmp_path, {"n1": a1}) as sup:
            seen: list[int] = []
            original = sup.brain.on_frame

            def on_frame(node, frame, data=None):
                seen.append(frame.seq)
                original(node, frame, data)

            sup.brain.on_frame = on_frame
            await wait_until(lambda: len(seen) >= 60, what="frames to the brain")
            assert len(seen) == len(set(seen)) and seen == sorted(seen)


async def test_a_frozen_agent_is_caught_by_pings_and_resumes_when_thawed(tmp_path):
    agent = AgentProcess(tmp_path, "n1", speed=10)
    await agent.start()
    try:
        nodes = {"n1": agent}
        async with supervising(tmp_path, nodes, link_options_extra={"ping_interval_s": 0.5}) as sup:
            await wait_until(lambda: sup.fleet.nodes["n1"].last_seq > 5, what="streaming")
            os.kill(agent.pid, signal.SIGSTOP)
            try:
                await wait_until(lambda: sup.fleet.nodes["n1"].status != "online", what="freeze detected")
                assert "ping" in (sup.fleet.nodes["n1"].last_error or "")
            finally:
                os.kill(agent.pid, signal.SIGCONT)
            await wait_until(lambda: sup.fleet.nodes["n1"].status == "online", what="back online")
    finally:
        await agent.terminate()


async def test_a_failing_watcher_does_not_stop_ingest(tmp_path):
    async with running_agent(tmp_path, name="n1", speed=40) as a1:
        async with supervising(tmp_path, {"n1": a1}) as sup:
            def broken() -> None:
                raise RuntimeError("watcher bug")

            sup.watch(broken)
            await wait_until(lambda: sup.fleet.nodes["n1"].last_seq >= 40, what="ingest goes on")
            assert sup.fleet.nodes["n1"].status == "online"


async def test_the_node_loss_scenario_goes_offline_comes_back_and_loses_nothing(tmp_path):
    async with running_agent(tmp_path, name="n1", scenario="node-loss", speed=10) as a1:
        async with supervising(tmp_path, {"n1": a1}) as sup:
            def names() -> list[str]:
                return [e.name for e in sup.test_events if e.name.startswith("node.")]

            await wait_until(lambda: names()[:3] == ["node.online", "node.offline", "node.online"], what="lost and back")
            last = sup.fleet.nodes["n1"].last_seq
            await wait_until(lambda: sup.fleet.nodes["n1"].last_seq > last + 10, what="streaming again")
            journal, cursor = await sup.store.cursor("n1")
            assert await sup.store.stored_seqs("n1", journal) == journal_seqs(a1.journal_path, cursor)
