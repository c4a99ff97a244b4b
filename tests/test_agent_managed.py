"""Managed sessions: real child processes started, queued, signalled and moved by commands."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import psutil
import pytest

from agentkit import command, recv_json, recv_until, running_agent, wait_until, ws_connect
from heady_agent.sources.managed import ManagedSource

if shutil.which("sleep") is None:
    pytest.skip("needs the `sleep` command", allow_module_level=True)


def _sleeper(name: str = "worker", *, max_concurrent: int = 1, instances: int = 0, **more) -> dict:
    return {"name": name, "command": ["sleep", "300"], "max_concurrent": max_concurrent, "instances": instances, **more}


def _managed(agent) -> ManagedSource:
    return next(s for s in agent.server.sources if isinstance(s, ManagedSource))


def _sessions(agent) -> dict:
    return {s.id: s for s in _managed(agent).sessions()}


async def _one_session(agent) -> tuple[str, int]:
    await wait_until(lambda: len(_sessions(agent)) == 1, what="one managed session running")
    (sid, info), = _sessions(agent).items()
    return sid, info.pid


async def test_instances_start_up_to_max_concurrent_and_the_rest_wait(tmp_path: Path) -> None:
    async with running_agent(tmp_path, sources=("managed",), managed=[_sleeper(max_concurrent=2, instances=5)]) as agent:
        await wait_until(lambda: len(_sessions(agent)) == 2, what="two sessions running")
        assert _managed(agent).queue_depth() == 3
        for info in _sessions(agent).values():
            assert psutil.Process(info.pid).cmdline() == ["sleep", "300"]
            assert info.id.startswith("managed:worker:")


async def test_session_started_event_and_sessions_frame_describe_the_child(tmp_path: Path) -> None:
    entry = _sleeper(instances=1, cwd=str(tmp_path), model="claude-sonnet-4-5")
    async with running_agent(tmp_path, sources=("managed",), managed=[entry]) as agent:
        sid, pid = await _one_session(agent)
        async with ws_connect(agent.url, agent.token) as ws:
            await recv_json(ws)
            await ws.send('{"type":"subscribe","since":0}')
            started, _ = await recv_until(ws, lambda f: f.get("kind") == "session.started")
            sessions, _ = await recv_until(ws, lambda f: f["type"] == "sessions")
    assert started["session"] == sid
    assert started["data"] | {"title": None} == {
        "source": "managed", "managed": "worker", "project": tmp_path.name, "cwd": str(tmp_path),
        "pid": pid, "model": "claude-sonnet-4-5", "title": None,
    }
    assert [s["id"] for s in sessions["sessions"]] == [sid]


async def test_pause_stops_the_process_and_resume_continues_it(tmp_path: Path) -> None:
    async with running_agent(tmp_path, sources=("managed",), managed=[_sleeper(instances=1)]) as agent:
        sid, pid = await _one_session(agent)
        async with ws_connect(agent.url, agent.token) as ws:
            await recv_json(ws)
            paused = await command(ws, "session.pause", sid)
            await wait_until(lambda: psutil.Process(pid).status() == psutil.STATUS_STOPPED, what="process stopped")
            assert _sessions(agent)[sid].state == "paused"
            resumed = await command(ws, "session.resume", sid)
            await wait_until(lambda: psutil.Process(pid).status() != psutil.STATUS_STOPPED, what="process continued")
    assert paused["ok"] and resumed["ok"]


async def test_kill_ends_the_process_and_the_next_queued_item_starts(tmp_path: Path) -> None:
    async with running_agent(tmp_path, sources=("managed",), managed=[_sleeper(instances=2)]) as agent:
        sid, pid = await _one_session(agent)
        async with ws_connect(agent.url, agent.token) as ws:
            await recv_json(ws)
            result = await command(ws, "session.kill", sid)
        async with ws_connect(agent.url, agent.token) as ws:
            await recv_json(ws)
            await ws.send('{"type":"subscribe","since":0}')
            ended, _ = await recv_until(ws, lambda f: f.get("kind") == "session.ended" and f["session"] == sid)
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        await wait_until(lambda: len(_sessions(agent)) == 1 and sid not in _sessions(agent), what="next item started")
        assert _managed(agent).queue_depth() == 0
    assert result["ok"] is True
    assert ended["data"]["reason"] == "killed"


async def test_kill_of_a_paused_session_still_ends_it(tmp_path: Path) -> None:
    async with running_agent(tmp_path, sources=("managed",), managed=[_sleeper(instances=1)]) as agent:
        sid, pid = await _one_session(agent)
        async with ws_connect(agent.url, agent.token) as ws:
            await recv_json(ws)
            await command(ws, "session.pause", sid)
            result = await command(ws, "session.kill", sid)
    assert result["ok"] is True
    assert result["detail"]["exit_code"] is not None


async def test_restart_replaces_the_process_under_the_same_session_id(tmp_path: Path) -> None:
    async with running_agent(tmp_path, sources=("managed",), managed=[_sleeper(instances=1)]) as agent:
        sid, pid = await _one_session(agent)
        async with ws_connect(agent.url, agent.token) as ws:
            await recv_json(ws)
            result = await command(ws, "session.restart", sid)
        new_pid = _sessions(agent)[sid].pid
        assert psutil.Process(new_pid).cmdline() == ["sleep", "300"]
    assert result["ok"] is True
    assert new_pid != pid and result["detail"]["pid"] == new_pid


async def test_renice_sets_the_process_niceness(tmp_path: Path) -> None:
    async with running_agent(tmp_path, sources=("managed",), managed=[_sleeper(instances=1)]) as agent:
        sid, pid = await _one_session(agent)
        async with ws_connect(agent.url, agent.token) as ws:
            await recv_json(ws)
            result = await command(ws, "session.renice", sid, {"nice": 12})
        assert psutil.Process(pid).nice() == 12
    assert result["ok"] is True


async def test_renice_reports_the_niceness_it_replaced_so_a_console_can_put_it_back(tmp_path: Path) -> None:
    async with running_agent(tmp_path, sources=("managed",), managed=[_sleeper(instances=1)]) as agent:
        sid, pid = await _one_session(agent)
        before = psutil.Process(pid).nice()
        async with ws_connect(agent.url, agent.token) as ws:
            await recv_json(ws)
            first = await command(ws, "session.renice", sid, {"nice": max(before, 5)})
            second = await command(ws, "session.renice", sid, {"nice": 15})
    assert first["detail"]["previous"] == before
    assert second["detail"]["previous"] == max(before, 5)


async def test_prompt_without_a_configured_prompt_command_is_not_allowed(tmp_path: Path) -> None:
    async with running_agent(tmp_path, sources=("managed",), managed=[_sleeper(instances=1)]) as agent:
        sid, _ = await _one_session(agent)
        async with ws_connect(agent.url, agent.token) as ws:
            await recv_json(ws)
            result = await command(ws, "session.prompt", sid, {"text": "continue"})
    assert result["ok"] is False
    assert result["error"].startswith("not_allowed")


async def test_prompt_runs_the_configured_argv_with_the_text_as_one_argument(tmp_path: Path) -> None:
    out = tmp_path / "prompted.txt"
    script = "import sys, pathlib; pathlib.Path(sys.argv[1]).write_text(sys.argv[2] + '|' + sys.argv[4])"
    template = [sys.executable, "-c", script, str(out), "{session}", "--", "{prompt}"]
    entry = _sleeper(instances=1, prompt_command=template)
    async with running_agent(tmp_path, sources=("managed",), managed=[entry]) as agent:
        sid, _ = await _one_session(agent)
        async with ws_connect(agent.url, agent.token) as ws:
            await recv_json(ws)
            text = "go on; rm -rf / $(whoami)"
            result = await command(ws, "session.prompt", sid, {"text": text})
    assert result["ok"] is True
    assert out.read_text() == f"{sid}|{text}"


async def test_a_session_that_exits_reports_its_exit_code(tmp_path: Path) -> None:
    entry = {"name": "quick", "command": [sys.executable, "-c", "raise SystemExit(3)"], "instances": 1}
    async with running_agent(tmp_path, sources=("managed",), managed=[entry]) as agent:
        async with ws_connect(agent.url, agent.token) as ws:
            await recv_json(ws)
            await ws.send('{"type":"subscribe","since":0}')
            ended, _ = await recv_until(ws, lambda f: f.get("kind") == "session.ended")
    assert ended["data"] == {"exit_code": 3, "reason": "failed"}


async def test_drain_stops_new_starts_and_undrain_resumes_them(tmp_path: Path) -> None:
    async with running_agent(tmp_path, sources=("managed",), managed=[_sleeper(instances=2)]) as agent:
        sid, _ = await _one_session(agent)
        async with ws_connect(agent.url, agent.token) as ws:
            await recv_json(ws)
            drained = await command(ws, "node.drain")
            await command(ws, "session.kill", sid)
            assert _sessions(agent) == {} and _managed(agent).queue_depth() == 1
            undrained = await command(ws, "node.undrain")
            await _one_session(agent)
    assert drained["detail"]["drained"] is True and undrained["detail"]["drained"] is False


async def test_drain_lets_running_sessions_continue(tmp_path: Path) -> None:
    async with running_agent(tmp_path, sources=("managed",), managed=[_sleeper(instances=1)]) as agent:
        sid, pid = await _one_session(agent)
        async with ws_connect(agent.url, agent.token) as ws:
            await recv_json(ws)
            await command(ws, "node.drain")
        assert psutil.Process(pid).is_running() and sid in _sessions(agent)


async def test_set_concurrency_starts_more_queued_items(tmp_path: Path) -> None:
    async with running_agent(tmp_path, sources=("managed",), managed=[_sleeper(instances=4)]) as agent:
        await _one_session(agent)
        async with ws_connect(agent.url, agent.token) as ws:
            await recv_json(ws)
            result = await command(ws, "node.set_concurrency", args={"value": 3, "managed": "worker"})
        await wait_until(lambda: len(_sessions(agent)) == 3, what="three sessions running")
    assert result["detail"]["concurrency"] == {"worker": 3}


async def test_set_concurrency_for_an_unknown_managed_name_fails(tmp_path: Path) -> None:
    async with running_agent(tmp_path, sources=("managed",), managed=[_sleeper()]) as agent:
        async with ws_connect(agent.url, agent.token) as ws:
            await recv_json(ws)
            result = await command(ws, "node.set_concurrency", args={"value": 3, "managed": "nope"})
    assert result["ok"] is False and result["error"].startswith("unknown_managed")


async def test_queue_moves_between_two_agents_and_nothing_is_lost(tmp_path: Path) -> None:
    source_entries = [_sleeper(max_concurrent=0, instances=3), _sleeper("only-here", max_concurrent=0, instances=1)]
    target_entries = [_sleeper(max_concurrent=0)]
    async with running_agent(tmp_path, sources=("managed",), managed=source_entries, name="a") as a, \
            running_agent(tmp_path, sources=("managed",), managed=target_entries, name="b") as b:
        async with ws_connect(a.url, a.token) as wa, ws_connect(b.url, b.token) as wb:
            await recv_json(wa)
            await recv_json(wb)
            moved = await command(wa, "queue.move", args={"count": 4})
            items = moved["detail"]["items"]
            accepted = await command(wb, "queue.accept", args={"items": items})
            returned = await command(wa, "queue.accept", args={"items": accepted["detail"]["rejected"]})
        depths = (_managed(a).queue_depth(), _managed(b).queue_depth())
    assert len(items) == 4
    assert accepted["detail"]["accepted"] == 3
    assert accepted["detail"]["rejected"] == [{"managed": "only-here", "args": []}]
    assert returned["detail"]["accepted"] == 1
    assert depths == (1, 3)


async def test_accept_refuses_option_like_args(tmp_path: Path) -> None:
    async with running_agent(tmp_path, sources=("managed",), managed=[_sleeper(max_concurrent=0)]) as agent:
        async with ws_connect(agent.url, agent.token) as ws:
            await recv_json(ws)
            items = [{"managed": "worker", "args": ["--dangerously-skip-permissions"]}, {"managed": "worker", "args": ["5"]}]
            result = await command(ws, "queue.accept", args={"items": items})
    assert result["detail"]["accepted"] == 1
    assert result["detail"]["rejected"] == [items[0]]
    assert "positional" in result["detail"]["reasons"][0]


async def test_accepted_args_are_appended_to_the_configured_argv(tmp_path: Path) -> None:
    entry = {"name": "sleeper", "command": ["sleep"], "max_concurrent": 1}
    async with running_agent(tmp_path, sources=("managed",), managed=[entry]) as agent:
        async with ws_connect(agent.url, agent.token) as ws:
            await recv_json(ws)
            await command(ws, "queue.accept", args={"items": [{"managed": "sleeper", "args": ["250"]}]})
        _, pid = await _one_session(agent)
        assert psutil.Process(pid).cmdline() == ["sleep", "250"]


async def test_queue_survives_an_agent_restart_without_re_adding_instances(tmp_path: Path) -> None:
    entries = [_sleeper(max_concurrent=1, instances=3)]
    async with running_agent(tmp_path, sources=("managed",), managed=entries, name="n") as agent:
        _, pid = await _one_session(agent)
        assert _managed(agent).queue_depth() == 2
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    async with running_agent(tmp_path, sources=("managed",), managed=entries, name="n") as agent:
        await _one_session(agent)  # the interrupted item runs again
        assert _managed(agent).queue_depth() == 2
