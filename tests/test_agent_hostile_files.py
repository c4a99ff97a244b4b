"""The agent's files are readable by its user only: 0600 files in 0700 directories, also when an
older version left them wider."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest

from agentkit import running_agent
from heady_tui.launcher import demo_launcher


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_a_new_journal_and_its_wal_and_shm_are_0600_in_a_0700_directory(tmp_path: Path) -> None:
    async with running_agent(tmp_path, sources=(), extra={"interval_s": 0.05}, name="fresh") as agent:
        agent.server.context.notice("info", "written")  # the WAL exists once something was written
        journal = agent.journal_path
        modes = {p.name: _mode(p) for p in journal.parent.iterdir() if p.name.startswith(journal.name)}
        directory = _mode(journal.parent)
    assert modes == {journal.name: 0o600, f"{journal.name}-wal": 0o600, f"{journal.name}-shm": 0o600}
    assert directory == 0o700


async def test_a_journal_left_world_readable_is_made_private_when_reopened(tmp_path: Path) -> None:
    async with running_agent(tmp_path, sources=(), name="old") as agent:
        journal = agent.journal_path
    os.chmod(journal, 0o644)
    os.chmod(journal.parent, 0o755)
    async with running_agent(tmp_path, sources=(), name="old"):
        modes = (_mode(journal), _mode(journal.parent))
    assert modes == (0o600, 0o700)


async def test_a_token_file_readable_by_others_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="heady_agent.server")
    token_file = tmp_path / "agent.token"
    token_file.write_text("t0k\n")
    os.chmod(token_file, 0o644)
    async with running_agent(tmp_path, sources=(), token=None, extra={"token_file": str(token_file)}):
        pass
    assert any("readable by other users" in r.getMessage() for r in caplog.records)


async def test_launched_agents_get_private_config_log_and_directories_even_when_rewritten(tmp_path: Path) -> None:
    child_dir = tmp_path / "agents" / "sim-1"
    child_dir.mkdir(parents=True)
    for name in ("config.toml", "agent.log"):
        (child_dir / name).write_text("")
        os.chmod(child_dir / name, 0o644)
    os.chmod(child_dir, 0o755)
    launcher = demo_launcher(tmp_path, nodes=1, scenario="calm", speed=5)
    await launcher.start()
    try:
        modes = {p.name: _mode(p) for p in child_dir.iterdir() if p.name.startswith(("config", "agent"))}
        directories = (_mode(child_dir.parent), _mode(child_dir))
    finally:
        await launcher.stop()
    assert all(mode == 0o600 for mode in modes.values()), modes
    assert {"config.toml", "agent.log", "agent-journal.db"} <= set(modes)
    assert directories == (0o700, 0o700)
