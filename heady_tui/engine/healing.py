"""Healing loop: analyzers -> issues -> weak points (grouped by subject) -> repair tasks -> dispatch.

A light cycle (agent health, provider health) runs every light_interval_s, a full cycle (every
analyzer) every full_interval_s, and a triggered full cycle on: every N calls, an error rate at or
above trigger_error_rate, a deploy (agent version change or `heady notify-deploy`), a critical
agent.notice. Weak points wait group_wait_s before tasks are generated; an open node-level weak
point suppresses session-level issues on that node; at most max_tasks_per_node tasks are
dispatched on a node at once, the highest priority first. Task states: suggested ->
pending-approval -> dispatched -> done | failed | expired. A weak point carries the worst severity
of its issues; its task's priority is derived once, when the task is made, from that severity and
the strategy (`task_priority`). A weak point has one task: after it ended (done, failed, rejected)
the weak point stays quiet until its condition clears; only an expired task is followed by another.
Pure: the brain gathers the inputs and carries out the task commands.
"""

from __future__ import annotations

import math
import secrets
import statistics
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from heady_tui.config import STRATEGIES, HealingConfig, HealingTriggersConfig

from .tests_window import TestRunSummary

# The session-efficiency thresholds are config ([healing.triggers]); these shape what they judge.
BASELINE_CALLS = 5  # calls needed before a baseline means anything
RECENT_CALLS = 5
CLOCK_SKEW_S = 2.0
PROVIDER_MIN_CALLS = 10
PROVIDER_ERROR_RATE = 0.20
STALE_NODE_S = 30.0  # online but silent this long: stale
STALE_SESSION_S = 1800.0  # running with no event this long: stale
TASK_STATES = ("suggested", "pending-approval", "dispatched", "done", "failed", "expired")
OPEN_TASK_STATES = ("suggested", "pending-approval", "dispatched")
AWAITING_APPROVAL = ("pending-approval", "suggested")
LIGHT_ANALYZERS = ("agent_health", "provider_health")
FULL_ANALYZERS = ("agent_health", "session_efficiency", "provider_health", "environment", "fleet_patrol", "cost")
SEVERITIES = ("warning", "critical")  # mildest first
PRIORITIES = ("low", "normal", "high", "critical")  # lowest first
# A task's priority: its strategy's, one step up when its weak point is critical.
STRATEGY_PRIORITY = {
    "environment_sync": "low",
    "optimize_sessions": "normal",
    "cost_control": "normal",
    "repair_endpoint": "high",
    "revive_agent": "high",
}


class HealingError(ValueError):
    """An unknown strategy or task id, reported as one line."""


@dataclass(frozen=True)
class CallView:
    ts: float
    latency_ms: float | None
    ok: bool
    tokens: int
    cost_usd: float


@dataclass(frozen=True)
class CallSummary:
    """A session's calls in the healing window, reduced to what the analyzers read."""

    calls: int = 0
    failed: int = 0
    failed_run: int = 0  # failed calls in a row at the end (newest first)
    tokens: int = 0
    latency_ms: float = 0.0  # sum over the calls with a (non-zero) latency
    with_latency: int = 0
    cost_usd: float = 0.0
    recent: tuple[CallView, ...] = ()  # the newest RECENT_CALLS calls, oldest first
    provider: str | None = None  # of the newest call

    @classmethod
    def of(cls, calls: Sequence[CallView], provider: str | None = None) -> "CallSummary":
        run = 0
        for c in reversed(calls):
            if c.ok:
                break
            run += 1
        latencies = [c.latency_ms for c in calls if c.latency_ms]
        return cls(len(calls), sum(1 for c in calls if not c.ok), run, sum(c.tokens for c in calls), sum(latencies),
                   len(latencies), sum(c.cost_usd for c in calls), tuple(calls[-RECENT_CALLS:]), provider)


class _SessionCalls:
    __slots__ = ("buckets", "totals", "recent", "failed_run", "provider")

    def __init__(self) -> None:
        # [bucket, calls, failed, tokens, latency sum, with latency, cost], oldest bucket first
        self.buckets: deque[list[Any]] = deque()
        self.totals: list[Any] = [None, 0, 0, 0, 0.0, 0, 0.0]
        self.recent: deque[tuple[float, float | None, bool, int, float]] = deque(maxlen=RECENT_CALLS)
        self.failed_run = 0
        self.provider: str | None = None


class SessionCallWindows:
    """Each session's calls of the last `keep_s`, kept as running sums in BUCKET_S-second buckets.

    Fed call by call (this is on the ingest path: a few increments per call, no objects); a healing
    cycle reads one summary per session in O(buckets that expired) instead of regrouping every
    recent call of the fleet. The window's start moves a bucket at a time, so it may reach up to
    BUCKET_S seconds further back than `keep_s`.
    """

    BUCKET_S = 5.0

    def __init__(self, keep_s: float) -> None:
        self.keep_s = keep_s
        self._sessions: dict[tuple[str, str], _SessionCalls] = {}

    def add(self, key: tuple[str, str], ts: float, latency_ms: float | None, ok: bool, tokens: int, cost_usd: float,
            provider: str) -> None:
        s = self._sessions.get(key)
        if s is None:
            s = self._sessions[key] = _SessionCalls()
        k = math.floor(ts / self.BUCKET_S)
        buckets = s.buckets
        row = buckets[-1] if buckets and buckets[-1][0] == k else _bucket(buckets, k)
        latency = latency_ms or 0.0
        failed = 0 if ok else 1
        timed = 1 if latency else 0
        t = s.totals
        row[1] += 1
        row[2] += failed
        row[3] += tokens
        row[4] += latency
        row[5] += timed
        row[6] += cost_usd
        t[1] += 1
        t[2] += failed
        t[3] += tokens
        t[4] += latency
        t[5] += timed
        t[6] += cost_usd
        s.recent.append((ts, latency_ms, ok, tokens, cost_usd))
        s.failed_run = s.failed_run + 1 if failed else 0
        s.provider = provider

    def summary(self, key: tuple[str, str], now: float) -> CallSummary:
        s = self._sessions.get(key)
        if s is None:
            return CallSummary()
        horizon = math.floor((now - self.keep_s) / self.BUCKET_S)
        buckets, totals = s.buckets, s.totals
        while buckets and buckets[0][0] < horizon:
            old = buckets.popleft()
            for i in range(1, len(totals)):
                totals[i] -= old[i]
        if not buckets:
            del self._sessions[key]
            return CallSummary()
        _, calls, failed, tokens, latency, with_latency, cost = totals
        recent = tuple(CallView(*c) for c in s.recent if math.floor(c[0] / self.BUCKET_S) >= horizon)
        return CallSummary(calls, failed, min(s.failed_run, calls), tokens, latency, with_latency, cost, recent, s.provider)


def _bucket(buckets: deque[list[Any]], k: int) -> list[Any]:
    """The row of bucket k, appended when it is the newest, else (a late call) found or inserted in order."""
    if not buckets or buckets[-1][0] < k:
        row = [k, 0, 0, 0, 0.0, 0, 0.0]
        buckets.append(row)
        return row
    i = len(buckets) - 1
    while i >= 0 and buckets[i][0] > k:
        i -= 1
    if i >= 0 and buckets[i][0] == k:
        return buckets[i]
    row = [k, 0, 0, 0, 0.0, 0, 0.0]
    buckets.insert(i + 1, row)
    return row


@dataclass(frozen=True)
class NodeHealth:
    node: str
    status: str  # online | offline | connecting | error
    status_since: float
    last_seen: float | None
    agent_version: str
    clock_skew_s: float | None


@dataclass(frozen=True)
class SessionHealth:
    node: str
    session: str
    state: str
    active: bool
    managed: str | None
    provider: str | None
    last_event_at: float
    calls: CallSummary  # this session's calls in the window
    tests: TestRunSummary = TestRunSummary()  # the test runs it executed in the window


@dataclass(frozen=True)
class HealingInput:
    now: float
    nodes: tuple[NodeHealth, ...]
    sessions: tuple[SessionHealth, ...]
    provider_calls: dict[str, tuple[int, int]]  # provider -> (calls, failed) in the window
    projected_today_usd: float
    daily_budget_usd: float | None


@dataclass(frozen=True)
class Issue:
    analyzer: str
    subject_kind: str  # node | session | provider
    subject: str  # node id, "node/session", or provider name
    node: str | None
    strategy: str
    severity: str  # warning | critical
    message: str


@dataclass
class WeakPoint:
    id: str
    subject_kind: str
    subject: str
    node: str | None
    strategy: str
    analyzer: str
    opened: float
    last_seen: float
    issues: list[str]
    state: str = "open"  # open | closed
    closed: float | None = None
    task_id: str | None = None
    severity: str = "warning"  # the worst of its issues' (SEVERITIES)


@dataclass
class Task:
    id: str
    strategy: str
    node: str | None
    subject: str
    weak_point: str
    created: float
    updated: float
    expires: float
    state: str  # suggested | pending-approval | dispatched | done | failed | expired
    commands: list[dict[str, Any]]  # {node, action, target, args}; console-side: {"action": "link.reconnect"}
    recommendation: str
    result: str | None = None
    # repair_endpoint: commands that undo the back-off (session.resume of what was paused), run when
    # the provider recovers; the task stays dispatched until then.
    on_recovery: list[dict[str, Any]] = field(default_factory=list)
    priority: str = "normal"  # task_priority() of its strategy and weak point, set when it is made

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class HealingCycle:
    id: str
    at: float
    kind: str  # light | full | triggered:<reason>
    analysis: dict[str, int]  # analyzer -> issues found
    suppressed: int
    weak_points: list[dict[str, Any]]
    tasks_created: list[str]
    dispatch: list[str]  # task ids the brain should dispatch now
    summary: str
    recovered: list[str] = field(default_factory=list)  # task ids whose on_recovery commands are due now
    critical: list[str] = field(default_factory=list)  # ids of weak points that became critical in this cycle

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


def task_priority(strategy: str, severity: str) -> str:
    """low | normal | high | critical: the strategy's priority, one step up for a critical weak point."""
    base = PRIORITIES.index(STRATEGY_PRIORITY[strategy])
    return PRIORITIES[min(base + (1 if severity == "critical" else 0), len(PRIORITIES) - 1)]


def by_severity(weak_points: Sequence[WeakPoint]) -> list[WeakPoint]:
    """Critical first, then the longest open."""
    return sorted(weak_points, key=lambda wp: (-SEVERITIES.index(wp.severity), wp.opened))


def by_priority(tasks: Sequence[Task]) -> list[Task]:
    """The highest priority first, then the oldest."""
    return sorted(tasks, key=lambda t: (-PRIORITIES.index(t.priority), t.created))


def awaiting_approval(tasks: Iterable[Task]) -> list[Task]:
    """The approvals queue: tasks waiting for an operator, the highest priority first, then the oldest."""
    return by_priority([t for t in tasks if t.state in AWAITING_APPROVAL])


def check_awaiting_approval(task_id: str, state: str) -> None:
    """HealingError unless a task in `state` may be approved or rejected."""
    if state not in AWAITING_APPROVAL:
        raise HealingError(f"task {task_id} is {state}, not waiting for approval")


def _session_gone(wp: WeakPoint, inp: HealingInput) -> bool:
    """A session weak point whose session has ended: nothing is left to act on."""
    if wp.subject_kind != "session":
        return False
    node, _, session = wp.subject.partition("/")
    return not any(s.active for s in inp.sessions if s.node == node and s.session == session)


def provider_recovered(inp: HealingInput, provider: str) -> bool:
    """Healthy traffic in the window (enough calls, error rate below the bar), or a whole window without
    a failed call: once its sessions are paused a provider may see no traffic at all, and a quiet
    window is the cool-down after which they may try again (a failure then reopens the weak point)."""
    calls, failed = inp.provider_calls.get(provider, (0, 0))
    return failed == 0 or (calls >= PROVIDER_MIN_CALLS and failed / calls < PROVIDER_ERROR_RATE)


def analyze(inp: HealingInput, analyzers: tuple[str, ...], triggers: HealingTriggersConfig) -> list[Issue]:
    issues: list[Issue] = []
    now = inp.now
    if "agent_health" in analyzers:
        for n in inp.nodes:
            if n.status != "online":
                issues.append(Issue("agent_health", "node", n.node, n.node, "revive_agent", "critical", f"{n.node} is {n.status}"))
            elif n.last_seen is not None and now - n.last_seen > STALE_NODE_S:
                issues.append(Issue("agent_health", "node", n.node, n.node, "revive_agent", "warning",
                                    f"{n.node} silent for {now - n.last_seen:.0f}s"))
    if "environment" in analyzers:
        versions = [n.agent_version for n in inp.nodes if n.agent_version]
        if versions:
            common = statistics.mode(versions)
            for n in inp.nodes:
                if n.agent_version and n.agent_version != common:
                    issues.append(Issue("environment", "node", n.node, n.node, "environment_sync", "warning",
                                        f"{n.node} runs agent {n.agent_version}, fleet runs {common}"))
        for n in inp.nodes:
            if n.clock_skew_s is not None and abs(n.clock_skew_s) > CLOCK_SKEW_S:
                issues.append(Issue("environment", "node", n.node, n.node, "environment_sync", "warning",
                                    f"{n.node} clock is off by {n.clock_skew_s:+.1f}s"))
    if "provider_health" in analyzers:
        for provider, (calls, failed) in sorted(inp.provider_calls.items()):
            if calls >= PROVIDER_MIN_CALLS and failed / calls >= PROVIDER_ERROR_RATE:
                issues.append(Issue("provider_health", "provider", provider, None, "repair_endpoint", "critical",
                                    f"{provider} failed {failed}/{calls} calls"))
    if "session_efficiency" in analyzers:
        for s in inp.sessions:
            if s.active:
                issues += _session_issues(s, triggers)
    if "fleet_patrol" in analyzers:
        online = {n.node for n in inp.nodes if n.status == "online"}
        for s in inp.sessions:
            if s.active and s.state == "running" and now - s.last_event_at > STALE_SESSION_S:
                subject = f"{s.node}/{s.session}"
                kind = "stale" if s.node in online else "orphaned (node offline)"
                issues.append(Issue("fleet_patrol", "session", subject, s.node, "optimize_sessions", "warning",
                                    f"session {subject} {kind}: no event for {now - s.last_event_at:.0f}s"))
    if "cost" in analyzers and inp.daily_budget_usd and inp.projected_today_usd > inp.daily_budget_usd:
        # The top spender among the running sessions: one already paused spends nothing more.
        top = max((s for s in inp.sessions if s.active and s.state == "running"), key=lambda s: s.calls.cost_usd, default=None)
        if top is not None:
            issues.append(Issue("cost", "session", f"{top.node}/{top.session}", top.node, "cost_control", "warning",
                                f"projected ${inp.projected_today_usd:.2f} today exceeds the ${inp.daily_budget_usd:.2f} budget"))
    return issues


def _session_issues(s: SessionHealth, triggers: HealingTriggersConfig) -> list[Issue]:
    """The seven triggers: the last RECENT_CALLS calls against the thresholds, and against the
    session's baseline (its earlier calls in the window) for tokens and duration."""
    subject = f"{s.node}/{s.session}"
    calls = s.calls
    recent = calls.recent
    found: list[str] = []
    slow_ms = triggers.slow_turn_s * 1000
    if any(c.latency_ms is not None and c.latency_ms >= slow_ms for c in recent):
        found.append(f"a turn took >= {triggers.slow_turn_s:g}s")
    if calls.failed_run >= triggers.retries:
        found.append(f"{calls.failed_run} failed calls in a row")
    if calls.calls >= BASELINE_CALLS and calls.failed / calls.calls >= triggers.error_rate:
        found.append(f"error rate {calls.failed / calls.calls:.0%}")
    base_calls = calls.calls - len(recent)
    if base_calls >= BASELINE_CALLS and recent:
        base_tokens = (calls.tokens - sum(c.tokens for c in recent)) / base_calls
        recent_tokens = sum(c.tokens for c in recent) / len(recent)
        if base_tokens > 0 and recent_tokens >= (1 + triggers.token_increase_percent / 100) * base_tokens:
            found.append(f"tokens per call up {recent_tokens / base_tokens - 1:.0%} over the baseline")
        rec_lat = [c.latency_ms for c in recent if c.latency_ms]
        base_with_latency = calls.with_latency - len(rec_lat)
        if base_with_latency > 0 and rec_lat:
            base_lat = (calls.latency_ms - sum(rec_lat)) / base_with_latency
            recent_lat = sum(rec_lat) / len(rec_lat)
            if recent_lat >= triggers.duration_percent / 100 * base_lat:
                found.append(f"turns take {recent_lat / base_lat:.0%} of the baseline's time")
    tests = s.tests
    if tests.runs and tests.failed / tests.runs > triggers.test_failure_rate:
        found.append(f"{tests.failed} of {tests.runs} test runs failed")
    out = [Issue("session_efficiency", "session", subject, s.node, "optimize_sessions", "warning", f"{subject}: {m}") for m in found]
    per_task = sum(c.cost_usd for c in recent) / len(recent) if recent else 0.0
    if per_task > triggers.cost_per_task_usd:
        out.append(Issue("session_efficiency", "session", subject, s.node, "cost_control", "warning",
                         f"{subject}: ${per_task:.2f} per task"))
    return out


def commands_for(strategy: str, wp: WeakPoint, inp: HealingInput) -> tuple[list[dict[str, Any]], str]:
    """What a strategy does for a weak point: agent commands (or a console action) and a recommendation."""
    if strategy == "revive_agent":
        return [{"action": "link.reconnect", "node": wp.node}], (
            f"reconnect to {wp.node} now; done when it is back online, failed if it is not back before the task expires")
    if strategy == "repair_endpoint":
        sessions = [s for s in inp.sessions if s.active and s.state == "running" and s.provider == wp.subject]
        return ([{"action": "session.pause", "node": s.node, "target": s.session, "args": {}} for s in sessions],
                f"back off {len(sessions)} running session(s) on {wp.subject} (paused; resume them when it recovers)")
    if strategy == "environment_sync":
        return [], f"{'; '.join(wp.issues)}: upgrade or resync the agent on {wp.node} (heady runs no shell on nodes)"
    node, _, session = wp.subject.partition("/")
    managed = any(s.managed for s in inp.sessions if s.node == node and s.session == session)
    if strategy == "optimize_sessions":
        if managed:
            return [{"action": "session.restart", "node": node, "target": session, "args": {}}], f"restart managed session {wp.subject} with a fresh context"
        return [], f"{'; '.join(wp.issues)}: look at session {wp.subject} (not managed, so heady cannot restart it)"
    if strategy == "cost_control":
        return [{"action": "session.pause", "node": node, "target": session, "args": {}}], f"pause {wp.subject} to stop its spending"
    raise HealingError(f"unknown strategy {strategy!r} (known: {', '.join(STRATEGIES)})")


class HealingEngine:
    def __init__(self, config: HealingConfig) -> None:
        for name in config.auto_dispatch:
            if name not in STRATEGIES:
                raise HealingError(f"unknown strategy {name!r} (known: {', '.join(STRATEGIES)})")
        self.config = config
        self.weak_points: dict[str, WeakPoint] = {}  # subject_kind:subject:strategy -> weak point
        self.tasks: dict[str, Task] = {}
        self._last_light: float | None = None
        self._last_full: float | None = None
        self._triggers: list[str] = []
        self._calls_since_trigger = 0

    # --- when to run ------------------------------------------------------------------

    def trigger(self, reason: str) -> None:
        if reason not in self._triggers:
            self._triggers.append(reason)

    def count_calls(self, n: int) -> None:
        self._calls_since_trigger += n
        if self._calls_since_trigger >= self.config.trigger_every_calls:
            self._calls_since_trigger = 0
            self.trigger(f"{self.config.trigger_every_calls} calls")

    def due(self, now: float) -> str | None:
        if self._triggers:
            reason = ", ".join(self._triggers)
            self._triggers.clear()
            return f"triggered:{reason}"
        if self._last_full is None or now - self._last_full >= self.config.full_interval_s:
            return "full"
        if self._last_light is None or now - self._last_light >= self.config.light_interval_s:
            return "light"
        return None

    # --- a cycle ----------------------------------------------------------------------

    def run_cycle(self, inp: HealingInput, kind: str) -> HealingCycle:
        now = inp.now
        analyzers = LIGHT_ANALYZERS if kind == "light" else FULL_ANALYZERS
        if kind == "light":
            self._last_light = now
        else:
            self._last_full = self._last_light = now
        issues = analyze(inp, analyzers, self.config.triggers)
        down_nodes = {i.node for i in issues if i.subject_kind == "node"}
        down_nodes |= {wp.node for wp in self.weak_points.values() if wp.state == "open" and wp.subject_kind == "node"
                       and wp.analyzer not in analyzers}
        kept = [i for i in issues if not (i.subject_kind == "session" and i.node in down_nodes)]
        seen: set[str] = set()
        critical: list[str] = []
        for issue in kept:
            key = f"{issue.subject_kind}:{issue.subject}:{issue.strategy}"
            seen.add(key)
            wp = self.weak_points.get(key)
            if wp is None or wp.state == "closed":
                wp = self.weak_points[key] = WeakPoint(_new_id("wp"), issue.subject_kind, issue.subject, issue.node,
                                                       issue.strategy, issue.analyzer, now, now, [])
            wp.last_seen = now
            if issue.message not in wp.issues:
                wp.issues.append(issue.message)
            if SEVERITIES.index(issue.severity) > SEVERITIES.index(wp.severity):
                wp.severity = issue.severity
                critical.append(wp.id)
        for key, wp in self.weak_points.items():
            if wp.state == "open" and key not in seen and wp.analyzer in analyzers:
                wp.state, wp.closed = "closed", now
        created: list[str] = []
        for wp in self.weak_points.values():
            if wp.state != "open" or now - wp.opened < self.config.group_wait_s or _session_gone(wp, inp):
                continue
            if wp.task_id is None:
                # A task still open for the same subject and strategy (restored at a start, or made for an earlier
                # weak point of the same condition) is this weak point's: no duplicate.
                wp.task_id = next((t.id for t in self.tasks.values() if t.state in OPEN_TASK_STATES
                                   and t.subject == wp.subject and t.strategy == wp.strategy), None)
            last = self.tasks.get(wp.task_id) if wp.task_id else None
            if wp.task_id and (last is None or last.state != "expired"):
                continue  # one task per weak point: it is still open, or it ended and the condition has not cleared
            cmds, rec = commands_for(wp.strategy, wp, inp)
            task = Task(_new_id("t"), wp.strategy, wp.node, wp.subject, wp.id, now, now, now + self.config.task_expiry_s,
                        "suggested", cmds, rec, priority=task_priority(wp.strategy, wp.severity))
            self.tasks[task.id] = task
            wp.task_id = task.id
            created.append(task.id)
        dispatch = self._schedule(now)
        recovered = self._recovered(inp, analyzers)
        open_wps = [wp for wp in self.weak_points.values() if wp.state == "open"]
        summary = (f"{kind}: {len(issues)} issue(s), {len(open_wps)} open weak point(s), {len(created)} new task(s), "
                   f"{len(dispatch)} to dispatch" + (f", {len(issues) - len(kept)} suppressed" if len(kept) < len(issues) else ""))
        return HealingCycle(
            id=_new_id("c"),
            at=now,
            kind=kind,
            analysis={a: sum(1 for i in issues if i.analyzer == a) for a in analyzers},
            suppressed=len(issues) - len(kept),
            weak_points=[asdict(wp) for wp in open_wps],
            tasks_created=created,
            dispatch=dispatch,
            summary=summary,
            recovered=recovered,
            critical=critical,
        )

    def _recovered(self, inp: HealingInput, analyzers: tuple[str, ...]) -> list[str]:
        """Backed-off repair_endpoint tasks whose provider recovered, or which expired waiting for it:
        their sessions are resumed either way, so none is left paused and forgotten."""
        if "provider_health" not in analyzers:
            return []
        due = []
        for task in self.tasks.values():
            if task.strategy != "repair_endpoint" or not task.on_recovery:
                continue
            if task.state == "expired" or (task.state == "dispatched" and provider_recovered(inp, task.subject)):
                due.append(task.id)
        return due

    def _schedule(self, now: float) -> list[str]:
        """suggested -> dispatched (auto strategies, the highest priority first, within the per-node limit)
        or pending-approval."""
        out = []
        for task in by_priority(list(self.tasks.values())):
            if task.state in OPEN_TASK_STATES and now >= task.expires:
                task.state, task.updated, task.result = "expired", now, task.result or "expired before it finished"
                continue
            if task.state != "suggested":
                continue
            if task.strategy not in self.config.auto_dispatch:
                task.state, task.updated = "pending-approval", now
                continue
            if self.running_on(task.node) >= self.config.max_tasks_per_node:
                continue  # stays suggested until a slot frees up
            task.state, task.updated = "dispatched", now
            out.append(task.id)
        return out

    def running_on(self, node: str | None) -> int:
        return sum(1 for t in self.tasks.values() if t.state == "dispatched" and t.node == node and node is not None)

    # --- task lifecycle (the brain reports outcomes) ----------------------------------

    def restore(self, saved: list[dict[str, Any]]) -> None:
        """Tasks from the store at start: the open ones, and those that still have sessions to resume."""
        for body in saved:
            if body.get("state") in OPEN_TASK_STATES or body.get("on_recovery"):
                try:
                    task = Task(**body)
                except TypeError:
                    continue  # a row written by an incompatible version: not worth failing the start
                self.tasks[task.id] = task

    def task(self, task_id: str) -> Task:
        try:
            return self.tasks[task_id]
        except KeyError:
            raise HealingError(f"no task with id {task_id!r}") from None

    def approve(self, task_id: str, now: float) -> Task:
        task = self.task(task_id)
        check_awaiting_approval(task_id, task.state)
        task.state, task.updated = "dispatched", now
        return task

    def reject(self, task_id: str, now: float) -> Task:
        task = self.task(task_id)
        check_awaiting_approval(task_id, task.state)
        task.state, task.updated, task.result = "failed", now, "rejected by the operator"
        return task

    def finish(self, task_id: str, ok: bool, result: str, now: float) -> Task:
        task = self.task(task_id)
        task.state, task.updated, task.result = ("done" if ok else "failed"), now, result
        return task

    def backed_off(self, task_id: str, paused: list[dict[str, Any]], failed: list[str], now: float) -> Task:
        """repair_endpoint after its pause commands: it waits (dispatched) for the provider to recover, then
        resumes what was paused. Nothing paused: done at once, or failed when every pause failed."""
        task = self.task(task_id)
        task.on_recovery = [{**cmd, "action": "session.resume", "args": {}} for cmd in paused]
        task.updated = now
        problems = f"; not paused: {', '.join(failed)}" if failed else ""
        if paused:
            task.result = f"paused {len(paused)} session(s) on {task.subject}, waiting for it to recover{problems}"
        elif failed:
            task.state, task.result = "failed", f"no session paused{problems}"
        else:
            task.state, task.result = "done", f"no running session on {task.subject} to pause"
        return task

    def resumed(self, task_id: str, failed: list[str], now: float) -> Task:
        """The on_recovery commands ran: a waiting task is done; an expired one keeps its state."""
        task = self.task(task_id)
        count = len(task.on_recovery)
        task.on_recovery = []
        problems = f" ({len(failed)} could not be resumed: {', '.join(failed)})" if failed else ""
        if task.state == "expired":
            task.result = f"{task.subject} still failing at expiry; resumed {count - len(failed)} of {count} session(s) anyway{problems}"
        else:
            task.state, task.result = "done", f"{task.subject} recovered; resumed {count - len(failed)} of {count} session(s){problems}"
        task.updated = now
        return task

    def node_back(self, node: str, now: float) -> list[Task]:
        """revive_agent tasks are done when their node is back online."""
        done = []
        for task in self.tasks.values():
            if task.strategy == "revive_agent" and task.node == node and task.state == "dispatched":
                done.append(self.finish(task.id, True, f"{node} is back online", now))
        return done
