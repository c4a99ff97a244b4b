"""Which brain acts on a fleet: a lease row in the console database (holder, expiry, fencing token).

Every brain on a database claims the lease each tick; the holder renews it (also from a loop every
lease_s / 3, so a slow tick does not lose it). A claim takes the lease over only once it has gone
unrenewed for lease_s, with a token one above the last. The holder's token fences what it does:
its writes check it inside their transaction (`Records.fence`), its audit entries and agent
commands carry it, so a brain that stalled past its lease cannot act after another took over.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
from dataclasses import dataclass

from heady_agent.clock import Clock
from heady_tui.engine.consent import grantor
from heady_tui.records import LeaseClaim, LeaseRow, Records, StaleFence

log = logging.getLogger("heady.brain.lease")

RENEWALS_PER_LEASE = 3

ACTING = "acting"
VIEW_ONLY = "view-only"


class ViewOnlyError(ValueError):
    """An action asked of a brain that does not hold the lease."""


def holder_id() -> str:
    """user@host:pid plus a random part, so a restarted process with a reused pid is another holder."""
    return f"{grantor()}:{os.getpid()}+{secrets.token_hex(3)}"


@dataclass(frozen=True)
class LeaseView:
    """What the console shows: this brain's role and the lease as last read."""

    role: str  # acting | view-only
    me: str
    holder: str
    token: int
    expires: float


class Lease:
    def __init__(self, records: Records, clock: Clock, lease_s: float, holder: str | None = None) -> None:
        self.records = records
        self.clock = clock
        self.lease_s = lease_s
        self.me = holder or holder_id()
        self.row: LeaseRow | None = None  # the lease as last read or written
        self.held = False
        self._lock = asyncio.Lock()

    @property
    def token(self) -> int | None:
        return self.row.token if self.held and self.row is not None else None

    def acting(self, now: float) -> bool:
        """Held and not yet expired by this brain's own renewals: only then may it send a command."""
        return self.held and self.row is not None and now < self.row.expires

    def view(self) -> LeaseView | None:
        if self.row is None:
            return None
        return LeaseView(ACTING if self.held else VIEW_ONLY, self.me, self.row.holder, self.row.token, self.row.expires)

    async def claim(self) -> LeaseClaim:
        """Renew the lease if held, else take it if it is free or expired."""
        async with self._lock:
            claim = await self.records.claim_lease(self.me, self.token, self.clock.now(), self.lease_s)
            self.row, self.held = claim.row, claim.held
            self.records.fence = claim.row.token if claim.held else None
            return claim

    def lost(self, why: StaleFence) -> None:
        """A fenced write was refused: stop acting at once (the next claim reads who holds it)."""
        log.warning("%s", why)
        self.held = False
        self.records.fence = None

    async def renew(self) -> None:
        """Extend a held lease; taking one over is left to `claim` (the tick), which reloads the brain."""
        async with self._lock:
            token = self.token
            if token is None:
                return
            row = await self.records.renew_lease(self.me, token, self.clock.now(), self.lease_s)
            if row is None:
                self.lost(StaleFence(f"lease token {token} is stale: another brain took this fleet over"))
            else:
                self.row = row

    async def renew_forever(self) -> None:
        """Keep a held lease renewed between ticks, so a slow tick does not lose it."""
        while True:
            await asyncio.sleep(self.lease_s / RENEWALS_PER_LEASE)
            try:
                await self.renew()
            except Exception:
                log.exception("the brain's lease could not be renewed")

    async def release(self) -> None:
        """A clean stop: the lease ends now, so another brain takes over at its next claim."""
        async with self._lock:
            if self.held and self.row is not None:
                await self.records.release_lease(self.me, self.row.token, self.clock.now())
            self.held = False
            self.records.fence = None
