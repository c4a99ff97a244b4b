"""The consent request lifecycle: a question is asked for a plan, the operator decides it, grants
are made, used, revoked, and open questions expire.

A request shown in a dialog is held (`hold`/`release`): it is never revised, expired or replaced
while held; a changed plan supersedes it with a new request instead. A granted answer approves
exactly the plan the request showed: the brain runs that plan (`approved`), not a fresh one.
"""

from __future__ import annotations

from dataclasses import dataclass

from heady_tui.engine.consent import (
    DECISIONS,
    ConsentError,
    ConsentRequest,
    Grant,
    grantor,
    new_denial,
    new_grant,
    new_request,
    revision,
    snoozed,
    usable_grant,
)
from heady_tui.engine.rebalance import RebalancePlan

from .host import BrainContext

# What a request is about (its plan's "topic"): each topic has its own open question, so a rebalance
# and an account's pause never revise or expire one another.
REBALANCE_TOPIC = "rebalance"


def topic_of(req: ConsentRequest) -> str:
    topic = req.plan.get("topic")
    return topic if isinstance(topic, str) else REBALANCE_TOPIC


@dataclass(frozen=True)
class Approval:
    """A granted request: the plan the operator saw and the grant that allows it."""

    request: ConsentRequest
    plan: RebalancePlan
    grant: Grant


class ConsentDesk:
    def __init__(self, ctx: BrainContext) -> None:
        self.ctx = ctx
        self._requests: dict[str, ConsentRequest] = {}
        self._grants: list[Grant] = []
        self._held: set[str] = set()  # requests shown in a dialog right now

    async def load(self) -> None:
        """Grants and open requests as recorded (at a takeover, and each tick of a view-only brain)."""
        records = self.ctx.records
        self._grants = await records.grants()
        self._requests = {r.id: r for r in await records.requests(state="requested")}

    async def _reload_grants(self) -> None:
        self._grants = await self.ctx.records.grants()

    def pending(self) -> list[ConsentRequest]:
        return sorted((r for r in self._requests.values() if r.state == "requested"), key=lambda r: r.created)

    def hold(self, request_id: str) -> ConsentRequest:
        """The request is on an operator's screen: from now on it stays as shown and answerable."""
        req = self._requests.get(request_id)
        if req is None or req.state != "requested":
            raise ConsentError(f"no open consent request {request_id!r}")
        self._held.add(request_id)
        return req

    async def release(self, request_id: str) -> None:
        """The dialog closed. A request superseded while it was shown (and not answered) ends now."""
        self._held.discard(request_id)
        req = self._requests.get(request_id)
        if req is not None and req.state == "requested" and req.superseded_by is not None:
            await self._expire(req, superseded_by=req.superseded_by)

    async def decide(self, request_id: str, decision: str, by: str | None = None) -> Approval | None:
        """deny | single | session | persistent, answered by `by` (user@host; this process's user by
        default). Returns the approval (the request's own plan and its grant) for an allow, or None
        for a denial."""
        records = self.ctx.records
        if decision not in DECISIONS:
            raise ConsentError(f"unknown decision {decision!r} (known: {', '.join(DECISIONS)})")
        req = self._requests.get(request_id)
        if req is None or req.state != "requested":
            raise ConsentError(f"no open consent request {request_id!r}")
        now = self.ctx.clock.now()
        config = self.ctx.config.consent
        by = by or grantor()
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
        # The operator allowed this plan: newer questions about the same episode are moot.
        for other in self.pending():
            if other.id not in self._held and topic_of(other) == topic_of(req):
                await self._expire(other, superseded_by=None)
        return Approval(req, RebalancePlan.from_dict(req.plan), g)

    async def use(self, approval: Approval, now: float) -> bool:
        """Spend one use of the approval's grant on its plan; False when it no longer covers it."""
        if await self.ctx.records.use_grant(approval.grant.id, now, approval.request.fingerprint):
            await self._reload_grants()
            return True
        return False

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
        for req in self.pending():
            if now >= req.expires and req.id not in self._held:  # never under an operator reading it
                await self._expire(req, superseded_by=None)
        await self._reload_grants()  # grants made by `heady permissions` in another process

    async def _expire(self, req: ConsentRequest, *, superseded_by: str | None) -> None:
        req.state = "expired"
        await self.ctx.records.save_request(req)
        details = {"superseded_by": superseded_by} if superseded_by is not None else {}
        self.ctx.publish("consent.expired", request=req.id, **details)

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

    async def ask(self, plan: RebalancePlan, reason: str, now: float, *, topic: str = REBALANCE_TOPIC,
                  about: dict[str, str | float] | None = None) -> None:
        """Ask the operator about this plan: revise the open question of its topic nobody is looking
        at, or supersede the one on screen with a new question; nothing when this plan is asked
        already. `about` is kept with the plan (what the part that asked needs after an allow)."""
        records = self.ctx.records
        fp = plan.fingerprint
        shown = {**plan.to_dict(), **(about or {})}
        if topic != REBALANCE_TOPIC:
            shown["topic"] = topic
        step, current = revision([r for r in self.pending() if topic_of(r) == topic], self._held, fp)
        if step == "same":
            return
        if step == "revise" and current is not None:
            current.plan, current.fingerprint, current.reason = shown, fp, reason
            await records.save_request(current)
            self.ctx.publish("consent.revised", request=current.id, reason=reason, priority=plan.priority,
                             actions=[a.note for a in plan.actions])
            return
        req = new_request(shown, fp, now=now, config=self.ctx.config.consent, reason=reason)
        self._requests[req.id] = req
        await records.save_request(req)
        if step == "supersede" and current is not None:
            current.superseded_by = req.id
        self.ctx.publish("consent.requested", request=req.id, reason=reason, priority=plan.priority,
                         actions=[a.note for a in plan.actions], topic=topic,
                         supersedes=current.id if step == "supersede" and current is not None else None)
