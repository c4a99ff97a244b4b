"""Screens and keys on a fixed fleet: navigation, filter, freeze, approvals, revoke, read-only, help."""

from __future__ import annotations

from heady_agent.protocol import Metrics
from heady_tui.ui.application import HeadyApp
from heady_tui.ui.modals.confirm import ConfirmModal
from heady_tui.ui.screens.help import HelpScreen, TooSmallScreen
from heady_tui.ui.widgets.panels import EventLog, StatusBar
from heady_tui.ui.widgets.table import KeyedTable
from heady_tui.config import Config
from heady_agent.config import ConfigError
import pytest
from uikit import fast_config, fixed_console, wait_until


def view(app) -> str | None:
    return getattr(app.screen, "VIEW", None)


def status(app) -> str:
    return str(app.screen.query_one(StatusBar).content)


async def test_number_keys_switch_between_the_main_views(tmp_path):
    async with fixed_console(tmp_path) as (app, pilot, clock):
        for key, name in (("2", "costs"), ("3", "healing"), ("4", "permissions"), ("5", "audit"), ("1", "overview")):
            await pilot.press(key)
            await wait_until(pilot, lambda: view(app) == name, f"the {name} screen")


async def test_enter_on_a_node_opens_its_detail_and_escape_comes_back(tmp_path):
    async with fixed_console(tmp_path) as (app, pilot, clock):
        nodes = app.screen.query_one("#nodes", KeyedTable)
        nodes.focus()
        nodes.move_cursor(row=nodes.row_of("build-2"))
        await pilot.press("enter")
        await wait_until(pilot, lambda: view(app) == "node", "the node screen")
        assert app.screen.node_id == "build-2"
        await pilot.press("escape")
        await wait_until(pilot, lambda: view(app) == "overview", "the overview again")


async def test_enter_on_a_session_opens_its_timeline_from_the_store(tmp_path):
    async with fixed_console(tmp_path) as (app, pilot, clock):
        sessions = app.screen.query_one("#sessions", KeyedTable)
        sessions.focus()
        await pilot.press("enter")
        await wait_until(pilot, lambda: view(app) == "session", "the session screen")
        timeline = app.screen.query_one("#timeline", KeyedTable)
        # session.started + 4 calls + one state change, as fed
        await wait_until(pilot, lambda: timeline.row_count == 6, "the session's six stored events")


async def test_filter_narrows_the_focused_table_and_escape_clears_it(tmp_path):
    async with fixed_console(tmp_path) as (app, pilot, clock):
        nodes = app.screen.query_one("#nodes", KeyedTable)
        nodes.focus()
        await pilot.press("slash", "g", "p", "u")
        await wait_until(pilot, lambda: nodes.row_count == 1, "only gpu-1 to remain")
        await pilot.press("enter")
        assert app.focused is nodes and nodes.filter_text == "gpu"
        await pilot.press("slash", "escape")
        await wait_until(pilot, lambda: nodes.row_count == 4, "all four nodes again")


async def test_freeze_holds_the_tables_and_shows_paused_until_released(tmp_path):
    async with fixed_console(tmp_path) as (app, pilot, clock):
        nodes = app.screen.query_one("#nodes", KeyedTable)
        before = nodes.cell("build-1", "queue")
        await pilot.press("f")
        assert "PAUSED" in status(app)
        fleet = app.supervisor.fleet
        clock.advance(1)
        fleet.apply_frame("build-1", Metrics(journal="j-build-1", seq=10_000, ts=clock.now(), cpu=5, load=[0.1, 0.1, 0.1], mem=10, swap=0, queue_depth=999))
        await pilot.pause(0.3)
        assert nodes.cell("build-1", "queue") == before
        await pilot.press("f")
        await wait_until(pilot, lambda: nodes.cell("build-1", "queue") == "999", "the new queue depth")
        assert "PAUSED" not in status(app)


async def test_approvals_queue_approve_dispatches_the_task(tmp_path):
    config = fast_config(healing={"group_wait_s": 0, "light_interval_s": 1, "auto_dispatch": []})
    async with fixed_console(tmp_path, config=config) as (app, pilot, clock):
        brain = app.supervisor.brain
        for _ in range(3):
            clock.advance(1)
            await brain.tick()
        [task] = [t for t in brain.tasks() if t.state == "pending-approval"]
        await pilot.press("3")
        await wait_until(pilot, lambda: view(app) == "healing", "the healing screen")
        approvals = app.screen.query_one("#approvals", KeyedTable)
        await wait_until(pilot, lambda: approvals.row_count == 1, "the task in the approvals queue")
        await pilot.press("a")
        await wait_until(pilot, lambda: task.state == "dispatched", "the task to be dispatched")
        await wait_until(pilot, lambda: approvals.row_count == 0, "the approvals queue to empty")


async def test_approvals_queue_reject_fails_the_task_as_rejected(tmp_path):
    config = fast_config(healing={"group_wait_s": 0, "light_interval_s": 1, "auto_dispatch": []})
    async with fixed_console(tmp_path, config=config) as (app, pilot, clock):
        brain = app.supervisor.brain
        for _ in range(3):
            clock.advance(1)
            await brain.tick()
        [task] = [t for t in brain.tasks() if t.state == "pending-approval"]
        await pilot.press("3")
        await wait_until(pilot, lambda: view(app) == "healing", "the healing screen")
        await wait_until(pilot, lambda: app.screen.query_one("#approvals", KeyedTable).row_count == 1, "the task")
        await pilot.press("x")
        await wait_until(pilot, lambda: task.state == "failed", "the task to be rejected")
        assert task.result == "rejected by the operator"


async def test_revoke_asks_first_with_cancel_focused_then_revokes(tmp_path):
    async with fixed_console(tmp_path) as (app, pilot, clock):
        grant = await app.supervisor.brain.grant("persistent", "ops standing permission")
        await pilot.press("4")
        await wait_until(pilot, lambda: view(app) == "permissions", "the permissions screen")
        table = app.screen.query_one("#grants", KeyedTable)
        await wait_until(pilot, lambda: table.row_count == 1, "the grant listed")
        await pilot.press("x")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmModal), "the confirmation")
        assert app.focused.id == "cancel"
        await pilot.press("enter")  # Cancel: nothing happens
        await wait_until(pilot, lambda: view(app) == "permissions", "back on permissions")
        assert app.supervisor.brain.grants() != []
        await pilot.press("x")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmModal), "the confirmation again")
        await pilot.press("y")
        await wait_until(pilot, lambda: app.supervisor.brain.grants() == [], "the grant revoked")
        assert [g.id for g in app.supervisor.brain.grants(include_inactive=True) if g.revoked] == [grant.id]
        assert "consent.revoke" in [e.action for e in await app.supervisor.brain.audit_entries(50)]


async def test_read_only_hides_every_action_that_changes_anything(tmp_path):
    async with fixed_console(tmp_path, read_only=True) as (app, pilot, clock):
        app.open_node("build-1")
        await wait_until(pilot, lambda: view(app) == "node", "the node screen")
        shown = {b.binding.id for b in app.active_bindings.values()}
        assert not {"node_drain", "node_undrain", "node_concurrency", "node_pause", "node_renice"} & shown
        assert {"freeze", "help"} <= shown
        await pilot.press("d")
        await pilot.pause(0.2)
        assert not isinstance(app.screen, ConfirmModal)
        assert "READ-ONLY" in status(app)


async def test_read_only_palette_offers_no_changing_action(tmp_path):
    from heady_tui.ui.application import ActionsProvider

    async with fixed_console(tmp_path, read_only=True) as (app, pilot, clock):
        await pilot.press("3")
        await wait_until(pilot, lambda: view(app) == "healing", "the healing screen")
        provider = ActionsProvider(app.screen)
        ids = {a.id for a in provider._candidates()}
        assert "task_approve" not in ids and "healing" in ids


async def test_help_lists_the_screen_actions_with_their_keys(tmp_path):
    config = Config.model_validate({"ui": {"keymap": {"freeze": "F"}}})
    async with fixed_console(tmp_path, config=config) as (app, pilot, clock):
        await pilot.press("question_mark")
        await wait_until(pilot, lambda: isinstance(app.screen, HelpScreen), "the help screen")
        rows = {description: key for key, description, _, _ in app.screen.rows()}
        assert rows["Freeze"] == "F"
        assert {"Overview", "Costs", "Filter", "Drain", "Kill", "Revoke"} <= set(rows)
        await pilot.press("escape")
        await wait_until(pilot, lambda: view(app) == "overview", "help closed")


async def test_keymap_from_config_moves_a_binding_to_another_key(tmp_path):
    config = Config.model_validate({"ui": {"keymap": {"freeze": "F"}}})
    async with fixed_console(tmp_path, config=config) as (app, pilot, clock):
        await pilot.press("f")
        assert not app.frozen
        await pilot.press("F")
        assert app.frozen


def test_unknown_keymap_action_is_a_one_line_config_error(tmp_path):
    config = Config.model_validate({"ui": {"keymap": {"freez": "F"}}})
    with pytest.raises(ConfigError, match=r"ui.keymap: unknown action 'freez'"):
        HeadyApp(object(), config)


async def test_too_small_terminal_says_the_size_needed_until_it_grows(tmp_path):
    async with fixed_console(tmp_path, size=(70, 20)) as (app, pilot, clock):
        await wait_until(pilot, lambda: isinstance(app.screen, TooSmallScreen), "the too-small screen")
        assert "needs at least 80x24" in str(app.screen.query_one("#too-small").content)
        await pilot.resize_terminal(80, 24)
        await wait_until(pilot, lambda: view(app) == "overview", "the overview at 80x24")


async def test_a_bad_value_in_an_input_dialog_is_refused_with_a_reason_and_nothing_is_sent(tmp_path):
    from heady_tui.ui.modals.ask import AskModal

    async with fixed_console(tmp_path) as (app, pilot, clock):
        app.open_node("build-1")
        await wait_until(pilot, lambda: view(app) == "node" and app.screen.is_mounted, "the node screen")
        await pilot.press("c")
        modal = await wait_until(pilot, lambda: isinstance(app.screen, AskModal) and app.screen, "the concurrency dialog")
        await pilot.press("a", "b", "c", "enter")
        assert str(modal.query_one("#ask-error").content) == "not a whole number: 'abc'"
        assert isinstance(app.screen, AskModal)
        await pilot.press("escape")
        await wait_until(pilot, lambda: view(app) == "node", "the dialog closed")
        assert list(app.command_results) == []



async def test_audit_screen_lists_entries_and_says_the_chain_verifies(tmp_path):
    async with fixed_console(tmp_path) as (app, pilot, clock):
        await app.supervisor.brain.grant("single", "audited grant")
        await pilot.press("5")
        await wait_until(pilot, lambda: view(app) == "audit" and app.screen.is_mounted, "the audit screen")
        table = app.screen.query_one("#audit-entries", KeyedTable)
        await wait_until(pilot, lambda: table.row_count >= 1, "audit entries")
        actions = {str(table.row(key)[3]) for key in table.ids()}
        assert "consent.grant" in actions
        verdict = app.screen.query_one("#audit-verdict")
        await wait_until(pilot, lambda: str(verdict.content).startswith("VERIFIED"), "the verification verdict")
        assert str(verdict.content).count("head ") == 1  # said once


async def test_a_large_fleet_lists_the_first_sessions_and_says_the_filter_finds_the_rest(tmp_path):
    from heady_tui.ui.samplefleet import spec_fleet
    from heady_tui.ui.screens.overview import SESSION_ROWS

    specs, per_node = spec_fleet(40, 10)
    async with fixed_console(tmp_path, nodes=specs, sessions_per_node=per_node, samples=5, through_store=False) as (app, pilot, clock):
        sessions = app.screen.query_one("#sessions", KeyedTable)
        assert sessions.row_count == SESSION_ROWS
        assert f"400 total; first {SESSION_ROWS} shown, / finds the rest" in str(sessions.border_title)
        sessions.focus()
        await pilot.press("slash", *"no039-s9")
        await wait_until(pilot, lambda: sessions.row_count == 1, "the session beyond the first rows")


async def test_event_log_leaves_out_routine_ingest_counters(tmp_path):
    async with fixed_console(tmp_path) as (app, pilot, clock):
        log = app.screen.query_one(EventLog)
        app.supervisor.publish("ingest.stats", node="web-1", stored=10, duplicates=0)
        app.supervisor.publish("notice.test", node="web-1")
        await pilot.pause(0.2)
        texts = [line.text for line in log.lines]
        assert any("notice.test" in t for t in texts)
        assert not any("ingest.stats" in t for t in texts)


async def test_a_long_event_wraps_within_the_log_and_is_shown_whole(tmp_path):
    async with fixed_console(tmp_path, size=(120, 36)) as (app, pilot, clock):
        log = app.screen.query_one(EventLog)
        summary = "full: 0 issue(s), 0 open weak point(s), 0 new task(s), 0 to dispatch, and then some more words"
        app.supervisor.publish("healing.cycle", summary=summary)
        await pilot.pause(0.2)
        texts = [line.text.rstrip() for line in log.lines]
        assert all(len(t) <= log.scrollable_content_region.width for t in texts)
        assert f"summary={summary}" in " ".join(texts).replace("  ", " ")


async def test_the_permissions_screen_shows_the_rebalancing_kpis_with_their_targets(tmp_path):
    async with fixed_console(tmp_path) as (app, pilot, clock):
        await pilot.press("4")
        await wait_until(pilot, lambda: view(app) == "permissions", "the permissions screen")
        panel = app.screen.query_one("#kpis")
        await wait_until(pilot, lambda: "rebalancing success rate" in str(panel.content), "the KPI panel")
        assert "target >= 95 %" in str(panel.content)
