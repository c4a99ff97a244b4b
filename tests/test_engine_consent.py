"""Consent grants, denials and their persistence through the real Store (SQLite in tmp_path)."""

from __future__ import annotations

import asyncio

import pytest

from heady_agent.clock import ManualClock
from heady_tui.config import ConsentConfig
from heady_tui.engine.consent import ConsentError, new_denial, new_grant, snoozed, usable_grant
from heady_tui.records import Records
from heady_tui.store import Store

CFG = ConsentConfig()


async def open_records(tmp_path, name="heady.db") -> Records:
    store = await Store.open(tmp_path / name)
    return await Records.open(store, tmp_path / (name + ".anchor"))


def test_session_grant_expires_at_exactly_24_hours():
    clock = ManualClock()
    g = new_grant("session", now=clock.now(), config=CFG, reason="r", by="u@h")
    clock.advance(24 * 3600 - 0.001)
    assert g.status(clock.now()) == "active"
    clock.advance(0.001)
    assert g.status(clock.now()) == "expired"


def test_persistent_grant_never_expires():
    g = new_grant("persistent", now=0, config=CFG, reason="r", by="u@h")
    assert g.expires is None and g.status(10**9) == "active"


def test_unknown_scope_is_refused():
    with pytest.raises(ConsentError, match="unknown scope 'forever'"):
        new_grant("forever", now=0, config=CFG, reason="r")


def test_single_grant_for_a_request_does_not_cover_a_materially_different_plan():
    g = new_grant("single", now=0, config=CFG, reason="r", by="u@h", fingerprint="plan-a")
    assert usable_grant([g], "plan-a", 1) is g
    assert usable_grant([g], "plan-b", 1) is None


def test_denial_snoozes_the_same_request_only_for_deny_snooze_s():
    d = new_denial("plan-a", now=100, config=CFG, reason="r", by="u@h")
    assert snoozed([d], "plan-a", 100 + CFG.deny_snooze_s - 1) is d
    assert snoozed([d], "plan-b", 101) is None
    assert snoozed([d], "plan-a", 100 + CFG.deny_snooze_s) is None


async def test_single_use_grant_is_consumed_once_by_racing_tasks(tmp_path):
    records = await open_records(tmp_path)
    g = new_grant("single", now=0, config=CFG, reason="r", by="u@h")
    await records.add_grant(g, actor="u@h", now=0)
    results = await asyncio.gather(*(records.use_grant(g.id, 1.0, "fp") for _ in range(20)))
    assert sum(results) == 1
    assert (await records.grant(g.id)).uses == 1
    await records.store.close()


async def test_single_use_grant_is_consumed_once_across_two_connections(tmp_path):
    first = await open_records(tmp_path)
    second = await open_records(tmp_path)  # another process's connection to the same file
    g = new_grant("single", now=0, config=CFG, reason="r", by="u@h")
    await first.add_grant(g, actor="u@h", now=0)
    results = await asyncio.gather(*(r.use_grant(g.id, 1.0, "fp") for r in [first, second] * 10))
    assert sum(results) == 1
    await first.store.close()
    await second.store.close()


async def test_expired_or_revoked_grant_cannot_be_used(tmp_path):
    records = await open_records(tmp_path)
    session = new_grant("session", now=0, config=CFG, reason="r", by="u@h")
    forever = new_grant("persistent", now=0, config=CFG, reason="r", by="u@h")
    await records.add_grant(session, actor="u@h", now=0)
    await records.add_grant(forever, actor="u@h", now=0)
    assert not await records.use_grant(session.id, 24 * 3600, "fp")
    await records.revoke_grant(forever.id, actor="u@h", now=5)
    assert not await records.use_grant(forever.id, 6, "fp")
    await records.store.close()


async def test_revoking_an_unknown_grant_is_a_clear_error(tmp_path):
    records = await open_records(tmp_path)
    with pytest.raises(ConsentError, match="no grant with id 'g-nope'"):
        await records.revoke_grant("g-nope", actor="u@h", now=0)
    await records.store.close()


async def test_grants_denials_and_revokes_are_audited(tmp_path):
    records = await open_records(tmp_path)
    g = new_grant("persistent", now=0, config=CFG, reason="r", by="u@h")
    await records.add_grant(g, actor="u@h", now=0)
    await records.add_denial(new_denial("fp", now=1, config=CFG, reason="no", by="u@h"), None)
    await records.revoke_grant(g.id, actor="u@h", now=2)
    actions = [e.action for e in await records.audit_entries()]
    assert actions == ["consent.grant", "consent.deny", "consent.revoke"]
    assert (await records.verify_audit()).ok
    await records.store.close()
