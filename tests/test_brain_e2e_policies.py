"""Policies and healing inside the real supervisor, against real synthetic agents on loopback.

Each test runs a synthetic scenario fast (speed > 1) with small thresholds, and waits for the
condition by polling; assertions are on the events published, the audit chain and the fleet.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any

from agentkit import running_agent, wait_until

from heady_tui.config import Config, Paths
from heady_tui.events import HeadyEvent
from heady_tui.supervisor import Supervisor

FAST: dict[str, Any] = {
    "detector": {"evaluation_interval_s": 0.25, "for_seconds": 1, "clear_seconds": 2, "keep_firing_seconds": 1},
    "healing": {"light_interval_s": 0.5, "full_interval_s": 2, "group_wait_s": 1},
}


async def supervised(tmp_path, stack: AsyncExitStack, scenario: str, *, count: int, speed: float,
                     overrides: dict[str, Any], events: list[HeadyEvent], agents: list[Any] | None = None) -> Supervisor:
    nodes = []
    for i in range(count):
        agent = await stack.enter_async_context(
            running_agent(tmp_path, scenario=scenario, node_index=i, node_count=count, speed=speed, name=f"n{i}",
                          extra={"interval_s": 0.25}))
        nodes.append({"name": f"n{i}", "url": agent.url, "token": agent.token})
        if agents is not None:
            agents.append(agent)
    config = Config.model_validate({"nodes": nodes, **FAST, **overrides})
    sup = Supervisor(config, Paths(tmp_path / "config.toml", tmp_path / "data"))
    sup.subscribe(events.append)
    await sup.start()
    stack.push_async_callback(sup.stop)
    return sup


def named(events: list[HeadyEvent], name: str, **match: Any) -> list[HeadyEvent]:
    return [e for e in events if e.name == name and all(e.details.get(k) == v for k, v in match.items())]


async def test_runaway_cost_kills_the_runaway_session_exactly_once_and_it_stays_dead(tmp_path):
    events: list[HeadyEvent] = []
    async with AsyncExitStack() as stack:
        sup = await supervised(tmp_path, stack, "runaway-cost", count=1, speed=4.0, events=events, overrides={
            "policies": {"kill_on_cost": {"max_session_cost_usd": 5.0},
                         "resume_on_idle": {"enabled": False}, "restart_on_compaction": {"enabled": False}}})
        await wait_until(lambda: bool(named(events, "policy.action", policy="kill_on_cost")), timeout=60,
                         what="a kill_on_cost policy.action")
        kill = named(events, "policy.action", policy="kill_on_cost")[0]
        assert kill.details["action"] == "session.kill" and kill.details["ok"] and "runaway" in kill.details["session"]
        killed = ("n0", kill.details["session"])
        await wait_until(lambda: not sup.fleet.sessions[killed].active, timeout=30, what="the killed session to end")
        calls_after_kill = sup.fleet.sessions[killed].calls
        # Keep the fleet running for several more policy evaluations and cost updates.
        ticks = len(named(events, "healing.cycle"))
        await wait_until(lambda: len(named(events, "healing.cycle")) >= ticks + 6, timeout=60, what="six more healing cycles")
        assert len(named(events, "policy.action", policy="kill_on_cost")) == 1
        assert not sup.fleet.sessions[killed].active and sup.fleet.sessions[killed].calls == calls_after_kill
        audited = [e for e in await sup.brain.audit_entries(1000) if e.action == "policy.action"]
        assert [(e.details["policy"], e.details["session"], e.details["action"]) for e in audited] == [
            ("kill_on_cost", killed[1], "session.kill")]
        assert (await sup.brain.verify_audit()).ok


async def test_idle_sessions_are_resumed_within_the_retry_budget(tmp_path):
    events: list[HeadyEvent] = []
    async with AsyncExitStack() as stack:
        sup = await supervised(tmp_path, stack, "idle-sessions", count=1, speed=4.0, events=events, overrides={
            "policies": {"resume_on_idle": {"idle_threshold_s": 0.5, "max_retries": 2, "backoff_initial_s": 1},
                         "kill_on_cost": {"enabled": False}, "restart_on_compaction": {"enabled": False}}})
        chats = lambda: [s for s in sup.fleet.node_sessions("n0") if "chat" in s.id]  # noqa: E731
        await wait_until(lambda: len(chats()) == 3, timeout=30, what="three chat sessions")
        names = {s.id for s in chats()}
        resumed = lambda: {e.details["session"] for e in named(events, "policy.action", policy="resume_on_idle", ok=True)}  # noqa: E731
        await wait_until(lambda: names <= resumed(), timeout=60, what="every chat session resumed")
        await wait_until(lambda: all(s.state == "running" for s in chats() if s.id in names), timeout=30,
                         what="the resumed chats running again")
        actions = named(events, "policy.action", policy="resume_on_idle")
        assert {e.details["action"] for e in actions} == {"session.resume"}
        assert all(e.details["attempt"] <= 2 for e in actions)
        assert not named(events, "policy.needs_attention") and sup.brain.needs_attention() == []
        audited = [e for e in await sup.brain.audit_entries(1000) if e.action == "policy.action"]
        assert len(audited) == len(actions)


async def test_node_loss_dispatches_revive_agent_which_is_done_when_the_node_is_back(tmp_path):
    events: list[HeadyEvent] = []
    async with AsyncExitStack() as stack:
        sup = await supervised(tmp_path, stack, "node-loss", count=2, speed=4.0, events=events, overrides={})
        await wait_until(lambda: bool(named(events, "node.offline", node="n1")), timeout=60, what="n1 offline")
        await wait_until(lambda: bool(named(events, "task.dispatched", strategy="revive_agent", node="n1")), timeout=30,
                         what="a dispatched revive_agent task for n1")
        task_id = named(events, "task.dispatched", strategy="revive_agent", node="n1")[0].details["task"]
        assert named(events, "task.created", task=task_id)
        await wait_until(lambda: bool(named(events, "task.done", task=task_id)), timeout=60, what="the revive task done")
        assert sup.fleet.nodes["n1"].status == "online"
        assert [t.state for t in sup.brain.tasks() if t.id == task_id] == ["done"]
        audited = [(e.action, e.details.get("state")) for e in await sup.brain.audit_entries(1000)
                   if e.details.get("id") == task_id or e.details.get("task") == task_id]
        assert ("task.dispatch", "dispatched") in audited and ("task.result", "done") in audited
        assert not named(events, "task.dispatched", strategy="revive_agent", node="n0")


async def test_repair_endpoint_pauses_sessions_on_a_failing_provider_and_resumes_them_when_it_recovers(tmp_path):
    events: list[HeadyEvent] = []
    agents: list[Any] = []
    async with AsyncExitStack() as stack:
        sup = await supervised(tmp_path, stack, "calm", count=1, speed=1.0, events=events, agents=agents, overrides={
            "detector": {**FAST["detector"], "window_s": 3},
            "policies": {"resume_on_idle": {"enabled": False}, "restart_on_compaction": {"enabled": False},
                         "kill_on_cost": {"enabled": False}}})
        await wait_until(lambda: any("chat" in s.id and s.state == "running" for s in sup.fleet.node_sessions("n0")),
                         timeout=30, what="a running chat session")
        chat = next(s.id for s in sup.fleet.node_sessions("n0") if "chat" in s.id and s.state == "running")
        for _ in range(20):  # the provider answers 429 to every call of this session
            agents[0].server.context.emit("llm.call", chat, {"provider": "anthropic", "model": "claude-sonnet-4-5",
                                                             "ok": False, "error": "rate_limit", "latency_ms": 300.0})
        await wait_until(lambda: bool(named(events, "task.created", strategy="repair_endpoint")), timeout=30,
                         what="a repair_endpoint task")
        task_id = named(events, "task.created", strategy="repair_endpoint")[0].details["task"]
        task = await sup.brain.approve_task(task_id)
        paused = {c["target"] for c in task.on_recovery}
        assert chat in paused and task.state == "dispatched"
        await wait_until(lambda: bool(named(events, "task.done", task=task_id)), timeout=60,
                         what="the task done once the provider recovered")
        assert "recovered; resumed" in task.result
        await wait_until(lambda: all(sup.fleet.sessions[("n0", s)].state == "running" for s in paused), timeout=30,
                         what="the paused sessions running again")
        audited = [(e.action, e.details["state"]) for e in await sup.brain.audit_entries(1000) if e.details.get("id") == task_id]
        assert audited == [("task.dispatch", "dispatched"), ("task.result", "done")]
