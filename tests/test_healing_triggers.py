"""The seven session triggers: each fires at its configured threshold and not just short of it,
[healing.triggers] is validated, and test runs reach the healing window through the real store."""

from __future__ import annotations

from pathlib import Path

import pytest

from heady_agent.clock import ManualClock
from heady_agent.config import ConfigError
from heady_agent.protocol import Event, Hello, JournalInfo, NodeInfo
from heady_tui.config import Config, HealingTriggersConfig, Paths, load_config
from heady_tui.engine.healing import CallSummary, CallView, HealingInput, SessionHealth, analyze
from heady_tui.engine.tests_window import SessionTestRuns, TestRunSummary
from heady_tui.supervisor import Supervisor

BASE = [CallView(float(i), 1_000.0, True, 1_000, 0.01) for i in range(10)]  # ten ordinary calls


def issues(calls: list[CallView], triggers: HealingTriggersConfig, tests: TestRunSummary = TestRunSummary()) -> list[str]:
    session = SessionHealth("n1", "s1", "running", True, None, "anthropic", 100.0, CallSummary.of(calls), tests)
    found = analyze(HealingInput(100.0, (), (session,), {}, 0.0, None), ("session_efficiency",), triggers)
    return [i.message.removeprefix("n1/s1: ") for i in found]


def recent(latency_ms: float = 1_000.0, ok: bool = True, tokens: int = 1_000, cost_usd: float = 0.01) -> list[CallView]:
    """The ten ordinary calls followed by five changed ones."""
    return BASE + [CallView(20.0 + i, latency_ms, ok, tokens, cost_usd) for i in range(5)]


def test_ordinary_calls_fire_no_trigger():
    assert issues(recent(), HealingTriggersConfig()) == []


@pytest.mark.parametrize(("key", "value", "at", "short", "message", "marker"), [
    ("slow_turn_s", 30, {"latency_ms": 30_000.0}, {"latency_ms": 29_999.0}, "a turn took >= 30s", "a turn took"),
    ("token_increase_percent", 100, {"tokens": 2_000}, {"tokens": 1_999}, "tokens per call up 100% over the baseline",
     "tokens per call"),
    ("cost_per_task_usd", 0.2, {"cost_usd": 0.21}, {"cost_usd": 0.2}, "$0.21 per task", "per task"),
    ("duration_percent", 300, {"latency_ms": 3_000.0}, {"latency_ms": 2_999.0}, "turns take 300% of the baseline's time",
     "baseline's time"),
])
def test_each_call_trigger_fires_at_its_configured_threshold_and_not_short_of_it(key, value, at, short, message, marker):
    triggers = HealingTriggersConfig(**{key: value})
    assert message in issues(recent(**at), triggers)
    assert not any(marker in m for m in issues(recent(**short), triggers))


def test_retries_fire_at_the_configured_run_of_failures_only():
    calls = BASE + [CallView(20.0 + i, 500.0, False, 0, 0.0) for i in range(3)]
    assert "3 failed calls in a row" in issues(calls, HealingTriggersConfig(retries=3))
    assert not any("in a row" in m for m in issues(calls, HealingTriggersConfig(retries=4)))


def test_error_rate_fires_at_the_configured_share_of_failed_calls():
    calls = [CallView(float(i), 800.0, i % 4 != 0, 1_000, 0.01) for i in range(20)]  # every fourth call fails
    assert "error rate 25%" in issues(calls, HealingTriggersConfig(error_rate=0.25))
    assert not any(m.startswith("error rate") for m in issues(calls, HealingTriggersConfig(error_rate=0.26)))


def test_test_failures_fire_above_the_configured_share_of_failed_runs():
    assert "1 of 10 test runs failed" in issues(BASE, HealingTriggersConfig(test_failure_rate=0.05), TestRunSummary(10, 1))
    assert not any("test runs" in m for m in issues(BASE, HealingTriggersConfig(test_failure_rate=0.1), TestRunSummary(10, 1)))
    assert not any("test runs" in m for m in issues(BASE, HealingTriggersConfig(), TestRunSummary(40, 0)))


def test_the_defaults_are_the_healing_guides_figures():
    t = Config().healing.triggers
    assert (t.slow_turn_s, t.retries, t.error_rate, t.token_increase_percent, t.cost_per_task_usd, t.test_failure_rate,
            t.duration_percent) == (60, 3, 0.2, 300, 0.5, 0.05, 150)


@pytest.mark.parametrize(("text", "key"), [
    ("test_failure_rate = 1.5", "healing.triggers.test_failure_rate"),
    ("retries = 0", "healing.triggers.retries"),
    ("duration_percent = 90", "healing.triggers.duration_percent"),
    ("slow_turn_s = -1", "healing.triggers.slow_turn_s"),
    ("tokens_up = 3", "healing.triggers.tokens_up"),
])
def test_a_bad_trigger_setting_is_refused_in_one_line_naming_it(tmp_path, text, key):
    cfg = tmp_path / "config.toml"
    cfg.write_text(f"[healing.triggers]\n{text}\n")
    with pytest.raises(ConfigError) as err:
        load_config(Paths(config_file=cfg, data_dir=tmp_path / "data"))
    assert key in str(err.value) and "\n" not in str(err.value)


def test_a_session_test_run_window_forgets_runs_older_than_it_keeps_and_orders_late_ones():
    window = SessionTestRuns(keep_s=100.0)
    window.add(("n1", "s1"), 50.0, False)
    window.add(("n1", "s1"), 120.0, True)
    window.add(("n1", "s1"), 110.0, False)  # arrived late
    assert window.summary(("n1", "s1"), 140.0) == TestRunSummary(3, 2)
    assert window.summary(("n1", "s1"), 200.0) == TestRunSummary(2, 1)
    assert window.summary(("n1", "s1"), 400.0) == TestRunSummary() and window.summary(("n9", "s"), 1.0) == TestRunSummary()


def _run(seq: int, ts: float, exit_code: int, **extra: object) -> Event:
    return Event(journal="j1", seq=seq, ts=ts, kind="test.run", session="s1",
                 data={"runner": "pytest", "command": "pytest -q", "exit_code": exit_code, **extra})


async def _console(tmp_path: Path, clock) -> Supervisor:
    sup = Supervisor(Config.model_validate({"detector": {"evaluation_interval_s": 1e6}}),
                     Paths(tmp_path / "config.toml", tmp_path / "data"), clock=clock)
    await sup.start()
    hello = Hello(protocol=1, node=NodeInfo(id="n1", hostname="n1", agent_version="1.0", os="Linux", cpu_count=8,
                                            mem_total=1 << 30), journal=JournalInfo(id="j1", first_seq=1, last_seq=0))
    await sup.link_hello("n1", hello, None)
    return sup


async def test_test_runs_are_stored_judged_once_and_back_in_the_healing_window_after_a_restart(tmp_path):
    clock = ManualClock()
    now = clock.now()
    sup = await _console(tmp_path, clock)
    await sup.link_frames("n1", "j1", [
        Event(journal="j1", seq=1, ts=now, kind="session.started", session="s1", data={"source": "claude-code"}),
        _run(2, now + 1, 0, passed=12, failed=0), _run(3, now + 2, 1, passed=11, failed=1), _run(4, now + 3, 2)])
    assert sup.store is not None
    stored = await sup.store.test_runs()
    assert [(r.exit_code, r.passed, r.failed, r.ok) for r in stored] == [(0, 12, 0, True), (1, 11, 1, False), (2, None, None, False)]
    assert sup.brain.ledger.session_tests.summary(("n1", "s1"), now + 5) == TestRunSummary(3, 2)
    await sup.stop()
    again = await _console(tmp_path, clock)
    assert again.brain.ledger.session_tests.summary(("n1", "s1"), now + 5) == TestRunSummary(3, 2)
    await again.stop()


async def test_a_malformed_test_run_is_counted_bad_and_in_no_window(tmp_path):
    clock = ManualClock()
    sup = await _console(tmp_path, clock)
    await sup.link_frames("n1", "j1", [_run(1, clock.now(), 1, failed=-3), _run(2, clock.now(), 0, runner="make")])
    assert sup.store is not None and await sup.store.test_runs() == []
    assert sup.fleet.nodes["n1"].bad_events == 2
    assert sup.brain.ledger.session_tests.summary(("n1", "s1"), clock.now()) == TestRunSummary()
    await sup.stop()
