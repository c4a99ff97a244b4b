"""`heady demo` keeps its simulated fleet out of the real database (the real command, a child process)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import sys
from pathlib import Path

from heady_agent.config import APP_NAME
from heady_tui.store import Store

TIMEOUT_S = 120.0
REAL_NODE = "build-1"


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEADY_")}
    env["XDG_CONFIG_HOME"] = str(tmp_path / "xdg-config")
    env["XDG_DATA_HOME"] = str(tmp_path / "xdg-data")
    return env


async def _demo(tmp_path: Path, *extra: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "heady_tui", "demo", "--headless", "--nodes", "2", "--speed", "5", "--for", "4", *extra,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, env=_env(tmp_path),
    )  # fmt: skip
    _, err = await asyncio.wait_for(proc.communicate(), TIMEOUT_S)
    assert proc.returncode == 0, err.decode()[-2000:]


def _snapshot(root: Path, *, skip: Path) -> dict[str, str]:
    """Every file under root (but not under skip) -> sha256 of its bytes."""
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file() and skip not in path.parents
    }


async def _node_ids(database: Path) -> set[str]:
    store = await Store.open(database)
    try:
        return {row["id"] for row in await store.nodes()}
    finally:
        await store.close()


async def _real_database(data: Path) -> None:
    data.mkdir(parents=True)
    store = await Store.open(data / "heady.db")
    try:
        await store.record_node(REAL_NODE, hostname="build-1.lan", info={"id": REAL_NODE}, simulated=False, now=1.0)
    finally:
        await store.close()


async def test_demo_leaves_the_default_data_directory_untouched(tmp_path):
    default = tmp_path / "xdg-data" / APP_NAME
    await _real_database(default)
    before = _snapshot(default, skip=default / "demo")

    await _demo(tmp_path)

    assert _snapshot(default, skip=default / "demo") == before
    assert await _node_ids(default / "heady.db") == {REAL_NODE}


async def test_demo_keeps_its_simulated_fleet_in_the_demo_directory(tmp_path):
    default = tmp_path / "xdg-data" / APP_NAME

    await _demo(tmp_path)

    assert await _node_ids(default / "demo" / "heady.db") == {"sim-1", "sim-2"}
    assert not (default / "heady.db").exists()


async def test_demo_uses_an_explicit_data_dir_as_given(tmp_path):
    chosen = tmp_path / "chosen"

    await _demo(tmp_path, "--data-dir", str(chosen))

    assert await _node_ids(chosen / "heady.db") == {"sim-1", "sim-2"}
    assert (chosen / "agents" / "sim-1").is_dir()
    assert not (tmp_path / "xdg-data" / APP_NAME).exists()
