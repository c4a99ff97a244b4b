"""Sessions waiting for a person, in the console: the alert after `alerts.waiting_after_s` (once per
wait, on a ManualClock), the header's `N need you`, the jump key and the order of the sessions table."""

from __future__ import annotations

import json
import time

from agentkit import AgentProcess, wait_until
from heady_agent.clock import ManualClock
from heady_agent.protocol import Event
from heady_tui.alerts import classify
from heady_tui.config import Config, Paths
from heady_tui.events import HeadyEvent
from heady_tui.fleet import Fleet
from heady_tui.supervisor import Supervisor
from heady_tui.ui.screens.session import SessionScreen
from heady_tui.ui.widgets.panels import StatusBar
from heady_tui.ui.widgets.table import KeyedTable
from heady_tui.waits import WaitAlarm
from hookkit import PERMISSION_REQUEST, SID, claude_home, run_hook  # noqa: F401 (claude_home: a fixture)
from reports_httpkit import FakeService
from uikit import fixed_console
from uikit import wait_until as ui_wait_until

WAIT_S = 60.0
AFTER_S = 120.0


def _waiting(sup: Supervisor, node: str) -> bool:
    rec = sup.fleet.sessions.get((node, SID))
    return rec is not None and rec.state == "waiting"


async def test_a_wait_raises_one_alert_with_node_project_and_how_long_after_the_configured_wait(tmp_path, claude_home):
    extra = {"claude_code": {"roots": [str(claude_home)], "poll_interval_s": 0.2}}
    clock = ManualClock(time.time())
    with FakeService() as receiver:
        async with AgentProcess(tmp_path, "n1", sources=("claude-code",), extra=extra) as agent:
            config = Config.model_validate({
                "nodes": [{"name": "n1", "url": agent.url, "token": agent.token}],
                "alerts": {"waiting_after_s": AFTER_S, "webhooks": [{"kind": "json", "url": receiver.url + "/hook"}]},
            })
            sup = Supervisor(config, Paths(tmp_path / "config.toml", tmp_path / "console"), clock=clock)
            published: list[HeadyEvent] = []
            sup.subscribe(published.append)
            await sup.start()
            try:
                await wait_until(lambda: (("n1", SID) in sup.fleet.sessions), timeout=WAIT_S, what="the session")
                run_hook(agent.dir, json.dumps(PERMISSION_REQUEST).encode())
                await wait_until(lambda: _waiting(sup, "n1"), timeout=WAIT_S, what="the session to wait")
                since = sup.fleet.sessions[("n1", SID)].state_since

                clock.advance(since + AFTER_S - 0.5 - clock.now())
                sup.check_waits()
                assert not [e for e in published if e.name == "session.waiting"]

                clock.advance(0.5)
                sup.check_waits()
                clock.advance(AFTER_S)
                sup.check_waits()
                assert len([e for e in published if e.name == "session.waiting"]) == 1
                assert sup.alerts is not None
                await sup.alerts.drain()
            finally:
                await sup.stop()
    [request] = receiver.requests
    body = request.json()
    assert (body["event"], body["severity"]) == ("session.waiting", "warning")
    assert (body["node"], body["project"], body["reason"], body["waited_s"]) == ("n1", "billing-service", "permission", AFTER_S)


def _event(seq: int, ts: float, state: str, reason: str | None = None) -> Event:
    return Event(journal="j1", seq=seq, ts=ts, kind="session.state", session=SID, data={"state": state, "reason": reason})


def test_a_new_wait_of_the_same_session_alerts_again():
    fleet = Fleet()
    alarm = WaitAlarm(AFTER_S)
    t0 = 1_800_000_000.0
    fleet.apply_frame("n1", _event(1, t0, "waiting", "permission"))
    assert [rec.id for rec in alarm.due(fleet, t0 + AFTER_S)] == [SID]
    fleet.apply_frame("n1", _event(2, t0 + 200, "running"))
    fleet.apply_frame("n1", _event(3, t0 + 300, "waiting", "input"))
    assert alarm.due(fleet, t0 + 300 + AFTER_S - 1) == []
    assert [rec.state_reason for rec in alarm.due(fleet, t0 + 300 + AFTER_S)] == ["input"]


def test_the_waiting_alert_says_who_waits_for_what_and_how_long():
    event = HeadyEvent("session.waiting", 0.0, {"node": "build-1", "session": SID, "project": "billing-service",
                                               "reason": "permission", "since": 1.0, "waited_s": 185.0})
    alert = classify(event)
    assert alert is not None and alert.severity == "warning"
    assert alert.title == "billing-service on build-1 waits for you (permission)"
    assert alert.lines == ("waiting for 3 min 05 s", f"session: {SID}")


# --- on screen -----------------------------------------------------------------------------------


async def _make_wait(app, clock, ago: dict[tuple[str, str], float]) -> None:
    """Put sessions of the sample fleet in `waiting`, each since `ago` seconds, as their agents would."""
    sup = app.supervisor
    clock.advance(max(ago.values()) + 60)  # the waits begin after the sample fleet's last states
    for (node, sid), seconds in ago.items():
        state = sup.fleet.nodes[node]
        frame = Event(journal=state.journal, seq=state.last_seq + 1, ts=clock.now() - seconds, kind="session.state",
                      session=sid, data={"state": "waiting", "reason": "permission"})
        await sup.link_frames(node, state.journal, [frame])


def _two_live(app) -> tuple[tuple[str, str], tuple[str, str]]:
    live = sorted(rec.key for rec in app.supervisor.fleet.sessions.values() if rec.live and rec.state != "waiting")
    return live[-1], live[0]


async def test_the_header_counts_the_sessions_that_need_you(tmp_path):
    async with fixed_console(tmp_path) as (app, pilot, clock):
        recent, longest = _two_live(app)
        await _make_wait(app, clock, {recent: 30.0, longest: 300.0})
        app.refresh_now(force=True)
        status = app.screen.query_one(StatusBar)
        await ui_wait_until(pilot, lambda: "2 need you (!)" in str(status.content), "the header")


async def test_the_key_opens_the_longest_waiting_session(tmp_path):
    async with fixed_console(tmp_path) as (app, pilot, clock):
        recent, longest = _two_live(app)
        await _make_wait(app, clock, {recent: 30.0, longest: 300.0})
        await pilot.press("exclamation_mark")
        screen = await ui_wait_until(pilot, lambda: isinstance(app.screen, SessionScreen) and app.screen, "the session screen")
        assert (screen.node_id, screen.session_id) == longest


async def test_the_sessions_table_lists_waiting_sessions_first_longest_wait_on_top(tmp_path):
    async with fixed_console(tmp_path) as (app, pilot, clock):
        recent, longest = _two_live(app)
        await _make_wait(app, clock, {recent: 30.0, longest: 300.0})
        app.refresh_now(force=True)
        await pilot.pause()
        table = app.screen.query_one("#sessions", KeyedTable)
        states = [str(table.cell(key, "state")) for key in table.ids()[:3]]
        assert states[:2] == ["waiting permission 5m", "waiting permission 30s"]
        assert not states[2].startswith("waiting")
