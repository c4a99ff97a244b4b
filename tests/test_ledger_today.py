"""The nodes table's "Today" is the day's cost from the ledger's daily rollups: 150,000 calls in a
day are all counted (a ring of recent calls once capped it at 100,000)."""

from __future__ import annotations

from pathlib import Path

import pytest
from ledgerkit import call_event, started_event

from heady_agent.clock import ManualClock
from heady_agent.protocol import Event, LlmCallData

from heady_tui.config import Config, Paths
from heady_tui.engine.cost import PricingTable
from heady_tui.ui import formatting as fmt
from heady_tui.ui.reader import FleetReader
from heady_tui.ui.samplefleet import close_offline, open_offline

DAY_START = 1_800_057_600.0  # 2027-01-16T00:00:00Z
CALLS = {"a": 100_000, "b": 50_000}
BATCH = 5_000


async def feed(sup, node: str, calls: int) -> None:
    frames: list[Event] = [started_event(1, DAY_START + 1, "s1", "api")]
    frames.append(call_event(2, DAY_START - 60, "s1"))  # yesterday: not today's
    seq = 2
    for i in range(calls):
        seq += 1
        frames.append(call_event(seq, DAY_START + 2 + i * 0.5, "s1"))
    for start in range(0, len(frames), BATCH):
        await sup.link_frames(node, "j1", frames[start : start + BATCH])


async def test_150000_calls_in_a_day_all_count_in_today(tmp_path: Path) -> None:
    config = Config()
    paths = Paths(tmp_path / "config.toml", tmp_path / "data")
    clock = ManualClock(DAY_START + 86_000)
    one = PricingTable.load(config.cost).cost(LlmCallData.model_validate(call_event(1, DAY_START, "s").data))[0]
    sup = await open_offline(config, paths, clock)
    try:
        for node, calls in CALLS.items():
            await feed(sup, node, calls)
        reader = FleetReader(sup, config)
        today = reader.costs_today()
        assert today == pytest.approx({node: calls * one for node, calls in CALLS.items()})
        rows = reader.node_rows(spark_width=8, compact=False)
        assert rows["a"][9][0] == fmt.money(CALLS["a"] * one)  # the "Today" column
    finally:
        await close_offline(sup)
    restarted = await open_offline(config, paths, clock)
    try:
        assert FleetReader(restarted, config).costs_today() == pytest.approx(today)
    finally:
        await close_offline(restarted)
