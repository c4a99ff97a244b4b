"""Test kit for the console UI: the real app on a real supervisor.

- `live_console(tmp_path, ...)`: in-process agents with the synthetic source on loopback, a
  Supervisor linked to them, and HeadyApp driven by Pilot (the app starts and stops the supervisor).
- `fixed_console(tmp_path, ...)`: the same app on a fixed, clock-frozen fleet (heady_tui.ui.samplefleet)
  for snapshots and for behaviour that needs exact data.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

from heady_agent.clock import ManualClock
from heady_tui.brain.core import Brain
from heady_tui.config import Config, Paths
from heady_tui.supervisor import Supervisor
from heady_tui.ui.application import HeadyApp
from heady_agent.protocol import Metrics
from heady_tui.ui.samplefleet import FIXED_START, close_offline, feed_fleet, open_offline
from agentkit import running_agent

WAIT_S = 30.0

# A detector that decides within a second or two, so scenarios show their condition quickly.
FAST_DETECTOR = {
    "evaluation_interval_s": 0.25,
    "for_seconds": 0.5,
    "clear_seconds": 0.5,
    "keep_firing_seconds": 0.5,
}


def fast_config(nodes: list[dict[str, Any]] | None = None, **sections: Any) -> Config:
    raw: dict[str, Any] = {"nodes": nodes or [], "detector": dict(FAST_DETECTOR), "ui": {"refresh_hz": 20}}
    for key, value in sections.items():
        raw[key] = {**raw.get(key, {}), **value}
    return Config.model_validate(raw)


async def wait_until(pilot: Any, condition: Callable[[], Any], what: str, timeout: float = WAIT_S) -> Any:
    """Poll (letting the app run) until condition() is truthy; fail naming `what`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = condition()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        await pilot.pause(0.05)


async def wait_for_audit(pilot: Any, brain: Brain, action: str, what: str, timeout: float = WAIT_S) -> list[Any]:
    """Poll the audit trail until it holds an entry for `action` (an operator action audits after it applied)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        entries = [e for e in await brain.audit_entries(2000) if e.action == action]
        if entries:
            return entries
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        await pilot.pause(0.05)


@asynccontextmanager
async def live_console(
    tmp_path: Path,
    *,
    scenario: str = "calm",
    nodes: int = 2,
    speed: float = 4.0,
    read_only: bool = False,
    size: tuple[int, int] = (120, 40),
    **sections: Any,
) -> AsyncIterator[tuple[HeadyApp, Any]]:
    async with AsyncExitStack() as stack:
        agents = [
            await stack.enter_async_context(
                running_agent(tmp_path, scenario=scenario, node_index=i, node_count=nodes, speed=speed, name=f"node{i}")
            )
            for i in range(nodes)
        ]
        config = fast_config(
            [{"name": f"node{i}", "url": agent.url, "token": agent.token} for i, agent in enumerate(agents)], **sections
        )
        paths = Paths(tmp_path / "config.toml", tmp_path / "console")
        supervisor = Supervisor(config, paths)
        app = HeadyApp(supervisor, config, read_only=read_only)
        async with app.run_test(size=size) as pilot:
            await wait_until(pilot, lambda: supervisor.started and supervisor.brain is not None, "the supervisor to start")
            yield app, pilot


@asynccontextmanager
async def fixed_console(
    tmp_path: Path,
    *,
    size: tuple[int, int] = (120, 40),
    read_only: bool = False,
    theme: str | None = None,
    config: Config | None = None,
    **feed: Any,
) -> AsyncIterator[tuple[HeadyApp, Any, ManualClock]]:
    clock = ManualClock(FIXED_START)
    config = config or Config()
    paths = Paths(tmp_path / "config.toml", tmp_path / "console")
    supervisor: Supervisor = await open_offline(config, paths, clock)
    try:
        await feed_fleet(supervisor, clock, **feed)
        app = HeadyApp(supervisor, config, read_only=read_only, theme=theme, manage_supervisor=False)
        async with app.run_test(size=size) as pilot:
            app.refresh_now(force=True)
            await pilot.pause()
            yield app, pilot, clock
    finally:
        await close_offline(supervisor)


async def push_samples(supervisor: Supervisor, clock: ManualClock, queues: dict[str, int] | None = None) -> None:
    """One fresh metrics frame per online node (its last values, queue depths overridden), through
    the same entry point the node links use."""
    for node in list(supervisor.fleet.nodes.values()):
        m = node.metrics
        if node.status != "online" or m is None or node.journal is None:
            continue
        frame = Metrics(
            journal=node.journal, seq=node.last_seq + 1, ts=clock.now(), cpu=m.cpu, load=list(m.load), mem=m.mem,
            swap=m.swap, mem_available=m.mem_available, queue_depth=(queues or {}).get(node.id, m.queue_depth),
            simulated=node.simulated,
        )
        await supervisor.link_frames(node.id, node.journal, [frame])


async def tick(supervisor: Supervisor, clock: ManualClock, queues: dict[str, int] | None = None) -> None:
    clock.advance(0.5)
    await push_samples(supervisor, clock, queues)
    await supervisor.brain.tick()


OVERFLOW = {"build-1": 1400}


async def drive_to_consent(app: HeadyApp, pilot: Any, clock: ManualClock) -> Any:
    """Overflow build-1's queue past critical and tick the brain until it asks for consent."""
    supervisor = app.supervisor
    for _ in range(20):
        await tick(supervisor, clock, OVERFLOW)
        if supervisor.brain.pending_consent():
            break
    requests = supervisor.brain.pending_consent()
    assert requests, "the brain never asked for consent"
    return requests[0]
