"""Policies: per-session reflexes with bounded retries.

resume_on_idle: a session idle for idle_threshold_s is woken. A managed session waits for its next
prompt when idle, so it gets `session.prompt` with the configured text; any other session gets
`session.resume` (the agent continues a paused/stopped process; that is all it can do without a
prompt channel). restart_on_compaction: a compacted managed session gets `session.restart` (only
managed sessions can be restarted). kill_on_cost: a session whose cost reaches max_session_cost_usd
gets `session.kill`.

State per (node, session, policy): attempts within reset_window_s, next allowed time (exponential
back-off with jitter, capped), last outcome, needs-attention. After max_retries attempts within the
window, a condition that still holds puts the pair in needs-attention: no more automatic tries until
the window passes with the session stable, or an operator resets it.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from typing import Any

from heady_tui.config import PoliciesConfig, PolicyConfig

POLICIES = ("resume_on_idle", "restart_on_compaction", "kill_on_cost")
# Back-off delays are shortened by up to this fraction at random, so many sessions don't retry in step.
JITTER_FRACTION = 0.2


@dataclass(frozen=True)
class SessionSnapshot:
    node: str
    session: str
    state: str
    state_since: float
    managed: str | None
    cost_usd: float
    active: bool


@dataclass
class PolicyState:
    node: str
    session: str
    policy: str
    attempts: int = 0
    window_start: float | None = None
    last_attempt_at: float | None = None
    next_allowed_at: float = 0.0
    last_outcome: str | None = None  # ok | failed: <error>
    needs_attention: bool = False
    needs_attention_since: float | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.node, self.session, self.policy)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class PolicyDecision:
    policy: str
    node: str
    session: str
    action: str
    args: dict[str, Any]
    attempt: int
    reason: str


@dataclass(frozen=True)
class NeedsAttention:
    policy: str
    node: str
    session: str
    attempts: int
    since: float
    last_outcome: str | None


class PolicyEngine:
    def __init__(self, config: PoliciesConfig, *, rng: random.Random | None = None) -> None:
        self.config = config
        self.rng = rng or random.Random()
        self.states: dict[tuple[str, str, str], PolicyState] = {}

    def policy_config(self, policy: str) -> PolicyConfig:
        return getattr(self.config, policy)

    def watches(self, state: str, cost_usd: float) -> bool:
        """Whether a condition could hold for a session in this state at this cost. With `held()`, the
        sessions `evaluate` needs to see: a fleet of mostly running sessions gives a tick little to do."""
        return state in ("idle", "paused", "compacted") or cost_usd >= self.config.kill_on_cost.max_session_cost_usd

    def held(self) -> set[tuple[str, str]]:
        """(node, session) pairs holding a policy state, whose retry window may expire."""
        return {(node, session) for node, session, _ in self.states}

    def condition(self, policy: str, s: SessionSnapshot, now: float) -> tuple[str, dict[str, Any], str] | None:
        """(action, args, reason) when the policy's condition holds for the session, else None."""
        if not s.active:
            return None
        if policy == "resume_on_idle":
            cfg = self.config.resume_on_idle
            if s.state in ("idle", "paused") and now - s.state_since >= cfg.idle_threshold_s:
                idle_for = f"idle for {now - s.state_since:.0f}s"
                if s.managed:
                    return "session.prompt", {"text": cfg.prompt}, idle_for
                return "session.resume", {}, idle_for
        elif policy == "restart_on_compaction":
            if s.state == "compacted" and s.managed:
                return "session.restart", {}, "context compacted"
        elif policy == "kill_on_cost":
            limit = self.config.kill_on_cost.max_session_cost_usd
            if s.cost_usd >= limit:
                return "session.kill", {}, f"cost ${s.cost_usd:.2f} >= ${limit:.2f}"
        return None

    def evaluate(self, sessions: list[SessionSnapshot], now: float) -> tuple[list[PolicyDecision], list[NeedsAttention]]:
        """Decisions to carry out now, and pairs that just went to needs-attention."""
        decisions: list[PolicyDecision] = []
        attention: list[NeedsAttention] = []
        for s in sessions:
            for policy in POLICIES:
                cfg = self.policy_config(policy)
                if not cfg.enabled:
                    continue
                hit = self.condition(policy, s, now)
                key = (s.node, s.session, policy)
                st = self.states.get(key)
                if st is not None:
                    self._expire_window(st, cfg, now, stable=hit is None)
                if hit is None:
                    continue
                if st is None:
                    st = self.states[key] = PolicyState(s.node, s.session, policy)
                if st.needs_attention or now < st.next_allowed_at:
                    continue
                if st.attempts >= cfg.max_retries:
                    st.needs_attention = True
                    st.needs_attention_since = now
                    attention.append(NeedsAttention(policy, s.node, s.session, st.attempts, now, st.last_outcome))
                    continue
                action, args, reason = hit
                st.attempts += 1
                st.window_start = now if st.window_start is None else st.window_start
                st.last_attempt_at = now
                st.next_allowed_at = now + self.backoff(cfg, st.attempts)
                decisions.append(PolicyDecision(policy, s.node, s.session, action, args, st.attempts, reason))
        return decisions, attention

    def backoff(self, cfg: PolicyConfig, attempts: int) -> float:
        delay = min(cfg.backoff_max_s, cfg.backoff_initial_s * 2 ** max(0, attempts - 1))
        return delay * (1 - JITTER_FRACTION * self.rng.random())

    def _expire_window(self, st: PolicyState, cfg: PolicyConfig, now: float, *, stable: bool) -> None:
        """A window that passed with the session stable gives the budget back."""
        if st.window_start is None or not stable:
            return
        last = st.last_attempt_at if st.last_attempt_at is not None else st.window_start
        if now - last >= cfg.reset_window_s:
            st.attempts = 0
            st.window_start = None
            st.needs_attention = False
            st.needs_attention_since = None
            st.next_allowed_at = 0.0

    def record_outcome(self, decision: PolicyDecision, ok: bool, error: str | None) -> PolicyState:
        st = self.states[(decision.node, decision.session, decision.policy)]
        st.last_outcome = "ok" if ok else f"failed: {error or 'unknown error'}"
        return st

    def reset(self, node: str, session: str, policy: str) -> bool:
        """Operator reset: the pair gets its full budget back. False when there is no such pair."""
        st = self.states.get((node, session, policy))
        if st is None:
            return False
        self.states[st.key] = PolicyState(node, session, policy, last_outcome=st.last_outcome)
        return True

    def needs_attention(self) -> list[NeedsAttention]:
        return [
            NeedsAttention(st.policy, st.node, st.session, st.attempts, st.needs_attention_since or 0.0, st.last_outcome)
            for st in self.states.values()
            if st.needs_attention
        ]

    def load(self, states: list[PolicyState]) -> None:
        self.states = {st.key: st for st in states}
