"""Burn rate is $/h over a sliding window: a runaway session's rate is right after one minute, and
a session over its $/h limit raises budget.notice and the header's alert."""

from __future__ import annotations

from pathlib import Path

import pytest
from ledgerkit import call_event, started_event

from heady_agent.clock import ManualClock
from heady_agent.protocol import LlmCallData

from heady_tui.config import Config, Paths
from heady_tui.engine.cost import PricingTable
from heady_tui.supervisor import Supervisor
from heady_tui.ui.reader import FleetReader
from heady_tui.ui.samplefleet import close_offline, open_offline

T0 = 1_800_057_600.0
RUNAWAY = {"model": "claude-opus-4-6", "input_tokens": 200_000, "output_tokens": 10_000}  # $1.25 a call


async def runaway_minute(tmp_path: Path, config: Config) -> tuple[Supervisor, float]:
    """One call a second for a simulated minute, after an hour of a cheap session; returns the
    runaway's true $/h."""
    clock = ManualClock(T0)
    sup = await open_offline(config, Paths(tmp_path / "config.toml", tmp_path / "data"), clock)
    events: list = []
    sup.subscribe(events.append)
    sup.test_events = events  # type: ignore[attr-defined]
    seq = 1
    await sup.link_frames("n1", "j1", [started_event(seq, T0, "calm", "api")])
    for minute in range(60):  # an hour of a session making one small call a minute
        seq += 1
        await sup.link_frames("n1", "j1", [call_event(seq, T0 + minute * 60, "calm", input_tokens=1000, output_tokens=100)])
    clock.advance(3600)
    seq += 1
    await sup.link_frames("n1", "j1", [started_event(seq, clock.now(), "runaway", "api")])
    for _ in range(60):
        seq += 1
        await sup.link_frames("n1", "j1", [call_event(seq, clock.now(), "runaway", **RUNAWAY)])
        clock.advance(1)
        assert sup.brain is not None
        await sup.brain.tick()
    per_call = PricingTable.load(config.cost).cost(LlmCallData.model_validate(call_event(1, T0, "s", **RUNAWAY).data))[0]
    return sup, per_call * 3600  # one call a second


async def test_a_runaway_sessions_burn_rate_is_within_ten_percent_after_one_minute(tmp_path: Path) -> None:
    sup, true_rate = await runaway_minute(tmp_path, Config())
    try:
        assert sup.brain is not None
        summary = sup.brain.cost_summary()
        assert true_rate == pytest.approx(4500.0)
        assert summary.burn_by_session["n1/runaway"] == pytest.approx(true_rate, rel=0.10)
        assert summary.burn_rate_usd_per_h == pytest.approx(true_rate, rel=0.10)  # the calm session adds little
        assert summary.burn_rate_usd_per_h < summary.today_usd * 60  # a rate, not the day's spend
    finally:
        await close_offline(sup)


async def test_a_session_over_its_burn_limit_raises_a_budget_notice_and_the_header_alert(tmp_path: Path) -> None:
    config = Config.model_validate({"cost": {"max_session_burn_usd_per_h": 1000.0}})
    sup, _ = await runaway_minute(tmp_path, config)
    try:
        notices = [e.details for e in sup.test_events if e.name == "budget.notice"]  # type: ignore[attr-defined]
        assert [(n["budget"], n["scope"], n["session"]) for n in notices] == [("burn_rate", "session", "runaway")]
        assert notices[0]["limit_usd_per_h"] == 1000.0 and notices[0]["rate_usd_per_h"] >= 1000.0
        alert = FleetReader(sup, config).burn_alert()
        assert alert is not None and alert.startswith("BURN n1/runaway ")
    finally:
        await close_offline(sup)
