"""PolicyEngine: conditions, bounded retries with back-off, needs-attention, reset, persistence."""

from __future__ import annotations

import random

from heady_tui.config import PoliciesConfig
from heady_tui.engine.policies import PolicyEngine, PolicyState, SessionSnapshot


def engine() -> PolicyEngine:
    return PolicyEngine(PoliciesConfig(), rng=random.Random(1))


def idle(since: float = 0.0, managed: str | None = None) -> SessionSnapshot:
    return SessionSnapshot("n1", "s1", "idle", since, managed, 0.0, True)


def test_idle_session_is_resumed_after_the_threshold():
    pe = engine()
    assert pe.evaluate([idle()], 299)[0] == []
    decisions, _ = pe.evaluate([idle()], 300)
    assert [(d.action, d.attempt) for d in decisions] == [("session.resume", 1)]


def test_idle_managed_session_is_prompted():
    decisions, _ = engine().evaluate([idle(managed="reviewer")], 300)
    assert decisions[0].action == "session.prompt" and decisions[0].args == {"text": "continue"}


def test_retries_back_off_and_go_to_needs_attention_after_max_retries():
    pe = engine()
    times = []
    t = 300.0
    while t < 3000:
        decisions, attention = pe.evaluate([idle()], t)
        times += [t] * len(decisions)
        if attention:
            break
        t += 1
    assert len(times) == 3  # max_retries
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert gaps[1] > gaps[0]  # exponential
    assert attention[0].attempts == 3
    assert pe.evaluate([idle()], t + 10_000)[0] == []  # no more automatic tries while it stays idle


def test_needs_attention_clears_after_the_window_passes_with_the_session_stable():
    pe = engine()
    for t in range(300, 2000):
        if pe.evaluate([idle()], float(t))[1]:
            break
    running = SessionSnapshot("n1", "s1", "running", 2000, None, 0.0, True)
    pe.evaluate([running], 2000 + 3600)
    assert pe.needs_attention() == []
    assert pe.evaluate([idle(since=5600)], 5600 + 300)[0]


def test_operator_reset_gives_the_budget_back():
    pe = engine()
    for t in range(300, 2000):
        if pe.evaluate([idle()], float(t))[1]:
            break
    assert pe.reset("n1", "s1", "resume_on_idle")
    assert pe.evaluate([idle()], 2001)[0]


def test_kill_on_cost_kills_exactly_once():
    pe = engine()
    costly = SessionSnapshot("n1", "s1", "running", 0, None, 25.0, True)
    kills = sum(len(pe.evaluate([costly], float(t))[0]) for t in range(0, 5000, 5))
    assert kills == 1
    assert pe.needs_attention()[0].policy == "kill_on_cost"


def test_compaction_restarts_only_managed_sessions():
    pe = engine()
    watched = SessionSnapshot("n1", "s1", "compacted", 0, None, 0.0, True)
    managed = SessionSnapshot("n1", "s2", "compacted", 0, "reviewer", 0.0, True)
    decisions, _ = pe.evaluate([watched, managed], 1)
    assert [(d.session, d.action) for d in decisions] == [("s2", "session.restart")]


def test_restored_state_neither_forgets_the_budget_nor_replays():
    pe = engine()
    pe.evaluate([idle()], 300)
    saved = [PolicyState(**st.to_dict()) for st in pe.states.values()]
    again = engine()
    again.load(saved)
    assert again.evaluate([idle()], 301)[0] == []  # back-off still holds
    assert again.states[("n1", "s1", "resume_on_idle")].attempts == 1


def test_a_tick_needs_to_show_the_policies_only_sessions_they_could_act_on_or_hold_state_for():
    pe = engine()
    pe.evaluate([idle()], 300)
    assert pe.held() == {("n1", "s1")}
    assert pe.watches("idle", 0.0) and pe.watches("compacted", 0.0) and pe.watches("running", 25.0)
    assert not pe.watches("running", 1.0)
