"""The session ledger's rules: how an event changes a session, and how a call is priced. Pure.

The store applies them at ingest, in the transaction that stores the frame, and keeps the result in
its `sessions` and `calls` tables; the fleet, the brain, the CLI, the reports and the screens read
those. A fleet without a store (the UI's sample fleet, unit tests) applies the same functions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from fnmatch import fnmatchcase
from functools import lru_cache
from typing import Protocol

from heady_agent.protocol import LlmCallData, SessionEndedData, SessionInfo, SessionStartedData, SessionStateData, TestRunData
from heady_tui.config import PriorityRule

TERMINAL_STATES = ("completed", "error")
GONE_REASON = "no longer reported by the agent"
# A session on a node that sent nothing for its timeout: not ended, but not known to be running.
UNKNOWN_STATE = "unknown"
NODE_OFFLINE_REASON = "node offline"
# A session that waits for a person (reason permission, input or question); since = state_since.
WAITING_STATE = "waiting"
COMPACTED_STATE = "compacted"


# A session's priority class: from the first matching `[[priority.rules]]` entry, unless an operator set it.
DEFAULT_PRIORITY = "normal"
PRIORITY_BY_RULE = "rule"
PRIORITY_BY_OPERATOR = "operator"


class PriorityRules:
    """`[[priority.rules]]` and the labels each node announced: the one place a class is decided."""

    def __init__(self, rules: Sequence[PriorityRule] = ()) -> None:
        self.rules = tuple(rules)
        self.labels: dict[str, dict[str, str]] = {}

    def set_labels(self, node: str, labels: Mapping[str, str]) -> None:
        self.labels[node] = dict(labels)

    def class_of(self, node: str, *, source: str, project: str | None, managed: str | None) -> str:
        labels = self.labels.get(node, {})
        for rule in self.rules:
            if rule.source is not None and not fnmatchcase(source, rule.source):
                continue
            if rule.project is not None and not fnmatchcase(project or "", rule.project):
                continue
            if rule.managed is not None and not fnmatchcase(managed or "", rule.managed):
                continue
            if rule.label is not None:
                key, _, value = rule.label.partition("=")
                if key not in labels or not fnmatchcase(labels[key], value):
                    continue
            return rule.priority_class
        return DEFAULT_PRIORITY

    def classify(self, rec: "SessionRecord") -> None:
        """A ledger row's class from the rules, unless an operator chose it (that choice stays)."""
        if rec.priority_by != PRIORITY_BY_OPERATOR:
            rec.priority = self.class_of(rec.node, source=rec.source, project=rec.project, managed=rec.managed)


class CallPricer(Protocol):
    """What pricing a call needs: the table's version and a price (engine.cost.PricingTable)."""

    @property
    def version(self) -> str: ...

    def cost(self, call: LlmCallData) -> tuple[float, bool]: ...


class _Unpriced:
    """No pricing table: every call costs 0 and is flagged (`heady costs reprice` prices them later)."""

    version = "unpriced"

    def cost(self, call: LlmCallData) -> tuple[float, bool]:
        return 0.0, False


UNPRICED = _Unpriced()


def day_of(ts: float) -> str:
    """The UTC day of a moment, as costs are grouped."""
    return _day_name(int(ts // 86400))  # UTC days are 86,400 s long in epoch time (no leap seconds)


@lru_cache(maxsize=64)
def _day_name(day: int) -> str:
    # Formatting a date for every call stored cost more than pricing it.
    return datetime.fromtimestamp(day * 86400, tz=timezone.utc).strftime("%Y-%m-%d")


@dataclass(frozen=True, slots=True)
class PricedCall:
    """One llm.call as stored: its token split and its price, fixed when it was stored."""

    node: str
    journal: str
    seq: int
    session: str | None
    project: str | None  # the session's project when the call was stored
    ts: float
    provider: str
    model: str
    ok: bool
    error: str | None
    latency_ms: float | None
    input_tokens: int  # uncached input only
    output_tokens: int
    cache_write_5m_tokens: int
    cache_write_1h_tokens: int
    cache_read_tokens: int
    reasoning_tokens: int  # part of output_tokens where the provider says so; not priced apart
    cost_usd: float  # from the pricing table; 0 when the model is not in it
    priced: bool  # False: the model is not in the pricing table
    reported_cost_usd: float | None  # what the agent said it cost, when it says
    pricing_version: str

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens + self.cache_write_5m_tokens + self.cache_write_1h_tokens + self.cache_read_tokens


@dataclass(frozen=True, slots=True)
class TestRun:
    """One test.run as stored: a test runner a session executed, and whether the run failed."""

    __test__ = False  # not a pytest test class where a test module imports it

    node: str
    journal: str
    seq: int
    session: str
    ts: float
    runner: str
    command: str
    exit_code: int
    passed: int | None
    failed: int | None
    ok: bool  # the run passed: decided once, here, from its exit status


def stored_test_run(data: TestRunData, *, node: str, journal: str, seq: int, session: str, ts: float) -> TestRun:
    """A test run as the store keeps it. A run fails when the runner exits non-zero (pytest, go test,
    cargo, jest, vitest and the package managers all do when a test fails or the run breaks)."""
    return TestRun(node, journal, seq, session, ts, data.runner, data.command, data.exit_code, data.passed, data.failed,
                   data.exit_code == 0)


def cache_write_split(call: LlmCallData) -> tuple[int, int]:
    """(5-minute, 1-hour) cache-write tokens; without a split from the source, all at 5 minutes."""
    total = call.cache_creation_tokens
    if call.cache_creation_5m_tokens is None and call.cache_creation_1h_tokens is None:
        return total, 0
    w1 = call.cache_creation_1h_tokens or 0
    w5 = call.cache_creation_5m_tokens if call.cache_creation_5m_tokens is not None else max(0, total - w1)
    return w5, w1


def price_call(
    pricing: CallPricer, call: LlmCallData, *, node: str, journal: str, seq: int, session: str | None, project: str | None, ts: float
) -> PricedCall:
    """The one place a call gets its cost."""
    cost, priced = pricing.cost(call)
    w5, w1 = cache_write_split(call)
    return PricedCall(
        node=node, journal=journal, seq=seq, session=session, project=project, ts=ts, provider=call.provider,
        model=call.model, ok=call.ok, error=call.error, latency_ms=call.latency_ms, input_tokens=call.input_tokens,
        output_tokens=call.output_tokens, cache_write_5m_tokens=w5, cache_write_1h_tokens=w1,
        cache_read_tokens=call.cache_read_tokens, reasoning_tokens=call.reasoning_tokens, cost_usd=cost, priced=priced,
        reported_cost_usd=call.cost_usd, pricing_version=pricing.version,
    )  # fmt: skip


@dataclass
class SessionRecord:
    """One session as the ledger holds it (a row of the store's `sessions` table)."""

    node: str
    id: str
    source: str = ""
    project: str | None = None
    cwd: str | None = None
    pid: int | None = None
    model: str | None = None
    title: str | None = None
    state: str = "running"
    state_reason: str | None = None
    state_since: float = 0.0
    started: float | None = None
    ended: float | None = None
    exit_code: int | None = None
    managed: str | None = None
    nice: int | None = None
    account: str | None = None  # whose limits it draws on (SessionStartedData.account)
    plan: str | None = None
    calls: int = 0
    failed_calls: int = 0
    unpriced_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_write_5m_tokens: int = 0
    cache_write_1h_tokens: int = 0
    cache_read_tokens: int = 0
    reasoning_tokens: int = 0
    cost_usd: float = 0.0
    reported_cost_usd: float | None = None  # sum of what the agent reported, when it reported any
    first_activity: float | None = None
    last_event_at: float = 0.0  # last activity
    last_call_at: float | None = None
    last_latency_ms: float | None = None
    priority: str = DEFAULT_PRIORITY  # high | normal | background (PriorityRules.classify)
    priority_by: str = PRIORITY_BY_RULE  # rule | operator
    compactions: int = 0  # times the agent reported the session's context compacted

    @property
    def key(self) -> tuple[str, str]:
        return (self.node, self.id)

    @property
    def active(self) -> bool:
        return self.ended is None and self.state not in TERMINAL_STATES

    @property
    def live(self) -> bool:
        """Active and known to be so: what the console counts as live (not `unknown`)."""
        return self.active and self.state != UNKNOWN_STATE

    @property
    def cost_unknown(self) -> bool:
        """At least one call's model is not in the pricing table (priced at 0)."""
        return self.unpriced_calls > 0

    @property
    def cache_creation_tokens(self) -> int:
        return self.cache_write_5m_tokens + self.cache_write_1h_tokens

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens + self.cache_creation_tokens + self.cache_read_tokens


def _touch(rec: SessionRecord, ts: float) -> None:
    rec.last_event_at = max(rec.last_event_at, ts)
    rec.first_activity = ts if rec.first_activity is None else min(rec.first_activity, ts)


def _take_identity(rec: SessionRecord, info: SessionStartedData | SessionInfo) -> None:
    """What a session says about itself, from its start or the agent's list; what is missing keeps
    the value already known."""
    rec.source = info.source
    rec.project = info.project or rec.project
    rec.cwd = info.cwd or rec.cwd
    rec.pid = info.pid if info.pid is not None else rec.pid
    rec.model = info.model or rec.model
    rec.title = info.title or rec.title
    rec.managed = info.managed or rec.managed
    rec.account = info.account or rec.account


def apply_started(rec: SessionRecord, ts: float, data: SessionStartedData) -> None:
    _touch(rec, ts)
    _take_identity(rec, data)
    rec.plan = data.plan or rec.plan
    rec.started = ts if rec.started is None else min(rec.started, ts)


def apply_state(rec: SessionRecord, ts: float, data: SessionStateData) -> None:
    _touch(rec, ts)
    # Each stored `compacted` event is one compaction, also one that arrives after a newer state.
    if data.state == COMPACTED_STATE:
        rec.compactions += 1
    # Replays may deliver older states after a fresher sessions snapshot: time decides.
    if ts >= rec.state_since:
        rec.state = data.state
        rec.state_reason = data.reason
        rec.state_since = ts


def apply_ended(rec: SessionRecord, ts: float, data: SessionEndedData) -> None:
    _touch(rec, ts)
    rec.ended = ts
    rec.exit_code = data.exit_code
    if ts >= rec.state_since:
        rec.state = "error" if (data.exit_code or 0) != 0 else "completed"
        rec.state_reason = data.reason
        rec.state_since = ts


def apply_call(rec: SessionRecord, call: PricedCall) -> None:
    _touch(rec, call.ts)
    rec.calls += 1
    rec.failed_calls += 0 if call.ok else 1
    rec.unpriced_calls += 0 if call.priced else 1
    rec.input_tokens += call.input_tokens
    rec.output_tokens += call.output_tokens
    rec.cache_write_5m_tokens += call.cache_write_5m_tokens
    rec.cache_write_1h_tokens += call.cache_write_1h_tokens
    rec.cache_read_tokens += call.cache_read_tokens
    rec.reasoning_tokens += call.reasoning_tokens
    rec.cost_usd += call.cost_usd
    if call.reported_cost_usd is not None:
        rec.reported_cost_usd = (rec.reported_cost_usd or 0.0) + call.reported_cost_usd
    rec.model = rec.model or call.model
    if rec.last_call_at is None or call.ts >= rec.last_call_at:
        rec.last_call_at = call.ts
        rec.last_latency_ms = call.latency_ms


def apply_event(rec: SessionRecord, data: object, *, pricing: CallPricer, node: str, journal: str, seq: int,
                ts: float) -> PricedCall | None:
    """One validated session event into its session's record; an llm.call is priced here (the one
    dispatch the store's ledger and a storeless fleet share). Returns the priced call, if it was one."""
    if isinstance(data, SessionStartedData):
        apply_started(rec, ts, data)
    elif isinstance(data, SessionStateData):
        apply_state(rec, ts, data)
    elif isinstance(data, SessionEndedData):
        apply_ended(rec, ts, data)
    elif isinstance(data, TestRunData):
        _touch(rec, ts)  # a test run is the session's activity (the runs themselves: stored_test_run)
    elif isinstance(data, LlmCallData):
        call = price_call(pricing, data, node=node, journal=journal, seq=seq, session=rec.id, project=rec.project, ts=ts)
        apply_call(rec, call)
        return call
    return None


def apply_snapshot(node_sessions: dict[str, SessionRecord], node: str, infos: Iterable[SessionInfo], now: float) -> list[SessionRecord]:
    """The agent's list of its current sessions: upsert them; the node's other live ones are over.

    `node_sessions` (id -> record) gains the new records; returns every record changed.
    """
    changed: list[SessionRecord] = []
    current = set()
    for info in infos:
        current.add(info.id)
        rec = node_sessions.get(info.id)
        if rec is None:
            rec = node_sessions[info.id] = SessionRecord(node=node, id=info.id)
        _take_identity(rec, info)
        rec.nice = info.nice
        if info.started is not None:
            rec.started = info.started if rec.started is None else min(rec.started, info.started)
        if rec.state != info.state:
            rec.state = info.state
            rec.state_reason = None  # the reason belonged to the state it replaces
            rec.state_since = now
        if info.state not in TERMINAL_STATES:
            rec.ended = None
        changed.append(rec)
    for sid, rec in node_sessions.items():
        if sid not in current and rec.active:
            rec.state = "completed"
            rec.state_reason = GONE_REASON
            rec.state_since = now
            rec.ended = now
            changed.append(rec)
    return changed


def mark_unknown(records: Iterable[SessionRecord], now: float) -> list[SessionRecord]:
    """A silent node's live sessions: their state can no longer be known (never `running`)."""
    changed = []
    for rec in records:
        if rec.active and rec.state != UNKNOWN_STATE:
            rec.state = UNKNOWN_STATE
            rec.state_reason = NODE_OFFLINE_REASON
            rec.state_since = now
            changed.append(rec)
    return changed
