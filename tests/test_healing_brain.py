"""The healing loop in the real brain on the fixed fleet (real store and records, ManualClock): a critical
weak point's webhook alert, tasks heady cannot act on, the approvals queue's order."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from collections.abc import AsyncIterator

from heady_agent.clock import ManualClock
from heady_agent.protocol import Hello, JournalInfo, NodeInfo
from heady_tui.alerts import AlertDispatcher
from heady_tui.config import Config, Paths
from heady_tui.events import HeadyEvent
from heady_tui.supervisor import Supervisor
from heady_tui.ui.samplefleet import FIXED_START, close_offline, feed_fleet, open_offline
from reports_httpkit import FakeService

FAST_HEALING = {"light_interval_s": 1, "full_interval_s": 2, "group_wait_s": 0}


@asynccontextmanager
async def fixed_brain(tmp_path, **healing: object) -> AsyncIterator[tuple[Supervisor, ManualClock, list[HeadyEvent]]]:
    """The fixed fleet (edge-1 offline) on a real supervisor, store and brain, with its events recorded."""
    clock = ManualClock(FIXED_START)
    config = Config.model_validate({"healing": {**FAST_HEALING, **healing}})
    sup = await open_offline(config, Paths(tmp_path / "config.toml", tmp_path / "console"), clock)
    events: list[HeadyEvent] = []
    sup.subscribe(events.append)
    try:
        await feed_fleet(sup, clock)
        yield sup, clock, events
    finally:
        await close_offline(sup)


async def ticks(sup: Supervisor, clock: ManualClock, n: int) -> None:
    assert sup.brain is not None
    for _ in range(n):
        clock.advance(1)
        await sup.brain.tick()


async def upgrade(sup: Supervisor, node: str, version: str) -> None:
    """The node's agent says hello with another version (as after a deploy on that node alone)."""
    info = NodeInfo(id=node, hostname=f"{node}.lab", agent_version=version, os="Linux 6.8", cpu_count=8, mem_total=2**35)
    await sup.link_hello(node, Hello(protocol=1, node=info, journal=JournalInfo(id=f"j-{node}", first_seq=1, last_seq=0),
                                     simulated=True), f"j-{node}")


async def test_a_critical_weak_point_raises_one_webhook_alert_however_many_cycles_see_it(tmp_path):
    with FakeService() as receiver:
        async with fixed_brain(tmp_path) as (sup, clock, events):
            # No de-duplication window: only the healing loop keeps the alert to one per weak point.
            alerts = Config.model_validate({"alerts": {"dedupe_window_s": 0, "webhooks": [
                {"kind": "json", "url": receiver.url + "/hook", "min_severity": "critical"}]}}).alerts
            dispatcher = AlertDispatcher(alerts, clock)
            await dispatcher.start()
            sup.subscribe(dispatcher.handle)
            try:
                await ticks(sup, clock, 12)
                await asyncio.wait_for(dispatcher.drain(), timeout=30)
            finally:
                await dispatcher.stop()
    cycles = [e for e in events if e.name == "healing.cycle"]
    [critical] = [e for e in events if e.name == "healing.critical"]
    assert len(cycles) >= 6 and critical.details["subject"] == "edge-1" and critical.details["strategy"] == "revive_agent"
    [request] = [r.json() for r in receiver.requests if r.json()["event"] == "healing.critical"]
    assert request["severity"] == "critical" and request["weak_point"] == critical.details["weak_point"]
    assert "edge-1 is offline" in request["issues"]


async def test_the_open_weak_points_are_critical_first(tmp_path):
    async with fixed_brain(tmp_path, group_wait_s=60) as (sup, clock, events):
        await upgrade(sup, "gpu-1", "0.0.9")
        await ticks(sup, clock, 4)
        assert sup.brain is not None
        assert [(wp.subject, wp.severity) for wp in sup.brain.weak_points()] == [("edge-1", "critical"), ("gpu-1", "warning")]


async def test_a_task_heady_cannot_act_on_ends_failed_with_the_reason_not_done(tmp_path):
    async with fixed_brain(tmp_path) as (sup, clock, events):
        await upgrade(sup, "gpu-1", "0.0.9")
        await ticks(sup, clock, 4)
        assert sup.brain is not None
        [task] = [t for t in sup.brain.tasks() if t.strategy == "environment_sync"]
        assert task.state == "failed" and task.result is not None
        assert task.result.startswith("heady cannot act on this: ") and "gpu-1 runs agent 0.0.9" in task.result
        assert [e.name for e in events if e.details.get("task") == task.id] == ["task.created", "task.dispatched", "task.failed"]
        # The condition holds, the task ended: no second task for the same weak point.
        await ticks(sup, clock, 6)
        assert len([t for t in sup.brain.tasks() if t.strategy == "environment_sync"]) == 1


async def test_the_approvals_queue_is_ordered_by_priority_then_age(tmp_path):
    async with fixed_brain(tmp_path, auto_dispatch=[]) as (sup, clock, events):
        await upgrade(sup, "gpu-1", "0.0.9")
        await ticks(sup, clock, 2)
        await upgrade(sup, "build-1", "0.0.8")
        await ticks(sup, clock, 3)
        assert sup.brain is not None
        queue = [(t.subject, t.priority) for t in sup.brain.awaiting_approval()]
        assert queue == [("edge-1", "critical"), ("gpu-1", "low"), ("build-1", "low")]
