"""A Codex session waits for the person while its shell call has no output and its Codex process has
started no command for it (docs/sources.md "Codex and waiting for a person"). A real child process
plays Codex: it holds the rollout open for writing, as the native `codex` binary does, and starts a
command process (a `sleep`) when told, as Codex does once a command is approved.

The rollout records are shaped as the real Codex 0.171.0 TUI wrote them at an approval prompt
(`-a on-request`, a `rm -rf` command): the `function_call` and the response's `token_usage_record`
come at once, then nothing until the person answers; an approved command's `item_completed`
(CommandExecution) and `function_call_output` follow when it has run, a denied one's output says
`aborted by user` and the turn is aborted. (The recorded fixtures under tests/fixtures/real/ come
from scripts/record/codex.sh, which runs Codex with `-a never`; no approval prompt is among them.)
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator

import psutil
import pytest

from agentkit import wait_until
from codexkit import CodexProcess
from heady_agent.sources.codex import APPROVAL_GRACE_S, CodexSource
from test_source_codex import CodexHome, context, event, lines, meta, rec
from test_source_codex_process import command

CALL_ID = "call_1"
COMMAND = "rm -rf /tmp/build-cache && make"
USAGE = {"input_tokens": 2621, "cached_input_tokens": 0, "cache_write_input_tokens": 0, "output_tokens": 388,
         "reasoning_output_tokens": 39, "total_tokens": 3009}


def turn_start(t: float) -> str:
    return lines(
        meta(t), event(t, "task_started", model_context_window=272000, turn_attribution={"kind": "user"}),
        context(t), rec(t, "response_item", type="message", role="user",
                        content=[{"type": "input_text", "text": "clean and build"}]),
    )


def shell_call(t: float, call_id: str = CALL_ID, name: str = "exec_command") -> str:
    """The model asks to run the command: Codex writes the call and the response's usage at once."""
    return lines(
        rec(t, "response_item", type="function_call", status="completed", id="fc_1", name=name,
            arguments=json.dumps({"cmd": COMMAND}), call_id=call_id),
        rec(t, "token_usage_record", response_id="resp_1", usage=USAGE),
    )


def command_ran(t: float, call_id: str = CALL_ID) -> str:
    return lines(
        event(t, "item_completed", item={"type": "CommandExecution", "id": call_id, "status": "completed",
                                         "exit_code": 0}),
        rec(t, "response_item", type="function_call_output", call_id=call_id,
            output="Wall time: 7.9 seconds\nProcess exited with code 0\nOutput:\nbuilt\n"),
        event(t, "token_count", info={"last_token_usage": USAGE, "total_token_usage": USAGE}, rate_limits=None),
    )


@pytest.fixture
def home(tmp_path) -> CodexHome:
    return CodexHome(tmp_path)


@pytest.fixture
def codex(home) -> Iterator[CodexProcess]:
    home.rollout.touch()
    process = CodexProcess(home.rollout)
    yield process
    process.end()


@pytest.fixture
def source(home) -> CodexSource:
    return home.source()


def asked(home: CodexHome, source: CodexSource) -> float:
    """A turn whose shell call was written one second ago; the source has read it. Returns the call's time."""
    now = home.clock.now()
    home.append(turn_start(now - 2) + shell_call(now - 1))
    source.scan()
    return now - 1


def states(source: CodexSource) -> list[str]:
    return [s.state for s in source.sessions()]


def past_grace(home: CodexHome, source: CodexSource) -> None:
    home.clock.advance(APPROVAL_GRACE_S)
    source.scan()


def test_a_shell_call_whose_codex_starts_no_command_waits_for_approval_after_the_grace(home, source, codex):
    asked(home, source)
    assert states(source) == ["running"]  # within the grace: Codex may be starting it
    past_grace(home, source)
    assert home.states()[-1] == ("waiting", "approval")
    assert states(source) == ["waiting"]
    assert [s.pid for s in source.sessions()] == [codex.pid]


def test_the_wait_is_dated_from_the_call(home, source, codex):
    call_at = asked(home, source)
    past_grace(home, source)
    assert home.ctx.events("session.state")[-1].ts == pytest.approx(call_at)


def test_a_call_whose_command_process_runs_is_not_waiting(home, source, codex):
    asked(home, source)
    codex.start_command()
    past_grace(home, source)
    assert states(source) == ["running"]


def test_a_command_process_started_during_the_wait_returns_the_session_to_running(home, source, codex):
    asked(home, source)
    past_grace(home, source)
    codex.start_command()  # the person approved it
    home.clock.advance(1)
    source.scan()
    assert home.states()[-2:] == [("waiting", "approval"), ("running", "command approved")]


def test_a_command_that_just_exited_is_not_taken_for_a_wait_until_the_grace_passes_again(home, source, codex):
    asked(home, source)
    codex.start_command()
    past_grace(home, source)
    codex.finish_commands()  # Codex writes the output a moment later
    home.clock.advance(1)
    source.scan()
    assert states(source) == ["running"]
    past_grace(home, source)  # still no output: Codex asks again (as to run it outside the sandbox)
    assert home.states()[-1] == ("waiting", "approval")


def test_the_calls_output_returns_the_session_to_running(home, source, codex):
    call_at = asked(home, source)
    past_grace(home, source)
    home.append(command_ran(call_at + 25))
    source.scan()
    assert home.states()[-2:] == [("waiting", "approval"), ("running", "approval answered")]
    assert len(home.calls()) == 1  # the response that asked is counted once, when its token_count comes


def test_a_denied_command_ends_the_wait_and_the_aborted_turn_leaves_the_session_idle(home, source, codex):
    call_at = asked(home, source)
    past_grace(home, source)
    home.append(lines(
        rec(call_at + 4, "response_item", type="function_call_output", call_id=CALL_ID,
            output="Wall time: 3.9 seconds\naborted by user"),
        event(call_at + 4, "turn_aborted", reason="interrupted"),
    ))
    source.scan()
    assert home.states()[-3:] == [("waiting", "approval"), ("running", "approval answered"),
                                  ("idle", "turn aborted: interrupted")]
    home.clock.advance(60)
    source.scan()
    assert home.states()[-1] == ("idle", "turn aborted: interrupted")


def test_an_older_child_of_codex_is_not_the_calls_command(home, source, codex):
    # A background terminal an earlier call left running (or an MCP server) started before the call.
    background = codex.start_command()
    call_at = background.create_time() + 30
    home.clock.advance(call_at + 1 - home.clock.now())
    home.append(turn_start(call_at - 1) + shell_call(call_at))
    source.scan()
    past_grace(home, source)
    assert home.states()[-1] == ("waiting", "approval")


async def test_a_stopped_codex_is_not_waiting(home, source, codex):
    asked(home, source)
    os.kill(codex.pid, signal.SIGSTOP)
    await wait_until(lambda: codex.status() == psutil.STATUS_STOPPED, what="the process stopped")
    past_grace(home, source)
    assert states(source) == ["running"]


async def test_a_session_paused_by_command_is_paused_and_waits_once_resumed(home, source, codex):
    asked(home, source)
    await source.command(command("session.pause"))
    past_grace(home, source)
    assert home.states()[-1] == ("paused", "paused by command")
    await source.command(command("session.resume"))
    await wait_until(lambda: codex.status() != psutil.STATUS_STOPPED, what="the process continued")
    source.scan()
    assert home.states()[-2:] == [("running", "resumed by command"), ("waiting", "approval")]


def test_a_call_without_a_live_codex_is_not_waiting(home, source):
    asked(home, source)  # Codex has exited (or this is an old rollout read back)
    past_grace(home, source)
    assert states(source) == ["running"]


def test_a_wait_ends_when_codex_exits(home, source, codex):
    asked(home, source)
    past_grace(home, source)
    codex.end()
    home.clock.advance(1)
    source.scan()
    assert home.states()[-2:] == [("waiting", "approval"), ("idle", "codex exited")]


def test_a_waiting_session_is_not_ended_by_silence_while_its_codex_lives(home, source, codex):
    asked(home, source)
    past_grace(home, source)
    home.clock.advance(3600)  # the person is away
    source.scan()
    assert home.ctx.events("session.ended") == []
    assert states(source) == ["waiting"]


def test_a_call_of_another_tool_is_not_a_wait_for_approval(home, source, codex):
    now = home.clock.now()
    home.append(turn_start(now - 2) + shell_call(now - 1, name="wait_agent"))
    source.scan()
    past_grace(home, source)
    assert states(source) == ["running"]


async def test_a_restarted_agent_sees_the_wait(home, source, codex):
    asked(home, source)
    restarted = home.source()
    home.clock.advance(APPROVAL_GRACE_S)
    await restarted.start()
    await restarted.stop()
    assert home.states()[-1] == ("waiting", "approval")
