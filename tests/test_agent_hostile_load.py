"""Load a hostile or careless console can put on an agent: readers that stop reading, floods of
queued work. The agent's memory and its answers stay bounded (measured on a real child process)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import httpx
import psutil
import pytest

from agentkit import AgentProcess, command, recv_json, recv_until, running_agent, wait_until, ws_connect
from heady_agent.clock import SystemClock
from heady_agent.config import AgentConfig
from heady_agent.journal import REPLAY_BATCH_BYTES, Journal
from heady_agent.protocol import MAX_FRAME_BYTES, SessionInfo
from heady_agent.server import AgentServer
from heady_agent.sources.base import SessionSource
from heady_agent.sources.managed import ManagedSource

MIB = 1 << 20
READERS = 20
PEER_QUEUE_BYTES = 256 * 1024
FRAME_PADDING = 2000
JOURNAL_FRAMES = 10_000  # 20 MB: more than the kernel's socket buffers take for one stalled reader
SLACK_BYTES = 30 * MIB  # interpreter, SQLite page cache, websockets buffers, allocator slack


def _http(url: str) -> str:
    return url.replace("ws://", "http://").removesuffix("/ws")


def _fill_journal(path: Path) -> None:
    journal = Journal(path, clock=SystemClock())
    try:
        with journal.transaction():
            for n in range(JOURNAL_FRAMES):
                data = {"severity": "info", "message": f"{n} " + "x" * FRAME_PADDING}
                journal.append({"type": "event", "ts": 1.7e9, "kind": "agent.notice", "session": None, "data": data})
    finally:
        journal.close()


async def _gauge(client: httpx.AsyncClient, url: str, token: str, name: str) -> float:
    response = await client.get(_http(url) + "/metrics", headers={"Authorization": f"Bearer {token}"})
    for line in response.text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


async def _stall_readers(agent: AgentProcess, client: httpx.AsyncClient) -> tuple[int, int]:
    """Connect READERS subscribers that never read; returns the agent's RSS once every one of their
    send queues is full, and again after they have all gone."""
    assert agent.pid is not None and agent.token is not None
    process = psutil.Process(agent.pid)
    readers = [await ws_connect(agent.url, agent.token, max_queue=1, close_timeout=1) for _ in range(READERS)]
    for ws in readers:
        await recv_json(ws)
        await ws.send(json.dumps({"type": "subscribe", "since": 0}))
    full = READERS * (PEER_QUEUE_BYTES // 2 - 2 * FRAME_PADDING)  # a replay fills half the queue
    deadline = asyncio.get_running_loop().time() + 120
    while await _gauge(client, agent.url, agent.token, "heady_agent_send_queue_bytes") < full:
        assert asyncio.get_running_loop().time() < deadline, "the readers' send queues never filled"
        await asyncio.sleep(0.2)
    stalled = process.memory_info().rss
    await asyncio.gather(*(ws.close() for ws in readers))
    deadline = asyncio.get_running_loop().time() + 60
    while await _gauge(client, agent.url, agent.token, "heady_agent_consoles_connected") > 0:
        assert asyncio.get_running_loop().time() < deadline, "the readers never left"
        await asyncio.sleep(0.2)
    return stalled, process.memory_info().rss


@pytest.mark.slow
async def test_twenty_readers_that_stop_reading_keep_the_agent_memory_bounded(tmp_path: Path) -> None:
    agent = AgentProcess(tmp_path, "a", sources=(), extra={"interval_s": 60, "peer_queue_bytes": PEER_QUEUE_BYTES})
    _fill_journal(agent.journal_path)
    async with agent, httpx.AsyncClient() as client:
        assert agent.pid is not None
        baseline = psutil.Process(agent.pid).memory_info().rss
        stalled, left = await _stall_readers(agent, client)
    bound = READERS * (PEER_QUEUE_BYTES + REPLAY_BATCH_BYTES + FRAME_PADDING) + SLACK_BYTES
    assert stalled - baseline < bound, f"RSS grew {(stalled - baseline) / MIB:.1f} MiB with {READERS} stalled readers"
    assert left - baseline < bound, f"RSS still {(left - baseline) / MIB:.1f} MiB above baseline after they left"


@pytest.mark.slow
async def test_memory_freed_by_readers_that_left_is_reused_by_the_next_ones(tmp_path: Path) -> None:
    agent = AgentProcess(tmp_path, "a", sources=(), extra={"interval_s": 60, "peer_queue_bytes": PEER_QUEUE_BYTES})
    _fill_journal(agent.journal_path)
    async with agent, httpx.AsyncClient() as client:
        first, _ = await _stall_readers(agent, client)
        for _ in range(2):
            last, _ = await _stall_readers(agent, client)
    # Keeping what each reader held (its replay batch) would add READERS MiB per round.
    kept = READERS * REPLAY_BATCH_BYTES // 2
    assert last - first < kept, f"RSS grew {(last - first) / MIB:.1f} MiB over two more rounds"


def _worker(**more) -> dict:
    return {"name": "worker", "command": ["sleep", "300"], "max_concurrent": 0, **more}


def _queued_rows(journal_path: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(journal_path) as db:
        return db.execute("SELECT managed, args FROM work_queue ORDER BY pos").fetchall()


async def test_queue_accept_over_max_queue_returns_the_excess_as_rejected(tmp_path: Path) -> None:
    items = [{"managed": "worker", "args": [str(n)]} for n in range(8)]
    extra = {"interval_s": 60, "max_queue": 5}
    async with running_agent(tmp_path, sources=("managed",), managed=[_worker()], extra=extra) as agent:
        async with ws_connect(agent.url, agent.token) as ws:
            await recv_json(ws)
            result = await command(ws, "queue.accept", args={"items": items})
    assert result["detail"]["accepted"] == 5
    assert result["detail"]["rejected"] == items[5:]
    assert result["detail"]["reasons"] == ["the queue is full (max_queue 5)"]


async def test_queued_items_are_stored_one_row_each(tmp_path: Path) -> None:
    items = [{"managed": "worker", "args": [str(n)]} for n in range(3)]
    async with running_agent(tmp_path, sources=("managed",), managed=[_worker()], extra={"interval_s": 60}) as agent:
        async with ws_connect(agent.url, agent.token) as ws:
            await recv_json(ws)
            await command(ws, "queue.accept", args={"items": items})
            moved = await command(ws, "queue.move", args={"count": 1})
        rows = _queued_rows(agent.journal_path)
    assert moved["detail"]["items"] == [items[2]]
    assert rows == [("worker", '["0"]'), ("worker", '["1"]')]


async def test_a_queue_saved_whole_by_an_older_agent_is_moved_into_rows(tmp_path: Path) -> None:
    journal_path = tmp_path / "n" / "agent-journal.db"
    journal = Journal(journal_path, clock=SystemClock())
    journal.set_state("managed.queue", json.dumps({"worker": [["a"], ["b"]]}))
    journal.close()
    async with running_agent(tmp_path, sources=("managed",), managed=[_worker(instances=4)], name="n") as agent:
        source = next(s for s in agent.server.sources if isinstance(s, ManagedSource))
        depth = source.queue_depth()
        legacy = agent.server.journal.get_state("managed.queue")
    assert depth == 2  # the saved items, not `instances` again
    assert legacy is None
    assert _queued_rows(journal_path) == [("worker", '["a"]'), ("worker", '["b"]')]


async def test_healthz_answers_and_accept_refuses_with_a_full_queue(tmp_path: Path) -> None:
    items = [{"managed": "worker", "args": []} for _ in range(10_000)]
    async with running_agent(tmp_path, sources=("managed",), managed=[_worker()], extra={"interval_s": 60}) as agent:
        async with ws_connect(agent.url, agent.token) as ws, httpx.AsyncClient() as client:
            await recv_json(ws)
            filled = await command(ws, "queue.accept", args={"items": items})
            health = await client.get(_http(agent.url) + "/healthz")
            more = await command(ws, "queue.accept", args={"items": items[:1]})
            await ws.send(json.dumps({"type": "subscribe", "since": 0}))
            await recv_until(ws, lambda f: f["type"] == "sessions")
    assert filled["detail"]["accepted"] == 10_000
    assert health.status_code == 200
    assert more["detail"]["accepted"] == 0
    assert more["detail"]["rejected"] == items[:1]


async def test_queue_accept_refuses_args_with_terminal_escapes(tmp_path: Path) -> None:
    items = [{"managed": "worker", "args": ["fix \x1b]52;c;aGk=\x07 it"]}, {"managed": "worker", "args": ["fine"]}]
    async with running_agent(tmp_path, sources=("managed",), managed=[_worker()], extra={"interval_s": 60}) as agent:
        async with ws_connect(agent.url, agent.token) as ws:
            await recv_json(ws)
            result = await command(ws, "queue.accept", args={"items": items})
    assert result["detail"]["accepted"] == 1
    # Echoed back cleaned, like every result: the escape never reaches a console.
    assert result["detail"]["rejected"] == [{"managed": "worker", "args": ["fix  it"]}]
    assert result["detail"]["reasons"] == ["arg with control characters"]


async def test_queue_move_hands_over_no_more_than_fits_in_one_frame_and_keeps_the_rest(tmp_path: Path) -> None:
    big = ["a" * 4096] * 64  # 256 KiB of args per item
    async with running_agent(tmp_path, sources=("managed",), managed=[_worker()], extra={"interval_s": 60}) as agent:
        async with ws_connect(agent.url, agent.token, max_size=None) as ws:
            await recv_json(ws)
            for _ in range(6):
                await command(ws, "queue.accept", args={"items": [{"managed": "worker", "args": big}]})
            moved = await command(ws, "queue.move", args={"count": 6})
        left = len(_queued_rows(agent.journal_path))
    assert moved["ok"] is True
    assert 0 < len(moved["detail"]["items"]) < 6
    assert len(json.dumps(moved)) <= MAX_FRAME_BYTES
    assert left == 6 - len(moved["detail"]["items"])


class _TwentyKilobyteSessions(SessionSource):
    """A `sessions` frame of about 20 KB: more than the room a full send queue has left."""

    name = "crowd"

    def sessions(self) -> list[SessionInfo]:
        return [SessionInfo(id=f"s-{n}", source="crowd", title="t" * 400, started=1.7e9 + n) for n in range(45)]


async def test_a_reader_that_keeps_up_after_a_long_replay_is_not_cut_off_when_it_turns_live(tmp_path: Path) -> None:
    limit = 64 * 1024
    journal_path = tmp_path / "j.db"
    journal = Journal(journal_path, clock=SystemClock())
    with journal.transaction():
        for n in range(16_000):  # 16 MB: more than the kernel's socket buffers hold
            journal.append({"type": "event", "ts": 1.7e9, "kind": "agent.notice", "session": None,
                            "data": {"severity": "info", "message": f"{n} " + "x" * 1000}})  # fmt: skip
    last = journal.last_seq
    journal.close()
    config = AgentConfig(
        listen="127.0.0.1:0", token="t0k", token_env=None, sources=[], interval_s=60, peer_queue_bytes=limit
    )
    async with AgentServer(config, journal_path=journal_path, sources=[_TwentyKilobyteSessions]) as server:
        async with ws_connect(server.url, "t0k", max_queue=1) as ws:
            await recv_json(ws)
            await ws.send(json.dumps({"type": "subscribe", "since": 0}))
            await wait_until(lambda: server.send_queue_bytes >= limit // 2 - 2048, what="the replay waits for the reader")
            sessions, frames = await recv_until(ws, lambda f: f["type"] == "sessions", timeout=120)
    assert [f["seq"] for f in frames] == list(range(1, last + 1))
    assert len(sessions["sessions"]) == 45
