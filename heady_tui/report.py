"""Session reports: gathered from the store and the engines' records, rendered as JSON, Markdown, or
one self-contained HTML file (inline CSS and SVG; no scripts, fonts, images or network).

The JSON is DESIGN.md's report contract (`ReportData`); Markdown and HTML show the same content for
people. A report of a simulated fleet says so on its first line in every format.
"""

from __future__ import annotations

import bisect
import html
import json
import math
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from heady_agent.protocol import clean_text

from .accounts import COLUMNS as ACCOUNT_COLUMNS
from .accounts import AccountWindow, window_cells, window_from_dict
from .config import Config, Paths
from .ledger import PRIORITY_BY_OPERATOR, SessionRecord, day_of
from .engine.detector import CallSample, NodeSample, compute_metrics
from .engine.kpis import rebalance_kpis
from .events import iso_utc
from .fleet import WAITING_STATE
from .providers import fetch_provider_costs, reconcile_by_day
from .records import Records
from .store import Store

__all__ = ["ReportData", "Format", "gather_report", "render", "export_report", "FORMATS"]

Format = Literal["html", "md", "json"]
FORMATS: tuple[Format, ...] = ("html", "md", "json")
SIMULATED_NOTICE = "SIMULATED FLEET: this report describes a demo, not real machines."
METRICS = ("node_load_variance", "task_queue_depth", "error_rate", "response_time_p95")
CHART_POINTS = 120  # samples per chart line over the whole range


# --- the contract -----------------------------------------------------------------------------------


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TimeRange(_Model):
    since: str
    until: str


class NodeRow(_Model):
    id: str
    hostname: str
    journal: str
    last_seq: int
    events: int
    gaps: int


class SessionRow(_Model):
    """One session as the session ledger holds it (its whole life, also outside the range)."""

    id: str
    node: str
    source: str | None
    project: str | None
    title: str | None = None
    model: str | None
    state: str
    reason: str | None = None  # why it is in that state (an ended session: killed, exit, ...)
    priority: str = "normal"  # high | normal | background, as the ledger stored it
    priority_by: str = "rule"  # rule | operator
    calls: int
    failed_calls: int = 0
    input_tokens: int  # uncached input only
    output_tokens: int
    cache_write_5m_tokens: int = 0
    cache_write_1h_tokens: int = 0
    cache_read_tokens: int = 0
    reasoning_tokens: int = 0
    cost_usd: float
    reported_cost_usd: float | None = None  # what the agent said it cost, when it says


class WaitRow(_Model):
    """A session's stay in `waiting`: a person was needed from `began` until `ended` (None: still at the range's end)."""

    node: str
    session: str
    project: str | None
    reason: str | None
    began: str
    ended: str | None
    duration_s: float


class AccountRow(_Model):
    """One account's window as the console's brain last derived it (heady_tui.accounts.AccountWindow),
    at `updated`: the windows are the accounts' state now, not a sum over the report's range."""

    account: str
    window: str  # 5h | week
    basis: str  # official (the client's figure) | estimate (the fleet's spend against a configured budget)
    used_percent: float | None
    used_usd: float
    limit_usd: float | None
    burn_percent_per_h: float | None
    full_at: str | None  # when the limit is reached at the current rate
    resets_at: str | None
    nodes: list[str]
    sessions: int
    plan: str | None
    updated: str

    def as_window(self) -> AccountWindow:
        return window_from_dict({**self.model_dump(), "full_at": _epoch_or_none(self.full_at),
                                 "resets_at": _epoch_or_none(self.resets_at), "updated": _epoch(self.updated)})


class ReconciledDay(_Model):
    day: str
    from_tokens_usd: float
    from_provider_usd: float | None  # None: no provider reported this day


class Costs(_Model):
    total_usd: float
    by_model: dict[str, float]
    by_node: dict[str, float]
    by_project: dict[str, float]
    by_day: dict[str, float]
    unknown_models: list[str] = Field(default_factory=list)  # priced at 0, never guessed
    # Only when [cost.providers] keys are configured and the report asked them.
    reconciled: list[ReconciledDay] = Field(default_factory=list)
    provider_errors: dict[str, str] = Field(default_factory=dict)


class EquilibriumRow(_Model):
    at: str
    metric: str  # a metric's name, or "overall" for a change of the fleet level
    level: str  # balanced | degraded | critical | unknown
    value: float | None  # the metric's value at the change; None for "overall" rows and metrics without data
    previous: str | None = None
    metrics: dict[str, float | None] = Field(default_factory=dict)  # "overall" rows: every metric's value at the change


class ConsentRow(_Model):
    at: str
    decision: str  # granted | denied
    scope: str | None
    grantor: str | None
    reason: str


class RebalanceRow(_Model):
    started: str
    stopped: str | None
    reason_stopped: str | None
    priority: str
    actions: int
    steps: list[dict[str, Any]] = Field(default_factory=list)
    restored: bool | None = None  # None while running
    time_to_restore_s: float | None = None


class KpiRow(_Model):
    """One rebalancing KPI over the report's range (heady_tui.engine.kpis); value None: nothing to measure."""

    name: str
    value: float | None
    target: float
    direction: str  # min: at least the target; max: at most
    unit: str  # ratio | s | percent | count
    met: bool | None


class HealingRow(_Model):
    cycle: str
    at: str
    kind: str
    weak_points: int
    tasks: int
    summary: str = ""


class PolicyRow(_Model):
    at: str
    policy: str
    session: str | None
    action: str
    outcome: str
    node: str | None = None


class AuditSummary(_Model):
    entries: int
    head: str
    verified: bool
    message: str
    # The anchor file's head and the time of its entry: with an exported head, what a reader checks
    # the report against (`heady audit verify --against`).
    anchor_count: int | None = None
    anchor_hash: str | None = None
    anchored_at: str | None = None


class Series(_Model):
    """Extension: the points behind the charts, [epoch seconds, value], oldest first."""

    equilibrium: dict[str, list[tuple[float, float]]] = Field(default_factory=dict)
    node_load: dict[str, list[tuple[float, float]]] = Field(default_factory=dict)
    cost: list[tuple[float, float]] = Field(default_factory=list)  # cumulative USD


class ReportData(_Model):
    simulated: bool
    generated_at: str
    range: TimeRange
    nodes: list[NodeRow]
    sessions: list[SessionRow]
    waits: list[WaitRow] = Field(default_factory=list)
    accounts: list[AccountRow] = Field(default_factory=list)
    costs: Costs
    equilibrium: list[EquilibriumRow]
    consents: list[ConsentRow]
    rebalances: list[RebalanceRow]
    healing: list[HealingRow]
    policies: list[PolicyRow]
    audit: AuditSummary
    series: Series = Field(default_factory=Series)
    kpis: list[KpiRow] = Field(default_factory=list)


class ReportError(Exception):
    """A report that cannot be made or written, as one line."""


# --- gathering ------------------------------------------------------------------------------------


def _round(value: float) -> float:
    return round(value, 6)


def _sorted_money(totals: dict[str, float]) -> dict[str, float]:
    return {k: _round(v) for k, v in sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))}


async def _nodes(store: Store) -> tuple[list[NodeRow], bool]:
    known = {row["id"]: row for row in await store.nodes()}
    rows = [
        NodeRow(id=c.node, hostname=known.get(c.node, {}).get("hostname", ""), journal=c.journal, last_seq=c.last_seq, events=c.events, gaps=c.gaps)
        for c in await store.node_counts()
    ]
    return rows, any(row["simulated"] for row in known.values())


def session_row(rec: SessionRecord) -> SessionRow:
    return SessionRow(
        id=rec.id, node=rec.node, source=rec.source or None, project=rec.project, title=rec.title, model=rec.model,
        state=rec.state, reason=rec.state_reason, priority=rec.priority, priority_by=rec.priority_by,
        calls=rec.calls, failed_calls=rec.failed_calls,
        input_tokens=rec.input_tokens, output_tokens=rec.output_tokens, cache_write_5m_tokens=rec.cache_write_5m_tokens,
        cache_write_1h_tokens=rec.cache_write_1h_tokens, cache_read_tokens=rec.cache_read_tokens,
        reasoning_tokens=rec.reasoning_tokens, cost_usd=_round(rec.cost_usd),
        reported_cost_usd=_round(rec.reported_cost_usd) if rec.reported_cost_usd is not None else None,
    )  # fmt: skip


async def _sessions_and_costs(store: Store, since: float, until: float) -> tuple[list[SessionRow], Costs, list[tuple[float, float]], list[CallSample]]:
    """Sessions active in the range from the session ledger; costs from the calls stored in the
    range, each at the price it was stored with."""
    rows = [session_row(rec) for rec in await store.sessions(active_since=since, until=until)]
    rows.sort(key=lambda r: (-r.cost_usd, r.node, r.id))
    by_model: dict[str, float] = defaultdict(float)
    by_node: dict[str, float] = defaultdict(float)
    by_project: dict[str, float] = defaultdict(float)
    by_day: dict[str, float] = defaultdict(float)
    unknown: set[str] = set()
    cumulative: list[tuple[float, float]] = []
    calls: list[CallSample] = []
    total = 0.0
    for call in await store.priced_calls(since, until):
        if not call.priced:
            unknown.add(call.model)
        by_model[call.model] += call.cost_usd
        by_node[call.node] += call.cost_usd
        by_project[call.project or "(none)"] += call.cost_usd
        by_day[day_of(call.ts)] += call.cost_usd
        total += call.cost_usd
        cumulative.append((call.ts, total))
        calls.append(CallSample(call.ts, call.latency_ms, call.ok))
    costs = Costs(
        total_usd=_round(total),
        by_model=_sorted_money(by_model),
        by_node=_sorted_money(by_node),
        by_project=_sorted_money(by_project),
        by_day={k: _round(v) for k, v in sorted(by_day.items())},
        unknown_models=sorted(unknown),
    )
    return rows, costs, cumulative, calls


WAIT_REASON_CHARS = 80  # a reason as the agent wrote it is cut here


async def _waits(store: Store, sessions: list[SessionRow], since: float, until: float) -> list[WaitRow]:
    """The waits that began in the range, oldest first: each lasts until the session's next state (or
    its end); one still open at `until` is counted up to it."""
    projects = {(s.node, s.id): s.project for s in sessions}
    open_waits: dict[tuple[str, str], tuple[float, str | None]] = {}
    rows: list[WaitRow] = []

    def row(key: tuple[str, str], began: float, reason: str | None, ended: float | None) -> WaitRow:
        return WaitRow(node=key[0], session=key[1], project=projects.get(key), reason=reason, began=iso_utc(began),
                       ended=iso_utc(ended) if ended is not None else None, duration_s=round((ended or until) - began, 1))

    for ev in await store.events(since, until, kinds=("session.state", "session.ended")):
        if not ev.session:
            continue
        key = (ev.node, ev.session)
        began = open_waits.pop(key, None)
        if began is not None:
            rows.append(row(key, began[0], began[1], ev.ts))
        if ev.kind == "session.state" and ev.data.get("state") == WAITING_STATE:
            reason = ev.data.get("reason")
            open_waits[key] = (ev.ts, clean_text(reason, WAIT_REASON_CHARS) if isinstance(reason, str) else None)
    rows += [row(key, began, reason, None) for key, (began, reason) in open_waits.items()]
    return sorted(rows, key=lambda r: (r.began, r.node, r.session))


def _downsample(points: Sequence[tuple[float, float]], limit: int = CHART_POINTS) -> list[tuple[float, float]]:
    if len(points) <= limit:
        return list(points)
    step = len(points) / limit
    picked = [points[int(i * step)] for i in range(limit - 1)]
    return picked + [points[-1]]


async def _series(store: Store, config: Config, since: float, until: float, calls: list[CallSample], cumulative: list[tuple[float, float]]) -> Series:
    rollups = await store.rollups(since, until)
    cpu_counts = {row["id"]: max(1, int(row["info"].get("cpu_count", 1))) for row in await store.nodes()}
    per_node: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rollups:
        per_node[row["node"]].append(row)
    node_load = {
        node: _downsample([(float(r["bucket"]), r["load_avg"] / cpu_counts.get(node, 1)) for r in rows]) for node, rows in sorted(per_node.items())
    }
    equilibrium: dict[str, list[tuple[float, float]]] = {name: [] for name in METRICS}
    if rollups or calls:
        start = min([float(r["bucket"]) for r in rollups] + [c.ts for c in calls])
        end = min(until, max([float(r["bucket"]) + store.metric_rollup_s for r in rollups] + [c.ts for c in calls]))
        step = max(float(store.metric_rollup_s), (end - start) / CHART_POINTS)
        buckets = {node: [float(r["bucket"]) for r in rows] for node, rows in per_node.items()}
        call_ts = [c.ts for c in calls]
        window = config.detector.window_s
        t = start + step
        while t <= end + step:
            samples = []
            for node, node_rows in per_node.items():
                i = bisect.bisect_right(buckets[node], t) - 1
                fresh = i >= 0 and t - buckets[node][i] <= 2 * step
                bucket = node_rows[i] if i >= 0 else None
                samples.append(NodeSample(node, fresh, bucket["load_avg"] if bucket and fresh else None, cpu_counts.get(node, 1), int(bucket["queue_avg"]) if bucket and fresh else 0, buckets[node][i] if i >= 0 else None))
            recent = calls[bisect.bisect_right(call_ts, t - window) : bisect.bisect_right(call_ts, t)]
            values = compute_metrics(samples, recent, now=t, window_s=window, min_calls=config.detector.min_calls)
            for name, value in values.items():
                if value is not None:
                    equilibrium[name].append((t, value))
            t += step
    return Series(equilibrium={k: _downsample(v) for k, v in equilibrium.items()}, node_load=node_load, cost=_downsample(cumulative))


async def _audit(records: Records) -> AuditSummary:
    result = await records.verify_audit()
    anchor = result.anchor if result.anchor is not None and not result.anchor.unreadable else None
    return AuditSummary(
        entries=result.entries, head=result.head.hash, verified=result.ok, message=result.message,
        anchor_count=anchor.head.count if anchor else None, anchor_hash=anchor.head.hash if anchor else None,
        anchored_at=iso_utc(anchor.at) if anchor and anchor.at is not None else None,
    )  # fmt: skip


async def gather_report(
    store: Store, config: Config, paths: Paths, *, since: float, until: float, now: float, simulated: bool = False,
    ask_providers: bool = False,
) -> ReportData:  # fmt: skip
    """Everything the report shows for [since, until), read from the store and the engines' records;
    with `ask_providers`, also what the configured providers billed (network, up to their timeouts)."""
    nodes, stored_simulated = await _nodes(store)
    sessions, costs, cumulative, calls = await _sessions_and_costs(store, since, until)
    waits = await _waits(store, sessions, since, until)
    providers = config.cost.providers
    if ask_providers and (providers.anthropic_admin_key_env or providers.openai_admin_key_env):
        billed = await fetch_provider_costs(providers, since, until, now=lambda: now)
        rows = reconcile_by_day(costs.by_day, billed.rows) if billed.rows else []
        costs.reconciled = [ReconciledDay(day=r.key, from_tokens_usd=r.from_tokens_usd, from_provider_usd=r.from_provider_usd) for r in rows]
        costs.provider_errors = billed.errors
    records = await Records.open(store, paths.audit_anchor)
    sections = await _engine_sections(records, since, until)
    return ReportData(
        simulated=simulated or stored_simulated,
        generated_at=iso_utc(now),
        range=TimeRange(since=iso_utc(since), until=iso_utc(until)),
        nodes=nodes,
        sessions=sessions,
        waits=waits,
        accounts=[_account_row(w) for w in await records.account_windows()],
        costs=costs,
        audit=await _audit(records),
        series=await _series(store, config, since, until, calls, cumulative),
        kpis=await _kpis(records, since, until),
        **sections,
    )


def _account_row(w: AccountWindow) -> AccountRow:
    iso = lambda ts: iso_utc(ts) if ts is not None else None  # noqa: E731
    return AccountRow(**{**w.to_dict(), "full_at": iso(w.full_at), "resets_at": iso(w.resets_at), "updated": iso_utc(w.updated)})


def _count(value: Any) -> int:
    """Healing cycle bodies carry lists (weak points, task ids); older ones may carry counts."""
    return len(value) if isinstance(value, (list, tuple, dict)) else int(value or 0)


async def _equilibrium(records: Records, since: float, until: float) -> list[EquilibriumRow]:
    """Per-metric changes and fleet ("overall") changes, oldest first; at one moment the metrics' rows
    come before the fleet's row they caused."""
    rows = [(c["at"], 0, EquilibriumRow(at=iso_utc(c["at"]), metric=c["metric"], level=c["level"], value=c["value"], previous=c["previous"]))
            for c in await records.metric_level_changes(since, until)]
    rows += [(c["at"], 1, EquilibriumRow(at=iso_utc(c["at"]), metric="overall", level=c["level"], value=None, previous=c["previous"],
                                         metrics=c["metrics"]))
             for c in await records.level_changes(since, until)]  # fmt: skip
    return [row for _, _, row in sorted(rows, key=lambda r: (r[0], r[1]))]


async def _kpis(records: Records, since: float, until: float) -> list[KpiRow]:
    kpis = rebalance_kpis(await records.rebalances(since, until), await records.requests(since, until))
    return [KpiRow(**k.to_dict()) for k in kpis]


async def _engine_sections(records: Records, since: float, until: float) -> dict[str, Any]:
    equilibrium = await _equilibrium(records, since, until)
    consents = [
        ConsentRow(at=iso_utc(c["at"]), decision=c["decision"], scope=c["scope"], grantor=c["grantor"], reason=c["reason"])
        for c in await records.consents(since, until)
    ]
    rebalances = [
        RebalanceRow(
            started=iso_utc(r["started"]),
            stopped=iso_utc(r["stopped"]) if r["stopped"] is not None else None,
            reason_stopped=r["reason_stopped"],
            priority=r["priority"],
            actions=len(r["actions"]),
            steps=r["actions"],
            restored=r["restored"],
            time_to_restore_s=r["time_to_restore_s"],
        )
        for r in await records.rebalances(since, until)
    ]
    healing = [
        HealingRow(
            cycle=str(body.get("id", "?")),
            at=iso_utc(float(body.get("at", 0.0))),
            kind=str(body.get("kind", "?")),
            weak_points=_count(body.get("weak_points")),
            tasks=_count(body.get("tasks_created", body.get("tasks"))),
            summary=str(body.get("summary", "")),
        )
        for body in await records.healing_cycles(since, until)
    ]
    policies = [
        PolicyRow(at=iso_utc(p["at"]), policy=p["policy"], session=p["session"], action=p["action"], outcome=p["outcome"], node=p["node"])
        for p in await records.policy_actions(since, until)
    ]
    return {"equilibrium": equilibrium, "consents": consents, "rebalances": rebalances, "healing": healing, "policies": policies}


# --- rendering: JSON ------------------------------------------------------------------------------


def render_json(report: ReportData) -> str:
    """Pretty JSON whose first line already says whether the fleet was simulated."""
    text = json.dumps(_terminal_safe(report).model_dump(mode="json"), indent=2, ensure_ascii=False)
    head, first_key, rest = text.split("\n", 2)
    return f"{head}{first_key.strip()}\n{rest}\n"


# --- rendering: shared helpers --------------------------------------------------------------------

REPORT_TEXT_MAX = 64 * 1024  # characters of one string in a report


def _clean_strings(value: Any) -> Any:
    if isinstance(value, str):
        return clean_text(value, REPORT_TEXT_MAX)
    if isinstance(value, dict):
        return {_clean_strings(k): _clean_strings(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean_strings(v) for v in value]
    return value


def _terminal_safe(report: ReportData) -> ReportData:
    """The report with every string free of escape sequences and control characters. The link
    cleans what it stores; this also covers history stored before it did, since a report is read
    with `cat` and `less` as often as in a browser."""
    return ReportData.model_validate(_clean_strings(report.model_dump()))


def _usd(value: float | None) -> str:
    if value is None:
        return "-"
    return f"${value:,.2f}" if abs(value) >= 0.01 or value == 0 else f"${value:.4f}"


def _num(value: float | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:.3g}" if abs(value) < 10 else f"{value:,.0f}"
    return f"{int(value):,}"


def session_priority(s: SessionRow) -> str:
    """A session's class, `(operator)` when a person set it rather than the rules."""
    return s.priority + (" (operator)" if s.priority_by == PRIORITY_BY_OPERATOR else "")


def session_state(s: SessionRow) -> str:
    """A session's state as every screen writes it: `error (killed)`."""
    return f"{s.state} ({s.reason})" if s.reason else s.state


def _timeline(report: ReportData) -> list[tuple[str, str, str]]:
    """(at, kind, what) for every level change, consent, rebalance, healing cycle and policy action."""
    items: list[tuple[str, str, str]] = []
    for e in report.equilibrium:
        if e.metric == "overall":
            subject = "fleet"
            values = ", ".join(f"{name} {_num(value)}" for name, value in e.metrics.items() if value is not None)
        else:
            subject, values = e.metric, _num(e.value) if e.value is not None else ""
        items.append((e.at, "equilibrium", f"{subject} {e.level}" + (f" (was {e.previous})" if e.previous else "") + (f": {values}" if values else "")))
    for c in report.consents:
        who = f" by {c.grantor}" if c.grantor else ""
        items.append((c.at, "consent", f"{c.decision}{' ' + c.scope if c.scope and c.scope != c.decision else ''}{who}: {c.reason}"))
    for r in report.rebalances:
        items.append((r.started, "rebalance", f"started, priority {r.priority}, {r.actions} actions"))
        if r.stopped:
            items.append((r.stopped, "rebalance", f"stopped: {r.reason_stopped or '?'}"))
    for h in report.healing:
        items.append((h.at, "healing", f"{h.kind} cycle {h.cycle}: {h.weak_points} weak points, {h.tasks} tasks" + (f" ({h.summary})" if h.summary else "")))
    for p in report.policies:
        items.append((p.at, "policy", f"{p.policy} {p.action} on {p.session or '-'}: {p.outcome}"))
    return sorted(items, key=lambda item: item[0])  # stable: a fleet change stays after the metric changes behind it


def kpi_text(value: float | None, unit: str, bound: str = "") -> str:
    if value is None:
        return "-"
    shown = f"{value * 100:.0f} %" if unit == "ratio" else f"{value:.0f} %" if unit == "percent" else f"{value:.1f} s" if unit == "s" else f"{value:.0f}"
    return f"{bound} {shown}".strip()


def _tables(report: ReportData) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows) in the order both the Markdown and the HTML report show them."""
    c = report.costs
    out: list[tuple[str, list[str], list[list[str]]]] = [
        ("Nodes", ["node", "hostname", "journal", "last seq", "events", "gaps"],
         [[n.id, n.hostname, n.journal, str(n.last_seq), str(n.events), str(n.gaps)] for n in report.nodes]),
        ("Sessions", ["session", "node", "source", "project", "model", "state", "priority", "calls", "input tokens",
                      "output tokens", "cache write", "cache read", "cost"],
         [[s.id, s.node, s.source or "-", s.project or "-", s.model or "-", session_state(s), session_priority(s), f"{s.calls:,}",
           f"{s.input_tokens:,}", f"{s.output_tokens:,}", f"{s.cache_write_5m_tokens + s.cache_write_1h_tokens:,}",
           f"{s.cache_read_tokens:,}", _usd(s.cost_usd)] for s in report.sessions]),
        ("Waits for a person", ["began", "node", "session", "project", "reason", "ended", "waited"],
         [[w.began, w.node, w.session, w.project or "-", w.reason or "-", w.ended or "still waiting", f"{w.duration_s:g} s"]
          for w in report.waits]),
        ("Accounts", list(ACCOUNT_COLUMNS), [window_cells(a.as_window()) for a in report.accounts]),
        ("Cost by model", ["model", "cost"], [[k, _usd(v)] for k, v in c.by_model.items()]),
        ("Cost by node", ["node", "cost"], [[k, _usd(v)] for k, v in c.by_node.items()]),
        ("Cost by project", ["project", "cost"], [[k, _usd(v)] for k, v in c.by_project.items()]),
        ("Cost by day", ["day (UTC)", "cost"], [[k, _usd(v)] for k, v in c.by_day.items()]),
    ]
    if c.reconciled or c.provider_errors:
        out.append(("Cost from tokens and from providers", ["day (UTC)", "from tokens", "from provider"],
                    [[r.day, _usd(r.from_tokens_usd), _usd(r.from_provider_usd)] for r in c.reconciled]
                    + [[f"({provider})", "-", f"not available: {error}"] for provider, error in c.provider_errors.items()]))
    out += [
        ("Timeline", ["at", "kind", "what"], [list(item) for item in _timeline(report)]),
        ("Rebalancing KPIs", ["KPI", "value", "target", "met"],
         [[k.name, kpi_text(k.value, k.unit), kpi_text(k.target, k.unit, ">=" if k.direction == "min" else "<="),
           {True: "yes", False: "NO", None: "-"}[k.met]] for k in report.kpis]),
        ("Rebalance runs", ["started", "stopped", "reason", "priority", "actions", "restored", "time to restore"],
         [[r.started, r.stopped or "running", r.reason_stopped or "-", r.priority, str(r.actions),
           {True: "yes", False: "no", None: "-"}[r.restored], kpi_text(r.time_to_restore_s, "s")] for r in report.rebalances]),
        ("Healing cycles", ["at", "cycle", "kind", "weak points", "tasks"],
         [[h.at, h.cycle, h.kind, str(h.weak_points), str(h.tasks)] for h in report.healing]),
        ("Policy actions", ["at", "policy", "node", "session", "action", "outcome"],
         [[p.at, p.policy, p.node or "-", p.session or "-", p.action, p.outcome] for p in report.policies]),
        ("Consents", ["at", "decision", "scope", "grantor", "reason"],
         [[k.at, k.decision, k.scope or "-", k.grantor or "-", k.reason] for k in report.consents]),
    ]  # fmt: skip
    return out


def _audit_line(report: ReportData) -> str:
    a = report.audit
    state = "verified" if a.verified else "VERIFICATION FAILED"
    anchored = f"anchor {a.anchor_count}:{a.anchor_hash} at {a.anchored_at or '?'}" if a.anchor_hash else "no anchor"
    return f"{a.entries} entries, head {a.head}, {anchored}, {state} ({a.message})"


# --- rendering: Markdown --------------------------------------------------------------------------


# The ASCII punctuation that can start a link, an image, emphasis, code or a table cell, escaped with
# a backslash as CommonMark allows (an underscore inside a word emphasises nothing, so stays bare); `<` and `&` become entities so no raw HTML survives; `://` and
# `www.` are broken up so GitHub's autolinking cannot turn agent text into a link either.
_MD_SPECIAL = re.compile(r"([\\`*\[\]!|~]|(?<![0-9A-Za-z])_|_(?![0-9A-Za-z]))")
_MD_AUTOLINK = re.compile(r"(?i)(:)(//)|(www)(\.)")


def _md_text(text: str) -> str:
    """Agent or operator text as literal Markdown on one line: no HTML, links, images or cell breaks."""
    one_line = " ".join(html.escape(text, quote=False).splitlines())
    escaped = _MD_SPECIAL.sub(r"\\\1", one_line)
    return _MD_AUTOLINK.sub(lambda m: f"{m[1]}\\/\\/" if m[1] else f"{m[3]}\\.", escaped)


def render_markdown(report: ReportData) -> str:
    report = _terminal_safe(report)
    lines: list[str] = []
    if report.simulated:
        lines.append(f"> **{SIMULATED_NOTICE}**")
        lines.append("")
    lines += [
        "# heady session report",
        "",
        f"Range: {report.range.since} to {report.range.until} (UTC). Generated {report.generated_at}.",
        "",
        f"**Total cost: {_usd(report.costs.total_usd)}** across {len(report.sessions)} sessions on {len(report.nodes)} node journals.",
    ]
    if report.costs.unknown_models:
        lines.append(f"Unpriced models (counted at $0): {_md_text(', '.join(report.costs.unknown_models))}.")
    lines += ["", f"**Audit:** {_md_text(_audit_line(report))}", ""]
    for title, header, rows in _tables(report):
        lines += [f"## {title}", ""]
        if not rows:
            lines += ["_none in this range_", ""]
            continue
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "|".join("---" for _ in header) + "|")
        lines += ["| " + " | ".join(_md_text(cell) for cell in row) + " |" for row in rows]
        lines.append("")
    return "\n".join(lines)


# --- rendering: HTML with inline SVG charts -------------------------------------------------------

_PALETTE = ("#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#4b5563")

_CSS = """
:root { color-scheme: light dark; --fg: #111827; --bg: #ffffff; --muted: #6b7280; --line: #e5e7eb; --warn: #b45309; --bad: #b91c1c; --ok: #15803d; }
@media (prefers-color-scheme: dark) { :root { --fg: #e5e7eb; --bg: #111827; --muted: #9ca3af; --line: #374151; } }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); background: var(--bg); margin: 2rem auto; max-width: 1100px; padding: 0 1rem; }
h1 { font-size: 1.6rem; margin: 0 0 .3rem; } h2 { font-size: 1.15rem; margin: 2rem 0 .5rem; border-bottom: 1px solid var(--line); padding-bottom: .2rem; }
.simulated { background: #fef3c7; color: #78350f; border: 2px solid #d97706; padding: .6rem 1rem; font-weight: 700; margin-bottom: 1rem; }
.muted { color: var(--muted); } .bad { color: var(--bad); font-weight: 700; } .ok { color: var(--ok); font-weight: 700; }
.cards { display: flex; flex-wrap: wrap; gap: .8rem; margin: 1rem 0; }
.card { border: 1px solid var(--line); padding: .5rem .9rem; min-width: 9rem; } .card b { display: block; font-size: 1.3rem; }
table { border-collapse: collapse; width: 100%; font-size: 13px; } th, td { text-align: left; padding: .25rem .5rem; border-bottom: 1px solid var(--line); vertical-align: top; }
th { color: var(--muted); font-weight: 600; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
.charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(320px, 1fr)); gap: 1rem; }
figure { margin: 0; border: 1px solid var(--line); padding: .5rem; } figcaption { font-weight: 600; margin-bottom: .3rem; }
svg text { fill: var(--muted); font-size: 10px; } svg .axis { stroke: var(--line); } code { font-size: 12px; word-break: break-all; }
"""


def _fmt_axis(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def svg_line_chart(
    lines: Mapping[str, Sequence[tuple[float, float]]], *, title: str, thresholds: Sequence[tuple[str, float]] = (),
    x_range: tuple[float, float] | None = None, width: int = 480, height: int = 180,
) -> str:  # fmt: skip
    """Inline SVG line chart; x is time (the report's range, so charts line up), y starts at 0."""
    points = [p for series in lines.values() for p in series]
    if not points:
        return f'<figure><figcaption>{html.escape(title)}</figcaption><p class="muted">no data in this range</p></figure>'
    left, right, top, bottom = 44, 8, 8, 22
    x0, x1 = x_range or (min(p[0] for p in points), max(p[0] for p in points))
    y1 = max([p[1] for p in points] + [v for _, v in thresholds]) or 1.0
    y1 *= 1.08
    span = (x1 - x0) or 1.0

    def sx(x: float) -> float:
        return left + (x - x0) / span * (width - left - right)

    def sy(y: float) -> float:
        return top + (1 - y / y1) * (height - top - bottom)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="100%" role="img" aria-label="{html.escape(title)}">',
        f'<line class="axis" x1="{left}" y1="{sy(0):.1f}" x2="{width - right}" y2="{sy(0):.1f}"/>',
        f'<line class="axis" x1="{left}" y1="{top}" x2="{left}" y2="{sy(0):.1f}"/>',
        f'<text x="{left - 4}" y="{top + 8}" text-anchor="end">{_fmt_axis(y1)}</text>',
        f'<text x="{left - 4}" y="{sy(0):.1f}" text-anchor="end">0</text>',
        f'<text x="{left}" y="{height - 6}">{iso_utc(x0)[11:16]}</text>',
        f'<text x="{width - right}" y="{height - 6}" text-anchor="end">{iso_utc(x1)[11:16]} UTC</text>',
    ]
    for label, value in thresholds:
        colour = "#b91c1c" if label == "critical" else "#d97706"
        parts.append(f'<line x1="{left}" y1="{sy(value):.1f}" x2="{width - right}" y2="{sy(value):.1f}" stroke="{colour}" stroke-dasharray="4 3" stroke-width="1"/>')
        parts.append(f'<text x="{width - right}" y="{sy(value) - 2:.1f}" text-anchor="end">{label} {_fmt_axis(value)}</text>')
    for index, (name, series) in enumerate(lines.items()):
        colour = _PALETTE[index % len(_PALETTE)]
        if len(series) == 1:
            x, y = series[0]
            parts.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.5" fill="{colour}"/>')
        else:
            coords = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in series)
            parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{coords}"><title>{html.escape(name)}</title></polyline>')
    parts.append("</svg>")
    legend = ""
    if len(lines) > 1:
        legend = '<div class="muted">' + " ".join(
            f'<span style="color:{_PALETTE[i % len(_PALETTE)]}">&#9632;</span> {html.escape(name)}' for i, name in enumerate(lines)
        ) + "</div>"  # fmt: skip
    return f"<figure><figcaption>{html.escape(title)}</figcaption>{''.join(parts)}{legend}</figure>"


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _epoch_or_none(iso: str | None) -> float | None:
    return _epoch(iso) if iso is not None else None


def _html_table(header: list[str], rows: list[list[str]], numeric: Iterable[int] = ()) -> str:
    if not rows:
        return '<p class="muted">none in this range</p>'
    right = set(numeric)
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f'<td{" class=n" if i in right else ""}>{html.escape(cell)}</td>' for i, cell in enumerate(row)) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_NUMERIC = {"Nodes": (3, 4, 5), "Sessions": (7, 8, 9, 10, 11, 12), "Rebalance runs": (4,), "Healing cycles": (3, 4)}


def render_html(report: ReportData, config: Config | None = None) -> str:
    report = _terminal_safe(report)
    detector = (config or Config()).detector
    x_range = (_epoch(report.range.since), _epoch(report.range.until))
    title = "heady session report" + (" (simulated fleet)" if report.simulated else "")
    out = [f"<!DOCTYPE html><!-- heady report{': ' + SIMULATED_NOTICE if report.simulated else ''} -->"]
    out.append('<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">')
    out.append(f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>")
    if report.simulated:
        out.append(f'<div class="simulated" id="simulated">{html.escape(SIMULATED_NOTICE)}</div>')
    out.append("<h1>heady session report</h1>")
    out.append(f'<p class="muted">{html.escape(report.range.since)} to {html.escape(report.range.until)} (UTC), generated {html.escape(report.generated_at)}</p>')
    audit_class = "ok" if report.audit.verified else "bad"
    out.append('<div class="cards">')
    out.append(f'<div class="card" id="total-cost">total cost<b>{_usd(report.costs.total_usd)}</b></div>')
    out.append(f'<div class="card">sessions<b>{len(report.sessions)}</b></div>')
    out.append(f'<div class="card">nodes<b>{len({n.id for n in report.nodes})}</b></div>')
    out.append(f'<div class="card">rebalance runs<b>{len(report.rebalances)}</b></div>')
    out.append(f'<div class="card">audit<b class="{audit_class}">{"verified" if report.audit.verified else "FAILED"}</b></div>')
    out.append("</div>")
    if report.costs.unknown_models:
        out.append(f'<p class="bad">Unpriced models (counted at $0): {html.escape(", ".join(report.costs.unknown_models))}</p>')

    out.append('<h2 id="charts">Charts</h2><div class="charts">')
    for name in METRICS:
        levels = getattr(detector, name)
        out.append(svg_line_chart({name: report.series.equilibrium.get(name, [])}, title=name.replace("_", " "), thresholds=(("threshold", levels.threshold), ("critical", levels.critical)), x_range=x_range))
    out.append(svg_line_chart(report.series.node_load, title="node load (load1 per core)", x_range=x_range))
    out.append(svg_line_chart({"cumulative cost": report.series.cost}, title="cost over time (cumulative USD)", x_range=x_range))
    out.append("</div>")

    for section, header, rows in _tables(report):
        anchor = section.lower().replace(" ", "-")
        out.append(f'<h2 id="{anchor}">{html.escape(section)}</h2>')
        out.append(_html_table(header, rows, _NUMERIC.get(section, (1,) if section.startswith("Cost by") else ())))

    out.append('<h2 id="audit">Audit</h2>')
    anchored = (f"Anchor <code>{report.audit.anchor_count}:{html.escape(report.audit.anchor_hash)}</code> at {html.escape(report.audit.anchored_at or '?')}. "
                if report.audit.anchor_hash else "No anchor. ")  # fmt: skip
    out.append(f'<p>{report.audit.entries} entries. {anchored}Head <code>{html.escape(report.audit.head)}</code>: <span class="{audit_class}">{"verified" if report.audit.verified else "VERIFICATION FAILED"}</span> <span class="muted">({html.escape(report.audit.message)})</span></p>')
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def render(report: ReportData, fmt: Format, config: Config | None = None) -> str:
    if fmt == "json":
        return render_json(report)
    if fmt == "md":
        return render_markdown(report)
    return render_html(report, config)


# --- the one call the UI and the CLI make -----------------------------------------------------------


def default_filename(fmt: Format, now: float) -> str:
    stamp = datetime.fromtimestamp(now, tz=timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"heady-report-{stamp}.{fmt}"


def write_atomically(path: Path, text: str) -> None:
    """Write beside the target then rename, so a failed export never leaves half a report."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ReportError(f"cannot write {path}: {exc.strerror or exc}") from None


async def export_report(
    store: Store, config: Config, paths: Paths, *, since: float, until: float, now: float, fmt: Format,
    output: Path | None = None, simulated: bool = False, ask_providers: bool = False,
) -> Path:  # fmt: skip
    """Gather and write one report; returns where it went (default: the data dir's reports/ folder)."""
    if fmt not in FORMATS:
        raise ReportError(f"unknown report format {fmt!r} (known: {', '.join(FORMATS)})")
    report = await gather_report(store, config, paths, since=since, until=until, now=now, simulated=simulated, ask_providers=ask_providers)
    if output is None:
        folder = paths.data_dir / "reports"
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ReportError(f"cannot create {folder}: {exc.strerror}") from None
        output = folder / default_filename(fmt, now)
    write_atomically(output, render(report, fmt, config))
    return output


def parse_time(text: str, now: float, *, option: str) -> float:
    """'24h', '90m', '7d', '3600' (seconds ago) or an ISO 8601 time (naive = UTC) -> epoch seconds."""
    value = text.strip()
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    number, unit = (value[:-1], value[-1:].lower()) if value[-1:].lower() in units else (value, "s")
    try:
        ago = float(number) * units[unit]
    except ValueError:
        pass
    else:
        if not math.isfinite(ago) or ago < 0:
            raise ReportError(f"{option}: {text!r} must be a positive duration or an ISO 8601 time")
        return now - ago
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ReportError(f"{option}: not a duration or an ISO 8601 time: {text!r} (e.g. 24h, 7d, 2026-11-20T08:00Z)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    stamp = moment.timestamp()
    if not math.isfinite(stamp):
        raise ReportError(f"{option}: {text!r} is not a usable time")
    return stamp
