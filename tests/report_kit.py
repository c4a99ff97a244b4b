"""Helpers for the report tests: fill a real store with real protocol frames, open HTML in Chromium."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from heady_agent.protocol import Event, EventKind, Metrics
from heady_tui.store import Store

CHROMIUM_CANDIDATES = ("chromium", "chromium-browser", "google-chrome")


def metrics(seq: int, ts: float, *, load1: float, queue: int, cpu: float = 20.0) -> Metrics:
    return Metrics(journal="j1", seq=seq, ts=ts, cpu=cpu, load=[load1, load1, load1], mem=40.0, swap=0.0, queue_depth=queue)


def event(seq: int, ts: float, kind: EventKind, session: str | None, data: dict[str, Any]) -> Event:
    return Event(journal="j1", seq=seq, ts=ts, kind=kind, session=session, data=data)


def call(model: str, *, input_tokens: int = 0, output_tokens: int = 0, cache_read: int = 0, latency_ms: float = 800, ok: bool = True) -> dict[str, Any]:
    return {
        "provider": "anthropic" if model.startswith("claude") else "openai",
        "model": model,
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cache_creation_tokens": 0,
        "cache_read_tokens": cache_read,
        "cost_usd": None,
        "latency_ms": latency_ms,
        "ok": ok,
        "error": None if ok else "rate_limit",
    }


async def fill(store: Store, node: str, frames: Sequence[Metrics | Event], *, simulated: bool = False, cpu_count: int = 4) -> None:
    info = {"id": node, "hostname": f"{node}.lan", "agent_version": "0.1.0", "os": "linux", "cpu_count": cpu_count, "mem_total": 8 << 30, "labels": {}}
    await store.record_node(node, hostname=f"{node}.lan", info=info, simulated=simulated, now=frames[0].ts)
    await store.store_batch(node, "j1", frames)


def chromium() -> str:
    for name in CHROMIUM_CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("headless Chromium is not installed (apt-get install chromium) so the HTML report cannot be opened in a browser")


def open_in_chromium(page: Path, profile: Path) -> tuple[str, str]:
    """(DOM after load, browser log) of a local file in headless Chromium with networking off."""
    command = [
        chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
        "--enable-logging=stderr", "--v=0", "--dump-dom", page.as_uri(),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout, done.stderr
