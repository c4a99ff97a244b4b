"""Claude Code hooks: `heady-agent hook` hands a hook's JSON to a running agent, which sets the session's
state; `heady-agent hooks install/uninstall` edit settings.json and give it back byte for byte."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agentkit import AgentProcess, recv_until, ws_connect
from hookkit import POST_TOOL_USE, PERMISSION_REQUEST, SID, claude_home, run_hook  # noqa: F401 (claude_home: a fixture)
from heady_agent.clock import ManualClock
from heady_agent.config import AgentConfig, ClaudeCodeConfig
from heady_agent.hook_socket import socket_path
from heady_agent.protocol import Command
from heady_agent.hooks import (
    BACKUP_SUFFIX,
    HOOK_EVENTS,
    HookSignal,
    HooksError,
    hook_signal,
    install,
    installed,
    settings_path,
    uninstall,
)
from heady_agent.sources.claude_code import ClaudeCodeSource
from sourcekit import SqliteSourceContext

COMMAND = "/usr/local/bin/heady-agent hook"

# A user's settings.json as Claude Code writes it: 2-space JSON, raw UTF-8, the user's own hooks.
USER_SETTINGS = """{
  "$schema": "https://json.schemastore.org/claude-code-settings.json",
  "model": "opus",
  "permissions": {
    "allow": [
      "Bash(npm run test:*)",
      "Read(~/notes/**)"
    ],
    "deny": [
      "Read(./.env)"
    ]
  },
  "env": {
    "GREETING": "grüß dich — 你好 ✓"
  },
  "hooks": {
    "PostToolUse": [
      {
        "matcher": "Edit|Write",
        "hooks": [
          {
            "type": "command",
            "command": "npx prettier --write \\"$CLAUDE_PROJECT_DIR\\""
          }
        ]
      }
    ],
    "Notification": [
      {
        "matcher": "permission_prompt",
        "hooks": [
          {
            "type": "command",
            "command": "notify-send 'Claude Code' 'Braucht dich ☕'"
          }
        ]
      }
    ]
  },
  "statusLine": {
    "type": "command",
    "command": "~/.claude/statusline.sh"
  }
}
"""


# --- what a hook says ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"hook_event_name": "PermissionRequest", "tool_name": "Bash"}, ("waiting", "permission")),
        ({"hook_event_name": "Notification", "notification_type": "permission_prompt"}, ("waiting", "permission")),
        ({"hook_event_name": "Notification", "notification_type": "idle_prompt"}, ("waiting", "input")),
        ({"hook_event_name": "Notification", "notification_type": "elicitation_dialog"}, ("waiting", "question")),
        ({"hook_event_name": "PostToolUse"}, ("running", "claude-code PostToolUse")),
        ({"hook_event_name": "UserPromptSubmit"}, ("running", "claude-code UserPromptSubmit")),
        ({"hook_event_name": "Stop"}, ("idle", "claude-code Stop")),
    ],
)
def test_each_hook_event_maps_to_a_session_state(fields, expected):
    assert hook_signal({"session_id": SID, **fields}) == HookSignal(SID, *expected)


@pytest.mark.parametrize(
    "fields",
    [
        {"hook_event_name": "Notification", "notification_type": "auth_success", "session_id": SID},
        {"hook_event_name": "PreCompact", "session_id": SID},
        {"hook_event_name": "PermissionRequest"},
        {"session_id": SID},
    ],
)
def test_hooks_that_say_nothing_about_waiting_give_no_signal(fields):
    assert hook_signal(fields) is None


# --- the hook command and the agent ----------------------------------------------------------------


async def test_a_session_goes_running_waiting_running_through_the_hook_command(tmp_path, claude_home):
    extra = {"claude_code": {"roots": [str(claude_home)], "poll_interval_s": 0.2}}
    async with AgentProcess(tmp_path, "a", sources=("claude-code",), extra=extra) as agent:
        async with ws_connect(agent.url, agent.token) as ws:
            await ws.send(json.dumps({"type": "subscribe", "since": 0}))
            await recv_until(ws, lambda f: f.get("kind") == "session.started" and f.get("session") == SID)

            def state_of(frame: dict) -> bool:
                return frame.get("kind") == "session.state" and frame.get("session") == SID

            ran = run_hook(agent.dir, json.dumps(PERMISSION_REQUEST).encode())
            assert (ran.returncode, ran.stdout, ran.stderr) == (0, b"", b"")
            waiting, _ = await recv_until(ws, state_of)
            assert waiting["data"] == {"state": "waiting", "reason": "permission"}

            run_hook(agent.dir, json.dumps(POST_TOOL_USE).encode())
            running, _ = await recv_until(ws, state_of)
            assert running["data"] == {"state": "running", "reason": "claude-code PostToolUse"}


def test_the_hook_command_is_silent_and_succeeds_when_no_agent_runs(tmp_path):
    ran = run_hook(tmp_path, json.dumps(PERMISSION_REQUEST).encode())
    assert (ran.returncode, ran.stdout, ran.stderr) == (0, b"", b"")


@pytest.mark.parametrize("stdin", [b"", b"not json", b"[1, 2]", b"\xff\xfe", b'{"hook_event_name": 3}'])
def test_the_hook_command_is_silent_and_succeeds_on_bad_input(tmp_path, stdin):
    ran = run_hook(tmp_path, stdin)
    assert (ran.returncode, ran.stdout, ran.stderr) == (0, b"", b"")


async def test_the_hook_socket_is_owner_only_in_an_owner_only_directory(tmp_path):
    async with AgentProcess(tmp_path, "a", sources=("claude-code",), extra={"claude_code": {"roots": []}}) as agent:
        path = socket_path(agent.dir)
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        assert stat.S_ISSOCK(path.stat().st_mode) and stat.S_IMODE(path.stat().st_mode) == 0o600


async def test_a_stopped_agent_removes_its_hook_socket(tmp_path):
    agent = AgentProcess(tmp_path, "a", sources=("claude-code",), extra={"claude_code": {"roots": []}})
    await agent.start()
    await agent.terminate()
    assert not socket_path(agent.dir).exists()


# --- settings.json ---------------------------------------------------------------------------------


@pytest.fixture
def settings(tmp_path) -> Path:
    path = tmp_path / "claude" / "settings.json"
    path.parent.mkdir()
    path.write_text(USER_SETTINGS, encoding="utf-8")
    return path


def test_install_adds_the_hook_to_each_event_and_keeps_the_users_keys_and_hooks(settings):
    assert install(settings, COMMAND)
    data = json.loads(settings.read_text(encoding="utf-8"))
    assert data["env"]["GREETING"] == "grüß dich — 你好 ✓" and data["statusLine"]["command"] == "~/.claude/statusline.sh"
    assert data["hooks"]["PostToolUse"][0]["matcher"] == "Edit|Write"
    assert data["hooks"]["Notification"][0]["hooks"][0]["command"] == "notify-send 'Claude Code' 'Braucht dich ☕'"
    for event in HOOK_EVENTS:
        assert data["hooks"][event][-1] == {"hooks": [{"type": "command", "command": COMMAND, "timeout": 5}]}


def test_install_writes_two_space_json_in_raw_utf8_with_a_final_newline(settings):
    install(settings, COMMAND)
    text = settings.read_bytes().decode("utf-8")
    assert text.endswith("}\n") and '\n  "model": "opus",\n' in text and "你好" in text and "\\u" not in text


def test_install_twice_changes_nothing_the_second_time(settings):
    install(settings, COMMAND)
    once = settings.read_bytes()
    assert not install(settings, COMMAND)
    assert settings.read_bytes() == once


def test_install_keeps_a_backup_of_the_file_as_it_was(settings):
    install(settings, COMMAND)
    assert settings.with_name(settings.name + BACKUP_SUFFIX).read_text(encoding="utf-8") == USER_SETTINGS


def test_uninstall_restores_the_file_byte_for_byte(settings):
    install(settings, COMMAND)
    assert uninstall(settings)
    assert settings.read_bytes() == USER_SETTINGS.encode("utf-8")
    assert not settings.with_name(settings.name + BACKUP_SUFFIX).exists()


def test_uninstall_after_the_user_changed_the_file_removes_only_the_hook(settings):
    install(settings, COMMAND)
    data = json.loads(settings.read_text(encoding="utf-8"))
    data["model"] = "sonnet"
    settings.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    uninstall(settings)
    after = json.loads(settings.read_text(encoding="utf-8"))
    expected = {**json.loads(USER_SETTINGS), "model": "sonnet"}
    assert after == expected


def test_install_into_no_file_creates_it_and_uninstall_removes_it(tmp_path):
    path = tmp_path / "claude" / "settings.json"
    install(path, COMMAND)
    assert installed(path)
    uninstall(path)
    assert not path.exists()


def test_uninstall_without_the_hook_leaves_the_file_alone(settings):
    assert not uninstall(settings)
    assert settings.read_bytes() == USER_SETTINGS.encode("utf-8")


@pytest.mark.parametrize("text", ['{"model": "opus",', '["a list"]', '{"hooks": {"Stop": {}}}'])
def test_a_settings_file_install_cannot_read_is_an_error_and_left_as_it_is(tmp_path, text):
    path = tmp_path / "settings.json"
    path.write_text(text)
    with pytest.raises(HooksError, match="settings.json"):
        install(path, COMMAND)
    assert path.read_text() == text


def test_settings_are_under_claude_config_dir_when_set_else_home(tmp_path):
    assert settings_path({"CLAUDE_CONFIG_DIR": f"{tmp_path}/a,{tmp_path}/b"}) == tmp_path / "a" / "settings.json"
    assert settings_path({}) == Path("~/.claude/settings.json").expanduser()


def _agent_cli(*args: str, config_dir: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CLAUDE_CONFIG_DIR": str(config_dir), "XDG_CONFIG_HOME": str(tmp_path / "cfg")}
    env.pop("HEADY_CONFIG", None)
    return subprocess.run([sys.executable, "-m", "heady_agent", *args], capture_output=True, text=True, env=env, timeout=60)


def test_hooks_install_and_uninstall_commands_round_trip_and_check_shows_them(tmp_path, settings):
    config = tmp_path / "agent.toml"
    config.write_text('[agent]\nsources = ["claude-code"]\n')
    check = ["--config", str(config), "--check"]
    assert "not installed" in _agent_cli(*check, config_dir=settings.parent, tmp_path=tmp_path).stdout
    done = _agent_cli("--data-dir", str(tmp_path / "d"), "hooks", "install", config_dir=settings.parent, tmp_path=tmp_path)
    assert done.returncode == 0 and str(settings) in done.stdout
    command = json.loads(settings.read_text(encoding="utf-8"))["hooks"]["Stop"][-1]["hooks"][0]["command"]
    assert command.endswith(f"--data-dir {tmp_path / 'd'} hook")
    assert f"installed in {settings}" in _agent_cli(*check, config_dir=settings.parent, tmp_path=tmp_path).stdout
    assert _agent_cli("hooks", "uninstall", config_dir=settings.parent, tmp_path=tmp_path).returncode == 0
    assert settings.read_bytes() == USER_SETTINGS.encode("utf-8")


def test_hooks_install_on_a_broken_settings_file_fails_in_one_line(tmp_path):
    (tmp_path / "claude").mkdir()
    (tmp_path / "claude" / "settings.json").write_text("{oops")
    done = _agent_cli("hooks", "install", config_dir=tmp_path / "claude", tmp_path=tmp_path)
    assert done.returncode == 1 and done.stderr.count("\n") == 1 and "not valid JSON" in done.stderr


def _watching(tmp_path: Path, claude_home: Path) -> tuple[ClaudeCodeSource, SqliteSourceContext]:
    config = AgentConfig(sources=["claude-code"], claude_code=ClaudeCodeConfig(roots=[str(claude_home)]))
    ctx = SqliteSourceContext(tmp_path / "journal.db", config, ManualClock(time.time()))
    source = ClaudeCodeSource(ctx)
    source.scan()
    return source, ctx


def test_a_hook_for_a_session_the_agent_does_not_watch_changes_nothing(tmp_path, claude_home):
    source, ctx = _watching(tmp_path, claude_home)
    assert not source.person_signal("0d6f1e2a-0000-4000-8000-000000000000", "waiting", "permission")
    assert ctx.events("session.state") == []
    ctx.close()


async def test_a_paused_session_stays_paused_whatever_a_hook_says(tmp_path, claude_home):
    source, ctx = _watching(tmp_path, claude_home)
    pause = Command.model_validate({"id": "c1", "action": "session.pause", "target": SID, "args": {}})
    await source.command(pause)
    assert source.person_signal(SID, "waiting", "permission")
    assert [s.state for s in source.sessions()] == ["paused"]
    assert [e.data["state"] for e in ctx.events("session.state")] == ["paused"]
    ctx.close()


def test_a_registry_entry_waiting_for_a_permission_prompt_gives_the_hooks_reason(tmp_path, claude_home):
    source, ctx = _watching(tmp_path, claude_home)
    [entry] = (claude_home / "sessions").glob("*.json")
    entry.write_text(json.dumps({**json.loads(entry.read_text()), "status": "waiting", "waitingFor": "permission prompt"}))
    source.scan()
    assert [e.data for e in ctx.events("session.state")] == [{"state": "waiting", "reason": "permission"}]
    ctx.close()
