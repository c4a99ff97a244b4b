"""Per-call prices of reference calls, worked out by hand from the price table in shared/SOURCES.md.

Each expected figure is written as the sum the table gives (tokens x USD per million tokens), so a
change of price or rule in the engine shows up here as a wrong cent.
"""

from __future__ import annotations

import pytest

from heady_agent.protocol import LlmCallData
from heady_tui.config import CostConfig
from heady_tui.engine.cost import PricingTable

TABLE = PricingTable.load(CostConfig())
M = 1_000_000


def price(model: str, provider: str = "anthropic", **tokens: int) -> float:
    cost, known = TABLE.cost(LlmCallData(provider=provider, model=model, **tokens))
    assert known
    return cost


def test_sonnet_45_turn_with_a_5_minute_cache_write():
    got = price("claude-sonnet-4-5-20250929", input_tokens=1_000, output_tokens=2_000, cache_creation_tokens=10_000,
                cache_creation_5m_tokens=10_000, cache_creation_1h_tokens=0, cache_read_tokens=100_000)
    assert got == pytest.approx((1_000 * 3 + 2_000 * 15 + 10_000 * 3.75 + 100_000 * 0.30) / M)  # $0.1005


def test_sonnet_45_call_past_200k_context_is_priced_whole_at_the_long_context_rate():
    got = price("claude-sonnet-4-5", input_tokens=10, output_tokens=1_000, cache_creation_tokens=20_000,
                cache_creation_5m_tokens=20_000, cache_read_tokens=190_000)
    assert got == pytest.approx((10 * 6 + 1_000 * 22.5 + 20_000 * 7.5 + 190_000 * 0.60) / M)  # $0.28656


def test_sonnet_45_call_of_exactly_200k_context_stays_at_the_base_rate():
    assert price("claude-sonnet-4-5", cache_read_tokens=200_000, output_tokens=500) == pytest.approx(
        (200_000 * 0.30 + 500 * 15) / M)  # $0.0675


def test_haiku_45_turn_with_a_1_hour_cache_write():
    got = price("claude-haiku-4-5-20251001", input_tokens=50, output_tokens=500, cache_creation_tokens=4_000,
                cache_creation_5m_tokens=0, cache_creation_1h_tokens=4_000, cache_read_tokens=20_000)
    assert got == pytest.approx((50 * 1 + 500 * 5 + 4_000 * 2 + 20_000 * 0.10) / M)  # $0.01255


def test_opus_45_turn_with_both_cache_write_ttls():
    got = price("claude-opus-4-5-20251101", input_tokens=100, output_tokens=1_000, cache_creation_tokens=5_000,
                cache_creation_5m_tokens=2_000, cache_creation_1h_tokens=3_000, cache_read_tokens=50_000)
    assert got == pytest.approx((100 * 5 + 1_000 * 25 + 2_000 * 6.25 + 3_000 * 10 + 50_000 * 0.50) / M)  # $0.093


def test_opus_41_turn_costs_three_times_opus_45():
    got = price("claude-opus-4-1", input_tokens=100, output_tokens=1_000, cache_creation_tokens=2_000, cache_read_tokens=50_000)
    assert got == pytest.approx((100 * 15 + 1_000 * 75 + 2_000 * 18.75 + 50_000 * 1.50) / M)  # $0.189


def test_gpt_5_codex_turn_prices_cache_reads_at_the_cached_input_rate():
    got = price("gpt-5-codex", provider="openai", input_tokens=8_000, cache_read_tokens=40_000, output_tokens=1_500)
    assert got == pytest.approx((8_000 * 1.25 + 40_000 * 0.125 + 1_500 * 10) / M)  # $0.03


def test_gpt_4o_turn():
    assert price("gpt-4o-2024-08-06", provider="openai", input_tokens=3_000, cache_read_tokens=1_000, output_tokens=700) == pytest.approx(
        (3_000 * 2.5 + 1_000 * 1.25 + 700 * 10) / M)  # $0.01575
