"""`heady-agent` as a real process: token, --check, bad config, restarts, corrupt journal."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from websockets.exceptions import InvalidStatus

from agentkit import AgentProcess, recv_json, recv_until, ws_connect


def _agent(*args: str, tmp_path: Path, env: dict | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {
        **os.environ,
        "XDG_CONFIG_HOME": str(tmp_path / "cfg"),
        "XDG_DATA_HOME": str(tmp_path / "data"),
        **(env or {}),
    }
    full_env.pop("HEADY_CONFIG", None)
    return subprocess.run(
        [sys.executable, "-m", "heady_agent", *args], capture_output=True, text=True, env=full_env, timeout=60
    )


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_token_prints_a_new_random_token(tmp_path: Path) -> None:
    first = _agent("token", tmp_path=tmp_path).stdout.strip()
    second = _agent("token", tmp_path=tmp_path).stdout.strip()
    assert len(first) >= 40 and first != second


def test_version_names_the_agent(tmp_path: Path) -> None:
    result = _agent("--version", tmp_path=tmp_path)
    assert result.returncode == 0
    assert result.stdout.startswith("heady-agent ")


def test_check_accepts_a_valid_config(tmp_path: Path) -> None:
    path = _config(tmp_path, '[agent]\nlisten = "127.0.0.1:7999"\nsources = []\n')
    result = _agent("--config", str(path), "--check", tmp_path=tmp_path)
    assert (result.returncode, result.stdout.strip()) == (0, "OK")


def test_check_reports_invalid_toml_in_one_line(tmp_path: Path) -> None:
    path = _config(tmp_path, "[agent\nlisten = 1\n")
    result = _agent("--config", str(path), "--check", tmp_path=tmp_path)
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1
    assert str(path) in result.stderr and "invalid TOML" in result.stderr


def test_check_reports_an_unknown_key_naming_it(tmp_path: Path) -> None:
    path = _config(tmp_path, '[agent]\nlisten = "127.0.0.1:7999"\nlisen_port = 3\n')
    result = _agent("--config", str(path), "--check", tmp_path=tmp_path)
    assert result.returncode == 1
    assert "agent.lisen_port" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_check_refuses_a_public_address_without_a_token(tmp_path: Path) -> None:
    path = _config(tmp_path, '[agent]\nlisten = "0.0.0.0:7999"\nsources = []\n')
    result = _agent("--config", str(path), "--check", tmp_path=tmp_path, env={"HEADY_AGENT_TOKEN": ""})
    assert result.returncode == 1
    assert "without a token" in result.stderr


def test_check_accepts_a_public_address_with_a_token_from_the_environment(tmp_path: Path) -> None:
    path = _config(tmp_path, '[agent]\nlisten = "0.0.0.0:7999"\nsources = []\n')
    result = _agent("--config", str(path), "--check", tmp_path=tmp_path, env={"HEADY_AGENT_TOKEN": "s3cret-of-twenty-bytes"})
    assert result.returncode == 0


def test_check_refuses_a_public_address_with_a_token_shorter_than_16_bytes(tmp_path: Path) -> None:
    path = _config(tmp_path, '[agent]\nlisten = "0.0.0.0:7999"\nsources = []\n')
    result = _agent("--config", str(path), "--check", tmp_path=tmp_path, env={"HEADY_AGENT_TOKEN": "x"})
    assert result.returncode == 1
    assert "shorter than 16 bytes" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_check_refuses_the_old_prompt_template_with_one_line_naming_the_fix(tmp_path: Path) -> None:
    path = _config(
        tmp_path,
        '[agent]\nsources = ["managed"]\n[[agent.managed]]\nname = "w"\ncommand = ["claude"]\n'
        'prompt_command = ["claude", "-p", "{prompt}", "--resume", "{session}"]\n',
    )
    result = _agent("--config", str(path), "--check", tmp_path=tmp_path)
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1
    assert "agent.managed.0" in result.stderr
    assert 'after a "--" argument' in result.stderr


def test_check_reports_a_missing_tls_certificate(tmp_path: Path) -> None:
    path = _config(tmp_path, f'[agent]\nsources = []\ntls_cert = "{tmp_path}/no.pem"\ntls_key = "{tmp_path}/no.key"\n')
    result = _agent("--config", str(path), "--check", tmp_path=tmp_path)
    assert result.returncode == 1
    assert "tls_cert" in result.stderr


def test_startup_with_a_broken_config_exits_with_one_line(tmp_path: Path) -> None:
    path = _config(tmp_path, '[agent]\ninterval_s = "often"\n')
    result = _agent("--config", str(path), tmp_path=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "agent.interval_s" in result.stderr


def test_missing_explicit_config_file_is_an_error(tmp_path: Path) -> None:
    result = _agent("--config", str(tmp_path / "absent.toml"), "--check", tmp_path=tmp_path)
    assert result.returncode == 1
    assert "not found" in result.stderr


def test_unknown_source_on_the_command_line_is_a_usage_error(tmp_path: Path) -> None:
    result = _agent("--source", "telepathy", "--check", tmp_path=tmp_path)
    assert result.returncode == 2
    assert "telepathy" in result.stderr


async def _subscribe_and_read(proc: AgentProcess, since: int, journal: str | None, count: int) -> tuple[dict, list[dict]]:
    async with ws_connect(proc.url, proc.token) as ws:
        hello = await recv_json(ws)
        await ws.send(json.dumps({"type": "subscribe", "since": since, "journal": journal}))
        frames: list[dict] = []
        while len(frames) < count:
            frame = await recv_json(ws)
            if frame["type"] in ("metrics", "event"):
                frames.append(frame)
    return hello, frames


async def test_agent_restart_keeps_the_journal_id_and_continues_seq(tmp_path: Path) -> None:
    proc = AgentProcess(tmp_path, "node", sources=(), extra={"interval_s": 0.1})
    await proc.start()
    try:
        hello, before = await _subscribe_and_read(proc, 0, None, 5)
        await proc.restart()
        again, after = await _subscribe_and_read(proc, before[-1]["seq"], hello["journal"]["id"], 5)
    finally:
        await proc.terminate()
    assert again["journal"]["id"] == hello["journal"]["id"]
    seqs = [f["seq"] for f in before + after]
    assert seqs == list(range(1, len(seqs) + 1))


async def test_agent_killed_with_sigkill_resumes_its_journal(tmp_path: Path) -> None:
    proc = AgentProcess(tmp_path, "node", sources=(), extra={"interval_s": 0.1})
    await proc.start()
    try:
        hello, before = await _subscribe_and_read(proc, 0, None, 5)
        proc.kill9()
        await proc.start()
        again, after = await _subscribe_and_read(proc, before[-1]["seq"], hello["journal"]["id"], 3)
    finally:
        await proc.terminate()
    assert again["journal"]["id"] == hello["journal"]["id"]
    assert after[0]["seq"] == before[-1]["seq"] + 1
    assert again["node"]["id"] == "node"


async def test_agent_with_a_corrupt_journal_starts_a_new_one_and_says_so(tmp_path: Path) -> None:
    proc = AgentProcess(tmp_path, "node", sources=(), extra={"interval_s": 0.1})
    await proc.start()
    hello, _ = await _subscribe_and_read(proc, 0, None, 2)
    await proc.terminate()
    for side in proc.journal_path.parent.glob("agent-journal.db-*"):
        side.unlink()
    proc.journal_path.write_bytes(os.urandom(8192))
    await proc.start()
    try:
        async with ws_connect(proc.url, proc.token) as ws:
            again = await recv_json(ws)
            await ws.send(json.dumps({"type": "subscribe", "since": 0, "journal": None}))
            notice, _ = await recv_until(ws, lambda f: f.get("kind") == "agent.notice")
    finally:
        await proc.terminate()
    assert again["journal"]["id"] != hello["journal"]["id"]
    assert list(proc.journal_path.parent.glob("agent-journal.db.corrupt-*"))
    assert "moved it to" in notice["data"]["message"]
    assert "unreadable" in proc.log_tail()


async def test_the_token_never_appears_in_the_log(tmp_path: Path) -> None:
    proc = AgentProcess(tmp_path, "node", sources=(), token="very-secret-token-123")
    await proc.start()
    try:
        with pytest.raises(InvalidStatus):
            async with ws_connect(proc.url, "very-secret-token-124"):
                pass
        async with ws_connect(proc.url, proc.token) as ws:
            await recv_json(ws)
    finally:
        await proc.terminate()
    log = proc.log_path.read_text()
    assert "refused" in log
    assert "very-secret-token" not in log
