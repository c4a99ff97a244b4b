"""Equilibrium detector: the four fleet metrics of DESIGN.md, their levels, and no flapping.

A metric breaches a level when its value is above the level's entry value (threshold for degraded,
critical for critical). A breach is pending until it has held `for_seconds`; a pending breach that
clears is dropped. A firing level is left only when the value has stayed at or below its exit value
(entry x exit_ratio) for `clear_seconds` and `keep_firing_seconds` have passed since its last breach.
Each metric's recorded level is its firing level, or `unknown` while it is balanced without data to
judge; a change of that level is a `MetricLevelChange` (the fleet's own is a `LevelChange`).
Pure: the caller passes samples and the time; nothing here reads a clock or does I/O.
"""

from __future__ import annotations

import heapq
import math
import statistics
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

from heady_tui.config import DetectorConfig

METRICS = ("node_load_variance", "task_queue_depth", "error_rate", "response_time_p95")
LEVELS = ("balanced", "degraded", "critical")  # ordered by severity; "unknown" stands apart
NODE_METRICS = ("node_load_variance", "task_queue_depth")  # judged from node samples; the others from calls
_RANK = {"balanced": 0, "degraded": 1, "critical": 2}
# Below this mean utilisation the fleet is idle and its spread means nothing (DESIGN.md).
IDLE_MEAN_UTILISATION = 0.10
# A node is unknown after this many evaluations in a row without a new sample (DESIGN.md).
MISSING_EVALUATIONS_UNKNOWN = 2
MISSED_STEPS_DUE = 2  # a node sampled every N s is due a new sample once its newest is this many steps old
HISTORY_SAMPLES = 300  # per metric, for sparklines and the trend


@dataclass(frozen=True)
class NodeSample:
    """What the detector reads of one node at an evaluation."""

    node: str
    online: bool
    load1: float | None  # None: no metrics received yet
    cpu_count: int
    queue_depth: int
    last_seen: float | None  # ts of the newest metrics sample
    # Seconds between the node's samples when it is sampled less often than evaluated (a metrics-only
    # node's Prometheus step); 0: a new sample is expected at every evaluation.
    sample_interval_s: float = 0.0

    @property
    def utilisation(self) -> float | None:
        """load1 per core: the load signal (node load variance here; loaded nodes for priority classes)."""
        return None if self.load1 is None else self.load1 / max(1, self.cpu_count)


@dataclass(frozen=True)
class CallSample:
    ts: float
    latency_ms: float | None
    ok: bool


@dataclass(frozen=True)
class MetricReading:
    name: str
    value: float | None  # None: not enough data (error rate / P95 below min_calls)
    level: str  # balanced | degraded | critical (the firing level)
    state: str  # ok | pending | firing
    pending_level: str | None  # the level a pending breach would enter
    pending_since: float | None
    threshold: float
    critical: float
    trend_per_min: float | None  # slope of the value per minute over detector.trend_window_s
    seconds_to_critical: float | None  # at the current trend; 0 when already above critical
    history: list[tuple[float, float]]  # (ts, value), oldest first, for sparklines


@dataclass(frozen=True)
class MetricLevelChange:
    """One metric's recorded level changed: its firing level, or unknown while balanced without data."""

    at: float
    metric: str
    level: str  # balanced | degraded | critical | unknown
    previous: str
    value: float | None  # the metric's value at the change


@dataclass(frozen=True)
class EquilibriumReading:
    at: float
    level: str  # balanced | degraded | critical | unknown
    metrics: dict[str, MetricReading]
    unknown_nodes: list[str]
    online_nodes: int
    calls_in_window: int
    metric_changes: tuple[MetricLevelChange, ...] = ()  # the per-metric level changes this evaluation made

    def values(self) -> dict[str, float | None]:
        return {name: m.value for name, m in self.metrics.items()}

    def breaches(self) -> dict[str, float]:
        """Metrics whose firing level is above balanced, with their values."""
        return {n: m.value for n, m in self.metrics.items() if m.level != "balanced" and m.value is not None}


@dataclass(frozen=True)
class LevelChange:
    at: float
    level: str
    previous: str
    metrics: dict[str, float | None]


@dataclass
class _MetricState:
    level: str = "balanced"
    pending_since: dict[str, float] = field(default_factory=dict)  # entry level -> first breach ts
    last_breach: float | None = None  # last time the value was above the firing level's entry
    below_exit_since: float | None = None
    recorded: str = "unknown"  # the level last reported as a MetricLevelChange
    history: deque[tuple[float, float]] = field(default_factory=lambda: deque(maxlen=HISTORY_SAMPLES))


@dataclass(frozen=True)
class WindowStats:
    """The llm.calls of one window (now - window_s, now], as the detector and the rebalancer read them."""

    calls: int
    failed: int
    latencies: int  # calls that reported a latency
    p95_ms: float | None  # nearest-rank P95 of those latencies, None without any
    by_node: dict[str, tuple[int, int]]  # node -> (calls, failed)
    by_provider: dict[str, tuple[int, int]]  # provider -> (calls, failed)


class _Bucket:
    """The calls of one second: the calls themselves (for a window edge that cuts the second) and
    their totals and latencies, sorted newest-largest-first when read (for every second wholly inside)."""

    __slots__ = ("calls", "failed", "latencies", "unsorted", "by_node", "by_provider")

    def __init__(self) -> None:
        self.calls: list[tuple[float, float | None, bool, str, str]] = []
        self.failed = 0
        self.latencies: list[float] = []  # descending once sorted
        self.unsorted = False
        self.by_node: dict[str, list[int]] = {}
        self.by_provider: dict[str, list[int]] = {}


def _count(counts: dict[str, list[int]], key: str, ok: bool) -> None:
    c = counts.get(key)
    if c is None:
        c = counts[key] = [0, 0]
    c[0] += 1
    if not ok:
        c[1] += 1


class CallWindow:
    """Recent llm.calls in one-second buckets, fed call by call as frames arrive.

    Reading a window costs one look per second of it plus, for the P95, a walk down the top 5 % of
    its latencies (a merge of sorted buckets), instead of a rescan and sort of every call in it at
    each evaluation. Calls that arrive late (a replay) land in their own second. Buckets older than
    `keep_s` are dropped as windows are read.
    """

    def __init__(self, keep_s: float = math.inf) -> None:
        self.keep_s = keep_s
        self._buckets: dict[int, _Bucket] = {}

    @classmethod
    def of(cls, calls: Iterable[CallSample]) -> "CallWindow":
        window = cls()
        for c in calls:
            window.add(c.ts, c.latency_ms, c.ok)
        return window

    def add(self, ts: float, latency_ms: float | None, ok: bool, node: str = "", provider: str = "") -> None:
        key = math.floor(ts)
        b = self._buckets.get(key)
        if b is None:
            b = self._buckets[key] = _Bucket()
        b.calls.append((ts, latency_ms, ok, node, provider))
        if latency_ms is not None:
            b.latencies.append(latency_ms)
            b.unsorted = True
        # Inline rather than _count(): this runs for every call the fleet makes.
        n = b.by_node.get(node)
        if n is None:
            n = b.by_node[node] = [0, 0]
        p = b.by_provider.get(provider)
        if p is None:
            p = b.by_provider[provider] = [0, 0]
        n[0] += 1
        p[0] += 1
        if not ok:
            b.failed += 1
            n[1] += 1
            p[1] += 1

    def stats(self, now: float, window_s: float) -> WindowStats:
        lo, hi = now - window_s, now
        if self.keep_s < math.inf:
            horizon = math.floor(now - max(self.keep_s, window_s))
            for key in [k for k in self._buckets if k < horizon]:
                del self._buckets[key]
        calls = failed = 0
        lists: list[list[float]] = []
        by_node: dict[str, list[int]] = {}
        by_provider: dict[str, list[int]] = {}
        buckets = self._buckets
        for key in range(math.floor(lo), math.floor(hi) + 1):
            b = buckets.get(key)
            if b is None:
                continue
            if key > lo and key + 1 <= hi:  # the whole second is inside (lo, hi]
                calls += len(b.calls)
                failed += b.failed
                if b.unsorted:
                    b.latencies.sort(reverse=True)
                    b.unsorted = False
                if b.latencies:
                    lists.append(b.latencies)
                for into, counts in ((by_node, b.by_node), (by_provider, b.by_provider)):
                    for k, (n, f) in counts.items():
                        c = into.setdefault(k, [0, 0])
                        c[0] += n
                        c[1] += f
                continue
            edge: list[float] = []
            for ts, latency, ok, node, provider in b.calls:
                if lo < ts <= hi:
                    calls += 1
                    failed += 0 if ok else 1
                    if latency is not None:
                        edge.append(latency)
                    _count(by_node, node, ok)
                    _count(by_provider, provider, ok)
            if edge:
                edge.sort(reverse=True)
                lists.append(edge)
        n = sum(len(x) for x in lists)
        p95 = None
        if n:
            rank = max(1, math.ceil(95 / 100 * n))  # nearest rank, ascending; = the (n - rank)th from the top
            p95 = float(next(islice(heapq.merge(*lists, reverse=True), n - rank, None)))
        return WindowStats(calls, failed, n, p95, {k: (c[0], c[1]) for k, c in by_node.items()},
                           {k: (c[0], c[1]) for k, c in by_provider.items()})


def compute_metrics(
    nodes: Iterable[NodeSample], calls: Sequence[CallSample] | WindowStats, *, now: float, window_s: float, min_calls: int
) -> dict[str, float | None]:
    """The four metric values exactly as DESIGN.md defines them.

    `calls` is either the calls themselves or the WindowStats of (now - window_s, now] already read
    from a CallWindow (what the brain passes, so an evaluation never rescans every call).
    """
    stats = calls if isinstance(calls, WindowStats) else CallWindow.of(calls).stats(now, window_s)
    online = [n for n in nodes if n.online and n.load1 is not None]
    utils = [n.utilisation for n in online if n.utilisation is not None]
    if len(utils) < 2:
        variance = 0.0
    else:
        mean = statistics.fmean(utils)
        variance = 0.0 if mean < IDLE_MEAN_UTILISATION else statistics.pstdev(utils) / mean
    queue = float(sum(n.queue_depth for n in online))
    error_rate = stats.failed / stats.calls if stats.calls >= min_calls else None
    p95 = stats.p95_ms if stats.latencies >= min_calls else None
    return {
        "node_load_variance": variance,
        "task_queue_depth": queue,
        "error_rate": error_rate,
        "response_time_p95": p95,
    }


def slope_per_minute(points: Sequence[tuple[float, float]]) -> float | None:
    """Least-squares slope of (ts, value) points, per minute; None with fewer than two times."""
    if len(points) < 2:
        return None
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return None
    return 60.0 * sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx


class EquilibriumDetector:
    def __init__(self, config: DetectorConfig) -> None:
        self.config = config
        self._metrics = {name: _MetricState() for name in METRICS}
        self._missing: dict[str, int] = {}
        self._last_seen: dict[str, float | None] = {}
        self.level = "unknown"
        self.last: EquilibriumReading | None = None

    def levels_of(self, name: str) -> tuple[float, float]:
        levels = getattr(self.config, name)
        return levels.threshold, levels.critical

    def evaluate(
        self, now: float, nodes: Sequence[NodeSample], calls: Sequence[CallSample] | WindowStats
    ) -> tuple[EquilibriumReading, LevelChange | None]:
        """`calls`: the calls, or their WindowStats over (now - window_s, now] (see compute_metrics)."""
        stats = calls if isinstance(calls, WindowStats) else CallWindow.of(calls).stats(now, self.config.window_s)
        values = compute_metrics(nodes, stats, now=now, window_s=self.config.window_s, min_calls=self.config.min_calls)
        readings = {name: self._step(name, values[name], now) for name in METRICS}
        unknown = self._unknown_nodes(nodes, now)
        nodes_unjudged = bool(unknown) or not any(n.online and n.load1 is not None for n in nodes)
        worst = max((r.level for r in readings.values()), key=_RANK.__getitem__)
        level = "unknown" if worst == "balanced" and nodes_unjudged else worst
        metric_changes = []
        for name, r in readings.items():
            unjudged = nodes_unjudged if name in NODE_METRICS else r.value is None
            recorded = "unknown" if r.level == "balanced" and unjudged else r.level
            st = self._metrics[name]
            if recorded != st.recorded:
                metric_changes.append(MetricLevelChange(at=now, metric=name, level=recorded, previous=st.recorded, value=r.value))
                st.recorded = recorded
        reading = EquilibriumReading(
            at=now,
            level=level,
            metrics=readings,
            unknown_nodes=unknown,
            online_nodes=sum(1 for n in nodes if n.online),
            calls_in_window=stats.calls,
            metric_changes=tuple(metric_changes),
        )
        change = None
        if level != self.level:
            change = LevelChange(at=now, level=level, previous=self.level, metrics=dict(values))
            self.level = level
        self.last = reading
        return reading, change

    def _unknown_nodes(self, nodes: Sequence[NodeSample], now: float) -> list[str]:
        unknown = []
        for n in nodes:
            fresh = n.last_seen is not None and n.last_seen != self._last_seen.get(n.node)
            # A sample of step t arrives up to one step late (when the next poll reads it), so a node
            # sampled every interval misses an evaluation only once its newest sample is two steps old.
            due = n.last_seen is None or now - n.last_seen > MISSED_STEPS_DUE * n.sample_interval_s
            self._missing[n.node] = 0 if fresh or not due else self._missing.get(n.node, 0) + 1
            self._last_seen[n.node] = n.last_seen
            if self._missing[n.node] >= MISSING_EVALUATIONS_UNKNOWN:
                unknown.append(n.node)
        for gone in set(self._missing) - {n.node for n in nodes}:
            del self._missing[gone]
            self._last_seen.pop(gone, None)
        return sorted(unknown)

    def _step(self, name: str, value: float | None, now: float) -> MetricReading:
        cfg = self.config
        threshold, critical = self.levels_of(name)
        entry = {"degraded": threshold, "critical": critical}
        st = self._metrics[name]
        v = value if value is not None else 0.0
        if value is not None:
            st.history.append((now, value))

        for lvl, bound in entry.items():
            if v > bound:
                st.pending_since.setdefault(lvl, now)
            else:
                st.pending_since.pop(lvl, None)

        # Enter (or climb to) the highest level whose breach has held for_seconds.
        for lvl in ("critical", "degraded"):
            since = st.pending_since.get(lvl)
            if since is not None and now - since >= cfg.for_seconds and _RANK[lvl] > _RANK[st.level]:
                st.level = lvl
                st.last_breach = now
                st.below_exit_since = None
                break

        # Leave the firing level only past its lower exit value, after clear and keep-firing times.
        while st.level != "balanced":
            bound = entry[st.level]
            if v > bound:
                st.last_breach = now
            if v > bound * cfg.exit_ratio:
                st.below_exit_since = None
                break
            if st.below_exit_since is None:
                st.below_exit_since = now
            kept = st.last_breach is not None and now - st.last_breach < cfg.keep_firing_seconds
            if kept or now - st.below_exit_since < cfg.clear_seconds:
                break
            st.level = "degraded" if st.level == "critical" else "balanced"
            if st.level == "degraded":
                # Stepping down from critical: degraded counts as already held since the same moment.
                st.last_breach = now if v > threshold else st.last_breach

        pending = [lvl for lvl in ("critical", "degraded") if lvl in st.pending_since and _RANK[lvl] > _RANK[st.level]]
        pending_level = pending[0] if pending else None
        if pending_level is not None:
            state = "pending"
        elif st.level != "balanced":
            state = "firing"
        else:
            state = "ok"
        window = [p for p in st.history if p[0] >= now - cfg.trend_window_s]
        trend = slope_per_minute(window)
        if value is not None and value > critical:
            to_critical: float | None = 0.0
        elif value is not None and trend is not None and trend > 0:
            to_critical = (critical - value) / trend * 60.0
        else:
            to_critical = None
        return MetricReading(
            name=name,
            value=value,
            level=st.level,
            state=state,
            pending_level=pending_level,
            pending_since=st.pending_since.get(pending_level) if pending_level else None,
            threshold=threshold,
            critical=critical,
            trend_per_min=trend,
            seconds_to_critical=to_critical,
            history=list(st.history),
        )

    # --- persistence: a console restart resumes pending and firing timers -----------------

    def export_state(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "metrics": {
                name: {
                    "level": st.level,
                    "pending_since": dict(st.pending_since),
                    "last_breach": st.last_breach,
                    "below_exit_since": st.below_exit_since,
                    "recorded": st.recorded,
                }
                for name, st in self._metrics.items()
            },
        }

    def import_state(self, state: dict[str, Any]) -> None:
        """Restore exported timers; anything malformed is ignored (the detector starts fresh)."""
        metrics = state.get("metrics") if isinstance(state, dict) else None
        if not isinstance(metrics, dict):
            return
        for name, raw in metrics.items():
            if name not in self._metrics or not isinstance(raw, dict):
                continue
            level = raw.get("level")
            pending = raw.get("pending_since")
            st = self._metrics[name]
            st.level = level if level in _RANK else "balanced"
            st.pending_since = {
                k: float(v) for k, v in (pending or {}).items() if k in ("degraded", "critical") and isinstance(v, (int, float))
            }
            st.last_breach = _float_or_none(raw.get("last_breach"))
            st.below_exit_since = _float_or_none(raw.get("below_exit_since"))
            recorded = raw.get("recorded")
            st.recorded = recorded if recorded in (*LEVELS, "unknown") else "unknown"
        if state.get("level") in (*LEVELS, "unknown"):
            self.level = state["level"]


def _float_or_none(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) else None
