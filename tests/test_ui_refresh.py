"""Event-driven repaints: a change the supervisor reports repaints the screen on top once, no more
often than [ui] refresh_hz; a still fleet is not repainted and schedules nothing; ages on screen
follow the clock at a slow cadence."""

from __future__ import annotations

import asyncio

from heady_tui.config import Config
from heady_tui.ui import application
from heady_tui.ui.widgets.table import KeyedTable
from uikit import fixed_console, push_samples, wait_until

WIDE = (160, 50)


def count_repaints(screen) -> list[int]:
    """Wrap the screen's refresh_view so the test can count repaints."""
    calls = [0]
    original = screen.refresh_view

    def counted() -> None:
        calls[0] += 1
        original()

    screen.refresh_view = counted
    return calls


async def test_a_change_reported_by_the_supervisor_repaints_the_screen(tmp_path):
    async with fixed_console(tmp_path) as (app, pilot, clock):
        nodes = app.screen.query_one("#nodes", KeyedTable)
        clock.advance(1)
        await push_samples(app.supervisor, clock, {"build-1": 777})
        await wait_until(pilot, lambda: nodes.cell("build-1", "queue") == "777", "the new queue depth")


async def test_a_burst_of_changes_costs_at_most_refresh_hz_repaints_per_second(tmp_path):
    config = Config.model_validate({"ui": {"refresh_hz": 2}})
    async with fixed_console(tmp_path, config=config) as (app, pilot, clock):
        repaints = count_repaints(app.screen)
        loop = asyncio.get_running_loop()
        started = loop.time()
        for depth in range(300, 330):
            clock.advance(0.1)
            await push_samples(app.supervisor, clock, {"build-1": depth})
        elapsed = loop.time() - started
        nodes = app.screen.query_one("#nodes", KeyedTable)
        await wait_until(pilot, lambda: nodes.cell("build-1", "queue") == "329", "the last queue depth")
        # 30 changes; the first repaints at once, then at most one per 1/refresh_hz.
        assert 1 <= repaints[0] <= 2 + int((loop.time() - started) * 2), (repaints[0], elapsed)
        assert repaints[0] < 30


async def test_a_still_fleet_is_not_repainted_and_nothing_is_scheduled_to_repaint_it(tmp_path):
    async with fixed_console(tmp_path) as (app, pilot, clock):
        await pilot.pause(0.3)
        repaints = count_repaints(app.screen)
        await pilot.pause(1.0)
        assert repaints[0] == 0
        assert app._refresh_handle is None


async def test_ages_on_screen_follow_the_clock_with_no_other_change(tmp_path, monkeypatch):
    monkeypatch.setattr(application, "CLOCK_S", 0.2)
    async with fixed_console(tmp_path, size=WIDE) as (app, pilot, clock):
        app.refresh_now(force=True)  # re-arm the clock at the shortened cadence
        nodes = app.screen.query_one("#nodes", KeyedTable)
        before = nodes.cell("edge-1", "since")
        clock.advance(600)
        await wait_until(pilot, lambda: nodes.cell("edge-1", "since") != before, "the offline age to move")
        assert nodes.cell("edge-1", "since") == "10m"


async def test_a_screen_without_ages_runs_no_clock(tmp_path):
    async with fixed_console(tmp_path) as (app, pilot, clock):
        assert app._clock_handle is not None  # the overview shows ages
        await pilot.press("5")
        await wait_until(pilot, lambda: getattr(app.screen, "VIEW", None) == "audit", "the audit screen")
        app.refresh_now()
        assert app._clock_handle is None


async def test_freeze_stops_the_clock_and_release_starts_it(tmp_path):
    async with fixed_console(tmp_path) as (app, pilot, clock):
        await pilot.press("f")
        assert app._clock_handle is None
        await pilot.press("f")
        assert app._clock_handle is not None


async def test_with_nobody_typing_the_console_repaints_at_the_idle_rate(tmp_path):
    config = Config.model_validate({"ui": {"refresh_hz": 8}})
    async with fixed_console(tmp_path, config=config) as (app, pilot, clock):
        assert app.refresh_interval() == application.IDLE_REFRESH_S


async def test_a_key_press_brings_the_refresh_rate_up_to_refresh_hz(tmp_path):
    config = Config.model_validate({"ui": {"refresh_hz": 8}})
    async with fixed_console(tmp_path, config=config) as (app, pilot, clock):
        await pilot.press("down")
        assert app.refresh_interval() == 1 / 8


async def test_a_key_pressed_while_a_slow_repaint_waits_brings_it_forward(tmp_path):
    config = Config.model_validate({"ui": {"refresh_hz": 8}})
    async with fixed_console(tmp_path, config=config) as (app, pilot, clock):
        loop = asyncio.get_running_loop()
        app._last_refresh = loop.time()  # a repaint just now: the next one waits IDLE_REFRESH_S
        app.schedule_refresh()
        assert app._refresh_handle.when() > loop.time() + 1
        await pilot.press("down")
        handle = app._refresh_handle
        assert handle is None or handle.when() <= loop.time() + 1 / 8
