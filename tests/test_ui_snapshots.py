"""Snapshots of every screen at 80x24 and 160x50 on the fixed fleet (ManualClock, fixed data).

Update after a deliberate change with `pytest tests/test_ui_snapshots.py --snapshot-update` and
look at the SVGs under tests/__snapshots__/ before committing them. The audit screen is covered by
behaviour tests instead: its entries carry the machine's user@host and random ids.
"""

from __future__ import annotations

import pytest
from pytest_textual_snapshot import SVGImageExtension

from heady_tui.ui.modals.consent import ConsentModal
from uikit import drive_to_consent, fast_config, fixed_console, wait_until

SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((160, 50), id="160x50")]


@pytest.fixture
def svg(snapshot):
    return snapshot.use_extension(SVGImageExtension)


async def settle(app, pilot) -> str:
    await pilot.pause()
    app.refresh_now(force=True)
    await pilot.pause()
    await pilot.wait_for_scheduled_animations()
    return app.export_screenshot()


async def show(app, pilot, condition, what):
    await wait_until(pilot, lambda: condition() and app.screen.is_mounted, what)
    return await settle(app, pilot)


@pytest.mark.parametrize("size", SIZES)
async def test_overview(tmp_path, svg, size):
    async with fixed_console(tmp_path, size=size) as (app, pilot, clock):
        assert svg == await settle(app, pilot)


@pytest.mark.parametrize("size", SIZES)
async def test_overview_light_theme(tmp_path, svg, size):
    async with fixed_console(tmp_path, size=size, theme="light") as (app, pilot, clock):
        assert svg == await settle(app, pilot)


@pytest.mark.parametrize("size", SIZES)
async def test_node_detail(tmp_path, svg, size):
    async with fixed_console(tmp_path, size=size) as (app, pilot, clock):
        app.open_node("build-2")
        assert svg == await show(app, pilot, lambda: getattr(app.screen, "VIEW", None) == "node", "node detail")


@pytest.mark.parametrize("size", SIZES)
async def test_session_detail(tmp_path, svg, size):
    async with fixed_console(tmp_path, size=size) as (app, pilot, clock):
        app.open_session("build-1", "bu000-s1")
        await wait_until(pilot, lambda: getattr(app.screen, "VIEW", None) == "session" and app.screen.is_mounted, "session detail")
        await wait_until(pilot, lambda: app.screen.query_one("#timeline").row_count == 6, "the timeline")
        assert svg == await settle(app, pilot)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("key", ["2", "3", "4"], ids=["costs", "healing", "permissions"])
async def test_main_views(tmp_path, svg, size, key):
    names = {"2": "costs", "3": "healing", "4": "permissions"}
    async with fixed_console(tmp_path, size=size) as (app, pilot, clock):
        await pilot.press(key)
        assert svg == await show(app, pilot, lambda: getattr(app.screen, "VIEW", None) == names[key], names[key])


@pytest.mark.parametrize("size", SIZES)
async def test_consent_dialog(tmp_path, svg, size):
    async with fixed_console(tmp_path, size=size, config=fast_config()) as (app, pilot, clock):
        await drive_to_consent(app, pilot, clock)
        await wait_until(pilot, lambda: isinstance(app.screen, ConsentModal) and app.focused is not None, "the dialog")
        app.screen_stack[-2].refresh_view()  # the overview behind it, as of the last samples
        assert svg == await settle(app, pilot)


@pytest.mark.parametrize("size", SIZES)
async def test_help(tmp_path, svg, size):
    async with fixed_console(tmp_path, size=size) as (app, pilot, clock):
        await pilot.press("question_mark")
        assert svg == await show(app, pilot, lambda: type(app.screen).__name__ == "HelpScreen", "help")


async def test_terminal_too_small(tmp_path, svg):
    async with fixed_console(tmp_path, size=(60, 20)) as (app, pilot, clock):
        assert svg == await show(app, pilot, lambda: type(app.screen).__name__ == "TooSmallScreen", "too small")
