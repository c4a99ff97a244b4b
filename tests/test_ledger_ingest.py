"""The store keeps the session ledger at ingest: each call priced once with its token split and the
table's version, sessions' states with their reasons, and the agent's session list."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from ledgerkit import call_event, started_event

from heady_agent.protocol import Event, LlmCallData, SessionInfo

from heady_tui.config import CostConfig
from heady_tui.engine.cost import PricingTable
from heady_tui.store import CORE, Store

T0 = 1_800_057_600.0
PRICING = PricingTable.load(CostConfig())


@pytest.fixture
async def store(tmp_path: Path) -> Store:
    s = await Store.open(tmp_path / "heady.db", pricing=PRICING)
    yield s
    await s.close()


def split_call(seq: int, **data: object) -> Event:
    body = {"provider": "anthropic", "model": "claude-opus-4-6", "input_tokens": 100, "output_tokens": 50,
            "cache_creation_tokens": 3000, "cache_creation_1h_tokens": 1000, "cache_read_tokens": 20_000,
            "reasoning_tokens": 10, "latency_ms": 500.0, **data}  # fmt: skip
    return Event(journal="j1", seq=seq, ts=T0 + seq, kind="llm.call", session="s1", data=body)


async def test_a_call_is_stored_with_its_token_split_its_table_price_and_the_tables_version(store: Store) -> None:
    result = await store.ingest("n1", "j1", [started_event(1, T0, "s1", "api"), split_call(2)])
    (stored,) = await store.priced_calls()
    assert result.calls == [stored]
    assert (stored.input_tokens, stored.output_tokens, stored.cache_write_5m_tokens, stored.cache_write_1h_tokens,
            stored.cache_read_tokens, stored.reasoning_tokens) == (100, 50, 2000, 1000, 20_000, 10)  # fmt: skip
    assert stored.cost_usd == pytest.approx(PRICING.cost(LlmCallData.model_validate(split_call(2).data))[0])
    assert (stored.priced, stored.pricing_version, stored.project) == (True, PRICING.version, "api")


async def test_an_unknown_models_call_costs_nothing_and_is_flagged(store: Store) -> None:
    await store.ingest("n1", "j1", [split_call(1, model="mystery-9")])
    (stored,) = await store.priced_calls()
    session = await store.session("n1", "s1")
    assert (stored.cost_usd, stored.priced) == (0.0, False)
    assert session is not None and session.cost_unknown and session.unpriced_calls == 1


async def test_an_agent_reported_cost_is_kept_beside_the_table_price(store: Store) -> None:
    await store.ingest("n1", "j1", [split_call(1, cost_usd=9.99)])
    (stored,) = await store.priced_calls()
    session = await store.session("n1", "s1")
    assert stored.reported_cost_usd == 9.99
    assert stored.cost_usd == pytest.approx(PRICING.cost(LlmCallData.model_validate(split_call(1).data))[0])
    assert session is not None and session.reported_cost_usd == 9.99 and session.cost_usd == stored.cost_usd


async def test_a_replayed_batch_changes_nothing_in_the_ledger(store: Store) -> None:
    frames = [started_event(1, T0, "s1", "api"), call_event(2, T0 + 1, "s1"), call_event(3, T0 + 2, "s1")]
    await store.ingest("n1", "j1", frames)
    again = await store.ingest("n1", "j1", frames)
    session = await store.session("n1", "s1")
    assert (again.stored, again.calls) == (0, [])
    assert session is not None and session.calls == 2
    assert again.sessions == [session]  # the row as stored, to show; not counted again
    assert sum(d.calls for d in await store.cost_days()) == 2


async def test_a_killed_session_keeps_error_and_its_reason(store: Store) -> None:
    ended = Event(journal="j1", seq=2, ts=T0 + 5, kind="session.ended", session="s1", data={"exit_code": -9, "reason": "killed"})
    await store.ingest("n1", "j1", [started_event(1, T0, "s1", "api"), ended])
    session = await store.session("n1", "s1")
    assert session is not None and (session.state, session.state_reason, session.ended) == ("error", "killed", T0 + 5)


async def test_the_agents_session_list_updates_the_ledger_and_ends_the_ones_it_no_longer_reports(store: Store) -> None:
    await store.ingest("n1", "j1", [started_event(1, T0, "gone", "api")])
    changed = await store.apply_sessions("n1", [SessionInfo(id="s2", source="codex", state="idle", title="fix the build")], T0 + 60)
    assert {rec.id for rec in changed} == {"gone", "s2"}
    gone, s2 = await store.session("n1", "gone"), await store.session("n1", "s2")
    assert gone is not None and (gone.state, gone.state_reason, gone.ended) == ("completed", "no longer reported by the agent", T0 + 60)
    assert s2 is not None and (s2.state, s2.title) == ("idle", "fix the build")


def state_event(seq: int, ts: float, state: str) -> Event:
    return Event(journal="j1", seq=seq, ts=ts, kind="session.state", session="s1", data={"state": state})


async def test_each_compaction_the_agent_reports_is_counted_once_also_a_late_or_replayed_one(store: Store) -> None:
    frames = [started_event(1, T0, "s1", "api"), state_event(2, T0 + 2, "compacted"), state_event(3, T0 + 3, "running"),
              state_event(4, T0 + 4, "compacted"), state_event(5, T0 + 1, "compacted")]  # fmt: skip
    await store.ingest("n1", "j1", frames)
    await store.ingest("n1", "j1", frames)
    session = await store.session("n1", "s1")
    assert session is not None and (session.compactions, session.state) == (3, "compacted")


async def test_a_database_from_before_the_count_gets_its_compactions_from_the_stored_events(tmp_path: Path) -> None:
    path = tmp_path / "heady.db"
    old = await Store.open(path, pricing=PRICING)
    await old.ingest("n1", "j1", [started_event(1, T0, "s1", "api"), state_event(2, T0 + 2, "compacted"),
                                  state_event(3, T0 + 3, "running"), state_event(4, T0 + 4, "compacted")])  # fmt: skip
    await old.close()
    with sqlite3.connect(path) as db:  # the schema as the version before the count left it
        db.execute("ALTER TABLE sessions DROP COLUMN compactions")
        db.execute("UPDATE schema_versions SET version = version - 1 WHERE component = ?", (CORE,))
    upgraded = await Store.open(path, pricing=PRICING)
    try:
        session = await upgraded.session("n1", "s1")
    finally:
        await upgraded.close()
    assert session is not None and session.compactions == 2


async def test_events_another_console_stored_first_still_bring_their_sessions_rows(store: Store, tmp_path: Path) -> None:
    ended = Event(journal="j1", seq=2, ts=T0 + 2, kind="session.ended", session="s1", data={"exit_code": 0})
    frames = [started_event(1, T0, "s1", "api"), ended]
    other = await Store.open(tmp_path / "heady.db", pricing=PRICING)  # a second console on the same database
    try:
        await other.ingest("n1", "j1", frames)
    finally:
        await other.close()
    result = await store.ingest("n1", "j1", frames)
    assert result.stored == 0
    assert [(rec.id, rec.state, rec.active) for rec in result.sessions] == [("s1", "completed", False)]
