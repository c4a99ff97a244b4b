"""The agent's WebSocket server over real loopback sockets: auth, replay, live, errors, HTTP."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from agentkit import command, recv_json, recv_until, running_agent, wait_until, ws_connect
from heady_agent.clock import ManualClock
from heady_agent.config import AgentConfig
from heady_agent.protocol import MAX_FRAME_BYTES
from heady_agent.server import AgentServer, StartError

FAST = {"interval_s": 0.05}


async def _subscribe(ws, since: int = 0, journal: str | None = None) -> None:
    await ws.send(json.dumps({"type": "subscribe", "since": since, "journal": journal}))


async def _numbered(ws, count: int) -> list[dict]:
    """The next `count` journalled frames (metrics/event), skipping others."""
    frames: list[dict] = []
    while len(frames) < count:
        frame = await recv_json(ws)
        if frame["type"] in ("metrics", "event"):
            frames.append(frame)
    return frames


def _assert_contiguous(frames: list[dict], start: int) -> None:
    assert [f["seq"] for f in frames] == list(range(start, start + len(frames)))


async def test_connection_without_token_is_refused_with_401(tmp_path: Path) -> None:
    async with running_agent(tmp_path, sources=()) as agent:
        with pytest.raises(InvalidStatus) as refused:
            async with ws_connect(agent.url, None):
                pass
        assert refused.value.response.status_code == 401


async def test_connection_with_wrong_token_is_refused_with_401(tmp_path: Path) -> None:
    async with running_agent(tmp_path, sources=()) as agent:
        with pytest.raises(InvalidStatus) as refused:
            async with ws_connect(agent.url, "not-the-token"):
                pass
        assert refused.value.response.status_code == 401


async def test_connection_with_the_token_gets_hello(tmp_path: Path) -> None:
    async with running_agent(tmp_path, sources=(), name="build-1") as agent:
        async with ws_connect(agent.url, agent.token) as ws:
            hello = await recv_json(ws)
    assert hello["type"] == "hello"
    assert hello["protocol"] == 1
    assert hello["node"]["id"] == "build-1"
    assert hello["node"]["cpu_count"] >= 1
    assert hello["journal"]["id"] == agent.server.journal.id
    assert hello["simulated"] is False


def test_refuses_a_public_listen_address_without_a_token(tmp_path: Path) -> None:
    config = AgentConfig(listen="0.0.0.0:0", token_env=None, sources=[])
    with pytest.raises(StartError, match="without a token"):
        AgentServer(config, journal_path=tmp_path / "j.db")


async def test_replay_since_zero_has_strictly_increasing_seq_without_gaps(tmp_path: Path) -> None:
    async with running_agent(tmp_path, sources=(), extra=FAST) as agent:
        await wait_until(lambda: agent.server.journal.committed_seq >= 20, what="20 frames journalled")
        async with ws_connect(agent.url, agent.token) as ws:
            await recv_json(ws)
            await _subscribe(ws)
            frames = await _numbered(ws, 30)  # crosses from replay into live
    _assert_contiguous(frames, 1)


async def test_sessions_frame_follows_the_replay(tmp_path: Path) -> None:
    async with running_agent(tmp_path, sources=(), extra=FAST) as agent:
        await wait_until(lambda: agent.server.journal.committed_seq >= 5, what="5 frames journalled")
        upto = agent.server.journal.committed_seq
        async with ws_connect(agent.url, agent.token) as ws:
            await recv_json(ws)
            await _subscribe(ws)
            sessions, before = await recv_until(ws, lambda f: f["type"] == "sessions")
    assert sessions["sessions"] == []
    assert [f["seq"] for f in before][: upto] == list(range(1, upto + 1))


async def test_resume_after_disconnect_continues_without_gap_or_duplicate(tmp_path: Path) -> None:
    async with running_agent(tmp_path, sources=(), extra=FAST) as agent:
        async with ws_connect(agent.url, agent.token) as ws:
            hello = await recv_json(ws)
            await _subscribe(ws)
            first = await _numbered(ws, 10)
        cursor = first[-1]["seq"]
        await wait_until(lambda: agent.server.journal.committed_seq >= cursor + 10, what="more frames while away")
        async with ws_connect(agent.url, agent.token) as ws:
            await recv_json(ws)
            await _subscribe(ws, since=cursor, journal=hello["journal"]["id"])
            second = await _numbered(ws, 20)
    _assert_contiguous(first + second, 1)


async def test_subscribe_with_another_journal_id_replays_from_the_start_with_a_notice(tmp_path: Path) -> None:
    async with running_agent(tmp_path, sources=(), extra=FAST) as agent:
        await wait_until(lambda: agent.server.journal.committed_seq >= 5, what="5 frames journalled")
        async with ws_connect(agent.url, agent.token) as ws:
            await recv_json(ws)
            await _subscribe(ws, since=3, journal="some-older-journal")
            notice, before = await recv_until(ws, lambda f: f.get("kind") == "agent.notice")
    assert before[0]["seq"] == 1
    assert "some-older-journal" in notice["data"]["message"]
    assert notice["data"]["severity"] == "warning"


async def test_events_emitted_atomically_reach_subscribers_only_after_commit(tmp_path: Path) -> None:
    async with running_agent(tmp_path, sources=()) as agent:
        async with ws_connect(agent.url, agent.token) as ws:
            await recv_json(ws)
            await _subscribe(ws)
            await recv_until(ws, lambda f: f["type"] == "sessions")
            ctx = agent.server.context
            with pytest.raises(RuntimeError):
                with ctx.atomic():
                    ctx.notice("info", "rolled back")
                    raise RuntimeError("source failed")
            with ctx.atomic():
                ctx.notice("info", "committed")
                ctx.set_state("k", "v")
            notice, _ = await recv_until(ws, lambda f: f.get("kind") == "agent.notice")
            assert ctx.get_state("k") == "v"
    assert notice["data"]["message"] == "committed"


async def test_malformed_json_gets_an_error_frame_and_the_connection_stays_up(tmp_path: Path) -> None:
    async with running_agent(tmp_path, sources=()) as agent:
        async with ws_connect(agent.url, agent.token) as ws:
            await recv_json(ws)
            await ws.send("{not json")
            error = await recv_json(ws)
            result = await command(ws, "session.kill", "nobody")
    assert error == {"type": "error", "code": "bad_json", "message": error["message"]}
    assert result["ok"] is False


async def test_unknown_frame_type_gets_an_error_frame(tmp_path: Path) -> None:
    async with running_agent(tmp_path, sources=()) as agent:
        async with ws_connect(agent.url, agent.token) as ws:
            await recv_json(ws)
            await ws.send(json.dumps({"type": "launch_missiles"}))
            error = await recv_json(ws)
            result = await command(ws, "session.kill", "nobody")
    assert error["code"] == "unknown_type"
    assert result["type"] == "result"


async def test_frame_with_bad_fields_gets_an_error_frame(tmp_path: Path) -> None:
    async with running_agent(tmp_path, sources=()) as agent:
        async with ws_connect(agent.url, agent.token) as ws:
            await recv_json(ws)
            await ws.send(json.dumps({"type": "subscribe", "since": -4}))
            error = await recv_json(ws)
    assert error["code"] == "bad_frame"
    assert "since" in error["message"]


async def test_oversized_frame_gets_too_large_and_the_connection_stays_up(tmp_path: Path) -> None:
    async with running_agent(tmp_path, sources=()) as agent:
        async with ws_connect(agent.url, agent.token, max_size=None) as ws:
            await recv_json(ws)
            await ws.send(json.dumps({"type": "ack", "seq": 1, "pad": "x" * (MAX_FRAME_BYTES + 10)}))
            error = await recv_json(ws)
            result = await command(ws, "session.kill", "nobody")
    assert error["code"] == "too_large"
    assert result["type"] == "result"


async def test_command_for_an_unknown_session_fails_with_unknown_session(tmp_path: Path) -> None:
    async with running_agent(tmp_path, sources=()) as agent:
        async with ws_connect(agent.url, agent.token) as ws:
            await recv_json(ws)
            result = await command(ws, "session.pause", "claude:nope", cmd_id="cmd-7")
    assert result["id"] == "cmd-7"
    assert result["ok"] is False
    assert result["error"].startswith("unknown_session")


async def test_node_command_without_a_queueing_source_is_not_supported(tmp_path: Path) -> None:
    async with running_agent(tmp_path, sources=()) as agent:
        async with ws_connect(agent.url, agent.token) as ws:
            await recv_json(ws)
            result = await command(ws, "node.drain")
    assert result["ok"] is False
    assert result["error"].startswith("not_supported")


async def test_command_with_bad_args_fails_with_bad_args(tmp_path: Path) -> None:
    async with running_agent(tmp_path, sources=()) as agent:
        async with ws_connect(agent.url, agent.token) as ws:
            await recv_json(ws)
            result = await command(ws, "node.set_concurrency", args={"value": -1})
    assert result["ok"] is False
    assert result["error"].startswith("bad_args")


async def test_focus_turns_detail_frames_on(tmp_path: Path) -> None:
    async with running_agent(tmp_path, sources=(), extra={"interval_s": 0.2}) as agent:
        async with ws_connect(agent.url, agent.token) as ws:
            await recv_json(ws)
            await ws.send(json.dumps({"type": "focus", "detail": True}))
            detail, _ = await recv_until(ws, lambda f: f["type"] == "detail")
    assert 0 < len(detail["processes"]) <= 15
    assert {"pid", "name", "cpu", "rss"} <= set(detail["processes"][0])


async def test_no_detail_frames_without_focus(tmp_path: Path) -> None:
    async with running_agent(tmp_path, sources=(), extra=FAST) as agent:
        async with ws_connect(agent.url, agent.token) as ws:
            await recv_json(ws)
            await _subscribe(ws)
            frames = [await recv_json(ws) for _ in range(15)]
    assert "detail" not in {f["type"] for f in frames}


async def test_slow_subscriber_is_cut_off_and_resumes_without_loss(tmp_path: Path) -> None:
    config = AgentConfig(
        listen="127.0.0.1:0", token="t0k", token_env=None, sources=[], interval_s=60, peer_queue_bytes=4096
    )
    server = AgentServer(config, journal_path=tmp_path / "j.db")
    async with server:
        async with ws_connect(server.url, "t0k") as slow:
            await recv_json(slow)
            await _subscribe(slow)
            await recv_until(slow, lambda f: f["type"] == "sessions")
            start = server.journal.committed_seq
            for n in range(200):  # synchronously: the subscriber cannot drain in between
                server.context.notice("info", f"burst {n}")
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    await recv_json(slow)
            assert closed.value.rcvd.code == 1013
        async with ws_connect(server.url, "t0k") as again:
            await recv_json(again)
            await _subscribe(again, since=start, journal=server.journal.id)
            frames = await _numbered(again, 200)
    _assert_contiguous(frames, start + 1)


async def test_a_subscriber_that_stops_reading_does_not_hold_up_one_that_reads(tmp_path: Path) -> None:
    config = AgentConfig(
        listen="127.0.0.1:0", token="t0k", token_env=None, sources=[], interval_s=60, peer_queue_bytes=200_000
    )
    server = AgentServer(config, journal_path=tmp_path / "j.db")
    text = "x" * 4000  # a notice is clipped to 4 KiB, so the socket buffers are filled by count, not size
    async with server:
        async with ws_connect(server.url, "t0k") as stalled, ws_connect(server.url, "t0k") as reader:
            for ws in (stalled, reader):
                await recv_json(ws)
                await _subscribe(ws)
                await recv_until(ws, lambda f: f["type"] == "sessions")
            start = server.journal.committed_seq
            received: list[dict] = []

            async def read_forever() -> None:
                while True:
                    received.extend(await _numbered(reader, 1))

            reading = asyncio.create_task(read_forever())
            sent = 0
            # Until the stalled one is cut: how much the kernel's socket buffers absorb first varies by
            # machine (tcp_rmem / tcp_wmem), so the bound is generous (40 MB) rather than exact.
            while len(server._peers) == 2 and sent < 10_000:
                server.context.notice("info", f"{sent} {text}")
                sent += 1
                await asyncio.sleep(0)
            await wait_until(lambda: len(received) == sent, what="the reader received every frame")
            reading.cancel()
            assert len(server._peers) == 1, f"the stalled subscriber was still served after {sent} frames"
    _assert_contiguous(received, start + 1)


async def test_go_dark_refuses_connections_with_503_until_it_passes(tmp_path: Path) -> None:
    clock = ManualClock()
    async with running_agent(tmp_path, sources=(), clock=clock) as agent:
        async with ws_connect(agent.url, agent.token) as ws:
            await recv_json(ws)
            agent.server.context.go_dark(30)
            with pytest.raises(ConnectionClosed):
                await recv_json(ws)
        with pytest.raises(InvalidStatus) as refused:
            async with ws_connect(agent.url, agent.token):
                pass
        assert refused.value.response.status_code == 503
        clock.advance(31)
        async with ws_connect(agent.url, agent.token) as ws:
            assert (await recv_json(ws))["type"] == "hello"


def _http(url: str) -> str:
    return url.replace("ws://", "http://").removesuffix("/ws")


async def test_healthz_answers_ok_without_a_token(tmp_path: Path) -> None:
    async with running_agent(tmp_path, sources=()) as agent:
        async with httpx.AsyncClient() as client:
            response = await client.get(_http(agent.url) + "/healthz")
    assert response.status_code == 200
    assert response.text.strip() == "ok"


async def test_metrics_needs_the_token(tmp_path: Path) -> None:
    async with running_agent(tmp_path, sources=()) as agent:
        async with httpx.AsyncClient() as client:
            response = await client.get(_http(agent.url) + "/metrics")
    assert response.status_code == 401


async def test_metrics_can_be_public(tmp_path: Path) -> None:
    async with running_agent(tmp_path, sources=(), extra={"metrics_public": True}) as agent:
        async with httpx.AsyncClient() as client:
            response = await client.get(_http(agent.url) + "/metrics")
    assert response.status_code == 200


async def test_metrics_exposes_host_journal_consoles_and_tokens_by_source(tmp_path: Path) -> None:
    async with running_agent(tmp_path, sources=(), extra=FAST) as agent:
        await wait_until(lambda: agent.server.journal.committed_seq >= 2, what="metrics sampled")
        ctx = agent.server.context
        session = 'odd "name"\\x'
        ctx.emit("session.started", session, {"source": "managed"})
        ctx.emit("llm.call", session, {"provider": "anthropic", "model": "m", "input_tokens": 10, "output_tokens": 4, "cost_usd": 0.5})
        ctx.emit("llm.call", session, {"provider": "anthropic", "model": "m", "input_tokens": 5, "cost_usd": 0.25})
        async with ws_connect(agent.url, agent.token):
            async with httpx.AsyncClient() as client:
                response = await client.get(
                    _http(agent.url) + "/metrics", headers={"Authorization": f"Bearer {agent.token}"}
                )
    text = response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert "# TYPE heady_agent_cpu_percent gauge" in text
    assert "heady_agent_consoles_connected 1.0" in text
    assert f'heady_agent_journal_last_seq{{journal="{agent.server.journal.id}"}}' in text
    assert 'heady_agent_llm_tokens_total{kind="input",source="managed"} 15.0' in text
    assert 'heady_agent_llm_cost_usd_total{source="managed"} 0.75' in text
    assert 'heady_agent_llm_calls_total{source="managed"} 2.0' in text
    assert "odd" not in text  # no label per session: their number has no bound
    for line in text.splitlines():
        if line and not line.startswith("#"):
            assert line.startswith("heady_agent_"), line


async def test_unknown_http_path_is_404(tmp_path: Path) -> None:
    async with running_agent(tmp_path, sources=()) as agent:
        async with httpx.AsyncClient() as client:
            response = await client.get(_http(agent.url) + "/admin")
    assert response.status_code == 404


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    import shutil
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )
    return cert, key


async def test_tls_serves_wss_that_verifies_against_the_certificate(tmp_path: Path) -> None:
    import ssl

    cert, key = _self_signed(tmp_path)
    async with running_agent(tmp_path, sources=(), extra={"tls_cert": str(cert), "tls_key": str(key)}) as agent:
        assert agent.url.startswith("wss://")
        trusted = ssl.create_default_context(cafile=str(cert))
        async with ws_connect(agent.url, agent.token, ssl=trusted) as ws:
            assert (await recv_json(ws))["type"] == "hello"
        with pytest.raises(ssl.SSLCertVerificationError):
            async with ws_connect(agent.url, agent.token, ssl=ssl.create_default_context()):
                pass
