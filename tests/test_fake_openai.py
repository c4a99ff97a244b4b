"""The fake OpenAI server the real-client recordings run against answers in the real streaming
formats, follows its fault schedule, and logs every answer."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from fake_openai import FakeOpenAI, Rule, Server, seeded_usage


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, FakeOpenAI]]:
    fake = FakeOpenAI(seed=3, log_path=tmp_path / "answers.jsonl", rules=[
        Rule(match="LIMITED", fault="429", times=1),
        Rule(match="BROKEN", fault="broken", times=None),
    ])
    srv = Server(fake)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/v1", fake
    srv.shutdown()
    srv.server_close()


def sse_events(text: str) -> list[dict]:
    return [json.loads(line[len("data: "):]) for line in text.splitlines()
            if line.startswith("data: ") and line != "data: [DONE]"]


def log_of(fake: FakeOpenAI) -> list[dict]:
    return [json.loads(line) for line in fake.log_path.read_text().splitlines()]


def user(text: str) -> dict:
    return {"role": "user", "content": [{"type": "input_text", "text": text}]}


def test_a_responses_stream_completes_with_the_seeded_usage_and_is_logged(server) -> None:
    url, fake = server
    reply = httpx.post(f"{url}/responses", json={"model": "gpt-5-codex", "stream": True, "input": [user("hi")]},
                       headers={"x-client-request-id": "thread-1"}, timeout=30)
    events = sse_events(reply.text)
    assert [e["type"] for e in events][0] == "response.created"
    completed = events[-1]
    assert completed["type"] == "response.completed"
    usage, expected = completed["response"]["usage"], seeded_usage(3, 1)
    assert (usage["input_tokens"], usage["input_tokens_details"]["cached_tokens"], usage["output_tokens"]) == (
        expected.input_tokens, expected.cached_tokens, expected.output_tokens)
    assert reply.headers["x-codex-primary-used-percent"] == "1.5"
    [entry] = log_of(fake)
    assert (entry["ok"], entry["status"], entry["client"]["x-client-request-id"]) == (True, 200, "thread-1")
    assert entry["usage"] == expected.as_dict() and entry["server_ms"] >= expected.server_ms


def test_a_run_directive_is_a_shell_call_then_text_once_its_output_is_back(server) -> None:
    url, _ = server
    tools = [{"type": "function", "name": "exec_command"}]
    first = sse_events(httpx.post(f"{url}/responses", json={"model": "m", "input": [user("go RUN: ls -l")], "tools": tools},
                                  timeout=30).text)
    call = next(e["item"] for e in first if e["type"] == "response.output_item.done")
    assert (call["type"], call["name"], json.loads(call["arguments"])) == ("function_call", "exec_command", {"cmd": "ls -l"})
    items = [user("go RUN: ls -l"), call, {"type": "function_call_output", "call_id": call["call_id"], "output": "x"}]
    second = sse_events(httpx.post(f"{url}/responses", json={"model": "m", "input": items, "tools": tools}, timeout=30).text)
    assert next(e["item"] for e in second if e["type"] == "response.output_item.done")["type"] == "message"


def test_a_scheduled_429_carries_retry_after_and_is_logged_failed_once(server) -> None:
    url, fake = server
    body = {"model": "m", "input": [user("LIMITED please")]}
    first = httpx.post(f"{url}/responses", json=body, timeout=30)
    second = httpx.post(f"{url}/responses", json=body, timeout=30)
    assert (first.status_code, first.headers["retry-after"], second.status_code) == (429, "1", 200)
    assert [(e["status"], e["ok"], e["usage"]) for e in log_of(fake)][0] == (429, False, None)


def test_a_broken_chat_stream_ends_without_usage_or_done_and_is_logged_failed(server) -> None:
    url, fake = server
    reply = httpx.post(f"{url}/chat/completions", json={"model": "gpt-5", "stream": True,
                                                        "messages": [{"role": "user", "content": "BROKEN"}]}, timeout=30)
    assert "[DONE]" not in reply.text
    assert all("usage" not in e for e in sse_events(reply.text))
    [entry] = log_of(fake)
    assert (entry["api"], entry["ok"], entry["fault"]) == ("chat", False, "broken")


def test_a_chat_stream_ends_with_usage_prompt_tokens_including_the_cached(server) -> None:
    url, _ = server
    reply = httpx.post(f"{url}/chat/completions", json={"model": "gpt-5", "stream": True,
                                                        "stream_options": {"include_usage": True},
                                                        "messages": [{"role": "user", "content": "hi"}]}, timeout=30)
    assert reply.text.rstrip().endswith("data: [DONE]")
    usage, expected = sse_events(reply.text)[-1]["usage"], seeded_usage(3, 1)
    assert (usage["prompt_tokens"], usage["prompt_tokens_details"]["cached_tokens"], usage["completion_tokens"]) == (
        expected.input_tokens, expected.cached_tokens, expected.output_tokens)
