"""Load shedding of background sessions and the high-priority gate, as pure decisions over time."""

from __future__ import annotations

from heady_tui.config import PriorityConfig
from heady_tui.engine.priority import LoadShedder, NodeLoad, SessionFacts, gate_for

CFG = PriorityConfig(loaded_utilisation=1.0, unloaded_utilisation=0.8, loaded_for_s=10, pause_after_s=30, clear_s=15, background_nice=10)
SESSIONS = (
    SessionFacts("bg", "running", 0, "background"),
    SessionFacts("web", "running", 0, "normal"),
    SessionFacts("ship", "running", 0, "high"),
)


def load(util: float | None, sessions=SESSIONS, online: bool = True) -> list[NodeLoad]:
    return [NodeLoad("n1", online, util, sessions)]


def steps_of(shedder: LoadShedder, util: float, now: float, sessions=SESSIONS) -> list[tuple[str, str, dict]]:
    return [(s.action, s.session, s.args) for s in shedder.evaluate(load(util, sessions), now)]


def applied_all(shedder: LoadShedder, util: float, now: float, previous_nice: int = 0, sessions=SESSIONS) -> list[tuple[str, str, dict]]:
    """Evaluate and report every step as done, the agent saying the nice it replaced."""
    done = []
    for step in shedder.evaluate(load(util, sessions), now):
        shedder.applied(step, True, {"previous": previous_nice} if step.action == "session.renice" else {})
        done.append((step.action, step.session, step.args))
    return done


def test_a_node_loaded_for_less_than_loaded_for_s_is_left_alone():
    shedder = LoadShedder(CFG)
    assert steps_of(shedder, 1.5, 0.0) == []
    assert steps_of(shedder, 1.5, 9.0) == []


def test_background_sessions_are_reniced_once_the_load_has_held():
    shedder = LoadShedder(CFG)
    applied_all(shedder, 1.5, 0.0)
    assert applied_all(shedder, 1.5, 10.0) == [("session.renice", "bg", {"nice": 10})]
    assert applied_all(shedder, 1.5, 11.0) == []  # done once


def test_still_loaded_pause_after_s_later_they_are_paused():
    shedder = LoadShedder(CFG)
    applied_all(shedder, 1.5, 0.0)
    applied_all(shedder, 1.5, 10.0)
    assert applied_all(shedder, 1.5, 39.0) == []
    assert applied_all(shedder, 1.5, 40.0) == [("session.pause", "bg", {})]


def test_a_dip_of_load_restarts_the_wait_before_renicing():
    shedder = LoadShedder(CFG)
    applied_all(shedder, 1.5, 0.0)
    applied_all(shedder, 0.9, 5.0)  # between the levels: the loaded period is over
    applied_all(shedder, 1.5, 6.0)
    assert applied_all(shedder, 1.5, 15.0) == []
    assert applied_all(shedder, 1.5, 16.0) == [("session.renice", "bg", {"nice": 10})]


def test_between_the_levels_nothing_is_reverted():
    shedder = LoadShedder(CFG)
    applied_all(shedder, 1.5, 0.0)
    applied_all(shedder, 1.5, 10.0)
    assert applied_all(shedder, 0.9, 20.0) == []
    assert applied_all(shedder, 0.9, 100.0) == []


def test_calm_for_clear_s_resumes_then_puts_the_nice_value_back():
    shedder = LoadShedder(CFG)
    applied_all(shedder, 1.5, 0.0)
    applied_all(shedder, 1.5, 10.0, previous_nice=3)
    applied_all(shedder, 1.5, 40.0)
    assert applied_all(shedder, 0.5, 50.0) == []
    assert applied_all(shedder, 0.5, 64.0) == []
    assert applied_all(shedder, 0.5, 65.0) == [("session.resume", "bg", {}), ("session.renice", "bg", {"nice": 3})]
    assert applied_all(shedder, 0.5, 70.0) == []
    assert shedder.export_state() == {}


def test_a_session_gone_by_the_revert_gets_no_command():
    shedder = LoadShedder(CFG)
    applied_all(shedder, 1.5, 0.0)
    applied_all(shedder, 1.5, 10.0)
    assert applied_all(shedder, 0.5, 20.0, sessions=()) == []
    assert applied_all(shedder, 0.5, 35.0, sessions=()) == []


def test_a_step_the_agent_refused_is_not_sent_again_in_the_same_episode():
    shedder = LoadShedder(CFG)
    shedder.evaluate(load(1.5), 0.0)
    (step,) = shedder.evaluate(load(1.5), 10.0)
    shedder.applied(step, False, {})
    assert steps_of(shedder, 1.5, 11.0) == []


def test_an_offline_node_is_neither_shed_nor_reverted():
    shedder = LoadShedder(CFG)
    applied_all(shedder, 1.5, 0.0)
    applied_all(shedder, 1.5, 10.0)
    assert shedder.evaluate(load(0.1, online=False), 30.0) == []
    assert shedder.evaluate(load(None), 60.0) == []


def test_the_state_survives_an_export_and_import():
    shedder = LoadShedder(CFG)
    applied_all(shedder, 1.5, 0.0)
    applied_all(shedder, 1.5, 10.0, previous_nice=2)
    restored = LoadShedder(CFG)
    restored.import_state(shedder.export_state())
    restored.evaluate(load(0.5), 20.0)
    assert [(s.action, s.args) for s in restored.evaluate(load(0.5), 35.0)] == [("session.renice", {"nice": 2})]


def test_the_gate_counts_high_sessions_the_agent_cannot_see_as_high():
    sessions = [("deploy", "high"), (None, "high"), ("bulk", "high"), ("deploy", "normal"), (None, "normal")]
    gate = gate_for(["deploy"], sessions, 2)
    assert (gate.high, gate.cap, gate.others) == (("deploy",), 2, 2)
