"""The local Anthropic Messages API the recordings ran against: what it answers, and what it logs."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fake_anthropic import FakeAnthropic, FaultRule, Schedule

TOOLS = [{"name": "Bash", "description": "run a command", "input_schema": {"type": "object"}}]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[FakeAnthropic]:
    schedule = Schedule([FaultRule("RATE-LIMITED", "429", times=1), FaultRule("CUT-OFF", "broken", times=1)])
    fake = FakeAnthropic(tmp_path / "answers.jsonl", schedule, delay_ms=(0, 0))
    fake.start()
    yield fake
    fake.stop()


def ask(server: FakeAnthropic, text: str, stream: bool = True) -> httpx.Response:
    body = {"model": "claude-sonnet-4-5", "max_tokens": 100, "stream": stream, "tools": TOOLS,
            "messages": [{"role": "user", "content": text}]}
    return httpx.post(f"http://127.0.0.1:{server.port}/v1/messages", json=body, timeout=30)


def events(response: httpx.Response) -> list[dict[str, Any]]:
    return [json.loads(line[len("data: "):]) for line in response.text.splitlines() if line.startswith("data: ")]


def logged(server: FakeAnthropic, count: int) -> list[dict[str, Any]]:
    """The log once it has `count` entries: the server writes an entry after the client may
    already have the whole answer (or the cut connection)."""
    deadline = time.monotonic() + 10
    while True:
        text = server.log_path.read_text() if server.log_path.exists() else ""
        entries = [json.loads(line) for line in text.splitlines()]
        if len(entries) >= count or time.monotonic() > deadline:
            return entries
        time.sleep(0.01)


def test_a_streamed_answer_carries_the_usage_the_log_records(server):
    got = events(ask(server, "hello"))
    [entry] = logged(server, 1)
    start, delta = got[0]["message"], next(e for e in got if e["type"] == "message_delta")
    assert got[-1]["type"] == "message_stop" and entry["ok"] and entry["status"] == 200
    assert start["id"] == entry["message_id"] and start["usage"]["output_tokens"] == 1
    assert delta["usage"]["output_tokens"] == entry["usage"]["output_tokens"]
    split = start["usage"]["cache_creation"]
    assert split["ephemeral_5m_input_tokens"] + split["ephemeral_1h_input_tokens"] == start["usage"]["cache_creation_input_tokens"]


def test_a_scheduled_429_fails_that_many_requests_then_they_are_answered(server):
    first, second = ask(server, "RATE-LIMITED please"), ask(server, "RATE-LIMITED please")
    assert first.status_code == 429 and first.json()["error"]["type"] == "rate_limit_error"
    assert second.status_code == 200
    assert [(e["status"], e["ok"]) for e in logged(server, 2)] == [(429, False), (200, True)]


def test_a_broken_stream_stops_before_its_end_and_is_logged_as_failed(server):
    got = [e["type"] for e in events(ask(server, "CUT-OFF here"))]  # the connection closes: HTTP sees a body end
    assert "content_block_stop" in got and "message_delta" not in got and "message_stop" not in got
    [entry] = logged(server, 1)
    assert entry["fault"] == "broken" and not entry["ok"] and entry["stop_reason"] is None


def test_a_tool_directive_is_answered_with_that_tool_call(server):
    got = events(ask(server, 'go [[tool:Bash:{"command": "ls"}]]'))
    blocks = [e["content_block"] for e in got if e["type"] == "content_block_start"]
    assert blocks[-1]["type"] == "tool_use" and blocks[-1]["name"] == "Bash"
    assert next(e for e in got if e["type"] == "message_delta")["delta"]["stop_reason"] == "tool_use"
