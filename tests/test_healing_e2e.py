"""Truthful healing tasks in the real supervisor against real synthetic agents on loopback."""

from __future__ import annotations

from collections import Counter
from contextlib import AsyncExitStack

from agentkit import wait_until

from heady_tui.events import HeadyEvent
from test_brain_e2e_policies import FAST, named, supervised

NO_POLICIES = {"resume_on_idle": {"enabled": False}, "restart_on_compaction": {"enabled": False},
               "kill_on_cost": {"enabled": False}}


async def test_with_a_1_usd_budget_cost_control_pauses_each_session_at_most_once(tmp_path):
    events: list[HeadyEvent] = []
    async with AsyncExitStack() as stack:
        sup = await supervised(tmp_path, stack, "runaway-cost", count=1, speed=4.0, events=events, overrides={
            "cost": {"daily_budget_usd": 1.0}, "policies": NO_POLICIES,
            "healing": {**FAST["healing"], "auto_dispatch": ["cost_control"]}})
        await wait_until(lambda: bool(named(events, "task.done", strategy="cost_control")), timeout=60,
                         what="a cost_control task done")
        [first] = named(events, "task.done", strategy="cost_control")
        cycles = len(named(events, "healing.cycle"))
        await wait_until(lambda: len(named(events, "healing.cycle")) >= cycles + 15, timeout=90, what="15 more healing cycles")
        per_session = Counter(e.details["subject"] for e in named(events, "task.created", strategy="cost_control"))
        assert per_session[first.details["subject"]] == 1 and max(per_session.values()) == 1
        session = first.details["subject"].split("/", 1)[1]
        assert sup.fleet.sessions[("n0", session)].state == "paused"
        assert all(t.state in ("done", "failed") and t.result for t in sup.brain.tasks() if t.strategy == "cost_control"
                   and t.state not in ("suggested", "dispatched"))
