"""Liveness with a real agent child process killed with -9 and restarted, through a real Supervisor
on a ManualClock (the liveness timeout is measured on the injected clock, never on wall time)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from agentkit import AgentProcess, wait_until
from dpkit import supervisor_on
from heady_agent.clock import ManualClock
from heady_tui.config import NodeConfig
from heady_tui.fleet import UNKNOWN_STATE
from heady_tui.ledger import NODE_OFFLINE_REASON
from heady_tui.link import REFUSED_BACKOFF_CAP_S

TIMEOUT_S = 10.0
WAIT_S = 60.0


def recording_sleep(delays: list[float]) -> Callable[[float], Awaitable[None]]:
    """The link's back-off sleep, real, with every delay it chose kept for the test."""

    async def sleep(delay: float) -> None:
        delays.append(delay)
        await asyncio.sleep(delay)

    return sleep


def live_session_ids(sup, node: str) -> set[str]:
    return {rec.id for rec in sup.fleet.node_sessions(node) if rec.live}


async def test_killing_an_agent_marks_its_sessions_unknown_at_its_timeout(tmp_path):
    clock = ManualClock()
    async with AgentProcess(tmp_path, "n1", speed=10) as agent:
        node = NodeConfig(name="n1", url=agent.url, token=agent.token, timeout_s=TIMEOUT_S)
        async with supervisor_on(tmp_path, [node], clock=clock) as sup:
            await wait_until(lambda: bool(live_session_ids(sup, "n1")), timeout=WAIT_S, what="live sessions")
            agent.kill9()
            state = sup.fleet.nodes["n1"]
            await wait_until(lambda: state.link_status != "online", timeout=WAIT_S, what="the link to drop")
            # Read after the drop: frames still in flight at the kill may have started more sessions.
            sessions = live_session_ids(sup, "n1")
            last_frame = state.last_frame_at
            assert last_frame is not None

            clock.advance(last_frame + TIMEOUT_S - clock.now() - 0.5)
            sup.check_liveness()
            assert state.status == "connecting" and live_session_ids(sup, "n1") == sessions

            clock.advance(0.5)
            sup.check_liveness()
            assert (state.status, state.since) == ("offline", last_frame)
            unknown = {rec.id: (rec.state, rec.state_reason) for rec in sup.fleet.node_sessions("n1") if rec.id in sessions}
            assert unknown == {sid: (UNKNOWN_STATE, NODE_OFFLINE_REASON) for sid in sessions}
            assert [e.details["node"] for e in sup.test_events if e.name == "node.silent"] == ["n1"]


async def test_a_restarted_agent_is_back_online_with_known_sessions_after_short_refused_retries(tmp_path):
    clock = ManualClock()
    delays: list[float] = []
    async with AgentProcess(tmp_path, "n1", speed=10) as agent:
        node = NodeConfig(name="n1", url=agent.url, token=agent.token, timeout_s=TIMEOUT_S)
        options = {"sleep": recording_sleep(delays), "rng": lambda: 1.0}  # the longest delay each time
        async with supervisor_on(tmp_path, [node], options, clock=clock) as sup:
            state = sup.fleet.nodes["n1"]
            await wait_until(lambda: bool(live_session_ids(sup, "n1")), timeout=WAIT_S, what="live sessions")
            agent.kill9()
            await wait_until(lambda: len(delays) >= 8, timeout=WAIT_S, what="eight refused retries")
            clock.advance(TIMEOUT_S)
            sup.check_liveness()
            assert state.status == "offline" and not live_session_ids(sup, "n1")
            refused = list(delays)

            await agent.start()
            # The sessions snapshot that settles the ones left unknown may come a frame after the first live one.
            await wait_until(lambda: state.status == "online" and bool(live_session_ids(sup, "n1"))
                             and not any(rec.state == UNKNOWN_STATE for rec in sup.fleet.node_sessions("n1")),
                             timeout=WAIT_S, what="back online with known sessions")  # fmt: skip

            assert max(refused) <= REFUSED_BACKOFF_CAP_S
            assert not state.stale
