"""The brain inside the real supervisor, against real synthetic agents on loopback."""

from __future__ import annotations

from contextlib import AsyncExitStack

from agentkit import running_agent, wait_until

from heady_tui.config import Config, Paths
from heady_tui.supervisor import Supervisor

FAST = {
    "detector": {"evaluation_interval_s": 0.5, "for_seconds": 1, "clear_seconds": 2, "keep_firing_seconds": 1},
    "rebalance": {"step_interval_s": 0.5, "balanced_checks": 2, "max_duration_s": 60},
    "healing": {"light_interval_s": 1, "full_interval_s": 2, "group_wait_s": 1},
}


async def fleet(tmp_path, stack: AsyncExitStack, scenario: str, count: int = 3, speed: float = 4.0) -> Supervisor:
    nodes = []
    for i in range(count):
        agent = await stack.enter_async_context(
            running_agent(tmp_path, scenario=scenario, node_index=i, node_count=count, speed=speed, name=f"n{i}"))
        nodes.append({"name": f"n{i}", "url": agent.url, "token": agent.token})
    config = Config.model_validate({"nodes": nodes, **FAST})
    sup = Supervisor(config, Paths(tmp_path / "config.toml", tmp_path / "data"))
    await sup.start()
    stack.push_async_callback(sup.stop)
    return sup


async def test_queue_overflow_without_a_grant_asks_for_consent_and_changes_nothing(tmp_path):
    events = []
    async with AsyncExitStack() as stack:
        sup = await fleet(tmp_path, stack, "queue-overflow")
        sup.subscribe(events.append)
        await wait_until(lambda: any(e.name == "consent.requested" for e in events), timeout=60, what="consent.requested")
        brain = sup.brain
        request = brain.pending_consent()[0]
        assert request.plan["priority"] == "critical" and request.plan["actions"]
        assert not any(e.name.startswith("rebalance.") for e in events)
        assert brain.rebalance_status() is None
        assert (await brain.verify_audit()).ok


async def test_queue_overflow_with_a_single_grant_rebalances_stops_and_spends_the_grant(tmp_path):
    events = []
    async with AsyncExitStack() as stack:
        sup = await fleet(tmp_path, stack, "queue-overflow", speed=10.0)
        sup.subscribe(events.append)
        brain = sup.brain
        await wait_until(lambda: bool(brain.pending_consent()), timeout=60, what="a consent request")
        grant = await brain.decide_consent(brain.pending_consent()[0].id, "single")
        await wait_until(lambda: any(e.name == "rebalance.stopped" for e in events), timeout=90, what="rebalance.stopped")
        status = brain.rebalance_status()
        assert status.grant_id == grant.id and status.steps_done >= 1
        assert [g.status(sup.clock.now()) for g in brain.grants(include_inactive=True) if g.id == grant.id] == ["spent"]
        actions = [e.action for e in await brain.audit_entries(500)]
        assert actions.count("rebalance.start") == 1 and actions.count("rebalance.stop") == 1
        assert actions.count("rebalance.step") == sum(1 for e in events if e.name == "rebalance.step" and not str(e.details.get("error") or "").startswith("skipped"))
        assert (await brain.verify_audit()).ok
        assert status.reason_stopped == "balanced" and status.restored


async def test_a_stopped_rebalance_run_stores_the_highest_node_cpu_seen_during_it(tmp_path):
    events = []
    async with AsyncExitStack() as stack:
        sup = await fleet(tmp_path, stack, "queue-overflow", speed=10.0)
        sup.subscribe(events.append)
        brain = sup.brain
        await wait_until(lambda: bool(brain.pending_consent()), timeout=60, what="a consent request")
        await brain.decide_consent(brain.pending_consent()[0].id, "single")
        await wait_until(lambda: any(e.name == "rebalance.stopped" for e in events), timeout=90, what="rebalance.stopped")
        stop = [e for e in await brain.audit_entries(500) if e.action == "rebalance.stop"][0]
        assert 0.0 < stop.details["peak_cpu_percent"] <= 100.0
