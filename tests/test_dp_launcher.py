"""Agents the console starts itself: generated config, real child processes, clean stop."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
import tomllib

import pytest

from agentkit import wait_until
from heady_agent.config import AgentConfig
from heady_tui.config import Config, Paths
from heady_tui.launcher import AgentLauncher, AgentSpec, LaunchError, demo_launcher, embedded_launcher, toml_table
from heady_tui.supervisor import Supervisor


def test_the_generated_agent_config_reads_back_as_the_same_section():
    agent = AgentConfig.model_validate({
        "sources": ["managed", "synthetic"], "labels": {"rack": "r1"},
        "claude_code": {"roots": ["~/.claude"]},
        "managed": [{"name": "reviewer", "command": ["claude", "-p", "review \"it\""], "env": {"A": "1"}, "max_concurrent": 2}],
    })  # fmt: skip
    text = toml_table("agent", agent.model_dump(exclude_none=True))
    assert AgentConfig.model_validate(tomllib.loads(text)["agent"]) == agent


async def test_demo_agents_start_as_sim_nodes_and_stop(tmp_path):
    launcher = demo_launcher(tmp_path, nodes=2, scenario="calm", speed=5)
    nodes = await launcher.start()
    try:
        assert [n.name for n in nodes] == ["sim-1", "sim-2"]
        assert all(n.url.startswith("ws://127.0.0.1:") and len(n.token or "") >= 32 for n in nodes)
        assert nodes[0].token != nodes[1].token
        procs = list(launcher.children.values())
    finally:
        await launcher.stop()
    assert all(c.proc.poll() is not None for c in procs)


async def test_an_agent_that_cannot_start_is_a_one_line_error_naming_its_log(tmp_path):
    launcher = AgentLauncher(tmp_path, [AgentSpec(name="broken", agent={"interval_s": -1})])
    with pytest.raises(LaunchError) as info:
        await launcher.start()
    message = str(info.value)
    assert message.startswith("agent broken exited with") and "agent.log" in message and "\n" not in message
    assert not launcher.children


async def test_the_embedded_agent_is_supervised_as_local(tmp_path):
    config = Config.model_validate({"agent": {"sources": ["synthetic"], "interval_s": 0.2}})
    paths = Paths(tmp_path / "config.toml", tmp_path / "data")
    sup = Supervisor(config, paths, launcher=embedded_launcher(config.agent, paths.data_dir))
    await sup.start()
    try:
        await wait_until(lambda: sup.fleet.nodes["local"].status == "online" and sup.fleet.nodes["local"].last_seq > 3,
                         what="local agent streaming")  # fmt: skip
        assert list(sup.links) == ["local"]
        assert (tmp_path / "data" / "agents" / "local" / "agent-journal.db").exists()
    finally:
        await sup.stop()


def test_sessions_of_the_embedded_agent_create_files_with_the_operators_umask_not_the_consoles(tmp_path):
    made = tmp_path / "work" / "made-by-session"
    made.parent.mkdir()
    session = f"open({str(made)!r}, 'w').close(); import time; time.sleep(60)"
    config = tmp_path / "config.toml"
    config.write_text(
        '[agent]\nsources = ["managed"]\ninterval_s = 0.2\n'
        f'[[agent.managed]]\nname = "writer"\ncommand = [{json.dumps(sys.executable)}, "-c", {json.dumps(session)}]\n'
        "instances = 1\n"
    )
    data = tmp_path / "data"
    # The operator's umask is 022; the console makes its own 077 and must not hand that on.
    console = subprocess.run(
        [sys.executable, "-m", "heady_tui", "run", "--headless", "--for", "15", "--config", str(config), "--data-dir", str(data)],
        capture_output=True, text=True, timeout=120, umask=0o022,
    )
    assert console.returncode == 0, console.stderr
    assert stat.S_IMODE(made.stat().st_mode) == 0o644
    assert stat.S_IMODE((data / "heady.db").stat().st_mode) == 0o600
