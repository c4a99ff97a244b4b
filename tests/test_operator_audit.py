"""Every operator action goes through heady_tui.operator and lands in `heady audit log --json` with
who, where from, target, arguments and result: against a real synthetic agent, through the real
Textual app, and from the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
from agentkit import running_agent, wait_until
from uikit import live_console
from uikit import wait_until as ui_wait_until

from heady_tui.config import Config, Paths
from heady_tui.engine.consent import grantor
from heady_tui.engine.healing import HealingError
from heady_tui.operator import ConsoleOperator, OperatorError
from heady_tui.supervisor import Supervisor


def audit_log(data_dir: Path) -> list[dict]:
    env = {**os.environ, "XDG_CONFIG_HOME": str(data_dir.parent / "xdg-config")}
    env.pop("HEADY_CONFIG", None)
    done = subprocess.run([sys.executable, "-m", "heady_tui", "audit", "log", "--json", "--limit", "1000",
                           "--data-dir", str(data_dir)], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def operator_entries(data_dir: Path) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    for entry in audit_log(data_dir):
        if entry["action"].startswith("operator."):
            found.setdefault(entry["action"].removeprefix("operator."), []).append(entry)
    return found


async def console(tmp_path: Path, stack: AsyncExitStack) -> Supervisor:
    agent = await stack.enter_async_context(running_agent(tmp_path, name="n0", speed=4.0))
    config = Config.model_validate({"nodes": [{"name": "n0", "url": agent.url, "token": agent.token}]})
    sup = Supervisor(config, Paths(tmp_path / "config.toml", tmp_path / "data"))
    await sup.start()
    stack.push_async_callback(sup.stop)
    await wait_until(lambda: any(s.active and s.state == "running" for s in sup.fleet.node_sessions("n0")),
                     timeout=30, what="a running session on n0")
    return sup


def running_session(sup: Supervisor, *, besides: str | None = None) -> str:
    return next(s.id for s in sup.fleet.node_sessions("n0") if s.active and s.state == "running" and s.id != besides)


async def test_every_console_operator_action_is_audited_with_actor_origin_target_args_and_result(tmp_path):
    async with AsyncExitStack() as stack:
        sup = await console(tmp_path, stack)
        op = ConsoleOperator(sup, "ui")
        sid = running_session(sup)
        sent = [
            ("node.drain", None, {}), ("node.undrain", None, {}), ("node.set_concurrency", None, {"value": 2}),
            ("session.renice", sid, {"nice": 5}), ("session.prompt", sid, {"text": "go on"}),
            ("session.pause", sid, {}), ("session.resume", sid, {}), ("session.restart", sid, {}),
        ]
        for action, target, args in sent:
            assert (await op.command("n0", action, target, args)).ok, action
        other = running_session(sup, besides=sid)  # the restarted one may still show running
        assert (await op.command("n0", "session.kill", other)).ok
        grant = await op.grant("session", "maintenance window")
        await op.revoke_grant(grant.id)
        await op.notify_deploy("n0")
        with pytest.raises(HealingError):
            await op.approve_task("t-missing")
        with pytest.raises(HealingError):
            await op.reject_task("t-missing")
        with pytest.raises(OperatorError):
            await op.reset_policy("n0", sid, "stuck_session")
        with pytest.raises(ValueError):
            await op.decide_consent("r-missing", "single")
    entries = operator_entries(tmp_path / "data")
    expected = {a for a, _, _ in sent} | {"session.kill", "grant", "revoke", "notify_deploy", "task.approve",
                                          "task.reject", "policy.reset", "consent.decide"}
    assert expected <= set(entries)
    for action, found in entries.items():
        for entry in found:
            assert entry["actor"] == grantor()
            assert entry["details"]["origin"] == "ui"
            assert {"target", "args", "result", "error"} <= set(entry["details"]), action
    renice = entries["session.renice"][0]["details"]
    assert (renice["target"], renice["args"], renice["result"]) == (f"n0/{sid}", {"nice": 5}, "ok")
    approve = entries["task.approve"][0]["details"]
    assert approve["result"] == "error" and "t-missing" in approve["error"]
    assert entries["revoke"][0]["details"]["target"] == grant.id


async def test_a_failed_agent_command_is_audited_as_an_error(tmp_path):
    async with AsyncExitStack() as stack:
        sup = await console(tmp_path, stack)
        result = await ConsoleOperator(sup, "ui").command("n0", "session.kill", "no-such-session")
        assert not result.ok
    (entry,) = operator_entries(tmp_path / "data")["session.kill"]
    assert entry["details"]["result"] == "error" and entry["details"]["error"] == result.error


async def test_a_queue_move_is_not_an_operator_action(tmp_path):
    async with AsyncExitStack() as stack:
        sup = await console(tmp_path, stack)
        with pytest.raises(OperatorError, match="queue.move"):
            await ConsoleOperator(sup, "ui").command("n0", "queue.move", None, {"count": 1})


async def test_a_command_sent_from_the_textual_app_is_audited_with_origin_ui(tmp_path):
    async with live_console(tmp_path, nodes=1) as (app, pilot):
        sup = app.supervisor
        await ui_wait_until(pilot, lambda: any(s.active and s.state == "running" for s in sup.fleet.node_sessions("node0")),
                            "a running session")
        sid = next(s.id for s in sup.fleet.node_sessions("node0") if s.active and s.state == "running")
        app.send_command("node0", "session.renice", sid, {"nice": 7})  # runs as a worker
        await ui_wait_until(pilot, lambda: app.command_results, "the agent's answer")
        assert app.command_results[-1][3].ok
    (entry,) = operator_entries(tmp_path / "console")["session.renice"]
    assert entry["details"] == {"origin": "ui", "target": f"node0/{sid}", "args": {"nice": 7}, "result": "ok", "error": None}


def test_cli_grant_revoke_and_notify_deploy_are_audited_with_origin_cli(tmp_path):
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "xdg-config")}
    env.pop("HEADY_CONFIG", None)
    data = tmp_path / "data"

    def heady(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "heady_tui", *args, "--data-dir", str(data)], env=env,
                              capture_output=True, text=True, timeout=60)

    assert heady("permissions", "grant", "--scope", "single", "--reason", "hotfix").returncode == 0
    gid = json.loads(heady("permissions", "list", "--json").stdout)[0]["id"]
    assert heady("permissions", "revoke", gid).returncode == 0
    assert heady("permissions", "revoke", "g-missing").returncode == 1
    assert heady("notify-deploy").returncode == 0
    entries = operator_entries(data)
    assert [e["details"]["result"] for e in entries["revoke"]] == ["ok", "error"]
    assert entries["grant"][0]["details"]["args"] == {"scope": "single", "reason": "hotfix"}
    assert all(e["details"]["origin"] == "cli" for found in entries.values() for e in found)
    assert set(entries) == {"grant", "revoke", "notify_deploy"}
