"""Each of the seven session triggers fires in a demo scenario: the synthetic source's frames (what
`heady demo` plays) go through the real store and brain (tests/demo_fleet.py) on a manual clock,
and the healing cycles' weak points name the trigger. Full cycles come every 500 calls (about every
100 simulated seconds on these fleets), so each run covers at least two of them after its onset."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from demo_fleet import DemoFleet
from heady_tui.config import Config


@pytest.fixture
async def demo(tmp_path) -> AsyncIterator[Callable[[str], Awaitable[DemoFleet]]]:
    """Starts a three-node demo fleet playing a scenario; stopped after the test."""
    fleets: list[DemoFleet] = []

    async def start(scenario: str) -> DemoFleet:
        fleet = DemoFleet(tmp_path / scenario, scenario)
        fleets.append(fleet)
        await fleet.start()
        return fleet

    yield start
    for fleet in fleets:
        await fleet.stop()


def matching(fleet: DemoFleet, pattern: str) -> list[str]:
    return [m for m in fleet.issues() if re.search(pattern, m)]


async def test_slow_turn_fires_in_slow_provider_once_its_turns_pass_a_minute(demo):
    fleet = await demo("slow-provider")
    await fleet.run(120)
    assert matching(fleet, r"a turn took") == []
    await fleet.run(130)
    assert matching(fleet, r"a turn took >= 60s")


async def test_duration_increase_fires_in_slow_provider_as_the_provider_keeps_slowing(demo):
    fleet = await demo("slow-provider")
    await fleet.run(130)
    assert matching(fleet, r"turns take \d+% of the baseline's time")


async def test_retries_fire_in_error_storm(demo):
    fleet = await demo("error-storm")
    await fleet.run(400)
    assert matching(fleet, r"[3-9] failed calls in a row")


async def test_error_rate_fires_in_error_storm(demo):
    fleet = await demo("error-storm")
    await fleet.run(60)
    assert matching(fleet, r"error rate [2-9]\d%")


async def test_token_spike_fires_in_runaway_cost_for_the_ballooning_chat(demo):
    fleet = await demo("runaway-cost")
    await fleet.run(250)
    spikes = matching(fleet, r"tokens per call up \d+% over the baseline")
    assert spikes and all(m.startswith("sim-2/sim-2-chat-") for m in spikes)


async def test_cost_per_task_fires_in_runaway_cost_for_a_session_the_cost_limit_has_not_killed(demo):
    """Not only the runaway (which kill_on_cost kills within seconds): a review session over $0.50 a
    task, far below the session cost limit, so the trigger shows with kill_on_cost on."""
    fleet = await demo("runaway-cost")
    await fleet.run(110)
    pricey = matching(fleet, r"^sim-2/sim-2-review-\d+: \$\d+\.\d\d per task$")
    assert pricey
    review = next(s for s in fleet.sup.fleet.sessions.values() if "-review-" in s.id)
    assert review.cost_usd < Config().policies.kill_on_cost.max_session_cost_usd


async def test_test_failures_fire_in_hot_node_on_the_loaded_node_only(demo):
    fleet = await demo("hot-node")
    await fleet.run(100)
    failing = matching(fleet, r"\d+ of \d+ test runs failed")
    assert failing and all(m.startswith("sim-1/") for m in failing)
    assert fleet.sup.store is not None
    runs = await fleet.sup.store.test_runs()
    assert {r.node for r in runs if not r.ok} == {"sim-1"} and {"sim-2", "sim-3"} <= {r.node for r in runs}


async def test_calm_fires_no_session_trigger(demo):
    fleet = await demo("calm")
    await fleet.run(400)
    assert fleet.issues() == []
