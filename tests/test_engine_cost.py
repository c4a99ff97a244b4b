"""Pricing table matching, per-call cost, totals, budgets, burn rate."""

from __future__ import annotations

import json

import pytest

from heady_agent.config import ConfigError
from heady_agent.protocol import LlmCallData
from heady_tui.config import CostConfig
from heady_tui.engine.cost import CostTracker, PricingTable

TABLE = PricingTable.load(CostConfig())


def call(model: str, **tokens) -> LlmCallData:
    return LlmCallData(provider="anthropic", model=model, **tokens)


@pytest.mark.parametrize(
    "model,how",
    [("claude-opus-4-5", "exact"), ("claude-sonnet-4-5-20250929", "dated"), ("gpt-4o-2024-08-06", "dated"),
     ("claude-opus-4-9", "family"), ("anthropic/claude-haiku-4.5", "exact"), ("mystery-1", "unknown")],
)
def test_models_match_exact_then_dated_then_family(model, how):
    assert TABLE.match(model).how == how


def test_unknown_model_costs_zero_and_is_flagged():
    assert TABLE.cost(call("mystery-1", input_tokens=10**6)) == (0.0, False)


def test_every_token_kind_is_priced():
    cost, known = TABLE.cost(call("claude-opus-4-5", input_tokens=10**6, output_tokens=10**6, cache_creation_tokens=2 * 10**6,
                                  cache_creation_5m_tokens=10**6, cache_creation_1h_tokens=10**6, cache_read_tokens=10**6))
    assert known and cost == pytest.approx(5 + 25 + 6.25 + 10 + 0.5)


def test_cache_creation_without_a_split_is_priced_at_5_minutes():
    assert TABLE.cost(call("claude-haiku-4-5", cache_creation_tokens=10**6))[0] == pytest.approx(1.25)


def test_sonnet_45_long_context_tier_counts_cached_input():
    below = TABLE.cost(call("claude-sonnet-4-5", input_tokens=1000, cache_read_tokens=199_000))[0]
    above = TABLE.cost(call("claude-sonnet-4-5", input_tokens=1000, cache_read_tokens=199_001, output_tokens=10**6))[0]
    assert below == pytest.approx((1000 * 3 + 199_000 * 0.30) / 1e6)
    assert above == pytest.approx((1000 * 6 + 199_001 * 0.60) / 1e6 + 22.5)


def test_fast_mode_multiplies_the_cost():
    assert TABLE.cost(call("claude-opus-4-6", output_tokens=10**6, speed="fast"))[0] == pytest.approx(25 * TABLE.fast_multiplier)


def test_pricing_file_overrides_and_extends(tmp_path):
    f = tmp_path / "p.json"
    f.write_text(json.dumps({"models": {"claude-opus-4-5": {"input": 1, "output": 1}, "local-7b": {"input": 0.1, "output": 0.1}}}))
    table = PricingTable.load(CostConfig(pricing_file=str(f)))
    assert table.cost(call("claude-opus-4-5", input_tokens=10**6))[0] == pytest.approx(1)
    assert table.match("local-7b").how == "exact"


def test_broken_pricing_file_is_a_one_line_config_error(tmp_path):
    f = tmp_path / "p.json"
    f.write_text("{not json")
    with pytest.raises(ConfigError, match="cost.pricing_file: .* is not valid JSON"):
        PricingTable.load(CostConfig(pricing_file=str(f)))


def test_negative_budget_is_rejected_by_the_config():
    with pytest.raises(ValueError):
        CostConfig(daily_budget_usd=-1)


def test_budget_notices_fire_once_each_per_period():
    tracker = CostTracker(daily_budget_usd=10.0)
    day = 1_800_000_000.0
    sent = []
    for i in range(12):
        tracker.add(ts=day + i, node="n", session="s", project="p", model="m", cost_usd=1.0, known=True)
        sent += [n.percent for n in tracker.budget_notices(day + i)]
    assert sent == [50, 80, 100]


def test_burn_rate_is_spend_in_the_window_per_hour_and_projects_the_day():
    tracker = CostTracker(burn_window_s=600)
    now = 1_800_000_000.0
    tracker.add(ts=now - 7200, node="n", session="s", project=None, model="m", cost_usd=5.0, known=True)
    tracker.add(ts=now - 60, node="n", session="s", project=None, model="m", cost_usd=2.0, known=True)
    s = tracker.summary(now)
    assert s.burn_rate_usd_per_h == pytest.approx(2.0 * 6)  # $2 in the last 10 minutes
    assert s.projected_today_usd >= s.today_usd


def test_burn_rate_of_a_session_younger_than_the_window_counts_from_its_first_call():
    tracker = CostTracker(burn_window_s=600)
    now = 1_800_000_000.0
    for second in range(120):
        tracker.add(ts=now - 120 + second, node="n", session="s", project=None, model="m", cost_usd=0.5, known=True)
    s = tracker.summary(now)
    assert s.burn_by_session["n/s"] == pytest.approx(0.5 * 3600)
    assert s.burn_rate_usd_per_h == pytest.approx(0.5 * 3600)


def test_calls_either_side_of_utc_midnight_land_on_their_own_days():
    tracker = CostTracker()
    midnight = 1_800_057_600.0  # 2027-01-16T00:00:00Z
    for ts in (midnight - 1, midnight, midnight - 0.5, midnight + 86_399.9, midnight + 86_400):
        tracker.add(ts=ts, node="n", session="s", project=None, model="m", cost_usd=1.0, known=True)
    assert tracker.summary(midnight).by_day == {"2027-01-15": 2.0, "2027-01-16": 2.0, "2027-01-17": 1.0}


def test_burn_rate_leaves_out_calls_stamped_after_now_and_forgets_the_window_gone_by():
    tracker = CostTracker(burn_window_s=600)
    now = 1_800_000_000.0
    for ts, usd in ((now - 4000, 7.0), (now - 10, 1.0), (now + 30, 5.0)):
        tracker.add(ts=ts, node="n", session="s", project=None, model="m", cost_usd=usd, known=True)
    assert tracker.burn_rate(now) == pytest.approx(1.0 * 6)
    assert tracker.burn_rate(now + 60) == pytest.approx(6.0 * 6)
    assert tracker.burn_rate(now + 7200) == 0.0


def test_a_session_over_its_burn_limit_is_noticed_once_per_crossing():
    tracker = CostTracker(burn_window_s=600, max_session_burn_usd_per_h=100.0)
    now = 1_800_000_000.0
    for second in range(60):
        tracker.add(ts=now + second, node="n", session="s", project=None, model="m", cost_usd=1.0, known=True)
    first = tracker.burn_notices(now + 60)
    assert [(n.scope, n.node, n.session) for n in first] == [("session", "n", "s")]
    assert first[0].rate_usd_per_h == pytest.approx(3600.0)
    assert tracker.burn_notices(now + 61) == []
    assert tracker.burn_notices(now + 3600) == []  # the window is empty: under the limit, re-armed
    tracker.add(ts=now + 3600, node="n", session="s", project=None, model="m", cost_usd=60.0, known=True)
    assert len(tracker.burn_notices(now + 3601)) == 1
