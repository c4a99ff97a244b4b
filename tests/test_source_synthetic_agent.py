"""The simulated node inside a real agent, over real loopback WebSockets."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from agentkit import command, recv_json, recv_until, running_agent, ws_connect

FAST = {"interval_s": 0.05}
SPEED = 10.0  # 30 simulated seconds in 3 real ones


async def _subscribed(ws) -> dict:
    hello = await recv_json(ws)
    await ws.send(json.dumps({"type": "subscribe", "since": 0, "journal": None}))
    return hello


async def _latest_queue_depth(ws) -> int:
    frame, _ = await recv_until(ws, lambda f: f.get("type") == "metrics")
    return frame["queue_depth"]


async def test_queue_overflow_shows_in_metrics_frames_and_they_are_marked_simulated(tmp_path):
    async with running_agent(tmp_path, scenario="queue-overflow", node_count=2, speed=SPEED, extra=FAST) as agent:
        async with ws_connect(agent.url, agent.token) as ws:
            hello = await _subscribed(ws)
            assert hello["simulated"] is True
            assert (hello["node"]["hostname"], hello["node"]["cpu_count"]) == ("sim-1", 8)
            assert hello["node"]["mem_total"] == 32 * 1024**3
            frame, _ = await recv_until(
                ws, lambda f: f.get("type") == "metrics" and f["queue_depth"] > 1000, timeout=30
            )
    assert frame["simulated"] is True
    assert len(frame["load"]) == 3 and frame["mem_available"] > 0


async def test_queue_move_and_accept_over_the_wire_move_work_between_nodes(tmp_path):
    async with (
        running_agent(tmp_path, scenario="queue-overflow", node_index=0, node_count=2, speed=SPEED, extra=FAST) as a,
        running_agent(tmp_path, scenario="queue-overflow", node_index=1, node_count=2, speed=SPEED, extra=FAST) as b,
    ):
        async with ws_connect(a.url, a.token) as ws_a, ws_connect(b.url, b.token) as ws_b:
            await _subscribed(ws_a)
            await _subscribed(ws_b)
            await recv_until(ws_a, lambda f: f.get("type") == "metrics" and f["queue_depth"] > 900, timeout=30)
            moved = await command(ws_a, "queue.move", args={"count": 600})
            assert moved["ok"] and len(moved["detail"]["items"]) == 600
            accepted = await command(ws_b, "queue.accept", args={"items": moved["detail"]["items"]})
            assert accepted["ok"]
            assert accepted["detail"]["accepted"] == 600 and accepted["detail"]["rejected"] == []
            # The receiving node now has the backlog; the sender lost it.
            await recv_until(ws_b, lambda f: f.get("type") == "metrics" and f["queue_depth"] > 300, timeout=30)
            assert await _latest_queue_depth(ws_a) < 900


async def test_a_command_on_an_unknown_session_fails_with_a_clear_error(tmp_path):
    async with running_agent(tmp_path, scenario="calm", speed=SPEED, extra=FAST) as agent:
        async with ws_connect(agent.url, agent.token) as ws:
            await _subscribed(ws)
            result = await command(ws, "session.kill", "no-such-session")
    assert result["ok"] is False
    assert result["error"].startswith("unknown_session")


async def test_session_commands_reach_simulated_sessions(tmp_path):
    async with running_agent(tmp_path, scenario="runaway-cost", speed=SPEED, extra=FAST) as agent:
        async with ws_connect(agent.url, agent.token) as ws:
            await _subscribed(ws)
            started, _ = await recv_until(
                ws,
                lambda f: f.get("type") == "event" and f["kind"] == "session.started" and "-runaway-" in f["session"],
                timeout=30,
            )
            runaway = started["session"]
            result = await command(ws, "session.kill", runaway)
            assert result["ok"] and result["detail"]["state"] == "completed"
        # The end was journalled before the result was sent: a fresh subscriber replays it.
        async with ws_connect(agent.url, agent.token) as ws:
            await _subscribed(ws)
            ended, _ = await recv_until(
                ws, lambda f: f.get("type") == "event" and f["kind"] == "session.ended" and f["session"] == runaway
            )
    assert ended["data"] == {"exit_code": -9, "reason": "killed"}


async def test_node_loss_drops_the_connection_and_the_node_comes_back(tmp_path):
    async with running_agent(tmp_path, scenario="node-loss", speed=SPEED, extra=FAST) as agent:
        async with ws_connect(agent.url, agent.token) as ws:
            await _subscribed(ws)
            with pytest.raises(ConnectionClosed):
                while True:
                    await recv_json(ws)
        with pytest.raises(InvalidStatus) as refused:
            async with ws_connect(agent.url, agent.token):
                pass
        assert refused.value.response.status_code == 503
        deadline = time.monotonic() + 30
        while True:
            try:
                async with ws_connect(agent.url, agent.token) as ws:
                    hello = await recv_json(ws)
                    break
            except InvalidStatus:
                if time.monotonic() > deadline:
                    raise AssertionError("the node did not come back within 30 s") from None
                await asyncio.sleep(0.05)
    assert hello["type"] == "hello"
