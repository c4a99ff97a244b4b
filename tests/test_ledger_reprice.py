"""Calls are priced once, when stored; `heady costs reprice` (a real child process) prices them again
with the current table, moving each call, its session and the daily rollups together, audited."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from ledgerkit import call_event, heady, started_event

from heady_agent.protocol import LlmCallData

from heady_tui.config import CostConfig
from heady_tui.engine.cost import PricingTable
from heady_tui.store import Store

T0 = 1_800_057_600.0  # 2027-01-16T00:00:00Z
SINCE_ISO = "2027-01-16T12:00:00Z"  # the calls of the afternoon only


@dataclass
class Repriced:
    data_dir: Path
    outcome: dict[str, Any]
    old_price: float  # one call, as stored
    new_price: float  # one call, with the edited table


@pytest.fixture
async def repriced(tmp_path: Path) -> Repriced:
    data_dir = tmp_path / "data"
    shipped = PricingTable.load(CostConfig())
    store = await Store.open(data_dir / "heady.db", pricing=shipped)
    frames = [started_event(1, T0, "s1", "api")]
    frames += [call_event(seq, T0 + 3600 * (seq - 2), "s1") for seq in range(2, 26)]  # one an hour for a day
    await store.store_batch("n1", "j1", frames)
    await store.close()
    table = tmp_path / "pricing.json"
    table.write_text(json.dumps({"models": {"claude-sonnet-4-5": {"family": "claude-sonnet", "input": 6, "output": 30}}}))
    config = tmp_path / "config.toml"
    config.write_text(f'[cost]\npricing_file = "{table}"\n')
    code, out, err = await heady(tmp_path, "costs", "reprice", "--since", SINCE_ISO, "--json", "--config", str(config),
                                 "--data-dir", str(data_dir))  # fmt: skip
    assert code == 0, err
    call = LlmCallData.model_validate(call_event(1, T0, "s").data)
    edited = PricingTable.load(CostConfig(pricing_file=str(table)))
    return Repriced(data_dir, json.loads(out), shipped.cost(call)[0], edited.cost(call)[0])


async def test_reprice_changes_the_stored_costs_of_calls_since_their_sessions_and_daily_totals(repriced: Repriced) -> None:
    store = await Store.open(repriced.data_dir / "heady.db")
    try:
        calls = await store.priced_calls()
        session = await store.session("n1", "s1")
        days = await store.cost_days()
    finally:
        await store.close()
    before_noon = [c for c in calls if c.ts < T0 + 12 * 3600]
    after_noon = [c for c in calls if c.ts >= T0 + 12 * 3600]
    assert [c.cost_usd for c in before_noon] == pytest.approx([repriced.old_price] * 12)
    assert [c.cost_usd for c in after_noon] == pytest.approx([repriced.new_price] * 12)
    assert repriced.new_price == pytest.approx(2 * repriced.old_price)
    expected = len(before_noon) * repriced.old_price + len(after_noon) * repriced.new_price
    assert session is not None and session.cost_usd == pytest.approx(expected)
    assert sum(d.cost_usd for d in days) == pytest.approx(expected)


async def test_reprice_writes_an_audit_entry_with_counts_and_old_and_new_totals(repriced: Repriced, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    code, out, err = await heady(tmp_path, "audit", "log", "--json", "--config", str(config), "--data-dir", str(repriced.data_dir))
    assert code == 0, err
    entry = [json.loads(line) for line in out.splitlines()][-1]
    assert entry["action"] == "costs.reprice"
    details = entry["details"]
    assert details == repriced.outcome
    assert (details["calls"], details["changed"]) == (12, 12)
    assert details["old_total_usd"] == pytest.approx(12 * repriced.old_price)
    assert details["new_total_usd"] == pytest.approx(12 * repriced.new_price)
    code, _, err = await heady(tmp_path, "audit", "verify", "--config", str(config), "--data-dir", str(repriced.data_dir))
    assert code == 0, err


async def test_a_bad_since_is_a_one_line_error_and_reprices_nothing(repriced: Repriced, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    code, out, err = await heady(tmp_path, "costs", "reprice", "--since", "last tuesday", "--config", str(config),
                                 "--data-dir", str(repriced.data_dir))  # fmt: skip
    assert (code, out) == (2, "")
    assert err.count("\n") == 1 and err.startswith("heady: error: --since: not a duration or an ISO 8601 time")
    code, out, _ = await heady(tmp_path, "audit", "log", "--json", "--config", str(config), "--data-dir", str(repriced.data_dir))
    assert [json.loads(line)["action"] for line in out.splitlines()].count("costs.reprice") == 1  # the fixture's only
