"""Claude Code transcripts and registry, as SOURCES.md describes them, read by the real source."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import psutil
import pytest

from agentkit import recv_json, recv_until, running_agent, wait_until, ws_connect
from heady_agent.clock import ManualClock
from heady_agent.config import AgentConfig, ClaudeCodeConfig
from heady_agent.protocol import Command
from heady_agent.sources.base import CommandError
from heady_agent.sources.managed import MANAGED_SESSION_ENV
from heady_agent.sources.claude_code import CLIENT_SCAN_EVERY_S, ClaudeCodeSource, resolve_roots
from sourcekit import SqliteSourceContext

T0 = 1_790_000_000.0  # the transcripts' time; the clock starts a minute later
SID = "4f1c2b9e-0d7a-4c55-9a57-2d8f7e0c1a11"
CWD = "/home/dev/src/billing-service"


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def envelope(kind: str, uuid: str, parent: str | None, t: float, sid: str = SID, **extra) -> dict:
    return {
        "type": kind,
        "uuid": uuid,
        "parentUuid": parent,
        "sessionId": sid,
        "cwd": CWD,
        "timestamp": iso(t),
        "isSidechain": False,
        "version": "2.0.31",
        "gitBranch": "fix/retry-budget",
        **extra,
    }


def user(uuid: str, parent: str | None, t: float, **extra) -> dict:
    return envelope("user", uuid, parent, t, message={"role": "user", "content": "run the tests"}, **extra)


def usage(inp=12, out=340, write=2048, read=18000, split=None, speed=None) -> dict:
    u = {"input_tokens": inp, "output_tokens": out, "cache_creation_input_tokens": write, "cache_read_input_tokens": read}
    if split is not None:
        u["cache_creation"] = {"ephemeral_5m_input_tokens": split[0], "ephemeral_1h_input_tokens": split[1]}
    if speed is not None:
        u["speed"] = speed
    return u


def assistant(uuid, parent, t, msg_id, req_id="req_011CU", model="claude-sonnet-4-5-20250929", use=None, **extra) -> dict:
    message = {"id": msg_id, "type": "message", "role": "assistant", "model": model, "usage": use or usage(),
               "content": [{"type": "text", "text": "done"}]}
    rec = envelope("assistant", uuid, parent, t, message=message, **extra)
    if req_id is not None:
        rec["requestId"] = req_id
    return rec


def lines(*records) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


class Home:
    """A Claude Code config dir in tmp_path, and a source reading it through a SQLite-backed context."""

    def __init__(self, tmp_path: Path) -> None:
        self.root = tmp_path / "claude"
        self.project_dir = self.root / "projects" / "-home-dev-src-billing-service"
        self.project_dir.mkdir(parents=True)
        (self.root / "sessions").mkdir()
        self.transcript = self.project_dir / f"{SID}.jsonl"
        self.clock = ManualClock(T0 + 60)
        self.config = AgentConfig(sources=["claude-code"], claude_code=ClaudeCodeConfig(roots=[str(self.root)], poll_interval_s=0.05))
        self.ctx = SqliteSourceContext(tmp_path / "journal.db", self.config, self.clock)

    def source(self) -> ClaudeCodeSource:
        return ClaudeCodeSource(self.ctx)

    def append(self, text: str, path: Path | None = None) -> None:
        with open(path or self.transcript, "a", encoding="utf-8") as fh:
            fh.write(text)

    def calls(self) -> list[dict]:
        return [e.data for e in self.ctx.events("llm.call")]

    def register(self, pid: int, status: str = "busy", sid: str = SID) -> Path:
        path = self.root / "sessions" / f"{pid}.json"
        now_ms = int(time.time() * 1000)
        path.write_text(json.dumps({"pid": pid, "sessionId": sid, "cwd": CWD, "startedAt": now_ms - 1000,
                                    "version": "2.0.31", "status": status, "updatedAt": now_ms}))
        return path


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    """The sessions' working directory, real so a Claude Code process can work in it."""
    path = tmp_path / "src" / "billing-service"
    path.mkdir(parents=True)
    monkeypatch.setattr(sys.modules[__name__], "CWD", str(path))
    return path


def spawn_claude(tmp_path: Path, cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """A process the system names `claude` (as the native Claude Code binary is), working in `cwd`."""
    exe = tmp_path / "bin" / "claude"
    exe.parent.mkdir(exist_ok=True)
    if not exe.exists():
        exe.symlink_to(sys.executable)
    return subprocess.Popen([str(exe), "-c", "import time; time.sleep(300)"], cwd=cwd, env={**os.environ, **(env or {})})


@pytest.fixture
def claude_process(tmp_path, workdir):
    proc = spawn_claude(tmp_path, workdir)
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=30)


@pytest.fixture
def home(tmp_path, claude_process) -> Home:
    return Home(tmp_path)


@pytest.fixture
def child():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=30)


def command(action: str, target: str, **args) -> Command:
    return Command.model_validate({"id": "c1", "action": action, "target": target, "args": args})


# --- calls ------------------------------------------------------------------------------------------


def test_one_api_response_written_over_several_lines_is_one_call(home):
    home.append(lines(
        user("u1", None, T0),
        assistant("a1", "u1", T0 + 2.5, "msg_01", use=usage(out=10)),
        assistant("a2", "a1", T0 + 2.6, "msg_01", use=usage(out=10)),
        assistant("a3", "a2", T0 + 2.7, "msg_01", use=usage(out=10)),
    ))
    home.source().scan()
    [call] = home.calls()
    assert call["provider"] == "anthropic" and call["model"] == "claude-sonnet-4-5-20250929"
    assert (call["input_tokens"], call["output_tokens"]) == (12, 10)
    assert (call["cache_creation_tokens"], call["cache_read_tokens"]) == (2048, 18000)
    assert call["latency_ms"] == pytest.approx(2500.0)
    assert call["ok"] is True and call["cost_usd"] is None


def test_responses_without_request_id_are_keyed_by_message_id(home):
    home.append(lines(
        user("u1", None, T0),
        assistant("a1", "u1", T0 + 1, "msg_01", req_id=None),
        assistant("a2", "a1", T0 + 1, "msg_01", req_id=None),
        assistant("a3", "a2", T0 + 2, "msg_02", req_id=None),
    ))
    home.source().scan()
    assert len(home.calls()) == 2


def test_cache_write_split_and_speed_are_passed_on(home):
    home.append(lines(user("u1", None, T0), assistant("a1", "u1", T0 + 1, "msg_01",
                                                      use=usage(write=3000, split=(1000, 2000), speed="fast"))))
    home.source().scan()
    [call] = home.calls()
    assert (call["cache_creation_5m_tokens"], call["cache_creation_1h_tokens"]) == (1000, 2000)
    assert call["speed"] == "fast"


def test_an_api_error_message_is_a_failed_call_and_retries_are_not(home):
    home.append(lines(
        user("u1", None, T0),
        assistant("a1", "u1", T0 + 1, "msg_01"),
        user("u2", "a1", T0 + 2),
        envelope("system", "s1", "u2", T0 + 3, subtype="api_error", level="error", retryAttempt=1),
        envelope("system", "s2", "s1", T0 + 5, subtype="api_error", level="error", retryAttempt=2),
        assistant("a2", "s2", T0 + 7, "msg_err", model="<synthetic>", use=usage(0, 0, 0, 0),
                  isApiErrorMessage=True, error="rate_limit", apiErrorStatus=429),
    ))
    home.source().scan()
    ok, failed = home.calls()
    assert ok["ok"] is True
    assert (failed["ok"], failed["error"]) == (False, "rate_limit")
    assert failed["model"] == "claude-sonnet-4-5-20250929" and failed["output_tokens"] == 0


def test_an_api_error_without_an_error_name_reports_its_status(home):
    home.append(lines(user("u1", None, T0), assistant("a1", "u1", T0 + 1, "msg_err", model="<synthetic>",
                                                      isApiErrorMessage=True, apiErrorStatus=529)))
    home.source().scan()
    assert home.calls()[0]["error"] == "http_529"


def test_old_transcripts_carry_their_own_cost(home):
    home.append(lines(user("u1", None, T0), assistant("a1", "u1", T0 + 1, "msg_01", costUSD=0.0123)))
    home.source().scan()
    assert home.calls()[0]["cost_usd"] == pytest.approx(0.0123)


def test_subagent_transcripts_count_towards_their_session(home):
    home.append(lines(user("u1", None, T0), assistant("a1", "u1", T0 + 1, "msg_main")))
    sub = home.project_dir / SID / "subagents" / "agent-7a2c.jsonl"
    sub.parent.mkdir(parents=True)
    home.append(lines(
        user("su1", None, T0 + 2, isSidechain=True, agentId="7a2c"),
        assistant("sa1", "su1", T0 + 4, "msg_sub", model="claude-haiku-4-5-20251001", isSidechain=True),
    ), sub)
    home.source().scan()
    calls = home.ctx.events("llm.call")
    assert [(e.session, e.data["model"]) for e in calls] == [
        (SID, "claude-sonnet-4-5-20250929"), (SID, "claude-haiku-4-5-20251001")]


# --- sessions -----------------------------------------------------------------------------------


def test_a_new_session_starts_with_cwd_project_model_and_branch(home):
    home.append(lines(user("u1", None, T0), assistant("a1", "u1", T0 + 1, "msg_01")))
    source = home.source()
    source.scan()
    [started] = home.ctx.events("session.started")
    assert started.session == SID and started.ts == pytest.approx(T0)
    assert started.data == {"source": "claude-code", "project": "billing-service", "cwd": CWD, "pid": None,
                            "model": "claude-sonnet-4-5-20250929", "title": "fix/retry-budget"}
    assert [s.id for s in source.sessions()] == [SID]


def test_compaction_is_a_compacted_state_and_work_after_it_is_running(home):
    home.append(lines(
        user("u1", None, T0),
        assistant("a1", "u1", T0 + 1, "msg_01"),
        envelope("system", "c1", "a1", T0 + 2, subtype="compact_boundary",
                 compactMetadata={"trigger": "auto", "preTokens": 167000, "postTokens": 41000}),
        user("u2", "c1", T0 + 2, isCompactSummary=True),
        envelope("summary", "x", None, T0 + 2, summary="Retry budget work"),
        assistant("a2", "u2", T0 + 4, "msg_02"),
    ))
    home.source().scan()
    states = [(e.data["state"], e.data["reason"]) for e in home.ctx.events("session.state")]
    assert states == [("compacted", "auto"), ("running", "continued after compaction")]
    assert len(home.calls()) == 2


def test_a_transcript_only_session_ends_after_ten_quiet_minutes(home):
    home.append(lines(user("u1", None, T0), assistant("a1", "u1", T0 + 1, "msg_01")))
    source = home.source()
    source.scan()
    home.clock.advance(500)
    source.scan()
    assert home.ctx.events("session.ended") == []
    home.clock.advance(200)
    source.scan()
    [ended] = home.ctx.events("session.ended")
    assert ended.data == {"exit_code": None, "reason": "inactive"} and ended.ts == pytest.approx(T0 + 1)
    assert source.sessions() == []


# --- robustness ---------------------------------------------------------------------------------


def test_garbage_lines_are_skipped_counted_and_noticed_once_per_file(home):
    home.append(lines(user("u1", None, T0)) + "{not json\n" + "[1, 2]\n" + lines(assistant("a1", "u1", T0 + 1, "msg_01")))
    source = home.source()
    source.scan()
    assert len(home.calls()) == 1 and source.skipped_lines == 2
    home.append("\x00\x01 binary junk\n" + lines(assistant("a2", "a1", T0 + 2, "msg_02")))
    source.scan()
    assert len(home.calls()) == 2 and source.skipped_lines == 3
    notices = [e.data for e in home.ctx.events("agent.notice")]
    assert len(notices) == 1 and "skipped 2 unreadable" in notices[0]["message"] and notices[0]["severity"] == "warning"


def test_a_partial_last_line_waits_for_its_end(home):
    text = lines(user("u1", None, T0), assistant("a1", "u1", T0 + 1, "msg_01"))
    home.append(text[:-40])
    source = home.source()
    source.scan()
    assert home.calls() == [] and source.skipped_lines == 0
    home.append(text[-40:])
    source.scan()
    assert len(home.calls()) == 1 and source.skipped_lines == 0


def test_a_restarted_source_neither_repeats_nor_skips_a_call(home):
    home.append(lines(user("u1", None, T0), assistant("a1", "u1", T0 + 1, "msg_01"),
                      assistant("a1b", "a1", T0 + 1, "msg_01")))
    first = home.source()
    first.scan()
    # The response goes on over lines written while the agent was down, then new calls follow.
    home.append(lines(assistant("a1c", "a1b", T0 + 1, "msg_01"), user("u2", "a1c", T0 + 5),
                      assistant("a2", "u2", T0 + 8, "msg_02")))
    second = home.source()
    second.scan()
    second.scan()
    calls = home.ctx.events("llm.call")
    assert [c.data["latency_ms"] for c in calls] == [pytest.approx(1000.0), pytest.approx(3000.0)]
    assert len(home.ctx.events("session.started")) == 1
    assert [s.id for s in second.sessions()] == [SID]


def test_a_response_copied_into_another_transcript_is_not_counted_again(home):
    home.append(lines(user("u1", None, T0), assistant("a1", "u1", T0 + 1, "msg_01")))
    home.source().scan()
    resumed = home.project_dir / "5d2e0c1b-resumed.jsonl"
    home.append(lines(assistant("a1", "u1", T0 + 1, "msg_01", sid="5d2e0c1b-resumed"),
                      user("u9", "a1", T0 + 100, sid="5d2e0c1b-resumed"),
                      assistant("a9", "u9", T0 + 102, "msg_09", sid="5d2e0c1b-resumed")), resumed)
    home.source().scan()
    assert [c.data["latency_ms"] for c in home.ctx.events("llm.call")] == [pytest.approx(1000.0), pytest.approx(2000.0)]


async def test_lines_appended_while_the_source_runs_are_picked_up(home):
    source = home.source()
    await source.start()
    try:
        home.append(lines(user("u1", None, T0), assistant("a1", "u1", T0 + 1, "msg_01")))
        for _ in range(600):
            if home.calls():
                break
            await asyncio.sleep(0.05)
        assert len(home.calls()) == 1
    finally:
        await source.stop()


# --- roots --------------------------------------------------------------------------------------


def test_claude_config_dir_is_a_comma_separated_list_used_alone(tmp_path):
    roots = resolve_roots([str(tmp_path / "c")], {"CLAUDE_CONFIG_DIR": f"{tmp_path}/a, {tmp_path}/b"})
    assert roots == [tmp_path / "a", tmp_path / "b"]


def test_without_claude_config_dir_the_configured_roots_are_used(tmp_path):
    assert resolve_roots(["~/.claude", str(tmp_path)], {"CLAUDE_CONFIG_DIR": " "}) == [
        Path("~/.claude").expanduser(), tmp_path]


# --- the registry and commands ------------------------------------------------------------------


def test_registry_status_drives_running_idle_and_completed(home, child):
    entry = home.register(child.pid, "busy")
    source = home.source()
    source.scan()
    [started] = home.ctx.events("session.started")
    assert started.data["pid"] == child.pid and started.data["project"] == "billing-service"
    assert [s.state for s in source.sessions()] == ["running"]
    home.register(child.pid, "waiting")
    source.scan()
    assert [s.state for s in source.sessions()] == ["waiting"]
    entry.unlink()
    source.scan()
    assert [e.data["reason"] for e in home.ctx.events("session.ended")] == ["exited"]
    assert source.sessions() == []


def test_a_registry_entry_whose_process_died_is_completed(home, child):
    home.register(child.pid, "busy")
    source = home.source()
    source.scan()
    child.kill()
    child.wait(timeout=30)
    source.scan()
    assert [e.data["reason"] for e in home.ctx.events("session.ended")] == ["process gone"]


async def test_pause_resume_renice_and_kill_act_on_the_registered_process(home, child):
    home.register(child.pid, "busy")
    source = home.source()
    source.scan()
    assert (await source.command(command("session.pause", SID)))["state"] == "paused"
    # A signal is delivered when the kernel next schedules the process: wait for it to take effect.
    await wait_until(lambda: psutil.Process(child.pid).status() == psutil.STATUS_STOPPED, what="the process stopped")
    assert (await source.command(command("session.resume", SID)))["state"] == "running"
    await wait_until(lambda: psutil.Process(child.pid).status() != psutil.STATUS_STOPPED, what="the process continued")
    before = psutil.Process(child.pid).nice()
    reniced = await source.command(command("session.renice", SID, nice=10))
    assert (reniced["nice"], reniced["previous"]) == (10, before)  # what a revert sets back
    assert psutil.Process(child.pid).nice() == 10
    detail = await source.command(command("session.kill", SID))
    assert detail["signal"] == "SIGTERM"
    assert child.wait(timeout=30) != 0
    states = [e.data["state"] for e in home.ctx.events("session.state")]
    assert states == ["paused", "running"]


@pytest.mark.parametrize("action,args", [("session.restart", {}), ("session.prompt", {"text": "continue"})])
async def test_restart_and_prompt_are_not_allowed_on_watched_sessions(home, child, action, args):
    home.register(child.pid, "busy")
    source = home.source()
    source.scan()
    with pytest.raises(CommandError) as err:
        await source.command(command(action, SID, **args))
    assert err.value.code == "not_allowed"


async def test_commands_on_a_session_without_a_live_process_fail_cleanly(home):
    home.append(lines(user("u1", None, T0), assistant("a1", "u1", T0 + 1, "msg_01")))
    source = home.source()
    source.scan()
    with pytest.raises(CommandError) as err:
        await source.command(command("session.kill", SID))
    assert err.value.code == "not_running"
    with pytest.raises(CommandError) as err:
        await source.command(command("session.kill", "no-such-session"))
    assert err.value.code == "unknown_session"


async def test_a_registry_pid_reused_by_a_later_process_is_not_signalled(home, child):
    path = home.register(child.pid, "busy")
    entry = json.loads(path.read_text())
    entry["startedAt"] = int((psutil.Process(child.pid).create_time() - 3600) * 1000)
    path.write_text(json.dumps(entry))
    source = home.source()
    source.scan()
    assert source.sessions() == []
    assert child.poll() is None


# --- inside a real agent --------------------------------------------------------------------------


async def _llm_calls_after_replay(agent, expected: int) -> list[dict]:
    async with ws_connect(agent.url, agent.token) as ws:
        await recv_json(ws)
        await ws.send(json.dumps({"type": "subscribe", "since": 0, "journal": None}))
        calls: list[dict] = []

        def collect(frame: dict) -> bool:
            if frame.get("type") == "event" and frame["kind"] == "llm.call":
                calls.append(frame)
            return len(calls) >= expected

        await recv_until(ws, collect, timeout=30)
    return calls


async def test_an_agent_restarted_on_its_journal_streams_each_call_once(tmp_path):
    home = Home(tmp_path)
    extra = {"interval_s": 0.2, "claude_code": {"roots": [str(home.root)], "poll_interval_s": 0.05}}
    home.append(lines(user("u1", None, T0), assistant("a1", "u1", T0 + 1, "msg_01")))
    async with running_agent(tmp_path, sources=("claude-code",), extra=extra, name="cc") as agent:
        [first] = await _llm_calls_after_replay(agent, 1)
    home.append(lines(assistant("a1b", "a1", T0 + 1, "msg_01"), user("u2", "a1b", T0 + 5),
                      assistant("a2", "u2", T0 + 6, "msg_02")))
    async with running_agent(tmp_path, sources=("claude-code",), extra=extra, name="cc") as agent:
        calls = await _llm_calls_after_replay(agent, 2)
    assert calls[0]["seq"] == first["seq"]
    assert [c["data"]["latency_ms"] for c in calls] == [pytest.approx(1000.0), pytest.approx(1000.0)]
    assert [c["session"] for c in calls] == [SID, SID]


def test_a_session_whose_client_has_exited_ends_without_waiting_ten_minutes(home, claude_process):
    home.append(lines(user("u1", None, T0), assistant("a1", "u1", T0 + 1, "msg_01")))
    source = home.source()
    source.scan()
    assert home.ctx.events("session.ended") == []
    claude_process.kill()
    claude_process.wait(timeout=30)
    home.clock.advance(CLIENT_SCAN_EVERY_S)
    source.scan()
    [ended] = home.ctx.events("session.ended")
    assert ended.data["reason"] == "exited" and ended.ts == pytest.approx(T0 + 1)


async def test_an_agent_restarted_after_a_session_exited_ends_it_at_once(home, claude_process):
    home.append(lines(user("u1", None, T0), assistant("a1", "u1", T0 + 1, "msg_01")))
    home.source().scan()
    claude_process.kill()
    claude_process.wait(timeout=30)
    restarted = home.source()
    await restarted.start()
    await restarted.stop()
    assert [e.data["reason"] for e in home.ctx.events("session.ended")] == ["exited"]


# --- a session the agent runs itself ------------------------------------------------------------


@pytest.fixture
def managed_claude(tmp_path, workdir):
    """Claude Code started by a managed entry: it carries its managed session id in its environment."""
    proc = spawn_claude(tmp_path, workdir, {MANAGED_SESSION_ENV: "managed:review:3"})
    yield proc
    proc.kill()
    proc.wait(timeout=30)


def test_claude_run_by_a_managed_session_is_that_session_not_a_second_one(tmp_path, workdir, managed_claude):
    home = Home(tmp_path)
    home.append(lines(user("u1", None, T0 + 58), assistant("a1", "u1", T0 + 59, "msg_01")))
    source = home.source()
    source.scan()
    assert home.ctx.events("session.started") == [] and source.sessions() == []
    assert [e.session for e in home.ctx.events("llm.call")] == ["managed:review:3"]


def test_a_registered_claude_run_by_a_managed_session_reports_its_states_there(tmp_path, workdir, managed_claude):
    home = Home(tmp_path)
    home.register(managed_claude.pid, "waiting")
    source = home.source()
    source.scan()
    assert [(e.session, e.data["state"]) for e in home.ctx.events("session.state")] == [("managed:review:3", "waiting")]
    assert not source.owns(SID)


# --- what a session is called and runs ------------------------------------------------------------


def test_a_session_announced_from_the_registry_is_announced_again_with_its_model_and_title(home, child):
    home.register(child.pid, "busy")
    source = home.source()
    source.scan()
    home.append(lines(user("u1", None, T0), assistant("a1", "u1", T0 + 1, "msg_01")))
    source.scan()
    first, update = home.ctx.events("session.started")
    assert (first.data["model"], first.data["title"]) == (None, None)
    assert (update.data["model"], update.data["title"]) == ("claude-sonnet-4-5-20250929", "fix/retry-budget")


def test_a_detached_head_is_no_title(home):
    home.append(lines(user("u1", None, T0, gitBranch="HEAD")))
    home.source().scan()
    [started] = home.ctx.events("session.started")
    assert started.data["title"] is None


def test_the_generated_title_replaces_the_branch_and_a_rename_replaces_both(home):
    source = home.source()
    home.append(lines(user("u1", None, T0)))
    source.scan()
    home.append(lines({"type": "ai-title", "aiTitle": "Fix retry budget", "sessionId": SID}))
    source.scan()
    home.append(lines({"type": "custom-title", "customTitle": "billing retries", "sessionId": SID},
                      {"type": "ai-title", "aiTitle": "Retry budget fix", "sessionId": SID}))
    source.scan()
    assert [e.data["title"] for e in home.ctx.events("session.started")] == ["fix/retry-budget", "Fix retry budget", "billing retries"]


def test_claude_codes_no_response_placeholder_is_not_a_call(home):
    home.append(lines(
        user("u1", None, T0),
        assistant("a1", "u1", T0 + 1, "msg_01"),
        assistant("a2", "a1", T0 + 2, "5b1f0a44-placeholder", req_id=None, model="<synthetic>", use=usage(0, 0, 0, 0),
                  isApiErrorMessage=False),
    ))
    home.source().scan()
    assert len(home.calls()) == 1


def test_a_partial_response_followed_by_an_error_for_its_request_is_one_failed_call(home):
    partial = assistant("a1", "u1", T0 + 1, "msg_01", req_id="req_cut", use=usage(out=1))
    partial["message"]["stop_reason"] = None
    home.append(lines(
        user("u1", None, T0), partial,
        assistant("a2", "a1", T0 + 3, "msg_err", req_id="req_cut", model="<synthetic>", use=usage(0, 0, 0, 0),
                  isApiErrorMessage=True, error="unknown"),
    ))
    home.source().scan()
    [call] = home.calls()
    assert (call["ok"], call["error"], call["output_tokens"]) == (False, "unknown", 1)


def test_a_partial_response_at_the_end_of_a_transcript_is_judged_after_a_quiet_poll(home):
    partial = assistant("a1", "u1", T0 + 59, "msg_01", use=usage(out=1))
    partial["message"]["stop_reason"] = None
    home.append(lines(user("u1", None, T0 + 58), partial))
    source = home.source()
    source.scan()
    assert home.calls() == []
    source.scan()
    [call] = home.calls()
    assert (call["ok"], call["error"]) == (False, "stream_cut_off")


def test_an_error_without_a_real_model_in_the_session_leaves_the_model_empty(home):
    home.append(lines(
        user("u1", None, T0),
        assistant("a1", "u1", T0 + 1, "msg_err", model="<synthetic>", use=usage(0, 0, 0, 0),
                  isApiErrorMessage=True, error="server_error", apiErrorStatus=500),
    ))
    home.source().scan()
    [call] = home.calls()
    assert (call["model"], call["ok"], call["cost_usd"]) == ("", False, 0.0)  # priced: no unknown-model flag


# --- the format radar ------------------------------------------------------------------------------


def test_a_new_record_type_and_a_new_usage_field_are_counted_and_noticed_once(home):
    use = usage()
    use["reasoning_cache_tokens"] = 9
    home.append(lines(user("u1", None, T0), envelope("telemetry-v9", "t1", "u1", T0 + 1),
                      assistant("a1", "u1", T0 + 2, "msg_01", use=use),
                      envelope("telemetry-v9", "t2", "a1", T0 + 3)))
    source = home.source()
    source.scan()
    assert source.format_radar() == {"unknown_record_type": 2, "unknown_field": 1, "skipped_line": 0, "unreadable_file": 0}
    messages = [e.data["message"] for e in home.ctx.events("agent.notice")]
    assert messages == ["claude-code: new record type 'telemetry-v9'; its data may be missed",
                        "claude-code: new field 'message.usage.reasoning_cache_tokens'; its data may be missed"]


def test_a_restarted_agent_does_not_notice_the_same_format_change_again(home):
    home.append(lines(user("u1", None, T0), envelope("telemetry-v9", "t1", "u1", T0 + 1)))
    home.source().scan()
    home.append(lines(envelope("telemetry-v9", "t2", "t1", T0 + 2)))
    restarted = home.source()
    restarted.scan()
    assert restarted.format_radar()["unknown_record_type"] == 1
    assert len(home.ctx.events("agent.notice")) == 1


async def test_an_agent_shows_a_managed_claude_as_one_session_with_its_calls(tmp_path, workdir, monkeypatch):
    monkeypatch.delenv("CLAUDE_CONFIG_DIR", raising=False)
    root = tmp_path / "claude"
    transcript = root / "projects" / "-src-billing-service" / f"{SID}.jsonl"
    transcript.parent.mkdir(parents=True)
    exe = tmp_path / "bin" / "claude"
    exe.parent.mkdir()
    exe.symlink_to(sys.executable)
    # The managed command is Claude Code as far as the system can tell: named `claude`, writing a transcript.
    script = (f"import json, time; open({str(transcript)!r}, 'a').write({lines(user('u1', None, T0), assistant('a1', 'u1', T0 + 1, 'msg_01'))!r}); "
              "time.sleep(300)")
    entry = {"name": "reviewer", "command": [str(exe), "-c", script], "cwd": str(workdir), "instances": 1}
    extra = {"claude_code": {"roots": [str(root)], "poll_interval_s": 0.05}}
    async with running_agent(tmp_path, sources=("managed", "claude-code"), managed=[entry], extra=extra) as agent:
        async with ws_connect(agent.url, agent.token) as ws:
            await recv_json(ws)
            await ws.send('{"type":"subscribe","since":0}')
            call, _ = await recv_until(ws, lambda f: f.get("kind") == "llm.call")
            listed = [info for source in agent.server.sources for info in source.sessions()]
    assert call["session"] == "managed:reviewer:1"
    assert [(s.id, s.source) for s in listed] == [("managed:reviewer:1", "managed")]


def test_a_transcript_added_to_a_folder_already_read_is_picked_up(home):
    home.append(lines(user("u1", None, T0)))
    source = home.source()
    source.scan()
    other = "9d2e7c41-5b8a-4f0e-b1c3-7a6d5e4f3c2b"
    home.append(lines(user("v1", None, T0 + 1, sid=other)), home.project_dir / f"{other}.jsonl")
    source.scan()
    assert sorted(e.session for e in home.ctx.events("session.started")) == sorted([SID, other])


def test_a_title_is_stored_without_control_characters_and_bounded(home):
    home.append(lines(user("u1", None, T0), {"type": "custom-title", "customTitle": "\x1b[31mred\x07 " + "x" * 500, "sessionId": SID}))
    home.source().scan()
    title = home.ctx.events("session.started")[-1].data["title"]
    assert title.startswith("[31mred x") and len(title) == 200 and title.isprintable()


def test_a_poll_whose_commit_failed_is_read_again_and_counted_once(home):
    home.append(lines(user("u1", None, T0), assistant("a1", "u1", T0 + 1, "msg_01"),
                      user("u2", "a1", T0 + 2), assistant("a2", "u2", T0 + 3, "msg_02")))
    source = home.source()
    home.ctx.journal.db.execute("PRAGMA query_only = ON")  # the journal refuses writes, as a full disk does
    with pytest.raises(sqlite3.OperationalError):
        source.scan()
    home.ctx.journal.db.execute("PRAGMA query_only = OFF")
    source.scan()
    source.scan()
    assert len(home.calls()) == 2 and len(home.ctx.events("session.started")) == 1


def cost_state(t: float, inp: int, out: int, write_5m: int, write_1h: int, read: int) -> dict:
    usage = {"inputTokens": inp, "outputTokens": out, "cacheReadInputTokens": read, "cacheCreationInputTokens": write_5m + write_1h,
             "cacheCreationEphemeral5mInputTokens": write_5m, "cacheCreationEphemeral1hInputTokens": write_1h, "costUSD": 0.5}
    return {"type": "cost-state", "sessionId": SID, "startTime": int(T0 * 1000), "timestamp": iso(t),
            "modelUsage": {"claude-sonnet-4-5-20250929": usage}}


def test_what_cost_state_totals_beyond_the_responses_written_is_one_more_call(home):
    home.append(lines(user("u1", None, T0), assistant("a1", "u1", T0 + 1, "msg_01", use=usage(12, 340, 2048, 18000, split=(2048, 0))),
                      cost_state(T0 + 5, 12 + 50, 340 + 70, 2048 + 100, 300, 18000 + 9000)))
    home.source().scan()
    written, summaries = home.calls()
    assert (written["input_tokens"], written["output_tokens"]) == (12, 340)
    assert {k: summaries[k] for k in ("input_tokens", "output_tokens", "cache_creation_tokens", "cache_read_tokens",
                                      "cache_creation_5m_tokens", "cache_creation_1h_tokens", "ok", "latency_ms")} == {
        "input_tokens": 50, "output_tokens": 70, "cache_creation_tokens": 400, "cache_read_tokens": 9000,
        "cache_creation_5m_tokens": 100, "cache_creation_1h_tokens": 300, "ok": True, "latency_ms": None}


def test_cost_state_that_matches_the_responses_adds_nothing_however_often_it_is_written(home):
    source = home.source()
    home.append(lines(user("u1", None, T0), assistant("a1", "u1", T0 + 1, "msg_01", use=usage(12, 340, 2048, 18000, split=(2048, 0))),
                      cost_state(T0 + 5, 12, 342, 2048, 0, 18000)))
    source.scan()
    home.append(lines(cost_state(T0 + 6, 12, 342, 2048, 0, 18000)))
    source.scan()
    assert len(home.calls()) == 1  # two more output tokens alone are a cut-off stream's tally, not a request


def test_a_session_an_older_agent_had_half_read_takes_no_call_from_cost_state(home):
    home.ctx.set_state(f"cc.session:{SID}", json.dumps({"id": SID, "cwd": CWD, "started": T0, "last_ts": T0}))
    home.ctx.set_state("cc.live", json.dumps([SID]))
    home.append(lines(cost_state(T0 + 5, 500, 700, 0, 0, 9000)))
    home.source().scan()
    assert home.calls() == []


def test_a_title_record_of_a_session_not_yet_seen_lists_no_session(home):
    home.append(lines({"type": "ai-title", "aiTitle": "Fix retry budget", "sessionId": SID}))
    source = home.source()
    source.scan()
    assert source.sessions() == [] and home.ctx.events("session.started") == []
    home.append(lines(user("u1", None, T0)))
    source.scan()
    [started] = home.ctx.events("session.started")
    assert started.data["title"] == "Fix retry budget"
