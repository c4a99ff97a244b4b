"""The agent's OTLP/HTTP receiver on loopback, spoken to over HTTP as the real clients speak.

The requests are the ones Claude Code sent (tests/fixtures/real/otlp-claude-code-*), replayed byte
for byte; hostile ones are built here. Every refusal is a clear status and one line, and loses
nothing that came before.
"""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from agentkit import RunningAgent, running_agent, wait_until
from heady_agent.config import AgentConfig
from heady_agent.otlp import MAX_BODY_BYTES, MAX_CONNECTIONS, MAX_DECODED_BYTES, Batch, OtlpReceiver
from heady_agent.server import AgentServer, StartError
from heady_agent.sources.otlp import OtlpSource
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from otlpkit import FIXTURES, sent_requests

CLAUDE = FIXTURES / "otlp-claude-code-2.1.332"
TIMEOUT_S = 30.0
SESSION = "0b0e0f00-1111-4222-8333-944445555666"


@pytest.fixture
async def agent(tmp_path: Path) -> AsyncIterator[tuple[RunningAgent, str]]:
    async with running_agent(tmp_path, sources=(), extra={"otlp": {"listen": "127.0.0.1:0"}}) as running:
        [source] = [s for s in running.server.sources if isinstance(s, OtlpSource)]
        yield running, f"http://127.0.0.1:{source.receiver.port}"


def journalled(server: AgentServer, kind: str) -> list[dict[str, Any]]:
    frames = [json.loads(text) for _, text in server.journal.read_after(0)]
    return [f for f in frames if f.get("kind") == kind]


def api_request(**attributes: Any) -> dict[str, Any]:
    """An OTLP/JSON logs request holding one claude_code.api_request event."""
    values = {"session.id": SESSION, "request_id": "req_hostile1", "model": "claude-sonnet-4-5",
              "input_tokens": 10, "output_tokens": 5, **attributes}

    def any_value(value: Any) -> dict[str, Any]:
        if isinstance(value, bool):
            return {"boolValue": value}
        if isinstance(value, int):
            return {"intValue": str(value)}
        if isinstance(value, float):
            return {"doubleValue": value}
        return {"stringValue": value}

    record = {"timeUnixNano": str(1_800_000_000 * 10**9), "body": {"stringValue": "claude_code.api_request"},
              "attributes": [{"key": k, "value": any_value(v)} for k, v in values.items()]}
    return {"resourceLogs": [{"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "claude-code"}}]},
                              "scopeLogs": [{"logRecords": [record]}]}]}


async def post(url: str, body: bytes, *, content_type: str = "application/json", **headers: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=TIMEOUT_S) as client:
        return await client.post(url, content=body, headers={"content-type": content_type, **headers})


async def test_the_requests_claude_code_sent_are_accepted_as_sent_and_become_its_calls(agent: Any) -> None:
    running, base = agent
    for request in sent_requests(CLAUDE):
        headers = {"content-encoding": request.content_encoding} if request.content_encoding else {}
        answer = await post(base + request.path, request.body, content_type=request.content_type, **headers)
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"] == request.content_type
    sessions = set(json.loads((CLAUDE / "sessions.json").read_text()).values())
    calls = journalled(running.server, "llm.call")
    assert {c["session"] for c in calls} == sessions
    assert len(calls) == 11  # every answer the fake server gave, and the request that never succeeded


async def test_a_protobuf_request_gets_an_empty_protobuf_export_response(agent: Any) -> None:
    _, base = agent
    request = next(r for r in sent_requests(CLAUDE) if r.content_type == "application/x-protobuf" and r.path == "/v1/logs")
    answer = await post(base + request.path, request.body, content_type=request.content_type,
                        **({"content-encoding": "gzip"} if request.content_encoding else {}))
    response = ExportLogsServiceResponse()
    response.ParseFromString(answer.content)
    assert not response.HasField("partial_success")


async def test_a_body_that_is_not_otlp_is_refused_with_400_and_keeps_what_came_before(agent: Any) -> None:
    running, base = agent
    assert (await post(base + "/v1/logs", json.dumps(api_request()).encode())).status_code == 200
    answer = await post(base + "/v1/logs", b"\x0a\xff\xff\xff\xff\x0f", content_type="application/x-protobuf")
    assert answer.status_code == 400
    assert "not an OTLP logs export request" in answer.text
    assert len(journalled(running.server, "llm.call")) == 1


async def test_a_json_refusal_is_a_status_object(agent: Any) -> None:
    _, base = agent
    answer = await post(base + "/v1/logs", b"[1, 2")
    assert answer.status_code == 400
    assert answer.json()["code"] == 400 and answer.json()["message"]


@pytest.mark.parametrize("headers", [{"content-type": "text/plain"}, {"content-encoding": "br"}])
async def test_other_media_types_and_encodings_are_refused_with_415(agent: Any, headers: dict[str, str]) -> None:
    _, base = agent
    async with httpx.AsyncClient(timeout=TIMEOUT_S) as client:
        answer = await client.post(base + "/v1/logs", content=b"{}", headers={"content-type": "application/json", **headers})
    assert answer.status_code == 415


async def test_a_body_over_the_limit_is_refused_with_413(agent: Any) -> None:
    _, base = agent
    answer = await post(base + "/v1/logs", b" " * (MAX_BODY_BYTES + 1))
    assert answer.status_code == 413


async def test_a_gzip_body_that_inflates_past_the_limit_is_refused_with_413(agent: Any) -> None:
    _, base = agent
    bomb = gzip.compress(b" " * (MAX_DECODED_BYTES + 1))
    answer = await post(base + "/v1/logs", bomb, **{"content-encoding": "gzip"})
    assert answer.status_code == 413


async def test_a_cut_short_gzip_body_is_refused_with_400(agent: Any) -> None:
    _, base = agent
    answer = await post(base + "/v1/logs", gzip.compress(json.dumps(api_request()).encode())[:-12], **{"content-encoding": "gzip"})
    assert answer.status_code == 400


async def test_other_paths_are_404_and_other_methods_405(agent: Any) -> None:
    _, base = agent
    async with httpx.AsyncClient(timeout=TIMEOUT_S) as client:
        assert (await client.post(base + "/v1/traces", content=b"{}")).status_code == 404
        assert (await client.get(base + "/v1/logs")).status_code == 405


async def test_text_from_the_client_is_stripped_of_control_characters_and_cut(agent: Any) -> None:
    running, base = agent
    body = api_request(model="claude\x1b[31m-opus\n" + "x" * 1000, request_id="req_ok2")
    assert (await post(base + "/v1/logs", json.dumps(body).encode())).status_code == 200
    [started] = journalled(running.server, "session.started")[-1:]
    model = started["data"]["model"]
    assert "\x1b" not in model and "\n" not in model and len(model) <= 128


@pytest.mark.parametrize("bad", [-5, 10**15, "12abc", 1.5, True])
async def test_a_token_count_that_is_not_a_count_is_zero(agent: Any, bad: Any) -> None:
    running, base = agent
    assert (await post(base + "/v1/logs", json.dumps(api_request(input_tokens=bad)).encode())).status_code == 200
    [call] = journalled(running.server, "llm.call")
    assert call["data"]["input_tokens"] == 0 and call["data"]["output_tokens"] == 5


async def test_a_record_stamped_in_the_future_is_stamped_on_arrival(agent: Any) -> None:
    running, base = agent
    body = api_request()
    body["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0]["timeUnixNano"] = str(4_000_000_000 * 10**9)
    assert (await post(base + "/v1/logs", json.dumps(body).encode())).status_code == 200
    [call] = journalled(running.server, "llm.call")
    assert call["ts"] < 4_000_000_000


async def test_records_without_a_name_are_reported_as_rejected(agent: Any) -> None:
    _, base = agent
    body = api_request()
    body["resourceLogs"][0]["scopeLogs"][0]["logRecords"].append({"attributes": []})
    answer = await post(base + "/v1/logs", json.dumps(body).encode())
    assert answer.status_code == 200
    assert answer.json()["partialSuccess"]["rejectedLogRecords"] == "1"


async def test_a_receiver_with_a_token_refuses_requests_without_it() -> None:
    got: list[Batch] = []

    async def handler(batch: Batch) -> None:
        got.append(batch)

    receiver = OtlpReceiver("127.0.0.1", 0, handler, token="s" * 32)
    await receiver.start()
    try:
        url = f"http://127.0.0.1:{receiver.port}/v1/logs"
        body = json.dumps(api_request()).encode()
        assert (await post(url, body)).status_code == 401
        assert (await post(url, body, authorization="Bearer " + "x" * 32)).status_code == 401
        assert (await post(url, body, authorization="Bearer " + "s" * 32)).status_code == 200
    finally:
        await receiver.stop()
    assert len(got) == 1


@pytest.mark.parametrize("token", [None, "short"])
def test_an_agent_refuses_to_receive_otlp_off_loopback_without_a_good_token(tmp_path: Path, token: str | None) -> None:
    config = AgentConfig(sources=[], token=token, token_env=None, otlp={"listen": "0.0.0.0:4318"})
    with pytest.raises(StartError, match="agent.otlp.listen"):
        AgentServer(config, journal_path=tmp_path / "j.db")


def test_an_otlp_listen_address_that_is_not_host_port_is_a_config_error() -> None:
    with pytest.raises(ValueError, match="HOST:PORT"):
        AgentConfig(otlp={"listen": "4318"})


async def test_refused_requests_are_counted_by_status_in_the_agents_metrics(agent: Any) -> None:
    running, base = agent
    await post(base + "/v1/logs", b"{}", content_type="text/plain")
    await post(base + "/v1/logs", b"{}", content_type="text/plain")
    assert running.server.counts.refused["otlp_415"] == 2


async def test_a_connection_past_the_open_ones_is_closed_and_counted(agent: Any) -> None:
    running, base = agent
    [source] = [s for s in running.server.sources if isinstance(s, OtlpSource)]
    host, port = base.removeprefix("http://").split(":")
    held = [await asyncio.open_connection(host, int(port)) for _ in range(MAX_CONNECTIONS)]
    try:
        await wait_until(lambda: source.receiver.open_connections == MAX_CONNECTIONS, what="every connection taken")
        reader, writer = await asyncio.open_connection(host, int(port))
        assert await asyncio.wait_for(reader.read(), TIMEOUT_S) == b""  # closed without an answer
        writer.close()
        assert running.server.counts.refused["otlp_capacity"] == 1
    finally:
        for _, held_writer in held:
            held_writer.close()
    await wait_until(lambda: source.receiver.open_connections == 0, what="the held connections closed")
    assert (await post(base + "/v1/logs", b"{}")).status_code == 200


async def test_json_nested_past_any_reason_is_refused_with_400(agent: Any) -> None:
    _, base = agent
    answer = await post(base + "/v1/logs", b'{"resourceLogs": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")
    assert answer.status_code == 400


async def test_only_the_first_attributes_of_a_record_are_read(agent: Any) -> None:
    running, base = agent
    body = api_request(**{f"padding.{i}": i for i in range(100)})
    record = body["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0]
    record["attributes"] = record["attributes"][5:] + record["attributes"][:5]  # the session id comes last
    assert (await post(base + "/v1/logs", json.dumps(body).encode())).status_code == 200
    assert journalled(running.server, "llm.call") == []


async def test_a_batch_that_cannot_be_stored_is_answered_500_and_the_next_one_is_taken() -> None:
    stored: list[Batch] = []
    attempts: list[Batch] = []

    async def handler(batch: Batch) -> None:
        attempts.append(batch)
        if len(attempts) == 1:
            raise OSError("disk full")
        stored.append(batch)

    receiver = OtlpReceiver("127.0.0.1", 0, handler, token=None)
    await receiver.start()
    try:
        url = f"http://127.0.0.1:{receiver.port}/v1/logs"
        body = json.dumps(api_request()).encode()
        assert (await post(url, body)).status_code == 500
        assert (await post(url, body)).status_code == 200
    finally:
        await receiver.stop()
    assert len(stored) == 1 and receiver.refused == {"otlp_500": 1}


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field."""
    def varint(n: int) -> bytes:
        out = b""
        while n > 0x7F:
            out += bytes([n & 0x7F | 0x80])
            n >>= 7
        return out + bytes([n])

    return varint(number << 3 | 2) + varint(len(payload)) + payload


async def test_protobuf_nested_past_any_reason_is_refused_with_400(agent: Any) -> None:
    _, base = agent
    value = _field(1, b"x")  # AnyValue.string_value
    for _ in range(300):  # AnyValue.kvlist_value holding one KeyValue whose value nests again
        value = _field(6, _field(1, _field(1, b"k") + _field(2, value)))
    body = _field(1, _field(2, _field(2, _field(5, value))))  # resource_logs.scope_logs.log_records.body
    answer = await post(base + "/v1/logs", body, content_type="application/x-protobuf")
    assert answer.status_code == 400
