"""Who may reach the agent's port: browsers, malformed requests, weak tokens, too many clients."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import InvalidStatus

from agentkit import AgentProcess, recv_json, running_agent, wait_until, ws_connect
from heady_agent.clock import ManualClock
from heady_agent.config import AgentConfig, is_loopback
from heady_agent.server import AgentServer, StartError

QUIET = {"interval_s": 60}
LONG_TOKEN = "a-token-of-32-bytes-for-the-test"


def _http(url: str) -> str:
    return url.replace("ws://", "http://").removesuffix("/ws")


async def test_a_browser_origin_is_refused_even_by_a_token_less_loopback_agent(tmp_path: Path) -> None:
    async with running_agent(tmp_path, sources=(), token=None, extra=QUIET) as agent:
        with pytest.raises(InvalidStatus) as refused:
            async with ws_connect(agent.url, None, origin="http://evil.example"):
                pass
        assert len(agent.server._peers) == 0
    assert refused.value.response.status_code == 403
    assert b"allowed_origins" in refused.value.response.body


async def test_a_browser_origin_is_refused_even_with_the_token(tmp_path: Path) -> None:
    async with running_agent(tmp_path, sources=(), extra=QUIET) as agent:
        with pytest.raises(InvalidStatus) as refused:
            async with ws_connect(agent.url, agent.token, origin="http://evil.example"):
                pass
    assert refused.value.response.status_code == 403


async def test_a_configured_origin_is_let_in(tmp_path: Path) -> None:
    extra = {**QUIET, "allowed_origins": ["https://dash.example"]}
    async with running_agent(tmp_path, sources=(), extra=extra) as agent:
        async with ws_connect(agent.url, agent.token, origin="https://dash.example") as ws:
            hello = await recv_json(ws)
    assert hello["type"] == "hello"


async def test_a_console_without_origin_is_let_in(tmp_path: Path) -> None:
    async with running_agent(tmp_path, sources=(), extra=QUIET) as agent:
        async with ws_connect(agent.url, agent.token) as ws:
            hello = await recv_json(ws)
    assert hello["type"] == "hello"


async def test_two_authorization_headers_get_400_with_one_line(tmp_path: Path) -> None:
    async with running_agent(tmp_path, sources=(), extra=QUIET) as agent:
        async with httpx.AsyncClient() as client:
            response = await client.get(
                _http(agent.url) + "/ws",
                headers=[("Authorization", f"Bearer {agent.token}"), ("Authorization", "Bearer other")],
            )
    assert response.status_code == 400
    assert response.text == "more than one Authorization header\n"


def test_a_public_listen_needs_a_token_of_at_least_16_bytes(tmp_path: Path) -> None:
    config = AgentConfig(listen="0.0.0.0:0", token="x", token_env=None, sources=[])
    with pytest.raises(StartError, match="shorter than 16 bytes"):
        AgentServer(config, journal_path=tmp_path / "j.db")


def test_a_public_listen_with_a_long_token_is_accepted(tmp_path: Path) -> None:
    config = AgentConfig(listen="0.0.0.0:0", token=LONG_TOKEN, token_env=None, sources=[])
    assert AgentServer(config, journal_path=tmp_path / "j.db").token == LONG_TOKEN


@pytest.mark.parametrize("host", ["127.0.0.1", "127.3.2.1", "::1", "::ffff:127.0.0.1", "localhost"])
def test_loopback_addresses_are_recognised_by_parsing(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["127.evil.example", "127.0.0.1.nip.io", "0.0.0.0", "::", "10.0.0.1", ""])
def test_names_and_other_addresses_are_not_loopback(host: str) -> None:
    assert not is_loopback(host)


def test_a_name_starting_with_127_needs_a_token(tmp_path: Path) -> None:
    config = AgentConfig(listen="127.evil.example:0", token_env=None, sources=[])
    with pytest.raises(StartError, match="without a token"):
        AgentServer(config, journal_path=tmp_path / "j.db")


async def test_connections_over_the_cap_get_503_and_a_freed_slot_is_reused(tmp_path: Path) -> None:
    async with running_agent(tmp_path, sources=(), extra={**QUIET, "max_connections": 2}) as agent:
        async with ws_connect(agent.url, agent.token) as first:
            await recv_json(first)
            async with ws_connect(agent.url, agent.token) as second:
                await recv_json(second)
                with pytest.raises(InvalidStatus) as refused:
                    async with ws_connect(agent.url, agent.token):
                        pass
        await wait_until(lambda: len(agent.server._peers) == 0, what="both connections closed")
        async with ws_connect(agent.url, agent.token) as third:
            hello = await recv_json(third)
    assert refused.value.response.status_code == 503
    assert hello["type"] == "hello"


def _refusal_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "heady_agent.server" and "refused" in r.getMessage()]


async def test_refused_connections_are_logged_once_then_counted_per_window(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="heady_agent.server")
    clock = ManualClock()
    async with running_agent(tmp_path, sources=(), clock=clock, extra=QUIET) as agent:
        async with httpx.AsyncClient() as client:
            for _ in range(50):
                response = await client.get(_http(agent.url) + "/ws", headers={"Authorization": "Bearer wrong"})
                assert response.status_code == 401
            during = _refusal_lines(caplog)
            clock.advance(61)
            await client.get(_http(agent.url) + "/ws", headers={"Authorization": "Bearer wrong"})
    after = _refusal_lines(caplog)
    assert len(during) == 1
    assert "missing or wrong token" in during[0]
    assert any("refused 49 more connections" in line for line in after)
    assert len(after) == 3  # the count of the first window, then the first refusal of the next


async def test_refusals_for_ever_different_origins_are_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="heady_agent.server")
    async with running_agent(tmp_path, sources=(), clock=ManualClock(), extra=QUIET) as agent:
        async with httpx.AsyncClient() as client:
            for n in range(30):
                response = await client.get(_http(agent.url) + "/ws", headers={"Origin": f"http://evil-{n}.example"})
                assert response.status_code == 403
    assert len(_refusal_lines(caplog)) == 1


async def test_refusals_are_counted_by_reason_in_metrics(tmp_path: Path) -> None:
    async with running_agent(tmp_path, sources=(), extra=QUIET) as agent:
        async with httpx.AsyncClient() as client:
            await client.get(_http(agent.url) + "/ws", headers={"Authorization": "Bearer wrong"})
            await client.get(_http(agent.url) + "/ws", headers={"Origin": "http://evil.example"})
            response = await client.get(_http(agent.url) + "/metrics", headers={"Authorization": f"Bearer {agent.token}"})
    assert 'heady_agent_connections_refused_total{reason="token"} 1.0' in response.text
    assert 'heady_agent_connections_refused_total{reason="origin"} 1.0' in response.text


async def test_a_flood_of_refused_requests_adds_a_few_lines_to_the_agent_log(tmp_path: Path) -> None:
    agent = AgentProcess(tmp_path, "a", sources=(), extra=QUIET)
    async with agent, httpx.AsyncClient() as client:
        before = len(agent.log_path.read_text().splitlines())
        for _ in range(200):
            response = await client.get(_http(agent.url) + "/ws", headers={"Authorization": "Bearer wrong"})
            assert response.status_code == 401
        await client.get(_http(agent.url) + "/healthz")
        added = agent.log_path.read_text().splitlines()[before:]
    assert len(added) <= 2, added


def test_the_agent_loads_prometheus_client_only_when_scraped() -> None:
    code = (
        "import sys, heady_agent.cli, heady_agent.server; loaded = 'prometheus_client' in sys.modules; "
        "import heady_agent.metrics; print(loaded, 'prometheus_client' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.split() == ["False", "True"]
