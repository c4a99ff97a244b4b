"""`heady run --headless`, `heady demo --headless`, `heady nodes|sessions list` as real child processes."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from agentkit import AgentProcess, free_port, running_agent
from heady_agent.protocol import Event
from heady_tui.store import Store

TIMEOUT_S = 60.0


def env_for(tmp_path: Path) -> dict[str, str]:
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "xdg-config"), "XDG_DATA_HOME": str(tmp_path / "xdg-data")}
    env.pop("HEADY_CONFIG", None)
    return env


def write_config(tmp_path: Path, nodes: list[tuple[str, str, str]], agent: str = "") -> Path:
    lines = []
    for name, url, token in nodes:
        lines += ["[[nodes]]", f'name = "{name}"', f'url = "{url}"', f'token = "{token}"', ""]
    path = tmp_path / "config.toml"
    path.write_text("\n".join(lines) + agent)
    return path


async def heady(tmp_path: Path, *args: str, timeout: float = TIMEOUT_S) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "heady_tui", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env_for(tmp_path),
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    return proc.returncode, out.decode(), err.decode()


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


async def test_run_headless_prints_json_lines_and_exits_0_after_for(tmp_path):
    async with AgentProcess(tmp_path, "n1", speed=20) as agent:
        config = write_config(tmp_path, [("n1", agent.url, agent.token)])
        code, out, err = await heady(tmp_path, "run", "--headless", "--for", "5", "--config", str(config),
                                     "--data-dir", str(tmp_path / "data"))  # fmt: skip
    assert code == 0, err
    events = json_lines(out)  # every stdout line is JSON: logs never mix in
    assert all(set(e) >= {"ts", "event"} and e["ts"].endswith("Z") for e in events)
    online = [e for e in events if e["event"] == "node.online"]
    assert online and online[0]["node"] == "n1" and online[0]["journal"]


async def test_run_headless_stops_cleanly_on_sigterm(tmp_path):
    async with AgentProcess(tmp_path, "n1", speed=5) as agent:
        config = write_config(tmp_path, [("n1", agent.url, agent.token)])
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "heady_tui", "run", "--headless", "--config", str(config),
            "--data-dir", str(tmp_path / "data"),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL, env=env_for(tmp_path),
        )  # fmt: skip
        first = json.loads(await asyncio.wait_for(proc.stdout.readline(), TIMEOUT_S))
        assert (first["event"], first["role"]) == ("brain.role", "acting")  # the brain's role comes first
        line = await asyncio.wait_for(proc.stdout.readline(), TIMEOUT_S)
        assert json.loads(line)["event"] == "node.online"
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), TIMEOUT_S) == 0


async def test_run_headless_on_a_corrupt_database_fails_with_one_line(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "heady.db").write_bytes(b"garbage" * 1000)
    config = write_config(tmp_path, [("n1", f"ws://127.0.0.1:{free_port()}/ws", "t")])
    code, out, err = await heady(tmp_path, "run", "--headless", "--for", "1", "--config", str(config), "--data-dir", str(data))
    assert code == 1 and out == ""
    assert err.strip().splitlines()[-1].startswith("heady: error: ") and "move it aside" in err


async def test_embedded_agent_runs_for_this_machine_and_stops_with_the_console(tmp_path):
    config = write_config(tmp_path, [], agent='[agent]\nsources = ["synthetic"]\ninterval_s = 0.5\n')
    code, out, err = await heady(tmp_path, "run", "--headless", "--for", "4", "--config", str(config),
                                 "--data-dir", str(tmp_path / "data"))  # fmt: skip
    assert code == 0, err
    assert any(e["event"] == "node.online" and e["node"] == "local" for e in json_lines(out))
    agent_dir = tmp_path / "data" / "agents" / "local"
    assert oct((agent_dir / "config.toml").stat().st_mode & 0o777) == "0o600"
    assert not any("heady_agent" in " ".join(p.info["cmdline"] or []) and str(agent_dir) in " ".join(p.info["cmdline"] or [])
                   for p in psutil.process_iter(["cmdline"]))  # fmt: skip


async def test_agents_die_with_a_killed_console(tmp_path):
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "heady_tui", "demo", "--headless", "--nodes", "2", "--data-dir", str(tmp_path / "data"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL, env=env_for(tmp_path),
    )  # fmt: skip
    try:
        await asyncio.wait_for(proc.stdout.readline(), TIMEOUT_S)  # the first node is online
        children = psutil.Process(proc.pid).children(recursive=True)
        assert len(children) == 2
        proc.kill()
        await proc.wait()
        deadline = time.monotonic() + 30
        while any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE for c in children) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert not any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE for c in children)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_demo_headless_labels_the_fleet_simulated(tmp_path):
    code, out, err = await heady(tmp_path, "demo", "--headless", "--nodes", "2", "--speed", "5", "--for", "4",
                                 "--data-dir", str(tmp_path / "data"))  # fmt: skip
    assert code == 0, err
    assert {e["node"] for e in json_lines(out) if e["event"] == "node.online"} == {"sim-1", "sim-2"}
    store = await Store.open(tmp_path / "data" / "heady.db")
    try:
        assert all(n["simulated"] for n in await store.nodes())
    finally:
        await store.close()


async def test_demo_rejects_a_non_positive_speed(tmp_path):
    code, out, err = await heady(tmp_path, "demo", "--headless", "--speed", "0", "--data-dir", str(tmp_path / "data"))
    assert code == 2 and err.strip() == "heady: error: --speed must be above 0, got 0"


async def test_nodes_and_sessions_list_json_ask_the_live_agent(tmp_path):
    async with running_agent(tmp_path, name="n1", speed=20, token="tok") as agent:
        config = write_config(tmp_path, [("n1", agent.url, "tok")])
        code, out, err = await heady(tmp_path, "nodes", "list", "--json", "--config", str(config), "--data-dir", str(tmp_path / "d"))
        assert code == 0, err
        (node,) = json.loads(out)
        assert node["name"] == "n1" and node["live"] and node["status"] == "online" and node["simulated"]
        code, out, err = await heady(tmp_path, "sessions", "list", "--json", "--config", str(config), "--data-dir", str(tmp_path / "d"))
        assert code == 0, err
        sessions = json.loads(out)
        assert sessions and all(s["node"] == "n1" and s["live"] for s in sessions)
        assert all(s["id"] and s["source"] and s["state"] for s in sessions)


async def test_an_unreachable_node_is_listed_from_the_store_and_says_so(tmp_path):
    data = tmp_path / "data"
    store = await Store.open(data / "heady.db")
    await store.record_node("n1", hostname="far-away", info={"os": "Linux", "cpu_count": 8}, simulated=False, now=1_800_000_000.0)
    await store.store_batch("n1", "j1", [Event(seq=1, ts=1_800_000_000.0, kind="session.started", session="s-1",
                                               data={"source": "codex", "project": "app"})])  # fmt: skip
    await store.close()
    config = write_config(tmp_path, [("n1", f"ws://127.0.0.1:{free_port()}/ws", "tok")])
    code, out, err = await heady(tmp_path, "nodes", "list", "--json", "--config", str(config), "--data-dir", str(data))
    assert code == 0
    (node,) = json.loads(out)
    assert (node["live"], node["status"], node["hostname"], node["last_seq"]) == (False, "unreachable", "far-away", 1)
    assert "showing what the store last saw" in err
    code, out, err = await heady(tmp_path, "sessions", "list", "--config", str(config), "--data-dir", str(data))
    assert code == 0 and "s-1" in out and "stored" in out


async def test_nodes_list_table_has_a_header_row(tmp_path):
    config = write_config(tmp_path, [("n1", f"ws://127.0.0.1:{free_port()}/ws", "tok")])
    code, out, _ = await heady(tmp_path, "nodes", "list", "--config", str(config), "--data-dir", str(tmp_path / "d"))
    assert code == 0
    assert out.splitlines()[0].split()[:3] == ["NODE", "STATUS", "HOST"]
    assert out.splitlines()[1].startswith("n1")


async def test_heady_with_no_nodes_shows_this_machine_in_the_ui_and_quits_cleanly(tmp_path):
    if shutil.which("tmux") is None:
        pytest.skip("tmux is needed to give the UI a terminal")
    config = write_config(tmp_path, [], agent='[agent]\nsources = ["synthetic"]\ninterval_s = 0.5\n')
    session = f"heady-dp-{os.getpid()}"
    done = tmp_path / "exit-code"
    command = (f"{shlex.quote(sys.executable)} -m heady_tui --config {shlex.quote(str(config))} "
               f"--data-dir {shlex.quote(str(tmp_path / 'data'))}; echo $? > {shlex.quote(str(done))}")  # fmt: skip
    env = env_for(tmp_path)
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "140", "-y", "40", command], env=env, check=True)
    try:
        deadline = time.monotonic() + TIMEOUT_S
        screen = ""
        while "local" not in screen or "online" not in screen:
            assert time.monotonic() < deadline, f"the UI never showed the local node:\n{screen}"
            await asyncio.sleep(0.3)
            screen = subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True).stdout
        subprocess.run(["tmux", "send-keys", "-t", session, "q"], check=True)
        while not done.exists():
            screen = subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True).stdout
            assert time.monotonic() < deadline, f"the console did not quit on q:\n{screen}"
            await asyncio.sleep(0.2)
        log = (tmp_path / "data" / "heady.log").read_text(errors="replace")[-3000:]
        assert done.read_text().strip() == "0", f"exit {done.read_text().strip()}; screen:\n{screen}\nlog:\n{log}"
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
