"""The brain's lease on a real SQLite file: who may act, when another takes over, and fencing.

Two `Lease`s (or two offline consoles with their brains) on one database stand for two consoles; a
ManualClock is stepped past the lease time instead of waiting for it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from heady_agent.clock import ManualClock
from heady_tui.brain.lease import ACTING, VIEW_ONLY, Lease, LeaseView, ViewOnlyError
from heady_tui.config import Config, Paths
from heady_tui.events import HeadyEvent
from heady_tui.records import Records, StaleFence
from heady_tui.store import Store
from heady_tui.ui.samplefleet import close_offline, open_offline

LEASE_S = 15.0
T0 = 1_800_000_000.0


@asynccontextmanager
async def console_records(tmp_path) -> AsyncIterator[Records]:
    """One console's own connection to the shared database, as a second process would have."""
    store = await Store.open(tmp_path / "heady.db")
    try:
        yield await Records.open(store, tmp_path / "heady.db.anchor")
    finally:
        await store.close()


async def test_the_first_claim_takes_the_lease_with_token_one_and_audits_it(tmp_path):
    clock = ManualClock(T0)
    async with console_records(tmp_path) as records:
        lease = Lease(records, clock, LEASE_S, holder="alice@a:1+x")
        claim = await lease.claim()
        assert claim.held and claim.row.token == 1 and claim.row.expires == T0 + LEASE_S and claim.previous is None
        assert lease.view() == LeaseView(ACTING, "alice@a:1+x", "alice@a:1+x", 1, T0 + LEASE_S)
        (entry,) = [e for e in await records.audit_entries() if e.action == "brain.lease"]
        assert entry.actor == "alice@a:1+x" and entry.details["fence"] == 1 and entry.details["previous"] is None


async def test_a_second_brain_is_view_only_while_the_lease_runs(tmp_path):
    clock = ManualClock(T0)
    async with console_records(tmp_path) as first, console_records(tmp_path) as second:
        await Lease(first, clock, LEASE_S, holder="a").claim()
        clock.advance(LEASE_S - 1)
        other = Lease(second, clock, LEASE_S, holder="b")
        claim = await other.claim()
        assert not claim.held and claim.row.holder == "a"
        assert other.view().role == VIEW_ONLY and other.token is None and second.fence is None


async def test_a_renewal_keeps_the_token_and_moves_the_expiry(tmp_path):
    clock = ManualClock(T0)
    async with console_records(tmp_path) as records:
        lease = Lease(records, clock, LEASE_S, holder="a")
        await lease.claim()
        clock.advance(LEASE_S - 1)
        await lease.renew()
        assert lease.token == 1 and lease.row.expires == T0 + 2 * LEASE_S - 1
        assert [e.action for e in await records.audit_entries()].count("brain.lease") == 1


async def test_an_unrenewed_lease_is_taken_over_with_the_next_token(tmp_path):
    clock = ManualClock(T0)
    async with console_records(tmp_path) as first, console_records(tmp_path) as second:
        await Lease(first, clock, LEASE_S, holder="a").claim()
        clock.advance(LEASE_S)
        claim = await Lease(second, clock, LEASE_S, holder="b").claim()
        assert claim.held and claim.row.token == 2 and claim.previous is not None
        assert (claim.previous.holder, claim.previous.expires) == ("a", T0 + LEASE_S)
        assert second.fence == 2


async def test_a_write_with_a_stale_token_is_refused_and_writes_nothing(tmp_path):
    clock = ManualClock(T0)
    async with console_records(tmp_path) as first, console_records(tmp_path) as second:
        stalled = Lease(first, clock, LEASE_S, holder="a")
        await stalled.claim()
        clock.advance(LEASE_S + 1)
        await Lease(second, clock, LEASE_S, holder="b").claim()
        before = len(await first.audit_entries())
        with pytest.raises(StaleFence, match="the brain of b acts"):
            await first.notify_deploy(clock.now(), None, "console", "a")
        with pytest.raises(StaleFence):
            await first.kv_set("detector", {"stale": True})
        assert len(await first.audit_entries()) == before and await first.kv_get("detector") is None


async def test_the_holders_audit_entries_carry_its_token(tmp_path):
    clock = ManualClock(T0)
    async with console_records(tmp_path) as records:
        await Lease(records, clock, LEASE_S, holder="a").claim()
        await records.notify_deploy(clock.now(), None, "console", "a")
        (entry,) = [e for e in await records.audit_entries() if e.action == "deploy.notice"]
        assert entry.details["fence"] == 1


async def test_a_renewal_after_a_takeover_finds_the_lease_lost(tmp_path):
    clock = ManualClock(T0)
    async with console_records(tmp_path) as first, console_records(tmp_path) as second:
        stalled = Lease(first, clock, LEASE_S, holder="a")
        await stalled.claim()
        clock.advance(LEASE_S + 1)
        await Lease(second, clock, LEASE_S, holder="b").claim()
        await stalled.renew()
        assert not stalled.held and first.fence is None and not stalled.acting(clock.now())


async def test_a_released_lease_is_taken_at_once(tmp_path):
    clock = ManualClock(T0)
    async with console_records(tmp_path) as first, console_records(tmp_path) as second:
        leaving = Lease(first, clock, LEASE_S, holder="a")
        await leaving.claim()
        clock.advance(1)
        await leaving.release()
        claim = await Lease(second, clock, LEASE_S, holder="b").claim()
        assert claim.held and claim.row.token == 2 and not leaving.held


async def test_a_holder_whose_lease_lapsed_unclaimed_keeps_its_token(tmp_path):
    clock = ManualClock(T0)
    async with console_records(tmp_path) as records:
        lease = Lease(records, clock, LEASE_S, holder="a")
        await lease.claim()
        clock.advance(LEASE_S * 3)  # e.g. a suspended laptop: nobody acted meanwhile
        claim = await lease.claim()
        assert claim.held and claim.row.token == 1 and claim.previous is None


async def test_a_brain_that_stalled_past_its_lease_is_refused_then_stands_down(tmp_path):
    clock = ManualClock(T0)
    config = Config.model_validate({"brain": {"lease_s": LEASE_S}})
    paths = Paths(tmp_path / "config.toml", tmp_path / "data")
    stalled = await open_offline(config, paths, clock)
    other = await open_offline(config, paths, clock)
    try:
        seen: list[HeadyEvent] = []
        stalled.subscribe(seen.append)
        assert stalled.brain.lease_view().role == ACTING and other.brain.view_only
        clock.advance(LEASE_S + 1)
        await other.brain.tick()
        assert other.brain.lease_view() == LeaseView(ACTING, other.brain.lease.me, other.brain.lease.me, 2, clock.now() + LEASE_S)

        with pytest.raises(StaleFence):
            await stalled.brain.grant("single", "written after the lease was taken over")
        assert await other.brain.records.grants() == []
        await stalled.brain.tick()
        assert [(e.details["role"], e.details["holder"]) for e in seen if e.name == "brain.role"] == [
            (VIEW_ONLY, other.brain.lease.me)]
        with pytest.raises(ViewOnlyError, match="view-only: the brain of"):
            await stalled.brain.reset_policy("n0", "s1", "resume_on_idle")
    finally:
        await close_offline(stalled)
        await close_offline(other)
