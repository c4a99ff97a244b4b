"""The ingest source against a local HTTP server speaking opencode's API (SSE `/event`, REST)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from agentkit import free_port
from heady_agent.clock import ManualClock
from heady_agent.config import AgentConfig, IngestConfig
from heady_agent.protocol import Command
from heady_agent.sources.base import CommandError
from heady_agent.sources.ingest import IngestSource, parse_sse
from sourcekit import SqliteSourceContext

SID = "ses_6f1b2a3c4d5e6f7a8b9c0d1e2f"
DIRECTORY = "/home/dev/src/web-frontend"
WAIT_S = 30.0


class FakeOpencode:
    """`opencode serve` as far as the source uses it: GET /session, GET /event, POST abort / prompt_async."""

    def __init__(self) -> None:
        self.streams: list[asyncio.Queue[str | None]] = []
        self.posts: list[tuple[str, dict | None]] = []
        self.sessions = [{"id": SID, "title": "Fix the login form", "directory": DIRECTORY,
                          "time": {"created": 1_790_000_000_000, "updated": 1_790_000_000_000}}]
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        for queue in self.streams:
            queue.put_nowait(None)
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def send(self, event: dict) -> None:
        for queue in self.streams:
            queue.put_nowait(f"data: {json.dumps(event)}\n\n")

    def send_raw(self, text: str) -> None:
        for queue in self.streams:
            queue.put_nowait(text)

    def drop_streams(self) -> None:
        for queue in self.streams:
            queue.put_nowait(None)
        self.streams.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await reader.readline()
            method, path, _ = request.decode().split(" ", 2)
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode().partition(":")
                if name.lower() == "content-length":
                    length = int(value)
            body = json.loads(await reader.readexactly(length)) if length else None
            if method == "GET" and path == "/event":
                await self._stream(writer)
                return
            if method == "GET" and path == "/session":
                self._respond(writer, 200, json.dumps(self.sessions))
            elif method == "POST" and path.startswith("/session/"):
                self.posts.append((path, body))
                self._respond(writer, 200 if path.endswith("/abort") else 204, "true" if path.endswith("/abort") else "")
            else:
                self._respond(writer, 404, "not found")
            await writer.drain()
        except (ConnectionError, ValueError):
            pass
        finally:
            writer.close()

    @staticmethod
    def _respond(writer: asyncio.StreamWriter, status: int, body: str) -> None:
        data = body.encode()
        writer.write(f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n"
                     f"Connection: close\r\n\r\n".encode() + data)

    async def _stream(self, writer: asyncio.StreamWriter) -> None:
        queue: asyncio.Queue[str | None] = asyncio.Queue()
        self.streams.append(queue)
        # Chunked, as opencode's server sends its stream; a chunk may end mid-line.
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")
        first = f"data: {json.dumps({'type': 'server.connected', 'properties': {}})}\n\n"
        self._chunk(writer, first[:10])
        self._chunk(writer, first[10:])
        await writer.drain()
        while (text := await queue.get()) is not None:
            self._chunk(writer, text)
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    @staticmethod
    def _chunk(writer: asyncio.StreamWriter, text: str) -> None:
        data = text.encode()
        writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")


def assistant(msg_id: str, *, completed: bool = True, error: dict | None = None, cost: float = 0.0123) -> dict:
    info = {
        "id": msg_id, "sessionID": SID, "role": "assistant", "modelID": "claude-sonnet-4-5", "providerID": "anthropic",
        "cost": cost,
        "tokens": {"input": 1200, "output": 300, "reasoning": 50, "cache": {"read": 15000, "write": 800}},
        "time": {"created": 1_790_000_010_000, **({"completed": 1_790_000_012_500} if completed else {})},
    }
    if error is not None:
        info["error"] = error
    return {"type": "message.updated", "properties": {"info": info}}


def status(kind: str) -> dict:
    return {"type": "session.status", "properties": {"sessionID": SID, "status": {"type": kind}}}


@pytest.fixture
async def opencode():
    server = FakeOpencode()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def ctx(tmp_path: Path, opencode: FakeOpencode) -> SqliteSourceContext:
    config = AgentConfig(sources=["ingest"], ingest=IngestConfig(opencode_url=opencode.url, reconnect_max_s=0.2))
    return SqliteSourceContext(tmp_path / "journal.db", config, ManualClock())


async def until(condition, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_S
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"{what} did not happen within {WAIT_S} s")
        await asyncio.sleep(0.02)


@pytest.fixture
async def source(ctx, opencode):
    src = IngestSource(ctx)
    await src.start()
    await until(lambda: opencode.streams and src.connected, "connection to /event")
    yield src
    await src.stop()


async def test_a_busy_session_starts_with_its_title_and_directory(source, opencode, ctx):
    opencode.send(status("busy"))
    await until(lambda: ctx.events("session.started"), "session.started")
    [started] = ctx.events("session.started")
    assert started.session == SID
    assert started.data == {"source": "opencode", "project": "web-frontend", "cwd": DIRECTORY, "pid": None,
                            "model": None, "title": "Fix the login form"}
    assert [s.state for s in source.sessions()] == ["running"]


async def test_a_completed_assistant_message_is_one_call_with_opencodes_cost(source, opencode, ctx):
    opencode.send(assistant("msg_1", completed=False))
    opencode.send(assistant("msg_1"))
    opencode.send(assistant("msg_1"))
    opencode.send(status("idle"))
    await until(lambda: ctx.events("session.state"), "idle state")
    [call] = [e.data for e in ctx.events("llm.call")]
    assert (call["provider"], call["model"], call["cost_usd"]) == ("anthropic", "claude-sonnet-4-5", 0.0123)
    assert (call["input_tokens"], call["output_tokens"]) == (1200, 350)
    assert (call["cache_read_tokens"], call["cache_creation_tokens"]) == (15000, 800)
    assert call["latency_ms"] == 2500.0 and call["ok"] is True
    assert [s.state for s in source.sessions()] == ["idle"]


async def test_a_failed_message_is_a_failed_call_and_an_aborted_one_is_not_a_call(source, opencode, ctx):
    opencode.send(assistant("msg_1", error={"name": "APIError", "data": {"message": "429", "statusCode": 429}}))
    opencode.send(assistant("msg_2", error={"name": "MessageAbortedError", "data": {}}))
    opencode.send(status("idle"))
    await until(lambda: ctx.events("session.state"), "idle state")
    assert [(e.data["ok"], e.data["error"]) for e in ctx.events("llm.call")] == [(False, "APIError")]


async def test_compaction_and_deletion(source, opencode, ctx):
    opencode.send(status("busy"))
    opencode.send({"type": "session.compacted", "properties": {"sessionID": SID}})
    opencode.send({"type": "session.deleted", "properties": {"info": opencode.sessions[0]}})
    await until(lambda: ctx.events("session.ended"), "session.ended")
    assert [e.data["state"] for e in ctx.events("session.state")] == ["compacted"]
    assert ctx.events("session.ended")[0].data == {"exit_code": None, "reason": "deleted"}
    assert source.sessions() == []


async def test_malformed_events_are_skipped_and_the_stream_goes_on(source, opencode, ctx):
    opencode.send_raw("data: {broken\n\n: keep-alive comment\n\n")
    opencode.send({"type": "server.heartbeat", "properties": {}})
    opencode.send(status("busy"))
    await until(lambda: ctx.events("session.started"), "session.started")
    assert source.skipped_events == 1


async def test_the_source_reconnects_after_the_stream_drops(source, opencode, ctx):
    opencode.drop_streams()
    await until(lambda: opencode.streams, "reconnection")
    await until(lambda: source.connected, "connected again")
    opencode.send(status("busy"))
    await until(lambda: ctx.events("session.started"), "session.started after reconnecting")


async def test_kill_aborts_the_turn_and_prompt_posts_the_text(source, opencode, ctx):
    opencode.send(status("busy"))
    await until(lambda: source.owns(SID), "session known")
    killed = await source.command(Command(id="1", action="session.kill", target=SID))
    prompted = await source.command(Command(id="2", action="session.prompt", target=SID, args={"text": "now the tests"}))
    assert (killed["status"], prompted["status"]) == (200, 204)
    assert opencode.posts == [
        (f"/session/{SID}/abort", None),
        (f"/session/{SID}/prompt_async", {"parts": [{"type": "text", "text": "now the tests"}]}),
    ]


async def test_commands_opencode_cannot_do_are_refused(source, opencode, ctx):
    opencode.send(status("busy"))
    await until(lambda: source.owns(SID), "session known")
    for action, code in [("session.restart", "not_allowed"), ("session.pause", "not_supported"),
                         ("session.renice", "bad_args")]:
        with pytest.raises(CommandError) as err:
            await source.command(Command(id="1", action=action, target=SID))
        assert err.value.code == code
    with pytest.raises(CommandError) as err:
        await source.command(Command(id="1", action="session.kill", target="ses_unknown"))
    assert err.value.code == "unknown_session"


async def test_an_unreachable_server_is_noticed_once_and_retried(tmp_path):
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    config = AgentConfig(sources=["ingest"], ingest={"opencode_url": closed, "reconnect_max_s": 0.1})
    ctx = SqliteSourceContext(tmp_path / "journal.db", config, ManualClock())
    src = IngestSource(ctx)
    await src.start()
    try:
        await until(lambda: ctx.events("agent.notice"), "a notice")
        await asyncio.sleep(0.5)
        notices = ctx.events("agent.notice")
        assert len(notices) == 1 and "unavailable" in notices[0].data["message"]
        assert not src.connected
    finally:
        await src.stop()


def test_sse_lines_join_multi_line_data_and_ignore_comments():
    buffer: list[str] = []
    got = [parse_sse(buffer, line) for line in (": ping", "id: 7", "data: {\"a\":", "data:  1}", "")]
    assert got == [None, None, None, None, '{"a":\n 1}']


def permission_asked() -> dict:
    """A permission request as opencode 1.x puts it on /event (bash wants to run a command)."""
    return {"type": "permission.asked", "properties": {
        "id": "per_01JQ7Z3H4K", "sessionID": SID, "permission": "bash", "patterns": ["git push origin main"],
        "metadata": {}, "always": ["git push *"], "tool": {"messageID": "msg_1", "callID": "call_1"}}}


async def test_a_permission_request_makes_the_session_wait_until_it_is_answered(source, opencode, ctx):
    opencode.send(status("busy"))
    opencode.send(permission_asked())
    opencode.send({"type": "permission.replied", "properties": {"sessionID": SID, "requestID": "per_01JQ7Z3H4K", "reply": "once"}})
    await until(lambda: len(ctx.events("session.state")) == 2, "waiting, then running")
    assert [(e.data["state"], e.data["reason"]) for e in ctx.events("session.state")] == [
        ("waiting", "permission"), ("running", "opencode permission.replied")]


async def test_a_question_to_the_user_is_a_wait_for_a_question(source, opencode, ctx):
    opencode.send(status("busy"))
    opencode.send({"type": "question.asked", "properties": {"id": "que_1", "sessionID": SID, "questions": []}})
    await until(lambda: ctx.events("session.state"), "waiting")
    assert [s.state for s in source.sessions()] == ["waiting"]
    assert ctx.events("session.state")[0].data == {"state": "waiting", "reason": "question"}
