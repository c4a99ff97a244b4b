"""The opencode source against a local HTTP server speaking opencode's API (SSE `/global/event`, REST).
Replays of real opencode output are in test_source_opencode_real.py."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path

import pytest

from agentkit import free_port
from heady_agent.clock import ManualClock
from heady_agent.config import AgentConfig
from heady_agent.protocol import Command
from heady_agent.sources import load_source
from heady_agent.sources.base import CommandError
from heady_agent.sources.opencode import OpencodeSource, parse_sse
from sourcekit import SqliteSourceContext

SID = "ses_6f1b2a3c4d5e6f7a8b9c0d1e2f"
DIRECTORY = "/home/dev/src/web-frontend"
WAIT_S = 30.0


class FakeOpencode:
    """`opencode serve` as far as the source uses it: GET /experimental/session, /session/status,
    /session/{id}/message, /global/event; POST abort / prompt_async; basic auth when `password` is set."""

    def __init__(self, password: str | None = None, *, experimental: bool = True) -> None:
        self.password = password
        self.experimental = experimental  # serves GET /experimental/session (all directories)
        self.streams: list[asyncio.Queue[str | None]] = []
        self.posts: list[tuple[str, dict | None]] = []
        self.headers: list[dict[str, str]] = []
        self.busy: dict[str, dict] = {}
        self.messages: dict[str, list] = {}
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
        wrapped = {"directory": DIRECTORY, "project": "global", "payload": event}
        for queue in self.streams:
            queue.put_nowait(f"data: {json.dumps(wrapped)}\n\n")

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
            method, target, _ = request.decode().split(" ", 2)
            path = target.split("?")[0]
            headers: dict[str, str] = {}
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode().partition(":")
                headers[name.strip().lower()] = value.strip()
            self.headers.append(headers)
            length = int(headers.get("content-length", "0"))
            body = json.loads(await reader.readexactly(length)) if length else None
            expected = "Basic " + base64.b64encode(f"opencode:{self.password}".encode()).decode()
            if self.password is not None and headers.get("authorization") != expected:
                self._respond(writer, 401, "")
            elif method == "GET" and path == "/global/event":
                await self._stream(writer)
                return
            elif method == "GET" and (path == "/session" or path == "/experimental/session" and self.experimental):
                self._respond(writer, 200, json.dumps(self.sessions))
            elif method == "GET" and path == "/session/status":
                self._respond(writer, 200, json.dumps(self.busy))
            elif method == "GET" and path.startswith("/session/") and path.endswith("/message"):
                self._respond(writer, 200, json.dumps(self.messages.get(path.split("/")[2], [])))
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
        first = f"data: {json.dumps({'payload': {'type': 'server.connected', 'properties': {}}})}\n\n"
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
    return SqliteSourceContext(tmp_path / "journal.db", source_config(tmp_path, opencode.url), ManualClock())


def source_config(tmp_path: Path, url: str, **extra: object) -> AgentConfig:
    """No password, and a db path with no opencode.db: only the server is read."""
    return AgentConfig.model_validate({"sources": ["opencode"], "opencode": {
        "opencode_url": url, "reconnect_max_s": 0.2, "password_env": None,
        "db_path": str(tmp_path / "absent" / "opencode.db"), **extra}})


async def until(condition, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_S
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"{what} did not happen within {WAIT_S} s")
        await asyncio.sleep(0.02)


@pytest.fixture
async def source(ctx, opencode):
    src = OpencodeSource(ctx)
    await src.start()
    await until(lambda: opencode.streams and src.connected, "connection to /global/event")
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
    assert [(e.data["ok"], e.data["error"]) for e in ctx.events("llm.call")] == [(False, "APIError 429")]


async def test_a_manual_compaction_reads_manual_from_the_compaction_parts_auto_flag(source, opencode, ctx):
    opencode.send(status("busy"))
    opencode.send({"type": "message.part.updated", "properties": {"part": {
        "id": "prt_1", "messageID": "msg_user", "sessionID": SID, "type": "compaction", "auto": False}}})
    summary = assistant("msg_summary")
    summary["properties"]["info"]["summary"] = True
    opencode.send(summary)
    opencode.send({"type": "session.compacted", "properties": {"sessionID": SID}})
    opencode.send(status("idle"))
    await until(lambda: len(ctx.events("session.state")) == 2, "compacted, then idle")
    assert [(e.data["state"], e.data["reason"]) for e in ctx.events("session.state")] == [
        ("compacted", "manual"), ("idle", "opencode idle")]


async def test_a_deleted_session_ends(source, opencode, ctx):
    opencode.send(status("busy"))
    opencode.send({"type": "session.deleted", "properties": {"info": opencode.sessions[0]}})
    await until(lambda: ctx.events("session.ended"), "session.ended")
    assert ctx.events("session.ended")[0].data == {"exit_code": None, "reason": "deleted"}
    assert source.sessions() == []


def session_event(kind: str, title: str) -> dict:
    return {"type": kind, "properties": {"sessionID": SID, "info": {
        "id": SID, "title": title, "directory": DIRECTORY, "time": {"created": 1_790_000_000_000}}}}


async def test_a_new_unprompted_session_is_idle(source, opencode, ctx):
    opencode.send(session_event("session.created", "New session - 2026-12-05T08:34:11.093Z"))
    await until(lambda: ctx.events("session.started"), "session.started")
    assert [s.state for s in source.sessions()] == ["idle"]


async def test_the_placeholder_title_is_not_announced_and_the_real_title_follows(source, opencode, ctx):
    opencode.send(session_event("session.created", "New session - 2026-12-05T08:34:11.093Z"))
    await until(lambda: ctx.events("session.started"), "session.started")
    opencode.send(session_event("session.updated", "Fix the login form"))
    await until(lambda: source.sessions()[0].title == "Fix the login form", "the real title")
    assert ctx.events("session.started")[0].data["title"] is None


async def test_a_session_busy_when_the_stream_dropped_is_idle_after_reconnect_when_the_server_says_so(
        source, opencode, ctx):
    opencode.send(status("busy"))
    await until(lambda: [s.state for s in source.sessions()] == ["running"], "running")
    opencode.drop_streams()  # opencode restarted: the session's turn died with it
    await until(lambda: [s.state for s in source.sessions()] == ["idle"], "idle after the re-check")
    assert ctx.events("session.state")[-1].data == {"state": "idle", "reason": "opencode not busy after reconnect"}


async def test_a_password_protected_server_is_read_with_basic_auth_and_the_host_header_names_only_the_host(
        tmp_path, monkeypatch):
    server = FakeOpencode(password="s3cret")
    await server.start()
    monkeypatch.setenv("HEADY_TEST_OPENCODE_PASSWORD", "s3cret")
    config = source_config(tmp_path, server.url, password_env="HEADY_TEST_OPENCODE_PASSWORD")
    src = OpencodeSource(SqliteSourceContext(tmp_path / "journal.db", config, ManualClock()))
    await src.start()
    try:
        await until(lambda: src.connected, "connected with the password")
        assert {h["host"] for h in server.headers} == {f"127.0.0.1:{server.port}"}
    finally:
        await src.stop()
        await server.stop()


async def test_a_server_without_the_all_directories_list_is_backfilled_from_its_own(tmp_path):
    server = FakeOpencode(experimental=False)
    server.messages = {SID: [{"info": assistant("msg_1")["properties"]["info"], "parts": []}]}
    await server.start()
    ctx = SqliteSourceContext(tmp_path / "journal.db", source_config(tmp_path, server.url), ManualClock())
    src = OpencodeSource(ctx)
    await src.start()
    try:
        await until(lambda: src.connected, "connected")
        assert [e.session for e in ctx.events("llm.call")] == [SID]
    finally:
        await src.stop()
        await server.stop()


async def test_a_turn_stopped_while_opencode_retried_is_one_failed_call(source, opencode, ctx):
    opencode.send({"type": "session.status", "properties": {"sessionID": SID, "status": {
        "type": "retry", "attempt": 3, "message": "Overloaded", "next": 1_790_000_011_000}}})
    stopped = assistant("msg_1", error={"name": "MessageAbortedError", "data": {}}, cost=0.0)
    stopped["properties"]["info"]["tokens"] = {"input": 0, "output": 0, "reasoning": 0, "cache": {"read": 0, "write": 0}}
    opencode.send(stopped)
    opencode.send(status("idle"))
    await until(lambda: ctx.events("llm.call"), "the failed call")
    assert [(e.data["ok"], e.data["error"]) for e in ctx.events("llm.call")] == [
        (False, "gave up after 3 failed attempts: Overloaded")]


def test_the_password_file_wins_over_the_environment(tmp_path, monkeypatch):
    (tmp_path / "pw").write_text("from-file\n")
    monkeypatch.setenv("OPENCODE_SERVER_PASSWORD", "from-env")
    config = AgentConfig.model_validate({"opencode": {"password_file": str(tmp_path / "pw")}})
    assert config.opencode.resolve_password() == "from-file"


def test_the_old_ingest_name_and_section_still_configure_the_opencode_source():
    config = AgentConfig.model_validate({"sources": ["ingest"], "ingest": {"opencode_url": "http://127.0.0.1:4097"}})
    assert load_source("ingest") is OpencodeSource
    assert config.opencode.opencode_url == "http://127.0.0.1:4097"


def test_listing_both_names_of_the_opencode_source_is_refused():
    with pytest.raises(ValueError, match="'ingest' is the old name of 'opencode'"):
        AgentConfig.model_validate({"sources": ["opencode", "ingest"]})


def test_a_url_with_credentials_is_refused_with_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="must not carry credentials; use password_env or password_file"):
        source_config(tmp_path, "http://opencode:s3cret@127.0.0.1:4096")


async def test_an_unknown_event_type_and_token_field_are_counted_and_noticed_once(source, opencode, ctx):
    opencode.send({"type": "session.teleported", "properties": {}})
    opencode.send({"type": "session.teleported", "properties": {}})
    message = assistant("msg_1")
    message["properties"]["info"]["tokens"]["cache"]["write_1h"] = 500
    opencode.send(message)
    await until(lambda: ctx.events("llm.call"), "the call")
    assert source.format_radar()["unknown_record_type"] == 2
    assert source.format_radar()["unknown_field"] == 1
    notices = [e.data["message"] for e in ctx.events("agent.notice")]
    assert [n for n in notices if "session.teleported" in n] == [
        "opencode: new record type 'session.teleported'; its data may be missed"]
    assert any("tokens.cache.write_1h" in n for n in notices)


async def test_titles_models_and_errors_from_opencode_lose_control_characters(source, opencode, ctx):
    opencode.send(session_event("session.created", "Fix\x1b[31m the form\x07"))
    message = assistant("msg_1", error={"name": "API\x1b]0;Error", "data": {"statusCode": 500}})
    message["properties"]["info"]["modelID"] = "claude\x00-sonnet"
    opencode.send(message)
    await until(lambda: ctx.events("llm.call"), "the call")
    [call] = [e.data for e in ctx.events("llm.call")]
    assert (call["model"], call["error"]) == ("claude-sonnet", "API]0;Error 500")
    assert ctx.events("session.started")[0].data["title"] == "Fix[31m the form"


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
    ctx = SqliteSourceContext(tmp_path / "journal.db", source_config(tmp_path, closed), ManualClock())
    src = OpencodeSource(ctx)
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
