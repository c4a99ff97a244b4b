"""The consent dialog: opens when the brain asks, shows the plan, and records exactly the answer."""

from __future__ import annotations

import time

import pytest

from heady_tui.ui.modals.consent import INPUT_GUARD_S, ConsentModal
from uikit import OVERFLOW, drive_to_consent, fast_config, tick, fixed_console, live_console, wait_until


def dialog(app, *, guard_passed: bool = True) -> ConsentModal | None:
    """The consent dialog once it is on screen with its buttons mounted (and, unless asked not to,
    its input guard over: the dialog is treated as opened INPUT_GUARD_S ago)."""
    screen = app.screen
    if not (isinstance(screen, ConsentModal) and screen.query("#deny")):
        return None
    if guard_passed:
        screen.opened_at = min(screen.opened_at, time.monotonic() - INPUT_GUARD_S)
    return screen


async def test_dialog_opens_when_the_brain_asks_and_focuses_deny(tmp_path):
    async with fixed_console(tmp_path, config=fast_config()) as (app, pilot, clock):
        request = await drive_to_consent(app, pilot, clock)
        modal = await wait_until(pilot, lambda: dialog(app), "the consent dialog")
        assert modal.request_id == request.id
        focused = await wait_until(pilot, lambda: app.focused, "focus in the dialog")
        assert focused.id == "deny"


async def test_dialog_shows_the_plan_captured_when_it_opened(tmp_path):
    async with fixed_console(tmp_path, config=fast_config()) as (app, pilot, clock):
        request = await drive_to_consent(app, pilot, clock)
        modal = await wait_until(pilot, lambda: dialog(app), "the consent dialog")
        text = str(modal.query_one("#consent-plan").content)
        queue = request.plan["breaches"]["task_queue_depth"]
        assert queue > 1000 and f"task_queue_depth = {queue:.0f} (threshold 500, critical 1000)" in text
        assert "response_time_p95 =" not in text, "a metric under its threshold is not a breach"
        for action in request.plan["actions"]:
            assert f"{action['note']}  [{action['action']}]" in text
        assert "Estimated duration" in text and "target CPU at most 80%" in text


@pytest.mark.parametrize(
    ("key", "scope"),
    [("o", "single"), ("s", "session"), ("A", "persistent")],
)
async def test_each_allow_key_records_its_grant_and_the_rebalance_starts(tmp_path, key, scope):
    async with fixed_console(tmp_path, config=fast_config()) as (app, pilot, clock):
        brain = app.supervisor.brain
        request = await drive_to_consent(app, pilot, clock)
        await wait_until(pilot, lambda: dialog(app), "the consent dialog")
        await pilot.press(key)
        await wait_until(pilot, lambda: not brain.pending_consent(), "the decision to be recorded")
        grants = brain.grants(include_inactive=True)
        assert [g.scope for g in grants] == [scope]
        assert request.grant_id == grants[0].id
        await tick(app.supervisor, clock, OVERFLOW)
        assert brain.rebalance_status() is not None
        actions = [e.action for e in await brain.audit_entries(50)]
        assert "consent.grant" in actions


@pytest.mark.parametrize("key", ["n", "escape", "enter"])
async def test_deny_keys_record_a_denial_and_no_rebalance_starts(tmp_path, key):
    async with fixed_console(tmp_path, config=fast_config()) as (app, pilot, clock):
        brain = app.supervisor.brain
        await drive_to_consent(app, pilot, clock)
        await wait_until(pilot, lambda: dialog(app), "the consent dialog")
        await pilot.press(key)
        await wait_until(pilot, lambda: not brain.pending_consent(), "the denial to be recorded")
        assert brain.grants(include_inactive=True) == []
        await tick(app.supervisor, clock, OVERFLOW)
        assert brain.rebalance_status() is None
        assert dialog(app) is None, "a denied plan is snoozed, not asked again at once"


async def test_requests_raised_while_on_another_screen_wait_for_the_operator(tmp_path):
    async with fixed_console(tmp_path, config=fast_config()) as (app, pilot, clock):
        await pilot.press("2")
        await wait_until(pilot, lambda: getattr(app.screen, "VIEW", None) == "costs", "the costs screen")
        request = await drive_to_consent(app, pilot, clock)
        modal = await wait_until(pilot, lambda: dialog(app), "the consent dialog over the costs screen")
        assert modal.request_id == request.id


async def test_read_only_console_never_answers_consent(tmp_path):
    async with fixed_console(tmp_path, config=fast_config(), read_only=True) as (app, pilot, clock):
        await drive_to_consent(app, pilot, clock)
        await pilot.pause(0.3)
        assert dialog(app) is None
        await pilot.press("o")
        assert app.supervisor.brain.pending_consent()


@pytest.mark.slow
async def test_queue_overflow_on_real_agents_asks_and_allow_once_starts_the_rebalance(tmp_path):
    async with live_console(tmp_path, scenario="queue-overflow", nodes=3, speed=8.0) as (app, pilot):
        await wait_until(pilot, lambda: dialog(app), "the consent dialog on queue-overflow", timeout=60)
        await pilot.press("o")
        await wait_until(
            pilot, lambda: any(e.name == "rebalance.started" for e in app.recent_events), "rebalance.started", timeout=30
        )
        assert [g.scope for g in app.supervisor.brain.grants(include_inactive=True)] == ["single"]


async def test_read_only_console_shows_the_pending_plan_on_w_without_any_way_to_answer(tmp_path):
    from heady_tui.ui.modals.consent import ConsentViewModal
    from heady_tui.ui.widgets.panels import StatusBar

    async with fixed_console(tmp_path, config=fast_config(), read_only=True) as (app, pilot, clock):
        request = await drive_to_consent(app, pilot, clock)
        status = app.screen.query_one(StatusBar)
        await wait_until(pilot, lambda: "CONSENT PENDING 1 (w: view)" in str(status.content), "the pending mark")
        await pilot.press("w")
        view = await wait_until(pilot, lambda: isinstance(app.screen, ConsentViewModal) and app.screen.query("#close") and app.screen, "the view-only dialog")
        text = str(view.query_one("#consent-plan").content)
        assert f"Request {request.id}" in text and "Plan (" in text and "task_queue_depth = " in text
        assert "read-only" in str(view.query_one("#consent-view-note").content)
        assert [button.id for button in view.query("Button")] == ["close"]
        await pilot.press("o", "s", "a", "enter")
        await wait_until(pilot, lambda: not isinstance(app.screen, ConsentViewModal), "the dialog to close")
        assert [r.id for r in app.supervisor.brain.pending_consent()] == [request.id]
        assert app.supervisor.brain.grants(include_inactive=True) == []


async def test_w_with_nothing_pending_says_so(tmp_path):
    async with fixed_console(tmp_path, read_only=True) as (app, pilot, clock):
        await pilot.press("w")
        await pilot.pause(0.1)
        assert dialog(app) is None and type(app.screen).__name__ == "OverviewScreen"
        assert any(n.message == "no consent request is pending" for n in app._notifications)


async def test_a_key_pressed_as_the_dialog_opens_does_not_answer_it(tmp_path):
    async with fixed_console(tmp_path, config=fast_config()) as (app, pilot, clock):
        brain = app.supervisor.brain
        await drive_to_consent(app, pilot, clock)
        modal = await wait_until(pilot, lambda: dialog(app, guard_passed=False), "the consent dialog")
        modal.opened_at = time.monotonic()  # it opened this instant
        await pilot.press("o")
        assert brain.pending_consent(), "the key meant for the screen below answered the dialog"
        assert app.screen is modal


async def test_the_dialog_fits_80x24_with_its_buttons_and_keys_on_screen(tmp_path):
    async with fixed_console(tmp_path, size=(80, 24), config=fast_config()) as (app, pilot, clock):
        await drive_to_consent(app, pilot, clock)
        modal = await wait_until(pilot, lambda: dialog(app), "the consent dialog")
        await pilot.pause()
        for button in modal.query("Button"):
            region = button.region
            assert region.height > 0 and region.bottom <= 24 and region.right <= 80, (button.id, region)
        keys = str(modal.query_one(".modal-keys").content)
        for text in ("Deny", "Allow once", "Allow session", "Always allow"):
            assert text in keys
