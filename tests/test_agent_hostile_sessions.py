"""What a console can make a managed session do: prompt text stays data, secrets stay with the agent."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import psutil
import pytest
from pydantic import ValidationError
from websockets.exceptions import InvalidStatus

from agentkit import command, recv_json, running_agent, wait_until, ws_connect
from heady_agent.config import BASE_ENV, AgentConfig, ManagedConfig
from heady_agent.sources.managed import ManagedSource
from heady_tui.launcher import AgentLauncher, AgentSpec

if shutil.which("sleep") is None:
    pytest.skip("needs the `sleep` command", allow_module_level=True)

# A stand-in for a coding-agent CLI: a real option parser (as claude's has) that records what it got.
FAKE_CLI = """
import argparse, json, os, sys
parser = argparse.ArgumentParser()
parser.add_argument("-p", action="store_true")
parser.add_argument("--resume")
parser.add_argument("--dangerously-skip-permissions", action="store_true")
parser.add_argument("prompt", nargs="?")
args = parser.parse_args(sys.argv[2:])
if args.prompt is None:
    args.prompt = sys.stdin.read()
with open(sys.argv[1], "w") as out:
    json.dump(vars(args), out)
"""

# A session that writes its own environment to a file and then waits.
ENV_DUMP = "import json, os, sys, time; open(sys.argv[1], 'w').write(json.dumps(dict(os.environ))); time.sleep(300)"


def _sessions(agent) -> list[str]:
    source = next(s for s in agent.server.sources if isinstance(s, ManagedSource))
    return [s.id for s in source.sessions()]


async def _prompted(tmp_path: Path, text: str, *, stdin: bool = False) -> dict:
    out = tmp_path / "cli.json"
    template = [sys.executable, "-c", FAKE_CLI, str(out), "-p", "--resume", "{session}"]
    entry = {
        "name": "worker", "command": ["sleep", "300"], "instances": 1,
        "prompt_command": template if stdin else [*template, "--", "{prompt}"], "prompt_stdin": stdin,
    }  # fmt: skip
    async with running_agent(tmp_path, sources=("managed",), managed=[entry]) as agent:
        await wait_until(lambda: len(_sessions(agent)) == 1, what="one managed session")
        (sid,) = _sessions(agent)
        async with ws_connect(agent.url, agent.token) as ws:
            await recv_json(ws)
            result = await command(ws, "session.prompt", sid, {"text": text})
    assert result["ok"] is True, result
    return {"session": sid, **json.loads(out.read_text())}


async def test_prompt_text_that_looks_like_an_option_arrives_as_the_prompt(tmp_path: Path) -> None:
    parsed = await _prompted(tmp_path, "--dangerously-skip-permissions")
    assert parsed["dangerously_skip_permissions"] is False
    assert parsed["prompt"] == "--dangerously-skip-permissions"


async def test_a_session_placeholder_inside_prompt_text_is_not_substituted(tmp_path: Path) -> None:
    parsed = await _prompted(tmp_path, "say {session} and {prompt}")
    assert parsed["prompt"] == "say {session} and {prompt}"
    assert parsed["resume"] == parsed["session"]


async def test_prompt_stdin_sends_the_text_on_stdin_only(tmp_path: Path) -> None:
    parsed = await _prompted(tmp_path, "--dangerously-skip-permissions", stdin=True)
    assert parsed["dangerously_skip_permissions"] is False
    assert parsed["prompt"] == "--dangerously-skip-permissions"


@pytest.mark.parametrize(
    "template",
    [
        ["claude", "-p", "{prompt}", "--resume", "{session}"],  # the template shipped before
        ["claude", "-p{prompt}"],
        ["claude", "{prompt} please"],
        ["claude", "--", "x{prompt}"],
    ],
)
def test_a_template_where_prompt_text_could_become_an_option_is_refused(template: list[str]) -> None:
    with pytest.raises(ValidationError, match="lets prompt text become an option"):
        ManagedConfig(name="w", command=["claude"], prompt_command=template)


@pytest.mark.parametrize(
    "template",
    [["claude", "-p", "--resume", "{session}", "--", "{prompt}"], ["aider", "--message={prompt}"]],
)
def test_a_template_that_keeps_prompt_text_data_is_accepted(template: list[str]) -> None:
    assert ManagedConfig(name="w", command=["claude"], prompt_command=template).prompt_command == template


def test_prompt_stdin_with_a_prompt_placeholder_is_refused() -> None:
    with pytest.raises(ValidationError, match="must not appear"):
        ManagedConfig(name="w", command=["c"], prompt_command=["c", "--", "{prompt}"], prompt_stdin=True)


def test_passing_the_agent_token_to_a_session_is_refused() -> None:
    entry = {"name": "w", "command": ["c"], "env_pass": ["HEADY_AGENT_TOKEN"]}
    with pytest.raises(ValidationError, match="never given to a session"):
        AgentConfig(managed=[entry])


def test_passing_the_configured_token_variable_to_a_session_is_refused() -> None:
    entry = {"name": "w", "command": ["c"], "env": {"MY_NODE_TOKEN": "x"}}
    with pytest.raises(ValidationError, match="MY_NODE_TOKEN"):
        AgentConfig(token_env="MY_NODE_TOKEN", managed=[entry])


SECRETS = {
    "HEADY_AGENT_TOKEN": "agent-token-value-0123456789",
    "HEADY_TOKEN_BUILD1": "node-token-value-0123456789",
    "ANTHROPIC_ADMIN_KEY": "sk-ant-admin-0123456789",
    "HEADY_SLACK_WEBHOOK": "https://hooks.slack.example/T0/B0/x",
}


async def test_a_managed_session_gets_only_the_base_environment_and_what_its_entry_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {**SECRETS, "SESSION_KEY": "passed-on"}.items():
        monkeypatch.setenv(name, value)
    out = tmp_path / "env.json"
    entry = {
        "name": "worker", "command": [sys.executable, "-c", ENV_DUMP, str(out)], "instances": 1,
        "env_pass": ["SESSION_KEY"], "env": {"SET_HERE": "1"},
    }  # fmt: skip
    async with running_agent(tmp_path, sources=("managed",), managed=[entry]):
        await wait_until(out.exists, what="the session wrote its environment")
        await wait_until(lambda: out.stat().st_size > 0, what="the environment dump")
        env = json.loads(out.read_text())
    assert not set(SECRETS) & set(env)
    assert env["SESSION_KEY"] == "passed-on"
    assert env["SET_HERE"] == "1"
    assert env["PATH"]
    # HEADY_MANAGED_SESSION: the session's own id, so a watching source can find it (no secret).
    assert set(env) <= {"SESSION_KEY", "SET_HERE", "HEADY_MANAGED_SESSION", *BASE_ENV}


def _launcher(tmp_path: Path, out: Path) -> AgentLauncher:
    section = {
        "sources": ["managed"], "interval_s": 60,
        "managed": [{"name": "worker", "command": [sys.executable, "-c", ENV_DUMP, str(out)], "instances": 1,
                     "env_pass": ["SESSION_KEY"]}],
    }  # fmt: skip
    return AgentLauncher(tmp_path / "data", [AgentSpec(name="local", agent=section)])


async def test_an_agent_the_console_starts_gets_none_of_the_console_secrets_nor_do_its_sessions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {**SECRETS, "SESSION_KEY": "passed-on"}.items():
        monkeypatch.setenv(name, value)
    out = tmp_path / "env.json"
    launcher = _launcher(tmp_path, out)
    await launcher.start()
    try:
        child = launcher.children["local"]
        assert child.proc is not None
        agent_env = psutil.Process(child.proc.pid).environ()
        await wait_until(lambda: out.exists() and out.stat().st_size > 0, what="the session wrote its environment")
        session_env = json.loads(out.read_text())
    finally:
        await launcher.stop()
    assert not set(SECRETS) & set(agent_env)
    assert not set(SECRETS) & set(session_env)
    assert agent_env["SESSION_KEY"] == session_env["SESSION_KEY"] == "passed-on"


async def test_an_agent_the_console_starts_refuses_connections_without_its_token(tmp_path: Path) -> None:
    launcher = _launcher(tmp_path, tmp_path / "env.json")
    (node,) = await launcher.start()
    try:
        with pytest.raises(InvalidStatus) as refused:
            async with ws_connect(node.url, None):
                pass
        async with ws_connect(node.url, node.token) as ws:
            hello = await recv_json(ws)
    finally:
        await launcher.stop()
    assert refused.value.response.status_code == 401
    assert hello["type"] == "hello"
