"""The cap on concurrently running high-priority sessions per node: the console derives a gate from
`[[priority.rules]]` and the node's announced managed entries and sends it (`queue.set_priority`,
fenced like every brain command); the agent's managed queue holds items of the high names while the
node runs its cap. Real agents on loopback, real sleeper processes, the real supervisor and brain."""

from __future__ import annotations

from contextlib import AsyncExitStack
from pathlib import Path

from agentkit import command, recv_json, running_agent, wait_until, ws_connect

from heady_agent.sources.managed import ManagedSource
from heady_tui.config import Config, Paths
from heady_tui.supervisor import Supervisor


def sleeper(name: str, **more) -> dict:
    return {"name": name, "command": ["sleep", "300"], "max_concurrent": 5, "instances": 0, **more}


def managed(agent) -> ManagedSource:
    return next(s for s in agent.server.sources if isinstance(s, ManagedSource))


def running(agent, name: str) -> int:
    return sum(1 for s in managed(agent).sessions() if s.managed == name)


def items(name: str, count: int) -> dict:
    return {"items": [{"managed": name, "args": [str(i + 1)]} for i in range(count)]}  # sleep 300 N: N more seconds


async def test_the_hello_announces_each_managed_entry_with_the_project_its_sessions_report(tmp_path: Path):
    work = tmp_path / "release-app"
    work.mkdir()
    async with running_agent(tmp_path, sources=("managed",), managed=[sleeper("deploy", cwd=str(work)), sleeper("bulk")]) as agent:
        async with ws_connect(agent.url, agent.token) as ws:
            hello = await recv_json(ws)
    assert hello["node"]["managed"] == [{"name": "deploy", "project": "release-app"}, {"name": "bulk", "project": None}]


async def test_items_of_a_high_name_past_the_cap_wait_in_the_queue(tmp_path: Path):
    async with running_agent(tmp_path, sources=("managed",), managed=[sleeper("deploy"), sleeper("bulk")]) as agent:
        async with ws_connect(agent.url, agent.token) as ws:
            await recv_json(ws)
            gate = await command(ws, "queue.set_priority", None, {"high": ["deploy"], "cap": 2, "others": 0})
            await command(ws, "queue.accept", None, items("deploy", 4))
            await command(ws, "queue.accept", None, items("bulk", 3))
            await wait_until(lambda: running(agent, "deploy") == 2 and running(agent, "bulk") == 3, what="2 deploy and 3 bulk running")
            held = await command(ws, "queue.set_priority", None, {"high": ["deploy"], "cap": 2, "others": 0})
        assert managed(agent).queue_depth() == 2
    assert gate["ok"] and gate["detail"]["high"] == ["deploy"]
    assert (held["detail"]["high_running"], held["detail"]["high_held"]) == (2, 2)


async def test_a_high_session_that_ends_lets_the_next_held_item_start(tmp_path: Path):
    async with running_agent(tmp_path, sources=("managed",), managed=[sleeper("deploy")]) as agent:
        async with ws_connect(agent.url, agent.token) as ws:
            await recv_json(ws)
            await command(ws, "queue.set_priority", None, {"high": ["deploy"], "cap": 2})
            await command(ws, "queue.accept", None, items("deploy", 3))
            await wait_until(lambda: running(agent, "deploy") == 2, what="two deploy sessions")
            first = managed(agent).sessions()[0]
            assert (await command(ws, "session.kill", first.id))["ok"]
            await wait_until(lambda: managed(agent).queue_depth() == 0 and running(agent, "deploy") == 2,
                             what="the held item started in the freed slot")


async def test_high_sessions_the_console_counts_elsewhere_take_slots_too(tmp_path: Path):
    async with running_agent(tmp_path, sources=("managed",), managed=[sleeper("deploy")]) as agent:
        async with ws_connect(agent.url, agent.token) as ws:
            await recv_json(ws)
            await command(ws, "queue.set_priority", None, {"high": ["deploy"], "cap": 2, "others": 1})
            await command(ws, "queue.accept", None, items("deploy", 3))
            await wait_until(lambda: running(agent, "deploy") == 1, what="one deploy session")
            assert managed(agent).queue_depth() == 2
            await command(ws, "queue.set_priority", None, {"high": ["deploy"], "cap": 2, "others": 0})
            await wait_until(lambda: running(agent, "deploy") == 2, what="a second once the other high session is gone")


async def test_the_gate_outlives_an_agent_restart(tmp_path: Path):
    entry = [sleeper("deploy")]
    async with running_agent(tmp_path, sources=("managed",), managed=entry) as agent:
        async with ws_connect(agent.url, agent.token) as ws:
            await recv_json(ws)
            await command(ws, "queue.set_priority", None, {"high": ["deploy"], "cap": 2})
            await command(ws, "queue.accept", None, items("deploy", 3))
            await wait_until(lambda: running(agent, "deploy") == 2, what="two deploy sessions")
    async with running_agent(tmp_path, sources=("managed",), managed=entry) as agent:  # same journal: same queue and gate
        await wait_until(lambda: running(agent, "deploy") == 2, what="two deploy sessions after the restart")
        assert managed(agent).queue_depth() == 1


async def test_the_console_gates_the_high_managed_names_its_rules_give(tmp_path: Path):
    events = []
    async with AsyncExitStack() as stack:
        agent = await stack.enter_async_context(
            running_agent(tmp_path, sources=("managed",), managed=[sleeper("deploy"), sleeper("bulk")], name="n0"))
        config = Config.model_validate({
            "nodes": [{"name": "n0", "url": agent.url, "token": agent.token}],
            "detector": {"evaluation_interval_s": 0.2},
            "priority": {"max_high_per_node": 2, "rules": [{"priority_class": "high", "managed": "deploy"}]},
        })
        sup = Supervisor(config, Paths(tmp_path / "config.toml", tmp_path / "data"))
        await sup.start()
        stack.push_async_callback(sup.stop)
        sup.subscribe(events.append)
        await wait_until(lambda: any(e.name == "priority.gate" for e in events), timeout=30, what="the gate sent")
        async with ws_connect(agent.url, agent.token) as ws:
            await recv_json(ws)
            await command(ws, "queue.accept", None, items("deploy", 4))
            await command(ws, "queue.accept", None, items("bulk", 2))
        live = lambda cls: [s for s in sup.fleet.node_sessions("n0") if s.live and s.priority == cls]  # noqa: E731
        await wait_until(lambda: len(live("high")) == 2 and len(live("normal")) == 2, timeout=30,
                         what="two high and two normal sessions in the console")
        assert running(agent, "deploy") == 2 and managed(agent).queue_depth() == 2
        gates = [e.details for e in await sup.brain.audit_entries(500) if e.action == "priority.gate"]
        sent = {key: gates[0][key] for key in ("node", "high", "cap", "others", "ok")}
        assert sent == {"node": "n0", "high": ["deploy"], "cap": 2, "others": 0, "ok": True}
        assert gates[0]["fence"] == sup.brain.lease_view().token  # sent through the fenced command path
