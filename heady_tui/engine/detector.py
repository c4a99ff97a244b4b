"""Equilibrium detector: the four fleet metrics of DESIGN.md, their levels, and no flapping.

A metric breaches a level when its value is above the level's entry value (threshold for degraded,
critical for critical). A breach is pending until it has held `for_seconds`; a pending breach that
clears is dropped. A firing level is left only when the value has stayed at or below its exit value
(entry x exit_ratio) for `clear_seconds` and `keep_firing_seconds` have passed since its last breach.
Pure: the caller passes samples and the time; nothing here reads a clock or does I/O.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from heady_tui.config import DetectorConfig

METRICS = ("node_load_variance", "task_queue_depth", "error_rate", "response_time_p95")
LEVELS = ("balanced", "degraded", "critical")  # ordered by severity; "unknown" stands apart
_RANK = {"balanced": 0, "degraded": 1, "critical": 2}
# Below this mean utilisation the fleet is idle and its spread means nothing (DESIGN.md).
IDLE_MEAN_UTILISATION = 0.10
# A node is unknown after this many evaluations in a row without a new sample (DESIGN.md).
MISSING_EVALUATIONS_UNKNOWN = 2
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
class EquilibriumReading:
    at: float
    level: str  # balanced | degraded | critical | unknown
    metrics: dict[str, MetricReading]
    unknown_nodes: list[str]
    online_nodes: int
    calls_in_window: int

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
    history: deque[tuple[float, float]] = field(default_factory=lambda: deque(maxlen=HISTORY_SAMPLES))


def compute_metrics(
    nodes: Iterable[NodeSample], calls: Sequence[CallSample], *, now: float, window_s: float, min_calls: int
) -> dict[str, float | None]:
    """The four metric values exactly as DESIGN.md defines them."""
    online = [n for n in nodes if n.online and n.load1 is not None]
    utils = [n.load1 / max(1, n.cpu_count) for n in online]  # type: ignore[operator]
    if len(utils) < 2:
        variance = 0.0
    else:
        mean = statistics.fmean(utils)
        variance = 0.0 if mean < IDLE_MEAN_UTILISATION else statistics.pstdev(utils) / mean
    queue = float(sum(n.queue_depth for n in online))
    recent = [c for c in calls if now - window_s < c.ts <= now]
    if len(recent) >= min_calls:
        error_rate: float | None = sum(1 for c in recent if not c.ok) / len(recent)
    else:
        error_rate = None
    latencies = sorted(c.latency_ms for c in recent if c.latency_ms is not None)
    p95 = percentile(latencies, 95) if len(latencies) >= min_calls else None
    return {
        "node_load_variance": variance,
        "task_queue_depth": queue,
        "error_rate": error_rate,
        "response_time_p95": p95,
    }


def percentile(sorted_values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of an ascending, non-empty sequence."""
    rank = max(1, math.ceil(pct / 100 * len(sorted_values)))
    return float(sorted_values[rank - 1])


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

    def evaluate(self, now: float, nodes: Sequence[NodeSample], calls: Sequence[CallSample]) -> tuple[EquilibriumReading, LevelChange | None]:
        values = compute_metrics(nodes, calls, now=now, window_s=self.config.window_s, min_calls=self.config.min_calls)
        readings = {name: self._step(name, values[name], now) for name in METRICS}
        unknown = self._unknown_nodes(nodes)
        worst = max((r.level for r in readings.values()), key=_RANK.__getitem__)
        if worst == "balanced" and (unknown or not any(n.online and n.load1 is not None for n in nodes)):
            level = "unknown"
        else:
            level = worst
        reading = EquilibriumReading(
            at=now,
            level=level,
            metrics=readings,
            unknown_nodes=unknown,
            online_nodes=sum(1 for n in nodes if n.online),
            calls_in_window=sum(1 for c in calls if now - self.config.window_s < c.ts <= now),
        )
        change = None
        if level != self.level:
            change = LevelChange(at=now, level=level, previous=self.level, metrics=dict(values))
            self.level = level
        self.last = reading
        return reading, change

    def _unknown_nodes(self, nodes: Sequence[NodeSample]) -> list[str]:
        unknown = []
        for n in nodes:
            fresh = n.last_seen is not None and n.last_seen != self._last_seen.get(n.node)
            self._missing[n.node] = 0 if fresh else self._missing.get(n.node, 0) + 1
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
        if state.get("level") in (*LEVELS, "unknown"):
            self.level = state["level"]


def _float_or_none(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) else None
