"""Ingest errors are recorded one by one only up to a burst per window; past it they are counted and
recorded as one summary. A node that breaks the protocol after storing data keeps its back-off."""

from __future__ import annotations

import asyncio

from agentkit import wait_until
from heady_tui.link import ERRORS_PER_WINDOW, ErrorBudget, NodeLink
from hostile_agent import TOKEN, HostileAgent, metrics
from dpkit import supervisor_on
from test_dp_link_hostile import RecordingSink
from heady_tui.config import NodeConfig

BAD_FRAMES = 5000


def test_the_first_burst_of_a_window_is_recorded_and_the_rest_counted():
    budget = ErrorBudget(burst=3, window_s=60.0)
    admitted = [budget.admit(100.0 + i, f"e{i}")[0] for i in range(5)]
    assert admitted == [True, True, True, False, False]


def test_the_count_is_summarised_when_the_next_window_opens():
    budget = ErrorBudget(burst=3, window_s=60.0)
    for i in range(5):
        budget.admit(100.0, f"e{i}")
    admitted, summary = budget.admit(160.0, "next")
    assert admitted and summary is not None and summary.startswith("2 more errors") and summary.endswith("the last: e4")


def test_a_window_without_suppressed_errors_has_no_summary():
    budget = ErrorBudget(burst=3, window_s=60.0)
    budget.admit(100.0, "one")
    assert budget.admit(200.0, "two") == (True, None)


async def test_a_flood_of_bad_frames_writes_a_bounded_number_of_rows(tmp_path):
    async with HostileAgent(lambda subscribe: ["not json {"] * BAD_FRAMES + [metrics(1)]) as agent:
        async with supervisor_on(tmp_path, [NodeConfig(name="bad", url=agent.url, token=TOKEN)]) as sup:
            await wait_until(lambda: sup.fleet.nodes["bad"].last_seq == 1, what="the good frame after the flood")
        # The supervisor has stopped: the link closed its window and recorded the summary.
        async with supervisor_on(tmp_path, []) as sup:
            errors = await sup.store.ingest_errors(node="bad")
    assert len(errors) == ERRORS_PER_WINDOW + 1
    assert any(e["code"] == "suppressed" and f"{BAD_FRAMES - ERRORS_PER_WINDOW} more errors" in e["message"] for e in errors)


async def test_seq_going_backwards_after_stored_data_keeps_the_back_off_growing():
    delays: list[float] = []
    done = asyncio.Event()

    async def fake_sleep(seconds: float) -> None:
        delays.append(seconds)
        if len(delays) >= 4:
            done.set()
            await asyncio.Event().wait()

    # Every connection: one good frame (stored and acked), then one whose seq goes backwards.
    async with HostileAgent(lambda subscribe: [metrics(5), metrics(4)]) as agent:
        link = NodeLink(NodeConfig(name="bad", url=agent.url, token=TOKEN), RecordingSink(), rng=lambda: 1.0, sleep=fake_sleep)
        link.start()
        await asyncio.wait_for(done.wait(), 30)
        await link.stop()
    assert delays == [0.5, 1, 2, 4]
