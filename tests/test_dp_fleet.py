"""The fleet model: pure, fed frames in order, read by the UI and the brain."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from heady_agent.protocol import Event, Hello, LlmCallData, Metrics, SessionInfo

from heady_tui.config import CostConfig
from heady_tui.engine.cost import PricingTable
from heady_tui.events import HeadyEvent
from heady_tui.fleet import RING_SIZE, Fleet, Ring

T0 = 1_800_000_000.0
PRICING = PricingTable.load(CostConfig())


def hello(journal: str = "j1", cpus: int = 4, simulated: bool = False) -> Hello:
    return Hello.model_validate({
        "protocol": 1, "simulated": simulated,
        "node": {"id": "agent-a", "hostname": "host-a", "agent_version": "0.1.0", "os": "Linux", "cpu_count": cpus,
                 "mem_total": 8 << 30, "labels": {"rack": "r1"}},
        "journal": {"id": journal, "first_seq": 1, "last_seq": 0},
    })  # fmt: skip


def metrics(seq: int, load1: float = 2.0, queue: int = 0, ts: float | None = None, cpu: float = 50.0) -> Metrics:
    return Metrics(seq=seq, ts=ts if ts is not None else T0 + seq, cpu=cpu, load=[load1, 1, 1], mem=40, swap=0,
                   queue_depth=queue, journal="j1")  # fmt: skip


def event(seq: int, kind: str, session: str | None, data: dict, ts: float | None = None) -> Event:
    return Event(seq=seq, ts=ts if ts is not None else T0 + seq, kind=kind, session=session, data=data, journal="j1")


def call(seq: int, session: str = "s1", *, ok: bool = True, cost: float | None = 0.5, latency: float = 900.0, ts: float | None = None) -> Event:
    data = {"provider": "anthropic", "model": "claude-sonnet-4-5", "input_tokens": 100, "output_tokens": 20,
            "cache_creation_tokens": 5, "cache_read_tokens": 1000, "cost_usd": cost, "latency_ms": latency, "ok": ok}  # fmt: skip
    return event(seq, "llm.call", session, data, ts)


def test_ring_keeps_the_newest_samples_oldest_first():
    ring = Ring(size=3)
    for v in (1, 2, 3, 4, 5):
        ring.push(v)
    assert ring.values() == [3.0, 4.0, 5.0]
    assert ring.values(limit=2) == [4.0, 5.0]
    assert ring.last() == 5.0 and len(ring) == 3


def test_metric_rings_hold_600_samples_per_node():
    fleet = Fleet()
    fleet.apply_hello("a", hello())
    for seq in range(1, RING_SIZE + 51):
        fleet.apply_frame("a", metrics(seq, load1=seq % 7))
    node = fleet.nodes["a"]
    assert len(node.cpu) == len(node.load) == len(node.queue) == RING_SIZE
    assert node.sample_ts.values()[0] == T0 + 51


def test_load_ring_is_load1_per_core():
    fleet = Fleet()
    fleet.apply_hello("a", hello(cpus=4))
    fleet.apply_frame("a", metrics(1, load1=2.0))
    assert fleet.nodes["a"].load.last() == 0.5
    assert fleet.nodes["a"].utilisation == 0.5


def test_version_increases_on_every_change():
    fleet = Fleet()
    seen = [fleet.version]
    fleet.apply_hello("a", hello())
    seen.append(fleet.version)
    fleet.apply_frame("a", metrics(1))
    seen.append(fleet.version)
    fleet.set_status("a", "online", T0)
    seen.append(fleet.version)
    assert seen == sorted(set(seen))


def test_session_lifecycle_from_events():
    fleet = Fleet()
    fleet.apply_frame("a", event(1, "session.started", "s1", {"source": "claude-code", "project": "app", "model": "m", "pid": 42}))
    fleet.apply_frame("a", event(2, "session.state", "s1", {"state": "idle", "reason": "waiting"}))
    rec = fleet.sessions[("a", "s1")]
    assert (rec.source, rec.project, rec.pid, rec.state, rec.state_since) == ("claude-code", "app", 42, "idle", T0 + 2)
    fleet.apply_frame("a", event(3, "session.ended", "s1", {"exit_code": 1, "reason": "crashed"}))
    assert rec.state == "error" and rec.ended == T0 + 3 and not rec.active


def test_an_older_state_does_not_overwrite_a_newer_one():
    fleet = Fleet()
    fleet.apply_frame("a", event(2, "session.state", "s1", {"state": "running"}, ts=T0 + 10))
    fleet.apply_frame("a", event(3, "session.state", "s1", {"state": "idle"}, ts=T0 + 5))
    assert fleet.sessions[("a", "s1")].state == "running"


def test_calls_add_tokens_cost_and_failures_to_the_session():
    fleet = Fleet(pricing=PRICING)
    fleet.apply_frame("a", call(1, cost=0.25))
    fleet.apply_frame("a", call(2, cost=0.5, ok=False, latency=3000))
    rec = fleet.sessions[("a", "s1")]
    assert (rec.calls, rec.failed_calls, rec.input_tokens, rec.cache_read_tokens) == (2, 1, 200, 2000)
    assert not rec.cost_unknown
    assert rec.last_latency_ms == 3000


def test_the_table_price_is_the_cost_and_a_reported_cost_is_kept_beside_it():
    fleet = Fleet(pricing=PRICING)
    priced = fleet.apply_frame("a", call(1, cost=None))
    reported = fleet.apply_frame("a", call(2, cost=2.0))
    assert priced is not None and reported is not None
    one = PRICING.cost(LlmCallData.model_validate(call(1).data))[0]
    assert priced.cost_usd == reported.cost_usd == pytest.approx(one)
    rec = fleet.sessions[("a", "s1")]
    assert rec.cost_usd == pytest.approx(2 * one)
    assert rec.reported_cost_usd == 2.0


def test_a_call_without_a_pricing_table_is_flagged_unpriced():
    fleet = Fleet()
    fleet.apply_frame("a", call(1, cost=None))
    assert fleet.sessions[("a", "s1")].cost_unknown


def test_a_malformed_event_is_counted_and_skipped():
    fleet = Fleet()
    fleet.apply_frame("a", event(1, "llm.call", "s1", {"model": "m", "input_tokens": -5}))
    fleet.apply_frame("a", call(2))
    assert fleet.nodes["a"].bad_events == 1
    assert fleet.sessions[("a", "s1")].calls == 1




def test_sessions_snapshot_upserts_and_ends_the_missing():
    fleet = Fleet()
    fleet.apply_frame("a", event(1, "session.started", "gone", {"source": "codex"}))
    fleet.apply_sessions("a", [SessionInfo(id="s2", source="claude-code", state="idle", pid=7, nice=5)], now=T0 + 50)
    assert fleet.sessions[("a", "s2")].state == "idle" and fleet.sessions[("a", "s2")].nice == 5
    gone = fleet.sessions[("a", "gone")]
    assert gone.state == "completed" and gone.ended == T0 + 50


def test_a_new_journal_marks_a_reset():
    fleet = Fleet()
    fleet.apply_hello("a", hello("j1"))
    assert not fleet.nodes["a"].journal_reset
    fleet.apply_hello("a", hello("j2"))
    assert fleet.nodes["a"].journal_reset


def test_event_json_line_has_ts_with_ms_and_z_then_event_then_details():
    line = HeadyEvent("node.online", 1_795_000_000.5, {"node": "a", "last_seq": 3}).to_json_line()
    obj = json.loads(line)
    assert list(obj) == ["ts", "event", "node", "last_seq"]
    assert obj["ts"] == "2026-11-18T11:06:40.500Z"
    assert obj["event"] == "node.online"


def test_event_details_cannot_overwrite_ts_or_event():
    obj = json.loads(HeadyEvent("x", 0.0, {"event": "y", "ts": 5}).to_json_line())
    assert obj["event"] == "x" and obj["ts"] == "1970-01-01T00:00:00.000Z"


def test_node_sessions_keep_to_one_node():
    fleet = Fleet()
    fleet.apply_frame("a", event(1, "session.started", "s1", {"source": "codex"}))
    fleet.apply_frame("b", event(1, "session.started", "s1", {"source": "claude-code"}))
    assert [r.source for r in fleet.node_sessions("a")] == ["codex"]
    assert list(fleet.node_sessions("c")) == []


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
_event_data = st.dictionaries(
    st.sampled_from(["source", "state", "model", "provider", "input_tokens", "output_tokens", "cost_usd", "ok",
                     "latency_ms", "exit_code", "pid", "project", "reason", "message", "severity"]),  # fmt: skip
    _json_values,
    max_size=8,
)


@settings(max_examples=100, deadline=None)
@given(
    kinds=st.lists(st.sampled_from(["session.started", "session.state", "llm.call", "session.ended", "agent.notice"]), min_size=1, max_size=20),
    datas=st.lists(_event_data, min_size=20, max_size=20),
)
def test_any_event_data_is_applied_or_counted_never_raised(kinds, datas):
    fleet = Fleet()
    for seq, (kind, data) in enumerate(zip(kinds, datas), start=1):
        fleet.apply_frame("a", event(seq, kind, "s1", data))
    assert fleet.nodes["a"].last_seq == len(kinds)


def test_event_json_line_is_strict_json_without_nan():
    line = HeadyEvent("equilibrium.level", 0.0, {"metrics": {"p95": float("nan"), "q": [float("inf"), 1.5]}}).to_json_line()
    assert json.loads(line)["metrics"] == {"p95": None, "q": [None, 1.5]}
    assert "NaN" not in line and "Infinity" not in line


def _sampled(node_state, samples: list[tuple[float, float]]) -> None:
    for ts, value in samples:
        node_state.cpu.push(value)
        node_state.sample_ts.push(ts)


def test_recent_spans_the_window_in_slices_each_its_highest_sample():
    node = Fleet().node("n1")
    _sampled(node, [(1000.0 + i, float(i)) for i in range(120)])  # two minutes at 1 s
    assert node.recent(node.cpu, 60.0, 12) == [64.0, 69.0, 74.0, 79.0, 84.0, 89.0, 94.0, 99.0, 104.0, 109.0, 114.0, 119.0]


def test_recent_spans_the_same_minute_at_any_width_on_fixed_slice_boundaries():
    node = Fleet().node("n1")
    _sampled(node, [(1000.0 + i, float(i)) for i in range(120)])
    assert node.recent(node.cpu, 60.0, 4) == [79.0, 94.0, 109.0, 119.0]


def test_recent_holds_the_last_value_across_a_slice_without_samples_and_leaves_out_the_time_before_the_first():
    node = Fleet().node("n1")
    _sampled(node, [(1000.0, 5.0), (1035.0, 9.0)])
    assert node.recent(node.cpu, 60.0, 6) == [5.0, 5.0, 5.0, 9.0]


def test_recent_reads_samples_older_than_its_first_guess():
    node = Fleet().node("n1")
    _sampled(node, [(1000.0 + i * 0.25, 1.0 if i == 0 else 0.0) for i in range(300)])  # 4 a second for 75 s
    assert max(node.recent(node.cpu, 60.0, 3)) == 0.0 and max(node.recent(node.cpu, 80.0, 4)) == 1.0


def test_a_new_sample_inside_the_newest_slice_changes_only_that_slice():
    node = Fleet().node("n1")
    _sampled(node, [(1000.0 + i, float(i % 7)) for i in range(61)])  # up to 1060, the start of a slice
    before = node.recent(node.cpu, 60.0, 12)
    _sampled(node, [(1061.0, 6.0)])
    after = node.recent(node.cpu, 60.0, 12)
    assert after[:-1] == before[:-1] and after[-1] == 6.0
