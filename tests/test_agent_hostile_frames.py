"""Hostile frames from a console (or anyone holding the token) against a real agent on loopback:
nothing it sends may make the agent journal or send a frame a console cannot take."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from agentkit import command, recv_json, recv_until, running_agent, ws_connect
from heady_agent.clock import ManualClock
from heady_agent.config import AgentConfig
from heady_agent.journal import FrameTooLarge, Journal
from heady_agent.protocol import MAX_FRAME_BYTES, NAME_MAX, SessionInfo, clean_line
from heady_agent.server import AgentServer
from heady_agent.sources.base import SessionSource

QUIET = {"interval_s": 60}  # no metrics ticks: the journal only grows when a test makes it


def _journalled(path: Path) -> list[str]:
    with sqlite3.connect(path) as db:
        return [body for (body,) in db.execute("SELECT body FROM frames ORDER BY seq")]


async def test_subscribe_with_a_one_mebibyte_journal_id_gets_an_error_frame_and_journals_nothing(tmp_path: Path) -> None:
    async with running_agent(tmp_path, sources=(), extra=QUIET) as agent:
        before = agent.server.journal.committed_seq
        async with ws_connect(agent.url, agent.token) as ws:
            await recv_json(ws)
            await ws.send(json.dumps({"type": "subscribe", "since": 0, "journal": "j" * 1_000_000}))
            error = await recv_json(ws)
            await ws.send(json.dumps({"type": "subscribe", "since": 0}))
            await recv_until(ws, lambda f: f["type"] == "sessions")
        after = agent.server.journal.committed_seq
    assert error["type"] == "error"
    assert error["code"] == "bad_frame"
    assert len(json.dumps(error)) < 1024
    assert after == before


async def test_subscribe_with_escape_sequences_in_the_journal_id_is_refused(tmp_path: Path) -> None:
    async with running_agent(tmp_path, sources=(), extra=QUIET) as agent:
        async with ws_connect(agent.url, agent.token) as ws:
            await recv_json(ws)
            await ws.send(json.dumps({"type": "subscribe", "since": 0, "journal": "\x1b]52;c;aGk=\x07"}))
            error = await recv_json(ws)
    assert error["code"] == "bad_frame"
    assert "\x1b" not in error["message"]


async def test_subscribe_with_another_valid_journal_id_still_replays_with_a_notice(tmp_path: Path) -> None:
    async with running_agent(tmp_path, sources=(), extra=QUIET) as agent:
        async with ws_connect(agent.url, agent.token) as ws:
            await recv_json(ws)
            await ws.send(json.dumps({"type": "subscribe", "since": 0, "journal": "0123456789abcdef"}))
            notice, _ = await recv_until(ws, lambda f: f.get("kind") == "agent.notice")
    assert "journal changed from '0123456789abcdef'" in notice["data"]["message"]


async def test_an_event_over_the_frame_limit_is_replaced_by_a_notice(tmp_path: Path) -> None:
    huge_session = "s" * (MAX_FRAME_BYTES + 10)
    async with running_agent(tmp_path, sources=(), extra=QUIET) as agent:
        agent.server.context.emit("session.started", huge_session, {"source": "managed"})
        bodies = _journalled(agent.journal_path)
    assert all(len(body) <= MAX_FRAME_BYTES for body in bodies)
    last = json.loads(bodies[-1])
    assert last["kind"] == "agent.notice"
    assert "dropped a session.started event of session 'sss" in last["data"]["message"]


async def test_an_emitted_event_journals_its_validated_data_not_the_raw_dict(tmp_path: Path) -> None:
    raw = {"source": "managed", "title": "\x1b]52;c;aGk=\x07fix " + "t" * 2_000, "injected": "x" * 10_000}
    async with running_agent(tmp_path, sources=(), extra=QUIET) as agent:
        agent.server.context.emit("session.started", "s-1", raw)
        bodies = _journalled(agent.journal_path)
    data = json.loads(bodies[-1])["data"]
    assert data == {"source": "managed", "title": clean_line(raw["title"])}
    assert data["title"].startswith("fix t") and len(data["title"]) == NAME_MAX


def test_journal_append_refuses_a_frame_over_the_limit_and_keeps_its_seq(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.db", clock=ManualClock())
    try:
        with pytest.raises(FrameTooLarge):
            journal.append({"type": "event", "data": {"message": "x" * MAX_FRAME_BYTES}})
        appended = journal.append({"type": "event", "data": {}})
    finally:
        journal.close()
    assert appended.seq == 1


async def test_deeply_nested_json_gets_an_error_frame_and_the_connection_stays_up(tmp_path: Path) -> None:
    nested = '{"type":"subscribe","x":' + "[" * 200_000 + "]" * 200_000 + "}"
    async with running_agent(tmp_path, sources=(), extra=QUIET) as agent:
        async with ws_connect(agent.url, agent.token) as ws:
            await recv_json(ws)
            await ws.send(nested)
            error = await recv_json(ws)
            await ws.send(json.dumps({"type": "subscribe", "since": 0}))
            sessions, _ = await recv_until(ws, lambda f: f["type"] == "sessions")
    assert error == {"type": "error", "code": "bad_json", "message": "frame is nested too deeply"}
    assert sessions["type"] == "sessions"


async def test_an_unknown_frame_type_is_echoed_cut(tmp_path: Path) -> None:
    async with running_agent(tmp_path, sources=(), extra=QUIET) as agent:
        async with ws_connect(agent.url, agent.token) as ws:
            await recv_json(ws)
            await ws.send(json.dumps({"type": "x" * 900_000}))
            error = await recv_json(ws)
    assert error["code"] == "unknown_type"
    assert len(error["message"]) <= 512


async def test_a_command_for_a_huge_target_is_answered_with_a_short_refusal(tmp_path: Path) -> None:
    async with running_agent(tmp_path, sources=(), extra=QUIET) as agent:
        async with ws_connect(agent.url, agent.token) as ws:
            await recv_json(ws)
            result = await command(ws, "session.kill", "\x1b[2J" + "s" * 900_000)
    assert result["ok"] is False
    assert result["error"].startswith("bad_frame")  # answered as its result: the console stops waiting
    assert len(result["error"]) < 200
    assert "\x1b" not in result["error"]


class _CrowdSource(SessionSource):
    """Thousands of long-titled sessions: together more than one frame may carry."""

    name = "crowd"

    def sessions(self) -> list[SessionInfo]:
        return [
            SessionInfo(id=f"s-{n}", source="crowd", title="t" * 400, started=1_700_000_000.0 + n) for n in range(5000)
        ]


async def test_the_sessions_frame_keeps_the_most_recent_sessions_within_the_frame_limit(tmp_path: Path) -> None:
    config = AgentConfig(listen="127.0.0.1:0", token="t0k", token_env=None, sources=[], interval_s=60)
    async with AgentServer(config, journal_path=tmp_path / "j.db", sources=[_CrowdSource]) as server:
        async with ws_connect(server.url, "t0k", max_size=None) as ws:
            await recv_json(ws)
            await ws.send(json.dumps({"type": "subscribe", "since": 0}))
            raw = None
            while raw is None:
                message = await ws.recv()
                if json.loads(message)["type"] == "sessions":
                    raw = message
    assert len(raw.encode()) <= MAX_FRAME_BYTES
    ids = [s["id"] for s in json.loads(raw)["sessions"]]
    assert ids[0] == "s-4999"
    assert 0 < len(ids) < 5000
