"""Liveness in the fleet model: a node's shown status is derived from its link and the age of its
last frame on the console's clock; a silent node is offline and its sessions unknown."""

from __future__ import annotations

from heady_agent.protocol import Event, Metrics, SessionInfo
from heady_tui.fleet import UNKNOWN_STATE, Fleet
from heady_tui.ledger import NODE_OFFLINE_REASON
from heady_tui.ui.views import NODE_COLUMNS, node_row

T0 = 1_800_000_000.0
TIMEOUT_S = 10.0


def fleet_with_a_running_session() -> Fleet:
    fleet = Fleet()
    fleet.track("a", T0, TIMEOUT_S)
    fleet.set_status("a", "online", T0)
    fleet.apply_frame("a", Event(journal="j1", seq=1, ts=T0, kind="session.started", session="s1", data={"source": "codex"}))
    fleet.frames_arrived("a", T0)
    return fleet


def test_a_node_without_frames_for_its_timeout_is_offline_since_its_last_frame():
    fleet = fleet_with_a_running_session()
    fleet.frames_arrived("a", T0 + 3)
    fleet.update_liveness(T0 + 3 + TIMEOUT_S)
    node = fleet.nodes["a"]
    assert (node.status, node.since, node.stale) == ("offline", T0 + 3, True)


def test_a_node_within_its_timeout_stays_online():
    fleet = fleet_with_a_running_session()
    fleet.update_liveness(T0 + TIMEOUT_S - 0.1)
    assert fleet.nodes["a"].status == "online"


def test_a_silent_nodes_sessions_are_unknown_never_running():
    fleet = fleet_with_a_running_session()
    fleet.update_liveness(T0 + TIMEOUT_S)
    rec = fleet.sessions[("a", "s1")]
    assert (rec.state, rec.state_reason) == (UNKNOWN_STATE, NODE_OFFLINE_REASON)
    assert rec.active and not rec.live


def test_a_dropped_link_is_connecting_until_the_timeout_not_offline():
    fleet = fleet_with_a_running_session()
    fleet.set_status("a", "offline", T0 + 1, "connection lost")
    fleet.update_liveness(T0 + 2)
    assert fleet.nodes["a"].status == "connecting" and fleet.sessions[("a", "s1")].live


def test_a_link_error_shows_as_error_and_still_makes_sessions_unknown_at_the_timeout():
    fleet = fleet_with_a_running_session()
    fleet.set_status("a", "error", T0 + 1, "401 unauthorized: the agent refused the token")
    fleet.update_liveness(T0 + TIMEOUT_S)
    assert fleet.nodes["a"].status == "error" and fleet.sessions[("a", "s1")].state == UNKNOWN_STATE


def test_a_node_that_never_sent_a_frame_goes_offline_a_timeout_after_the_console_started_watching():
    fleet = Fleet()
    fleet.track("a", T0, TIMEOUT_S)
    assert fleet.update_liveness(T0 + TIMEOUT_S) == [fleet.nodes["a"]]
    assert (fleet.nodes["a"].status, fleet.nodes["a"].since) == ("offline", T0)


def test_frames_resuming_bring_the_node_back_online_and_the_snapshot_restores_session_states():
    fleet = fleet_with_a_running_session()
    fleet.update_liveness(T0 + 60)
    fleet.set_status("a", "online", T0 + 61)
    fleet.apply_sessions("a", [SessionInfo(id="s1", source="codex", state="idle")], now=T0 + 61)
    rec = fleet.sessions[("a", "s1")]
    assert fleet.nodes["a"].status == "online" and (rec.state, rec.state_reason) == ("idle", None)


def test_the_last_frame_age_turns_amber_at_half_the_timeout_then_red_at_it():
    fleet = fleet_with_a_running_session()
    seen = [key for key, _ in NODE_COLUMNS].index("seen")

    def cell(now: float) -> tuple[str, str | None]:
        fleet.update_liveness(now)
        return node_row(fleet.nodes["a"], now, sessions=0, cost_today=None, spark_width=8, compact=False)[seen]

    assert cell(T0 + 2) == ("2s", None)
    assert cell(T0 + TIMEOUT_S / 2) == ("5s", "warning")
    assert cell(T0 + TIMEOUT_S) == ("10s", "critical")


def test_a_silent_nodes_last_cpu_and_memory_are_not_shown_as_current():
    fleet = fleet_with_a_running_session()
    fleet.apply_frame("a", Metrics(journal="j1", seq=2, ts=T0, cpu=55.0, load=[1, 1, 1], mem=40, swap=0))
    fleet.update_liveness(T0 + TIMEOUT_S)
    columns = [key for key, _ in NODE_COLUMNS]
    row = node_row(fleet.nodes["a"], T0 + TIMEOUT_S, sessions=0, cost_today=None, spark_width=8, compact=False)
    assert row[columns.index("cpu")][0] == "-" and row[columns.index("mem")][0] == "-"
