"""A high-priority rebalance run that reniced a session puts the nice value back when it stops and
counts it in `reverted` (it used to report `reverted: 0`: the agents did not say what the nice was
before, so there was nothing to revert to). Real synthetic agent, real supervisor and brain."""

from __future__ import annotations

from contextlib import AsyncExitStack

from agentkit import running_agent, wait_until

from heady_tui.config import Config, Paths
from heady_tui.engine.rebalance import Caps, PlannedAction, RebalancePlan
from heady_tui.supervisor import Supervisor


async def test_a_stopped_high_priority_run_reverts_its_renice_and_counts_it(tmp_path):
    events = []
    async with AsyncExitStack() as stack:
        agent = await stack.enter_async_context(running_agent(tmp_path, scenario="hot-node", speed=4.0, name="n0"))
        config = Config.model_validate({"nodes": [{"name": "n0", "url": agent.url, "token": agent.token}]})
        sup = Supervisor(config, Paths(tmp_path / "config.toml", tmp_path / "data"))
        await sup.start()
        stack.push_async_callback(sup.stop)
        sup.subscribe(events.append)
        def running():
            return next((s for s in sup.fleet.node_sessions("n0") if s.live and s.state == "running" and s.managed is None), None)

        await wait_until(lambda: running() is not None, timeout=30, what="a running session on n0")
        session = running()
        assert session.nice == 0
        renice = PlannedAction("renice", "n0", "session.renice", target=session.id, value=10, note="renice for the test")
        plan = RebalancePlan("high", (renice,), Caps.from_config(config.rebalance), 2.0, {"node_load_variance": 0.9})
        runner = sup.brain.rebalancer
        now = sup.clock.now()
        await runner._start_run(plan, None, now)
        await wait_until(lambda: sup.fleet.sessions[("n0", session.id)].nice == 10, timeout=30, what="the session reniced to 10")
        await runner.stop_run("stopped", sup.clock.now())
        status = sup.brain.rebalance_status()
        assert status.reverted == 1
        assert [e.details["reverted"] for e in events if e.name == "rebalance.stopped"] == [1]
        await wait_until(lambda: sup.fleet.sessions[("n0", session.id)].nice == 0, timeout=30, what="the nice value put back")
        reverts = [e.details for e in await sup.brain.audit_entries(500) if e.action == "rebalance.revert"]
        assert [(r["action"], r["target"], r["args"], r["reverts"]) for r in reverts] == [
            ("session.renice", session.id, {"nice": 0}, "session.renice")]
        stop = [e.details for e in await sup.brain.audit_entries(500) if e.action == "rebalance.stop"]
        assert [s["reverted"] for s in stop] == [1]
