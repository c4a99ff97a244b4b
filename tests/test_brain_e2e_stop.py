"""Quitting the console mid-rebalance: the run's reversible changes are put back before the links close.

Real synthetic agents on loopback (queue-overflow), the real Supervisor, a single grant. Once the run
has raised a node's concurrency, `supervisor.stop()` (what quitting the UI or ending `heady run`
does) must stop the run, revert the change through the still-open link, and audit both.
"""

from __future__ import annotations

from contextlib import AsyncExitStack

from agentkit import wait_until
from overflow_fleet import overflow_agents

from heady_tui.config import Config, Paths
from heady_tui.events import HeadyEvent
from heady_tui.records import Records
from heady_tui.store import Store
from heady_tui.supervisor import Supervisor

# As tests/test_brain_e2e.py, but the run never balances or times out by itself: only the stop ends it.
CONFIG = {
    "detector": {"evaluation_interval_s": 0.25, "for_seconds": 1, "clear_seconds": 2, "keep_firing_seconds": 1},
    "rebalance": {"step_interval_s": 0.25, "balanced_checks": 1000, "max_duration_s": 600},
    "healing": {"light_interval_s": 1, "full_interval_s": 2, "group_wait_s": 1},
}


def concurrency_raised(events: list[HeadyEvent]) -> HeadyEvent | None:
    return next((e for e in events if e.name == "rebalance.step" and e.details["action"] == "node.set_concurrency"
                 and e.details["ok"]), None)


async def test_stopping_the_console_mid_run_reverts_the_raised_concurrency_on_the_agent_and_audits_it(tmp_path):
    events: list[HeadyEvent] = []
    async with AsyncExitStack() as stack:
        sources, nodes = await overflow_agents(stack, tmp_path)
        before = {name: s.concurrency for name, s in sources.items()}
        paths = Paths(tmp_path / "config.toml", tmp_path / "data")
        sup = Supervisor(Config.model_validate({"nodes": nodes, **CONFIG}), paths)
        sup.subscribe(events.append)
        await sup.start()
        stack.push_async_callback(sup.stop)
        brain = sup.brain
        await wait_until(lambda: bool(brain.pending_consent()), timeout=60, what="a consent request")
        await brain.decide_consent(brain.pending_consent()[0].id, "single")
        await wait_until(lambda: concurrency_raised(events) is not None, timeout=60, what="a node.set_concurrency step")
        node = concurrency_raised(events).details["node"]
        run = concurrency_raised(events).details["run"]
        assert sources[node].concurrency > before[node]

        await sup.stop()

        assert sources[node].concurrency == before[node], "the agent still runs at the raised concurrency"
        stopped = [e.details for e in events if e.name == "rebalance.stopped"]
        assert [(s["run"], s["reason"]) for s in stopped] == [(run, "stopped")] and stopped[0]["reverted"] >= 1

    store = await Store.open(paths.database)
    try:
        records = await Records.open(store, paths.audit_anchor)
        entries = await records.audit_entries()
        reverts = [e.details for e in entries if e.action == "rebalance.revert"]
        assert {"run": run, "node": node, "action": "node.set_concurrency", "args": {"value": before[node]},
                "ok": True}.items() <= next(r for r in reverts if r["node"] == node).items()
        actions = [e.action for e in entries]
        assert actions.index("rebalance.revert") < actions.index("rebalance.stop")
        assert [(e.details["run"], e.details["reason"]) for e in entries if e.action == "rebalance.stop"] == [(run, "stopped")]
        assert (await records.verify_audit()).ok
    finally:
        await store.close()
