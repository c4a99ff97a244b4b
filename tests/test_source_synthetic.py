"""The simulated node: every scenario shows its condition in time, and commands really act on it.

Fleet metrics are computed here from what the sources emit, by the definitions of DESIGN.md
"Equilibrium metrics" (the console's detector computes the same from the same frames).
"""

from __future__ import annotations

import asyncio
import statistics
from pathlib import Path

import pytest

from heady_agent.clock import ManualClock
from heady_agent.config import AgentConfig, ConfigError
from heady_agent.protocol import Command, Metrics, NodeInfo, ProcessRow
from heady_agent.sources.base import CommandError
from heady_agent.sources.synthetic import TASK, SyntheticSource
from sourcekit import SqliteSourceContext

# SOURCES.md prices, USD per million tokens: input, output, cache write 5m, cache read.
OPUS_4_5 = (5.0, 25.0, 6.25, 0.50)


class SimFleet:
    """n simulated nodes on one manual clock, each with its own SQLite-backed context."""

    def __init__(self, tmp_path: Path, scenario: str, n: int = 3, seed: int = 0, speed: float = 1.0) -> None:
        self.clock = ManualClock()
        self.start = self.clock.now()
        self.sources: list[SyntheticSource] = []
        for i in range(n):
            cfg = AgentConfig(
                sources=["synthetic"],
                synthetic={"scenario": scenario, "node_index": i, "node_count": n, "seed": seed, "speed": speed},
            )
            ctx = SqliteSourceContext(tmp_path / f"{scenario}-{seed}-{i}.db", cfg, self.clock)
            source = SyntheticSource(ctx)
            source.begin()
            self.sources.append(source)

    def ctx(self, i: int) -> SqliteSourceContext:
        return self.sources[i].ctx  # type: ignore[return-value]

    def run(self, seconds: float, step: float = 1.0) -> None:
        for _ in range(round(seconds / step)):
            self.clock.advance(step)
            for source in self.sources:
                source.tick()

    def run_until(self, condition, limit_s: float) -> float:
        """Advance second by second until `condition()` holds; the elapsed clock seconds, or fail."""
        elapsed = 0.0
        while elapsed < limit_s:
            self.run(1.0)
            elapsed += 1.0
            if condition():
                return elapsed
        raise AssertionError(f"condition not reached within {limit_s} s")

    # --- the detector's four metrics ---------------------------------------------------------

    def load_cv(self) -> float:
        per_core = [s.host_metrics()["load"][0] / s.node_info()["cpu_count"] for s in self.sources]
        mean = statistics.fmean(per_core)
        return 0.0 if mean < 0.10 else statistics.pstdev(per_core) / mean

    def queue_total(self) -> int:
        return sum(s.host_metrics()["queue_depth"] for s in self.sources)

    def recent_calls(self, window_s: float = 60.0) -> list[dict]:
        since = self.clock.now() - window_s
        return [e.data for s in self.sources for e in s.ctx.events("llm.call") if e.ts > since]

    def error_rate(self) -> float | None:
        calls = self.recent_calls()
        if len(calls) < 20:
            return None
        return sum(1 for c in calls if not c["ok"]) / len(calls)

    def p95_ms(self) -> float | None:
        latencies = sorted(c["latency_ms"] for c in self.recent_calls())
        if len(latencies) < 20:
            return None
        return latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))]


def command(action: str, target: str | None = None, **args) -> Command:
    return Command(id="c1", action=action, target=target, args=args)


def run_command(source: SyntheticSource, action: str, target: str | None = None, **args) -> dict:
    return asyncio.run(source.command(command(action, target, **args)))


def sessions_by_role(source: SyntheticSource, role: str) -> list[str]:
    return [s.id for s in source.sessions() if f"-{role}-" in s.id]


def call_cost(data: dict, prices=OPUS_4_5) -> float:
    inp, out, write, read = prices
    return (
        data["input_tokens"] * inp
        + data["output_tokens"] * out
        + data["cache_creation_tokens"] * write
        + data["cache_read_tokens"] * read
    ) / 1e6


# --- scenarios reach their condition ------------------------------------------------------------


def test_calm_stays_balanced_on_every_metric(tmp_path):
    fleet = SimFleet(tmp_path, "calm")
    for _ in range(24):
        fleet.run(5)
        assert fleet.load_cv() < 0.3
        assert fleet.queue_total() < 500
        assert (fleet.error_rate() or 0.0) < 0.05
        assert (fleet.p95_ms() or 0.0) < 2000


def test_queue_overflow_passes_1000_within_30s_and_stays_without_intervention(tmp_path):
    fleet = SimFleet(tmp_path, "queue-overflow")
    fleet.run_until(lambda: fleet.queue_total() > 1000, limit_s=30)
    for _ in range(18):
        fleet.run(5)
        assert fleet.queue_total() > 1000


def test_queue_overflow_returns_to_equilibrium_when_work_moves_and_concurrency_rises(tmp_path):
    fleet = SimFleet(tmp_path, "queue-overflow")
    fleet.run(30)
    source, *targets = fleet.sources
    moved = run_command(source, "queue.move", count=source.queue_depth() - 300)["items"]
    for i, target in enumerate(targets):
        share = moved[i :: len(targets)]
        assert run_command(target, "queue.accept", items=share)["rejected"] == []
        run_command(target, "node.set_concurrency", value=8)
    fleet.run_until(lambda: fleet.queue_total() < 500, limit_s=60)
    for _ in range(12):
        fleet.run(5)
        assert fleet.queue_total() < 500


def test_error_storm_fails_over_10_percent_of_at_least_a_call_per_second_per_node(tmp_path):
    fleet = SimFleet(tmp_path, "error-storm")
    fleet.run_until(lambda: (fleet.error_rate() or 0.0) > 0.10, limit_s=30)
    fleet.run(60 - fleet.clock.now() + fleet.start)
    for source in fleet.sources:
        calls = source.ctx.events("llm.call")
        assert len(calls) >= 60
    rejected = [c for c in fleet.recent_calls() if not c["ok"]]
    assert {c["error"] for c in rejected} == {"rate_limit"}
    assert (fleet.error_rate() or 0.0) > 0.10


def test_hot_node_exceeds_critical_load_variance_within_30s(tmp_path):
    fleet = SimFleet(tmp_path, "hot-node")
    fleet.run_until(lambda: fleet.load_cv() > 0.6, limit_s=30)


def test_pausing_the_hot_nodes_background_sessions_lowers_load_variance(tmp_path):
    fleet = SimFleet(tmp_path, "hot-node")
    fleet.run(20)
    hot = fleet.sources[0]
    for session in sessions_by_role(hot, "build"):
        run_command(hot, "session.pause", session)
    fleet.run_until(lambda: fleet.load_cv() < 0.3, limit_s=30)


def test_renicing_the_hot_nodes_background_sessions_lowers_load_variance(tmp_path):
    fleet = SimFleet(tmp_path, "hot-node")
    fleet.run(20)
    before = fleet.load_cv()
    hot = fleet.sources[0]
    for session in sessions_by_role(hot, "build"):
        run_command(hot, "session.renice", session, nice=19)
    fleet.run(30)
    assert fleet.load_cv() < min(0.6, before)


def test_slow_provider_pushes_p95_above_5000ms_within_30s(tmp_path):
    fleet = SimFleet(tmp_path, "slow-provider")
    fleet.run_until(lambda: (fleet.p95_ms() or 0.0) > 5000, limit_s=30)


def test_runaway_session_spends_over_20_usd_within_30s(tmp_path):
    fleet = SimFleet(tmp_path, "runaway-cost")
    fleet.run(30)
    runaway = [e for e in fleet.ctx(0).events("llm.call") if "-runaway-" in (e.session or "")]
    assert {e.data["model"] for e in runaway} == {"claude-opus-4-5"}
    assert all(e.data["cost_usd"] is None for e in runaway)
    assert sum(call_cost(e.data) for e in runaway) > 20.0


def test_a_killed_runaway_session_stays_dead(tmp_path):
    fleet = SimFleet(tmp_path, "runaway-cost")
    fleet.run(10)
    source = fleet.sources[0]
    [runaway] = sessions_by_role(source, "runaway")
    last_seq = fleet.ctx(0).last_seq()
    assert run_command(source, "session.kill", runaway)["state"] == "completed"
    fleet.run(60)
    later = fleet.ctx(0).events(since_seq=last_seq)
    assert [e.data for e in later if e.session == runaway] == [{"exit_code": -9, "reason": "killed"}]
    assert not any("-runaway-" in (e.session or "") for e in later if e.kind == "session.started")
    assert sessions_by_role(source, "runaway") == []


def test_idle_sessions_go_idle_within_30s_and_stay_idle(tmp_path):
    fleet = SimFleet(tmp_path, "idle-sessions")
    fleet.run(30)
    idle = {e.session for s in fleet.sources for e in s.ctx.events("session.state") if e.data["state"] == "idle"}
    assert idle
    seq = {i: fleet.ctx(i).last_seq() for i in range(3)}
    fleet.run(120)
    for i in range(3):
        later = fleet.ctx(i).events(since_seq=seq[i])
        assert not [e for e in later if e.session in idle]


@pytest.mark.parametrize("action,args", [("session.resume", {}), ("session.prompt", {"text": "carry on"})])
def test_resume_or_prompt_wakes_an_idle_session(tmp_path, action, args):
    fleet = SimFleet(tmp_path, "idle-sessions", n=1)
    fleet.run(30)
    source = fleet.sources[0]
    idle = [s.id for s in source.sessions() if s.state == "idle"]
    assert idle
    assert run_command(source, action, idle[0], **args)["state"] == "running"
    seq = fleet.ctx(0).last_seq()
    fleet.run(10)
    assert [e for e in fleet.ctx(0).events("llm.call", since_seq=seq) if e.session == idle[0]]


def test_compaction_sessions_compact_within_30s_and_again_later(tmp_path):
    fleet = SimFleet(tmp_path, "compaction", n=1)
    fleet.run(30)
    first = [e for e in fleet.ctx(0).events("session.state") if e.data["state"] == "compacted"]
    assert first and all(e.data["reason"] == "auto" for e in first)
    fleet.run(60)
    again = [e for e in fleet.ctx(0).events("session.state") if e.data["state"] == "compacted"]
    per_session = {s: sum(1 for e in again if e.session == s) for s in {e.session for e in again}}
    assert max(per_session.values()) >= 2


def test_restart_replaces_a_session_with_a_fresh_one(tmp_path):
    fleet = SimFleet(tmp_path, "compaction", n=1)
    fleet.run(30)
    source = fleet.sources[0]
    old = sessions_by_role(source, "chat")[0]
    old_reads = [e.data["cache_read_tokens"] for e in fleet.ctx(0).events("llm.call") if e.session == old]
    detail = run_command(source, "session.restart", old)
    fresh = detail["session"]
    assert detail["replaces"] == old and fresh != old
    assert not source.owns(old) and source.owns(fresh)
    fleet.run(10)
    ended = [e.data for e in fleet.ctx(0).events("session.ended") if e.session == old]
    assert ended == [{"exit_code": -15, "reason": "restarted"}]
    fresh_reads = [e.data["cache_read_tokens"] for e in fleet.ctx(0).events("llm.call") if e.session == fresh]
    assert fresh_reads and fresh_reads[0] < max(old_reads)


def test_node_loss_darkens_node_1_at_15s_for_20s(tmp_path):
    fleet = SimFleet(tmp_path, "node-loss")
    fleet.run(14)
    assert [fleet.ctx(i).dark_requests for i in range(3)] == [[], [], []]
    fleet.run(2)
    assert [fleet.ctx(i).dark_requests for i in range(3)] == [[], [20.0], []]
    fleet.run(60)
    assert fleet.ctx(1).dark_requests == [20.0]


def test_node_loss_warns_with_one_critical_notice_5s_before_going_dark(tmp_path):
    fleet = SimFleet(tmp_path, "node-loss")
    fleet.run(9)
    assert [list(fleet.ctx(i).events("agent.notice")) for i in range(3)] == [[], [], []]
    fleet.run(2)
    [notice] = fleet.ctx(1).events("agent.notice")
    assert notice.data["severity"] == "critical" and "link failing" in notice.data["message"]
    assert fleet.ctx(1).dark_requests == []
    fleet.run(60)
    assert len(list(fleet.ctx(1).events("agent.notice"))) == 1 and fleet.ctx(1).dark_requests == [20.0]
    assert [list(fleet.ctx(i).events("agent.notice")) for i in (0, 2)] == [[], []]


def test_node_loss_on_a_single_node_darkens_that_node(tmp_path):
    fleet = SimFleet(tmp_path, "node-loss", n=1)
    fleet.run(16)
    assert fleet.ctx(0).dark_requests == [20.0]


def test_speed_compresses_time_and_dark_periods(tmp_path):
    fleet = SimFleet(tmp_path, "node-loss", speed=10.0)
    fleet.run(1.6, step=0.1)
    assert fleet.ctx(1).dark_requests == [2.0]
    assert fleet.sources[1].sim_time == pytest.approx(16.0)


# --- the queue and the node commands -----------------------------------------------------------


def test_queue_move_takes_the_newest_items_and_accept_enqueues_them(tmp_path):
    fleet = SimFleet(tmp_path, "queue-overflow", n=2)
    fleet.run(10)
    source, target = fleet.sources
    depth, target_depth = source.queue_depth(), target.queue_depth()
    detail = run_command(source, "queue.move", count=100)
    items = detail["items"]
    assert len(items) == 100 and detail["remaining"] == depth - 100
    assert all(item["managed"] == TASK for item in items)
    numbers = [int(item["args"][0].rsplit("-", 1)[1]) for item in items]
    assert numbers == sorted(numbers)
    accepted = run_command(target, "queue.accept", items=items)
    assert accepted["accepted"] == 100 and accepted["rejected"] == []
    assert source.queue_depth() == depth - 100
    assert target.queue_depth() == target_depth + 100


def test_queue_move_of_more_than_queued_returns_what_there_is(tmp_path):
    fleet = SimFleet(tmp_path, "calm", n=1)
    source = fleet.sources[0]
    assert run_command(source, "queue.move", count=50) == {"items": [], "remaining": 0}


def test_queue_accept_returns_items_for_managed_names_it_does_not_define(tmp_path):
    fleet = SimFleet(tmp_path, "calm", n=1)
    source = fleet.sources[0]
    foreign = {"managed": "reviewer", "args": ["pr-12"]}
    ours = {"managed": TASK, "args": ["job-x-1"]}
    detail = run_command(source, "queue.accept", items=[foreign, ours])
    assert detail["accepted"] == 1 and detail["rejected"] == [foreign]
    assert source.queue_depth() == 1


def test_queue_commands_for_another_managed_name_fail(tmp_path):
    fleet = SimFleet(tmp_path, "calm", n=1)
    for action, args in [("queue.move", {"count": 1, "managed": "reviewer"}),
                         ("node.set_concurrency", {"value": 2, "managed": "reviewer"})]:
        with pytest.raises(CommandError) as err:
            run_command(fleet.sources[0], action, **args)
        assert err.value.code == "unknown_managed"


def test_raising_concurrency_drains_a_backlog_faster(tmp_path):
    slow = SimFleet(tmp_path, "queue-overflow", n=1, seed=1)
    fast = SimFleet(tmp_path, "queue-overflow", n=1, seed=2)
    run_command(fast.sources[0], "node.set_concurrency", value=12)
    slow.run(20)
    fast.run(20)
    assert fast.queue_total() < slow.queue_total() - 200
    assert len(sessions_by_role(fast.sources[0], "task")) == 12


def test_a_drained_node_starts_no_work_until_undrained(tmp_path):
    fleet = SimFleet(tmp_path, "queue-overflow", n=1)
    source = fleet.sources[0]
    assert run_command(source, "node.drain") == {"drained": True, "previous": False}
    fleet.run(15)
    assert sessions_by_role(source, "task") == []
    assert source.queue_depth() > 800
    assert run_command(source, "node.undrain") == {"drained": False, "previous": True}
    fleet.run(5)
    assert len(sessions_by_role(source, "task")) == 4


def test_killing_a_worker_puts_its_item_back_on_the_queue(tmp_path):
    fleet = SimFleet(tmp_path, "queue-overflow", n=1)
    source = fleet.sources[0]
    worker = sessions_by_role(source, "task")[0]
    depth = source.queue_depth()
    run_command(source, "session.kill", worker)
    assert source.queue_depth() == depth + 1


# --- sessions and commands ------------------------------------------------------------------------


def test_commands_on_unknown_sessions_fail_cleanly(tmp_path):
    fleet = SimFleet(tmp_path, "calm", n=1)
    for action, args in [("session.kill", {}), ("session.pause", {}), ("session.renice", {"nice": 5})]:
        with pytest.raises(CommandError) as err:
            run_command(fleet.sources[0], action, "no-such-session", **args)
        assert err.value.code == "unknown_session"


def test_commands_with_bad_args_fail_cleanly(tmp_path):
    fleet = SimFleet(tmp_path, "calm", n=1)
    chat = sessions_by_role(fleet.sources[0], "chat")[0]
    with pytest.raises(CommandError) as err:
        run_command(fleet.sources[0], "session.renice", chat, nice=99)
    assert err.value.code == "bad_args"


def test_a_paused_session_makes_no_calls_until_resumed(tmp_path):
    fleet = SimFleet(tmp_path, "calm", n=1)
    source = fleet.sources[0]
    chat = sessions_by_role(source, "chat")[0]
    run_command(source, "session.pause", chat)
    seq = fleet.ctx(0).last_seq()
    fleet.run(30)
    assert not [e for e in fleet.ctx(0).events("llm.call", since_seq=seq) if e.session == chat]
    with pytest.raises(CommandError) as err:
        run_command(source, "session.prompt", chat, text="hello")
    assert err.value.code == "session_paused"
    assert run_command(source, "session.resume", chat)["state"] == "running"
    fleet.run(10)
    assert [e for e in fleet.ctx(0).events("llm.call", since_seq=seq) if e.session == chat]


def test_sessions_carry_real_shaped_events(tmp_path):
    fleet = SimFleet(tmp_path, "calm", n=1)
    fleet.run(20)
    ctx = fleet.ctx(0)
    started = ctx.events("session.started")
    assert started and all(e.data["source"] == "synthetic" and e.data["cwd"].endswith(e.data["project"]) for e in started)
    calls = ctx.events("llm.call")
    assert {c.data["provider"] for c in calls} <= {"anthropic", "openai"}
    assert {c.data["model"] for c in calls} <= {"claude-sonnet-4-5", "claude-opus-4-5", "claude-haiku-4-5", "gpt-5-codex"}
    assert all(c.data["latency_ms"] > 0 for c in calls)
    ids = {s.id for s in fleet.sources[0].sessions()}
    assert ids <= {e.session for e in started}
    assert ctx.sessions_changed_calls >= 1


def test_host_metrics_and_node_info_fit_the_wire_models(tmp_path):
    fleet = SimFleet(tmp_path, "hot-node", n=2)
    fleet.run(5)
    source = fleet.sources[0]
    info = source.node_info()
    assert info["hostname"] == "sim-1" and fleet.sources[1].node_info()["id"] == "sim-2"
    NodeInfo(agent_version="test", labels={}, **info)
    metrics = Metrics(seq=1, ts=fleet.clock.now(), **source.host_metrics())
    assert metrics.cpu > 50 and metrics.queue_depth == source.queue_depth()
    rows = [ProcessRow(**row) for row in source.process_rows()]
    assert rows[0].session in sessions_by_role(source, "build")


def test_the_same_seed_replays_the_same_run(tmp_path):
    def events_of_a_run(seed: int, attempt: str) -> list:
        (tmp_path / attempt).mkdir()
        fleet = SimFleet(tmp_path / attempt, "error-storm", n=2, seed=seed)
        fleet.run(30)
        return [(e.ts, e.kind, e.session, e.data) for i in range(2) for e in fleet.ctx(i).events()]

    first = events_of_a_run(7, "a")
    assert events_of_a_run(7, "b") == first
    assert events_of_a_run(8, "c") != first


def test_a_restarted_agent_uses_new_session_ids(tmp_path):
    clock = ManualClock()
    cfg = AgentConfig(sources=["synthetic"])
    ctx = SqliteSourceContext(tmp_path / "j.db", cfg, clock)
    first = SyntheticSource(ctx)
    first.begin()
    second = SyntheticSource(ctx)
    second.begin()
    assert not {s.id for s in first.sessions()} & {s.id for s in second.sessions()}


def test_a_node_index_outside_the_fleet_is_a_config_error(tmp_path):
    cfg = AgentConfig(sources=["synthetic"], synthetic={"node_index": 3, "node_count": 3})
    with pytest.raises(ConfigError, match="node_index"):
        SyntheticSource(SqliteSourceContext(tmp_path / "j.db", cfg, ManualClock()))


async def test_the_running_source_follows_its_clock(tmp_path):
    clock = ManualClock()
    cfg = AgentConfig(sources=["synthetic"], synthetic={"scenario": "error-storm"})
    ctx = SqliteSourceContext(tmp_path / "j.db", cfg, clock)
    source = SyntheticSource(ctx)
    await source.start()
    try:
        assert ctx.events("llm.call") == []
        clock.advance(30)
        for _ in range(300):
            if source.sim_time >= 30:
                break
            await asyncio.sleep(0.05)
        assert source.sim_time == 30
        assert len(ctx.events("llm.call")) >= 30
    finally:
        await source.stop()
