"""`heady run --headless` as a real child process against a hostile agent: nothing it sends reaches
the operator's terminal, refused numbers are named, and a session flood neither exhausts the
console's memory nor keeps it from stopping."""

from __future__ import annotations

import asyncio
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import psutil

from agentkit import wait_until
from hostile_agent import ESCAPE_BYTES, TOKEN, HostileAgent, flood, hostile_stream, once

WARM_FRAMES = 10  # of 2,500 new sessions each, past the bound of 2,000 a node from the first
FLOOD_FRAMES = 100  # 250,000 sessions in all
# Growth allowed from the warm point on. Measured: bounded, ~0; without the bound, ~100 MiB.
RSS_GROWTH_BOUND = 32 * 2**20
STOP_TIMEOUT_S = 60.0
BOUND_REFUSED = "more than 2000 live sessions"


def write_config(tmp_path: Path, url: str, *extra: str) -> tuple[str, ...]:
    config = tmp_path / "config.toml"
    config.write_text("\n".join(["[[nodes]]", 'name = "hostile"', f'url = "{url}"', f'token = "{TOKEN}"', "", *extra]) + "\n")
    return ("--config", str(config), "--data-dir", str(tmp_path / "data"))


def stderr_of(tmp_path: Path) -> str:
    return (tmp_path / "stderr").read_text(errors="replace")


def heady(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "heady_tui", *args], capture_output=True, text=True, timeout=120)


async def start_headless(tmp_path: Path, common: tuple[str, ...], *extra: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "heady_tui", "run", "--headless", *common, *extra,
        stdout=open(tmp_path / "stdout", "wb"), stderr=open(tmp_path / "stderr", "wb"),
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip


async def test_the_headless_console_prints_no_escape_and_names_each_refused_field(tmp_path):
    async with HostileAgent(once(hostile_stream())) as agent:
        common = write_config(tmp_path, agent.url)
        proc = await start_headless(tmp_path, common, "--for", "600")
        await wait_until(lambda: "metrics.cpu" in (tmp_path / "stderr").read_text(errors="replace"), timeout=60,
                         what="the last refused frame logged")  # fmt: skip
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), STOP_TIMEOUT_S) == 0
    out = (tmp_path / "stdout").read_text(errors="replace") + (tmp_path / "stderr").read_text(errors="replace")
    assert not [ch for ch in ESCAPE_BYTES if ch in out]
    for field in ("cost_usd: Input should be a finite number", "input_tokens", "event.ts", "metrics.cpu"):
        assert field in out
    listed = heady("sessions", "list", *common, "--timeout", "1")
    assert "s-click" in listed.stdout or "[@click" in listed.stdout
    assert not [ch for ch in ESCAPE_BYTES if ch in listed.stdout + listed.stderr]


async def test_the_console_data_files_are_private(tmp_path):
    async with HostileAgent(once(hostile_stream())) as agent:
        common = write_config(tmp_path, agent.url)
        proc = await start_headless(tmp_path, common, "--for", "600")
        await wait_until(lambda: (tmp_path / "data" / "heady.db-wal").exists(), timeout=60, what="the database in WAL mode")
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), STOP_TIMEOUT_S)
    data = tmp_path / "data"
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in data.iterdir() if p.is_file()} == {
        p.name: 0o600 for p in data.iterdir() if p.is_file()
    }


async def test_a_session_flood_stays_within_the_memory_bound_and_sigterm_still_stops_it(tmp_path):
    async with HostileAgent(lambda subscribe: flood()) as agent:
        common = write_config(tmp_path, agent.url)
        proc = await start_headless(tmp_path, common, "--for", "600")
        # Warm once the console itself has refused sessions past the bound (frames sent may still be
        # queued on their way in, and the console's own start-up is no part of the flood's growth).
        await wait_until(lambda: agent.sent >= WARM_FRAMES and BOUND_REFUSED in stderr_of(tmp_path), timeout=300,
                         what=f"{WARM_FRAMES} flood frames sent and the bound applied")  # fmt: skip
        warm = psutil.Process(proc.pid).memory_info().rss
        await wait_until(lambda: agent.sent >= FLOOD_FRAMES, timeout=300, what=f"{FLOOD_FRAMES} flood frames sent")
        flooded = psutil.Process(proc.pid).memory_info().rss
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), STOP_TIMEOUT_S) == 0
    assert flooded - warm < RSS_GROWTH_BOUND, f"RSS {warm / 2**20:.0f} -> {flooded / 2**20:.0f} MiB"
    assert BOUND_REFUSED in stderr_of(tmp_path)


async def test_for_ends_the_console_under_a_session_flood(tmp_path):
    async with HostileAgent(lambda subscribe: flood()) as agent:
        common = write_config(tmp_path, agent.url)
        proc = await start_headless(tmp_path, common, "--for", "3")
        assert await asyncio.wait_for(proc.wait(), STOP_TIMEOUT_S) == 0
        assert agent.sent > 0
