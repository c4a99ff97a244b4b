"""One consent-request lifecycle: a request shown in a dialog (held) stays as shown and answerable;
re-evaluations revise an unseen request in place or supersede a held one with a new request; an
allow runs exactly the plan the request showed.

Brain tests run the real Brain, store and records on the sample fleet with a ManualClock; the
error-storm test drives real synthetic agents through a real Supervisor; the dialog test runs the
real app (App.run_test)."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

from agentkit import running_agent, wait_until
from heady_agent.clock import ManualClock
from heady_tui.config import Paths
from heady_tui.engine.consent import ConsentRequest
from heady_tui.supervisor import Supervisor
from heady_tui.ui.modals.consent import ConsentModal
from heady_tui.ui.samplefleet import FIXED_START, close_offline, feed_fleet, open_offline
from uikit import fast_config, fixed_console, tick
from uikit import wait_until as ui_wait_until

# Queue overflow on build-1 (critical: a plan that drains build-1), then the same overflow on build-2
# (a materially different plan); the other node at its sample-fleet depth.
ON_BUILD_1 = {"build-1": 1400, "build-2": 120}
ON_BUILD_2 = {"build-1": 40, "build-2": 1400}
ERROR_STORM_NODES = 4  # as `heady demo` runs it
RE_EVALUATIONS = 6
WIDE = (160, 48)  # the wide layout names each metric's state


@asynccontextmanager
async def brain_on_sample_fleet(tmp_path: Path, **sections: object) -> AsyncIterator[tuple[Supervisor, ManualClock]]:
    clock = ManualClock(FIXED_START)
    supervisor = await open_offline(fast_config(**sections), Paths(tmp_path / "config.toml", tmp_path / "data"), clock)
    try:
        await feed_fleet(supervisor, clock)
        yield supervisor, clock
    finally:
        await close_offline(supervisor)


async def ask(supervisor: Supervisor, clock: ManualClock, queues: dict[str, int]) -> ConsentRequest:
    """Tick until the brain has an open request about the plan for these queues."""
    brain = supervisor.brain
    assert brain is not None
    for _ in range(40):
        await tick(supervisor, clock, queues)
        newest = [r for r in brain.pending_consent() if r.superseded_by is None]
        if newest and newest[-1].plan["breaches"]["task_queue_depth"] > 1000:
            overloaded = {node for node, depth in queues.items() if depth > 1000}
            if any(a["node"] in overloaded for a in newest[-1].plan["actions"]):
                return newest[-1]
    raise AssertionError(f"no request about {queues}")


async def test_a_re_evaluation_revises_an_unseen_request_in_place(tmp_path):
    async with brain_on_sample_fleet(tmp_path) as (supervisor, clock):
        first = await ask(supervisor, clock, ON_BUILD_1)
        fingerprint = first.fingerprint
        revised = await ask(supervisor, clock, ON_BUILD_2)
        assert revised.id == first.id and revised.fingerprint != fingerprint
        assert [r.id for r in supervisor.brain.pending_consent()] == [first.id]


async def test_a_held_request_is_superseded_not_replaced_and_stays_answerable(tmp_path):
    async with brain_on_sample_fleet(tmp_path) as (supervisor, clock):
        brain = supervisor.brain
        held = brain.hold_consent((await ask(supervisor, clock, ON_BUILD_1)).id)
        shown = copy.deepcopy(held.plan)
        newer = await ask(supervisor, clock, ON_BUILD_2)
        assert newer.id != held.id and held.superseded_by == newer.id
        assert held.state == "requested" and held.plan == shown
        assert [r.id for r in brain.pending_consent()] == [held.id, newer.id]


async def test_a_plan_that_changes_back_revises_the_newer_request_and_leaves_the_held_one_as_shown(tmp_path):
    async with brain_on_sample_fleet(tmp_path) as (supervisor, clock):
        brain = supervisor.brain
        held = brain.hold_consent((await ask(supervisor, clock, ON_BUILD_1)).id)
        shown = copy.deepcopy(held.plan)
        newer = await ask(supervisor, clock, ON_BUILD_2)
        back = await ask(supervisor, clock, ON_BUILD_1)
        assert back.id == newer.id and newer.fingerprint == held.fingerprint
        assert held.plan == shown and held.superseded_by == newer.id


async def test_a_held_request_does_not_expire_while_shown(tmp_path):
    async with brain_on_sample_fleet(tmp_path, consent={"request_timeout_s": 5}) as (supervisor, clock):
        brain = supervisor.brain
        held = brain.hold_consent((await ask(supervisor, clock, ON_BUILD_1)).id)
        clock.advance(60)
        await tick(supervisor, clock, ON_BUILD_1)
        assert held.state == "requested" and held.id in [r.id for r in brain.pending_consent()]


async def test_allowing_a_superseded_request_runs_the_plan_it_showed_and_ends_the_newer_one(tmp_path):
    async with brain_on_sample_fleet(tmp_path) as (supervisor, clock):
        brain = supervisor.brain
        held = brain.hold_consent((await ask(supervisor, clock, ON_BUILD_1)).id)
        shown = copy.deepcopy(held.plan)
        newer = await ask(supervisor, clock, ON_BUILD_2)
        await brain.decide_consent(held.id, "single")
        run = brain.rebalance_status()
        assert run is not None and run.plan.to_dict() == shown
        assert newer.state == "expired" and brain.pending_consent() == []


async def test_releasing_a_superseded_request_ends_it_and_leaves_the_newer_one(tmp_path):
    async with brain_on_sample_fleet(tmp_path) as (supervisor, clock):
        brain = supervisor.brain
        held = brain.hold_consent((await ask(supervisor, clock, ON_BUILD_1)).id)
        newer = await ask(supervisor, clock, ON_BUILD_2)
        await brain.release_consent(held.id)
        assert held.state == "expired"
        assert [r.id for r in brain.pending_consent()] == [newer.id]


async def test_answering_the_dialog_during_an_error_storm_succeeds_after_re_evaluations(tmp_path):
    """Real synthetic agents playing error-storm; the request is held as the dialog holds it and
    answered only after several evaluations, one of which changed the plan (a newer request)."""
    async with AsyncExitStack() as stack:
        nodes = []
        for i in range(ERROR_STORM_NODES):
            agent = await stack.enter_async_context(running_agent(
                tmp_path, scenario="error-storm", node_index=i, node_count=ERROR_STORM_NODES, speed=20.0, name=f"n{i}"))
            nodes.append({"name": f"n{i}", "url": agent.url, "token": agent.token})
        config = fast_config(nodes, detector={"min_calls": 5})
        supervisor = Supervisor(config, Paths(tmp_path / "config.toml", tmp_path / "data"))
        await supervisor.start()
        stack.push_async_callback(supervisor.stop)
        brain = supervisor.brain
        assert brain is not None
        await wait_until(lambda: bool(brain.pending_consent()), timeout=90, what="a consent request")
        held = brain.hold_consent(brain.pending_consent()[0].id)
        shown = copy.deepcopy(held.plan)
        reading = brain.equilibrium()
        assert reading is not None
        evaluated_after = reading.at + RE_EVALUATIONS * config.detector.evaluation_interval_s
        await wait_until(lambda: (r := brain.equilibrium()) is not None and r.at >= evaluated_after, timeout=60,
                         what=f"{RE_EVALUATIONS} re-evaluations")  # fmt: skip
        await wait_until(lambda: held.superseded_by is not None, timeout=120, what="a re-evaluation that changed the plan")

        grant = await brain.decide_consent(held.id, "single")

        assert grant is not None and held.state == "granted"
        run = brain.rebalance_status()
        assert run is not None and run.grant_id == grant.id and run.plan.to_dict() == shown
        await brain.release_consent(held.id)


async def test_the_dialog_says_superseded_and_p_opens_the_newer_plan(tmp_path):
    async with fixed_console(tmp_path, config=fast_config()) as (app, pilot, clock):
        supervisor = app.supervisor
        await ask(supervisor, clock, ON_BUILD_1)
        first = await ui_wait_until(pilot, lambda: isinstance(app.screen, ConsentModal) and app.screen, "the dialog")
        newer = await ask(supervisor, clock, ON_BUILD_2)
        await ui_wait_until(pilot, lambda: first.is_superseded, "the dialog to say it is superseded")
        assert first.query_one("#consent-superseded").display
        await pilot.press("p")
        second = await ui_wait_until(
            pilot, lambda: isinstance(app.screen, ConsentModal) and app.screen is not first and app.screen, "the newer dialog"
        )
        assert second.request_id == newer.id
        assert [r.id for r in supervisor.brain.pending_consent()] == [newer.id]
        await asyncio.sleep(0)


async def test_the_header_shows_the_detectors_level_while_the_dialog_is_open(tmp_path):
    from heady_tui.ui.screens.overview import OverviewScreen
    from heady_tui.ui.widgets.panels import EquilibriumPanel, StatusBar

    async with fixed_console(tmp_path, config=fast_config(), size=WIDE) as (app, pilot, clock):
        supervisor = app.supervisor
        await ask(supervisor, clock, ON_BUILD_1)
        await ui_wait_until(pilot, lambda: isinstance(app.screen, ConsentModal), "the dialog")
        overview = next(s for s in app.screen_stack if isinstance(s, OverviewScreen))
        level = supervisor.brain.equilibrium().level
        assert level == "critical"
        status = overview.query_one(StatusBar)
        await ui_wait_until(pilot, lambda: f"equilibrium {level.upper()}" in str(status.content), "the header's level")
        panel = overview.query_one(EquilibriumPanel)
        assert panel.border_title == f"Equilibrium: {level.upper()}"
        queue_row = next(row for row in str(panel.content).splitlines() if row.startswith("queue depth"))
        assert "critical" in queue_row and "pending" not in queue_row
