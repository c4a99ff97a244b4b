"""Kill, pause, resume and renice of Codex sessions: the process acted on is the one that has the
session's rollout open for writing, as the real Codex CLI does while a session runs (docs/sources.md
"codex"). Here a real child process plays Codex: it holds the rollout open and sleeps."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from agentkit import wait_until
from codexkit import CodexProcess
from heady_agent.protocol import Command
from heady_agent.sources.base import CommandError
from heady_agent.sources.codex import CodexSource
from test_source_codex import SID, CodexHome, a_turn

@pytest.fixture
def home(tmp_path) -> CodexHome:
    home = CodexHome(tmp_path)
    home.append(a_turn())  # a finished turn: the session is idle
    return home


@pytest.fixture
def holders(home) -> Iterator[list[CodexProcess]]:
    started: list[CodexProcess] = []
    yield started
    for holder in started:
        holder.end()


def holding(path: Path, holders: list[CodexProcess], mode: str = "a") -> CodexProcess:
    holder = CodexProcess(path, mode)
    holders.append(holder)
    return holder


@pytest.fixture
def source(home) -> CodexSource:
    """The source, having read the session's rollout."""
    source = home.source()
    source.scan()
    return source


@pytest.fixture
def codex(home, holders) -> CodexProcess:
    """The process that writes the session's rollout."""
    return holding(home.rollout, holders)


def command(action: str, **args) -> Command:
    return Command.model_validate({"id": "c1", "action": action, "target": SID, "args": args})


async def test_pause_resume_renice_and_kill_act_on_the_process_writing_the_rollout(home, source, codex):
    assert (await source.command(command("session.pause")))["state"] == "paused"
    # A signal is delivered when the kernel next schedules the process: wait for it to take effect.
    await wait_until(lambda: codex.status() == psutil.STATUS_STOPPED, what="the process stopped")
    assert [s.pid for s in source.sessions()] == [codex.pid]
    assert (await source.command(command("session.resume")))["state"] == "idle"  # what the pause interrupted
    await wait_until(lambda: codex.status() != psutil.STATUS_STOPPED, what="the process continued")
    before = psutil.Process(codex.pid).nice()
    reniced = await source.command(command("session.renice", nice=10))
    assert (reniced["pid"], reniced["nice"], reniced["previous"]) == (codex.pid, 10, before)
    assert psutil.Process(codex.pid).nice() == 10
    assert (await source.command(command("session.kill")))["signal"] == "SIGTERM"
    assert codex.proc.wait(timeout=30) == -signal.SIGTERM
    assert home.states()[-2:] == [("paused", "paused by command"), ("idle", "resumed by command")]


async def test_a_session_whose_rollout_no_process_has_open_is_not_running(source):
    with pytest.raises(CommandError) as err:
        await source.command(command("session.pause"))
    assert err.value.code == "not_running"
    assert "Codex has exited" in err.value.message
    assert [s.state for s in source.sessions()] == ["idle"]


async def test_a_process_that_only_reads_the_rollout_is_not_the_session(home, holders, source):
    reader = holding(home.rollout, holders, mode="r")  # like `tail -f` on the rollout
    with pytest.raises(CommandError) as err:
        await source.command(command("session.pause"))
    assert err.value.code == "not_running"
    assert reader.status() != psutil.STATUS_STOPPED


async def test_the_process_found_before_is_not_signalled_once_it_closed_the_rollout(home, source, codex):
    await source.command(command("session.renice", nice=5))
    codex.close_file()
    with pytest.raises(CommandError) as err:
        await source.command(command("session.pause"))
    assert err.value.code == "not_running"
    assert codex.status() != psutil.STATUS_STOPPED
    assert [s.pid for s in source.sessions()] == [None]


async def test_a_pid_reused_by_another_process_is_not_signalled(home, holders, source, codex):
    await source.command(command("session.renice", nice=5))
    codex.end()
    # The agent restarts; the pid it kept for the session now names a process that started later.
    other = holding(home.root / "notes.txt", holders)
    key = f"cx.session:{SID}"
    record = json.loads(home.ctx.get_state(key))
    assert record["pid"] == codex.pid
    home.ctx.set_state(key, json.dumps({**record, "pid": other.pid}))
    restarted = home.source()
    await restarted.start()
    try:
        with pytest.raises(CommandError) as err:
            await restarted.command(command("session.pause"))
    finally:
        await restarted.stop()
    assert err.value.code == "not_running"
    assert other.status() != psutil.STATUS_STOPPED


async def test_a_paused_session_is_not_ended_by_silence_while_its_process_lives(home, source, codex):
    await source.command(command("session.pause"))
    home.clock.advance(3600)
    source.scan()
    assert [s.state for s in source.sessions()] == ["paused"]
    codex.end()
    source.scan()
    assert [e.data["reason"] for e in home.ctx.events("session.ended")] == ["inactive"]
