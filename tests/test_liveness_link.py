"""The link's reconnect back-off (real links against a real closed port and a real agent)."""

from __future__ import annotations

import asyncio

from agentkit import free_port, wait_until
from dpkit import supervisor_on
from heady_tui.config import NodeConfig
from heady_tui.link import REFUSED_BACKOFF_CAP_S

RETRIES = 10


async def test_a_refused_connection_is_retried_within_the_refused_cap_however_long_it_lasts(tmp_path):
    delays: list[float] = []

    async def no_wait(delay: float) -> None:
        delays.append(delay)
        await asyncio.sleep(0)

    node = NodeConfig(name="down", url=f"ws://127.0.0.1:{free_port()}/ws")
    async with supervisor_on(tmp_path, [node], {"sleep": no_wait, "rng": lambda: 1.0}) as sup:
        await wait_until(lambda: len(delays) >= RETRIES, what=f"{RETRIES} refused retries")
        assert sup.fleet.nodes["down"].last_error == "unreachable: connection refused"
    # Uncapped, ten doublings from 0.5 s would reach the 30 s cap.
    assert max(delays) == REFUSED_BACKOFF_CAP_S
