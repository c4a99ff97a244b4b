"""Session policies carried out: each decision's attempt is saved, its command sent, its outcome
recorded and published; sessions a policy gave up on are flagged for the operator."""

from __future__ import annotations

from collections.abc import Set as AbstractSet

from heady_tui.engine.consent import grantor
from heady_tui.engine.policies import NeedsAttention, PolicyEngine, SessionSnapshot

from .host import CONSOLE, BrainContext


class PolicyExecutor:
    def __init__(self, ctx: BrainContext, engine: PolicyEngine) -> None:
        self.ctx = ctx
        self.engine = engine

    async def load(self) -> None:
        self.engine.load(await self.ctx.records.policy_states())

    def needs_attention(self) -> list[NeedsAttention]:
        return self.engine.needs_attention()

    async def reset(self, node: str, session: str, policy: str) -> bool:
        records = self.ctx.records
        if not self.engine.reset(node, session, policy):
            return False
        st = self.engine.states[(node, session, policy)]
        await records.save_policy_state(st)
        await records.audit(self.ctx.clock.now(), grantor(), "policy.reset", {"node": node, "session": session, "policy": policy})
        return True

    async def run(self, now: float, *, leave: AbstractSet[tuple[str, str]] = frozenset()) -> None:
        """`leave`: (node, session) another part of the brain holds paused on purpose (load shedding)."""
        records = self.ctx.records
        fleet = self.ctx.host.fleet
        held = self.engine.held()
        online = {n.id for n in fleet.online_nodes()}
        snaps = [SessionSnapshot(s.node, s.id, s.state, s.state_since, s.managed, s.cost_usd, s.active)
                 for s in fleet.sessions.values()
                 if s.node in online and s.key not in leave and (self.engine.watches(s.state, s.cost_usd) or s.key in held)]
        decisions, attention = self.engine.evaluate(snaps, now)
        for d in decisions:
            # The attempt is saved before the command goes out: a crash now never replays it.
            await records.save_policy_state(self.engine.states[(d.node, d.session, d.policy)])
            ok, error, _ = await self.ctx.command(d.node, d.action, d.session, d.args)
            st = self.engine.record_outcome(d, ok, error)
            await records.policy_action(at=now, policy=d.policy, node=d.node, session=d.session, action=d.action,
                                        attempt=d.attempt, outcome=st.last_outcome or "", state=st, actor=CONSOLE)
            self.ctx.publish("policy.action", policy=d.policy, node=d.node, session=d.session, action=d.action,
                             attempt=d.attempt, ok=ok, reason=d.reason, error=error)
        for a in attention:
            await records.save_policy_state(self.engine.states[(a.node, a.session, a.policy)])
            await records.audit(now, CONSOLE, "policy.needs_attention", {"policy": a.policy, "node": a.node, "session": a.session, "attempts": a.attempts})
            self.ctx.publish("policy.needs_attention", policy=a.policy, node=a.node, session=a.session, attempts=a.attempts)
