"""The console keeps at most `max_sessions_per_node` sessions a node: ended ones are forgotten
first (the longest-ended first); when every kept session is live, new ones are refused and counted."""

from __future__ import annotations

from heady_agent.protocol import Event, SessionInfo
from heady_tui.fleet import Fleet

T0 = 1_800_000_000.0


def started(seq: int, session: str) -> Event:
    return Event(journal="j", seq=seq, ts=T0 + seq, kind="session.started", session=session, data={"source": "claude-code"})


def ended(seq: int, session: str) -> Event:
    return Event(journal="j", seq=seq, ts=T0 + seq, kind="session.ended", session=session, data={"exit_code": 0})


def test_the_longest_ended_sessions_are_forgotten_first():
    fleet = Fleet(max_sessions_per_node=10)
    for i in range(10):
        fleet.apply_frame("n", started(i + 1, f"s{i}"))
    fleet.apply_frame("n", ended(20, "s3"))
    fleet.apply_frame("n", ended(21, "s1"))
    fleet.apply_frame("n", started(22, "new"))
    kept = {sid for (_, sid) in fleet.sessions}
    assert "new" in kept and "s3" not in kept and len(kept) <= 10
    assert fleet.nodes["n"].sessions_forgotten >= 1


def test_new_sessions_are_refused_and_counted_when_every_kept_one_is_live():
    fleet = Fleet(max_sessions_per_node=10)
    for i in range(12):
        fleet.apply_frame("n", started(i + 1, f"s{i}"))
    assert len(fleet.sessions) == 10
    assert fleet.nodes["n"].sessions_refused == 2
    assert ("n", "s11") not in fleet.sessions


def test_each_new_sessions_report_replaces_the_sessions_it_no_longer_lists():
    fleet = Fleet(max_sessions_per_node=10)
    for batch in range(5):
        infos = [SessionInfo(id=f"b{batch}-{i}", source="claude-code") for i in range(10)]
        fleet.apply_sessions("n", infos, now=T0 + batch)
    assert {sid for (_, sid) in fleet.sessions} == {f"b4-{i}" for i in range(10)}
    assert fleet.nodes["n"].sessions_refused == 0


def test_other_nodes_are_not_affected_by_one_nodes_bound():
    fleet = Fleet(max_sessions_per_node=10)
    for i in range(15):
        fleet.apply_frame("flood", started(i + 1, f"s{i}"))
    fleet.apply_frame("calm", started(1, "mine"))
    assert ("calm", "mine") in fleet.sessions and fleet.nodes["calm"].sessions_refused == 0
