"""Load shedding through the real brain: a real synthetic agent carries the commands out, the
console's clock is stepped through load up and load down. The node's load is the fleet's metrics
sample, set by the test (what the supervisor applies from each stored metrics frame); the agent
sends its own only every ten minutes (none during the test), so the test's values are the ones the
brain reads."""

from __future__ import annotations

from contextlib import AsyncExitStack

from agentkit import running_agent, wait_until

from heady_agent.clock import ManualClock
from heady_agent.protocol import Metrics
from heady_tui.config import Config, Paths
from heady_tui.supervisor import Supervisor

T0 = 1_800_000_000.0


async def test_background_sessions_are_reniced_then_paused_on_load_and_restored_when_it_drops(tmp_path):
    events = []
    clock = ManualClock(T0)
    async with AsyncExitStack() as stack:
        agent = await stack.enter_async_context(
            running_agent(tmp_path, scenario="calm", speed=0.5, name="n0", extra={"interval_s": 600}))
        config = Config.model_validate({
            "nodes": [{"name": "n0", "url": agent.url, "token": agent.token, "timeout_s": 3600}],
            "detector": {"evaluation_interval_s": 3600},  # the test ticks the brain itself
            "policies": {"resume_on_idle": {"idle_threshold_s": 1}},  # would resume the paused sessions if it could
            "priority": {"loaded_for_s": 10, "pause_after_s": 30, "clear_s": 15, "background_nice": 10,
                         "rules": [{"priority_class": "high", "managed": "sim-task"},
                                   {"priority_class": "background", "source": "synthetic"}]},
        })
        sup = Supervisor(config, Paths(tmp_path / "config.toml", tmp_path / "data"), clock=clock)
        await sup.start()
        stack.push_async_callback(sup.stop)
        sup.subscribe(events.append)

        def live(cls: str):
            return sorted(s.id for s in sup.fleet.node_sessions("n0") if s.live and s.priority == cls)

        await wait_until(lambda: live("background") and live("high"), timeout=30, what="background and high sessions")
        background, high = live("background"), live("high")

        async def step(seconds: float, load_per_core: float) -> None:
            clock.advance(seconds)
            node = sup.fleet.nodes["n0"]
            load = load_per_core * node.cpu_count
            sup.fleet.apply_node_frame("n0", Metrics(journal=node.journal or "", seq=node.last_seq, ts=clock.now(), cpu=50.0,
                                                     load=[load, load, load], mem=40.0, swap=0.0))
            await sup.brain.tick()

        def session(sid):
            return sup.fleet.sessions[("n0", sid)]

        def shed(action: str):
            return sorted(e.details["session"] for e in events if e.name == "priority.shed" and e.details["action"] == action)

        await step(0, 1.5)
        await step(9, 1.5)
        assert shed("session.renice") == []
        await step(1, 1.5)  # loaded for loaded_for_s
        assert shed("session.renice") == background
        await wait_until(lambda: all(session(s).nice == 10 for s in background), timeout=30, what="background sessions at nice 10")
        assert all(session(s).nice == 0 for s in high)
        await step(29, 1.5)
        assert shed("session.pause") == []
        await step(1, 1.5)  # pause_after_s after the renice
        paused = shed("session.pause")
        assert paused and set(paused) <= set(background)  # the running ones (a chat may be idle)
        await wait_until(lambda: all(session(s).state == "paused" for s in paused), timeout=30, what="background sessions paused")
        await step(5, 0.9)  # between the levels: held as it is
        await step(30, 0.9)
        assert not any(e.name == "priority.restore" for e in events)
        assert all(session(s).state == "paused" for s in paused)  # resume_on_idle left them alone
        await step(1, 0.3)
        await step(14, 0.3)
        assert not any(e.name == "priority.restore" for e in events)
        await step(1, 0.3)  # calm for clear_s
        restored = [(e.details["action"], e.details["session"], e.details["args"]) for e in events if e.name == "priority.restore"]
        assert [action for action, _, _ in restored] == ["session.resume"] * len(paused) + ["session.renice"] * len(background)
        assert sorted(sid for action, sid, _ in restored if action == "session.resume") == paused
        assert sorted((sid, args["nice"]) for action, sid, args in restored if action == "session.renice") == [(s, 0) for s in background]
        await wait_until(lambda: all(session(s).nice == 0 for s in background) and not any(session(s).state == "paused" for s in paused),
                         timeout=30, what="background sessions running at their old nice value")
        audited = [(e.action, e.details["action"], e.details["ok"]) for e in await sup.brain.audit_entries(500)
                   if e.action in ("priority.shed", "priority.restore")]
        assert audited == ([("priority.shed", "session.renice", True)] * len(background) + [("priority.shed", "session.pause", True)] * len(paused)
                           + [("priority.restore", "session.resume", True)] * len(paused)
                           + [("priority.restore", "session.renice", True)] * len(background))
