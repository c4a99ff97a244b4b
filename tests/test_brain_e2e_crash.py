"""A console killed mid-rebalance: the next console on the same database reverts what the run left.

`heady run --headless` runs as a real child process against real synthetic agents on loopback; it
rebalances under a persistent grant, raises a node's concurrency, and is killed with SIGKILL (no
stop, no revert). A new Supervisor on the same data dir puts the concurrency back when the node is
online, closes the run as crashed and audits both.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from contextlib import AsyncExitStack
from typing import Any

from agentkit import wait_until
from overflow_fleet import heady, overflow_fleet

from heady_tui.config import load_config
from heady_tui.events import HeadyEvent
from heady_tui.supervisor import Supervisor

LINE_TIMEOUT_S = 90.0


async def read_until_concurrency_step(proc: asyncio.subprocess.Process) -> dict[str, Any]:
    """JSON lines from the child until a successful node.set_concurrency step."""
    assert proc.stdout is not None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + LINE_TIMEOUT_S
    while True:
        line = await asyncio.wait_for(proc.stdout.readline(), max(0.1, deadline - loop.time()))
        assert line, "heady run --headless ended before it raised concurrency"
        event = json.loads(line)
        if event["event"] == "rebalance.step" and event["action"] == "node.set_concurrency" and event["ok"]:
            return event


async def test_a_new_console_reverts_the_concurrency_a_killed_console_left_raised_and_audits_it(tmp_path):
    async with AsyncExitStack() as stack:
        fleet = await overflow_fleet(stack, tmp_path, "crash test")
        sources, before, common = fleet.sources, fleet.before, fleet.common

        with open(tmp_path / "console.stderr", "wb") as stderr:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "heady_tui", "run", "--headless", *common,
                stdout=asyncio.subprocess.PIPE, stderr=stderr, env={**os.environ, "PYTHONUNBUFFERED": "1"})
            try:
                step = await read_until_concurrency_step(proc)
            finally:
                if proc.returncode is None:
                    proc.send_signal(signal.SIGKILL)
                await proc.wait()
        node = step["node"]
        assert sources[node].concurrency > before[node], "the killed console left its change applied"

        # The operator revokes the grant before restarting, so the new console does not rebalance again.
        assert heady("permissions", "revoke", fleet.grant_id, *common).returncode == 0
        events: list[HeadyEvent] = []
        sup = Supervisor(load_config(fleet.paths, required=True), fleet.paths)
        sup.subscribe(events.append)
        await sup.start()
        stack.push_async_callback(sup.stop)
        await wait_until(lambda: any(e.name == "rebalance.stopped" and e.details["reason"] == "crashed" for e in events),
                         timeout=60, what="the crashed run closed")
        assert sources[node].concurrency == before[node]
        stopped = next(e for e in events if e.name == "rebalance.stopped")
        assert stopped.details["run"] == step["run"] and stopped.details["reverted"] >= 1
        entries = await sup.brain.audit_entries(2000)
        reverts = [e.details for e in entries if e.action == "rebalance.revert"]
        assert {"run": step["run"], "node": node, "action": "node.set_concurrency", "args": {"value": before[node]},
                "ok": True}.items() <= next(r for r in reverts if r["node"] == node).items()
        stops = [e.details for e in entries if e.action == "rebalance.stop"]
        assert [(s["run"], s["reason"]) for s in stops] == [(step["run"], "crashed")]
        assert (await sup.brain.verify_audit()).ok
        assert not any(e.name == "rebalance.started" for e in events)
