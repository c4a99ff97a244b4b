"""The consent request lifecycle: a question is asked for a plan, the operator decides it, grants
are made, used, revoked, and open questions expire."""

from __future__ import annotations

from heady_tui.engine.consent import (
    DECISIONS,
    ConsentError,
    ConsentRequest,
    Grant,
    grantor,
    new_denial,
    new_grant,
    new_request,
    snoozed,
    usable_grant,
)
from heady_tui.engine.rebalance import RebalancePlan

from .host import BrainContext


class ConsentDesk:
    def __init__(self, ctx: BrainContext) -> None:
        self.ctx = ctx
        self._requests: dict[str, ConsentRequest] = {}
        self._grants: list[Grant] = []

    async def load(self) -> None:
        records = self.ctx.records
        self._grants = await records.grants()
        for r in await records.requests(state="requested"):
            self._requests[r.id] = r

    async def _reload_grants(self) -> None:
        self._grants = await self.ctx.records.grants()

    def pending(self) -> list[ConsentRequest]:
        return sorted((r for r in self._requests.values() if r.state == "requested"), key=lambda r: r.created)

    async def decide(self, request_id: str, decision: str) -> Grant | None:
        """deny | single | session | persistent. Returns the grant made, or None for a denial."""
        records = self.ctx.records
        if decision not in DECISIONS:
            raise ConsentError(f"unknown decision {decision!r} (known: {', '.join(DECISIONS)})")
        req = self._requests.get(request_id)
        if req is None or req.state != "requested":
            raise ConsentError(f"no open consent request {request_id!r}")
        now = self.ctx.clock.now()
        config = self.ctx.config.consent
        by = grantor()
        req.decided_at, req.decision = now, decision
        if decision == "deny":
            denial = new_denial(req.fingerprint, now=now, config=config, reason=req.reason, by=by)
            req.state = "denied"
            await records.add_denial(denial, req.id)
            self.ctx.publish("consent.denied", request=req.id, grantor=by, snooze_until=denial.snooze_until)
            return None
        g = new_grant(decision, now=now, config=config, reason=req.reason, caps=req.plan.get("caps"),
                      by=by, fingerprint=req.fingerprint)
        await records.add_grant(g, actor=by, now=now)
        req.state, req.grant_id = "granted", g.id
        await records.save_request(req)
        await self._reload_grants()
        self.ctx.publish("consent.granted", request=req.id, grant=g.id, scope=g.scope, grantor=by)
        return g

    def grants(self, include_inactive: bool = False) -> list[Grant]:
        now = self.ctx.clock.now()
        return [g for g in self._grants if include_inactive or g.status(now) == "active"]

    async def grant(self, scope: str, reason: str) -> Grant:
        now = self.ctx.clock.now()
        g = new_grant(scope, now=now, config=self.ctx.config.consent, reason=reason)
        await self.ctx.records.add_grant(g, actor=g.grantor, now=now)
        await self._reload_grants()
        self.ctx.publish("consent.granted", request=None, grant=g.id, scope=g.scope, grantor=g.grantor)
        return g

    async def revoke(self, grant_id: str, now: float) -> Grant:
        g = await self.ctx.records.revoke_grant(grant_id, actor=grantor(), now=now)
        await self._reload_grants()
        return g

    async def expire(self, now: float) -> None:
        records = self.ctx.records
        for req in self.pending():
            if now >= req.expires:
                req.state = "expired"
                await records.save_request(req)
                self.ctx.publish("consent.expired", request=req.id)
        await self._reload_grants()  # grants made by `heady permissions` in another process

    async def denied(self, fingerprint: str, now: float) -> bool:
        """A recent denial of this plan snoozes asking again."""
        denials = await self.ctx.records.denials(now - self.ctx.config.consent.deny_snooze_s)
        return snoozed(denials, fingerprint, now) is not None

    async def take_grant(self, fingerprint: str, now: float) -> Grant | None:
        """An active grant covering this plan, marked used; None when there is none."""
        g = usable_grant(self._grants, fingerprint, now)
        if g is not None and await self.ctx.records.use_grant(g.id, now, fingerprint):
            await self._reload_grants()
            return g
        return None

    async def ask(self, plan: RebalancePlan, reason: str, now: float) -> None:
        """Ask the operator about this plan, unless the same question is already open."""
        records = self.ctx.records
        fp = plan.fingerprint
        open_requests = self.pending()
        if any(r.fingerprint == fp for r in open_requests):
            return
        for stale in open_requests:  # the plan changed materially: the old question no longer applies
            stale.state = "expired"
            await records.save_request(stale)
            self.ctx.publish("consent.expired", request=stale.id)
        req = new_request(plan.to_dict(), fp, now=now, config=self.ctx.config.consent, reason=reason)
        self._requests[req.id] = req
        await records.save_request(req)
        self.ctx.publish("consent.requested", request=req.id, reason=reason, priority=plan.priority,
                         actions=[a.note for a in plan.actions])
