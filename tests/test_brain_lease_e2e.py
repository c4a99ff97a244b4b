"""Two consoles on one database and one fleet, with real synthetic agents on loopback: only the brain
holding the lease acts; the other is view-only until the holder stops or dies.

Commands are counted where they land, in the agents' command log; decisions in the audit chain.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from contextlib import AsyncExitStack
from typing import Any

import pytest
from agentkit import running_agent, wait_until
from overflow_fleet import heady, overflow_fleet

from heady_tui.config import Config, Paths, load_config
from heady_tui.events import HeadyEvent
from heady_tui.supervisor import Supervisor

LEASE_S = 4.0
LINE_TIMEOUT_S = 90.0
FAST: dict[str, Any] = {
    "detector": {"evaluation_interval_s": 0.25, "for_seconds": 1, "clear_seconds": 2, "keep_firing_seconds": 1},
    "healing": {"light_interval_s": 0.5, "full_interval_s": 2, "group_wait_s": 1},
    "brain": {"lease_s": LEASE_S},
}
RUNAWAY_ONLY = {"policies": {"kill_on_cost": {"max_session_cost_usd": 5.0}, "resume_on_idle": {"enabled": False},
                             "restart_on_compaction": {"enabled": False}}}


def named(events: list[HeadyEvent], name: str, **match: Any) -> list[HeadyEvent]:
    return [e for e in events if e.name == name and all(e.details.get(k) == v for k, v in match.items())]


def commands_received(caplog: pytest.LogCaptureFixture, action: str) -> list[str]:
    """Targets of every `action` command the in-process agents ran, from their command log (which
    quotes them: console input is echoed escaped)."""
    return [str(r.args[2]).strip("'") for r in caplog.records
            if r.name == "heady_agent.server" and str(r.msg).startswith("command ") and isinstance(r.args, tuple) and r.args[1] == action]


async def console(stack: AsyncExitStack, config: Config, paths: Paths, events: list[HeadyEvent]) -> Supervisor:
    sup = Supervisor(config, paths)
    sup.subscribe(events.append)
    await sup.start()
    stack.push_async_callback(sup.stop)
    return sup


async def runaway_fleet(tmp_path, stack: AsyncExitStack) -> tuple[Config, Paths]:
    agent = await stack.enter_async_context(running_agent(tmp_path, scenario="runaway-cost", speed=4.0, name="n0",
                                                          extra={"interval_s": 0.25}))
    config = Config.model_validate({"nodes": [{"name": "n0", "url": agent.url, "token": agent.token}], **FAST, **RUNAWAY_ONLY})
    return config, Paths(tmp_path / "config.toml", tmp_path / "data")


def renewed_since(sup: Supervisor, expires: float) -> bool:
    """This console has read the lease renewed past `expires` (the holder lived on while it watched)."""
    view = sup.brain.lease_view() if sup.brain is not None else None
    return view is not None and view.expires > expires


async def test_two_consoles_on_a_runaway_fleet_kill_the_session_once(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="heady_agent.server")
    first_events: list[HeadyEvent] = []
    second_events: list[HeadyEvent] = []
    async with AsyncExitStack() as stack:
        config, paths = await runaway_fleet(tmp_path, stack)
        first = await console(stack, config, paths, first_events)
        second = await console(stack, config, paths, second_events)
        holder = first.brain.lease_view()
        assert holder.role == "acting" and second.brain.lease_view().role == "view-only"
        assert [(e.details["role"], e.details["holder"]) for e in named(second_events, "brain.role")] == [("view-only", holder.me)]

        await wait_until(lambda: bool(named(first_events, "policy.action", policy="kill_on_cost")), timeout=60,
                         what="the acting console's kill_on_cost")
        killed = named(first_events, "policy.action", policy="kill_on_cost")[0].details["session"]
        await wait_until(lambda: not first.fleet.sessions[("n0", killed)].active, timeout=60, what="the killed session to end")
        await wait_until(lambda: renewed_since(second, holder.expires + LEASE_S), timeout=60,
                         what="the view-only console to watch two lease times go by")

        assert commands_received(caplog, "session.kill") == [killed]
        assert not named(second_events, "policy.action") and second.brain.lease_view().role == "view-only"
        kills = [e for e in await first.brain.audit_entries(2000) if e.action == "policy.action"]
        assert [(e.details["session"], e.details["fence"]) for e in kills] == [(killed, holder.token)]
        assert (await first.brain.verify_audit()).ok


async def test_the_view_only_console_takes_over_when_the_acting_one_stops(tmp_path):
    first_events: list[HeadyEvent] = []
    second_events: list[HeadyEvent] = []
    async with AsyncExitStack() as stack:
        config, paths = await runaway_fleet(tmp_path, stack)
        first = Supervisor(config, paths)
        first.subscribe(first_events.append)
        await first.start()
        try:
            second = await console(stack, config, paths, second_events)
            leaving = first.brain.lease_view()
        finally:
            await first.stop()
        await wait_until(lambda: bool(named(second_events, "brain.role", role="acting")), timeout=30,
                         what="the second console to take the lease")
        takeover = named(second_events, "brain.role", role="acting")[0].details
        assert takeover["previous"] == leaving.me and takeover["fence"] == leaving.token + 1
        await wait_until(lambda: bool(named(second_events, "policy.action", policy="kill_on_cost")), timeout=60,
                         what="the new holder's kill_on_cost")
        assert second.brain.lease_view().role == "acting"


async def read_lines(proc: asyncio.subprocess.Process, into: list[dict[str, Any]]) -> None:
    """Every JSON line of the child, so its stdout never fills and stalls it."""
    assert proc.stdout is not None
    while line := await proc.stdout.readline():
        into.append(json.loads(line))


async def test_a_killed_acting_console_is_replaced_and_its_live_run_reverted_only_then(tmp_path):
    async with AsyncExitStack() as stack:
        fleet = await overflow_fleet(stack, tmp_path, "lease test", [f"[brain]\nlease_s = {LEASE_S}\n"])
        sources, before, common = fleet.sources, fleet.before, fleet.common

        lines: list[dict[str, Any]] = []
        stderr = stack.enter_context(open(tmp_path / "console.stderr", "wb"))
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "heady_tui", "run", "--headless", *common,
            stdout=asyncio.subprocess.PIPE, stderr=stderr, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        stack.callback(lambda: proc.returncode is None and proc.send_signal(signal.SIGKILL))
        reader = asyncio.create_task(read_lines(proc, lines))

        def raised() -> list[dict[str, Any]]:
            return [e for e in lines if e["event"] == "rebalance.step" and e["action"] == "node.set_concurrency" and e["ok"]]

        await wait_until(lambda: bool(raised()), timeout=LINE_TIMEOUT_S, what="the headless console to raise a concurrency")
        step = raised()[0]
        node = step["node"]
        role = next(e for e in lines if e["event"] == "brain.role")
        assert role["role"] == "acting"
        # No new run after the takeover: the second console would have to ask.
        assert heady("permissions", "revoke", fleet.grant_id, *common).returncode == 0

        events: list[HeadyEvent] = []
        second = await console(stack, load_config(fleet.paths, required=True), fleet.paths, events)
        assert second.brain.lease_view().role == "view-only" and second.brain.lease_view().holder == role["holder"]
        await wait_until(lambda: renewed_since(second, role["expires"] + LEASE_S), timeout=60,
                         what="the view-only console to watch the holder renew")
        assert not named(events, "rebalance.stopped") and sources[node].concurrency > before[node]

        proc.send_signal(signal.SIGKILL)
        await proc.wait()
        await reader
        await wait_until(lambda: bool(named(events, "brain.role", role="acting")), timeout=60,
                         what="the second console to take the lease over")
        await wait_until(lambda: bool(named(events, "rebalance.stopped", reason="crashed")), timeout=60,
                         what="the dead holder's run closed")
        assert sources[node].concurrency == before[node]
        entries = await second.brain.audit_entries(5000)
        (takeover,) = [e for e in entries if e.action == "brain.lease" and e.details["previous"] == role["holder"]]
        assert 0 <= takeover.ts - takeover.details["previous_expires"] < LEASE_S
        stops = [e.details for e in entries if e.action == "rebalance.stop"]
        assert [(s["run"], s["reason"], s["fence"]) for s in stops] == [(step["run"], "crashed", takeover.details["fence"])]
        assert not named(events, "rebalance.started") and (await second.brain.verify_audit()).ok
