"""Rebalancer: the plan for a critical equilibrium, its caps, and the bounded run that applies it.

The planner reads a snapshot of the fleet (NodeView) and the detector's values and returns a
RebalancePlan; the run hands out one step per tick and decides when to stop. Applying steps (agent
commands), journalling applied changes and reverting them is the brain's job; this module only decides.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from heady_tui.config import DetectorConfig, RebalanceConfig

PRIORITIES = ("critical", "high", "medium")
BYTES_PER_MB = 1024 * 1024
# A node is "failing" (isolated by a critical plan) at this error rate over its recent calls.
FAILING_ERROR_RATE = 0.5
# Background sessions on a hot node are reniced to this value (lowest useful priority short of 19).
BACKGROUND_NICE = 10


@dataclass(frozen=True)
class SessionView:
    id: str
    state: str
    managed: str | None
    nice: int | None
    priority: str = "normal"  # the session's class in the ledger: a high one is never reniced


@dataclass(frozen=True)
class NodeView:
    node: str
    online: bool
    cpu_percent: float
    mem_available_mb: float
    utilisation: float  # load1 / cores
    queue_depth: int
    error_rate: float | None  # over the node's recent calls, None without calls
    drained: bool = False
    running_managed: int = 0  # managed sessions running now (its concurrency while work is queued)
    sessions: tuple[SessionView, ...] = ()
    metrics_only: bool = False  # read from Prometheus: it takes no commands, so it receives no work


@dataclass(frozen=True)
class Caps:
    max_cpu_percent: float
    max_memory_mb: float
    max_duration_s: float
    max_moves_per_step: int

    @classmethod
    def from_config(cls, cfg: RebalanceConfig) -> "Caps":
        return cls(cfg.max_cpu_percent, cfg.max_memory_mb, cfg.max_duration_s, cfg.max_moves_per_step)

    def tightest(self, other: dict[str, Any] | None) -> "Caps":
        """These caps narrowed by a grant's caps (a grant can only restrict a run further)."""
        if not other:
            return self
        return Caps(
            min(self.max_cpu_percent, float(other.get("max_cpu_percent", self.max_cpu_percent))),
            max(self.max_memory_mb, float(other.get("max_memory_mb", self.max_memory_mb))),
            min(self.max_duration_s, float(other.get("max_duration_s", self.max_duration_s))),
            min(self.max_moves_per_step, int(other.get("max_moves_per_step", self.max_moves_per_step))),
        )


@dataclass(frozen=True)
class PlannedAction:
    """One step of a plan. `kind` is move | drain | concurrency | renice | pause."""

    kind: str
    node: str  # the node the command goes to (the source node for a move)
    action: str  # the agent command
    target: str | None = None  # session id for session.* actions
    to_node: str | None = None  # a move's destination
    count: int = 0  # items for a move
    value: int | None = None  # concurrency or nice value
    note: str = ""


@dataclass(frozen=True)
class RebalancePlan:
    priority: str  # critical | high | medium
    actions: tuple[PlannedAction, ...]
    caps: Caps
    estimated_duration_s: float
    breaches: dict[str, float]
    excluded: dict[str, str] = field(default_factory=dict)  # node -> why it may not receive work

    @property
    def targets(self) -> list[str]:
        return sorted({a.node for a in self.actions} | {a.to_node for a in self.actions if a.to_node})

    @property
    def fingerprint(self) -> str:
        """What makes two plans materially the same: priority, action kinds and their nodes/targets, caps.

        Item counts are left out: a queue that grew by ten items is the same plan.
        """
        shape = {
            "priority": self.priority,
            "actions": sorted({(a.kind, a.node, a.target or "", a.to_node or "") for a in self.actions}),
            "caps": asdict(self.caps),
        }
        return hashlib.sha256(json.dumps(shape, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        return {
            "priority": self.priority,
            "actions": [asdict(a) for a in self.actions],
            "targets": self.targets,
            "caps": asdict(self.caps),
            "estimated_duration_s": self.estimated_duration_s,
            "breaches": dict(self.breaches),
            "excluded": dict(self.excluded),
            "fingerprint": self.fingerprint,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "RebalancePlan":
        """The plan a stored consent request showed: what runs after an allow is exactly that."""
        return cls(
            priority=raw["priority"],
            actions=tuple(PlannedAction(**a) for a in raw["actions"]),
            caps=Caps(**raw["caps"]),
            estimated_duration_s=float(raw["estimated_duration_s"]),
            breaches={k: float(v) for k, v in raw.get("breaches", {}).items()},
            excluded=dict(raw.get("excluded", {})),
        )


def priority_of(values: dict[str, float | None], detector: DetectorConfig, cfg: RebalanceConfig) -> str:
    """DESIGN.md: critical when queue > 1000 or errors > 10 %; high when variance > 0.5 or P95 > 5000 ms."""
    queue = values.get("task_queue_depth") or 0.0
    errors = values.get("error_rate") or 0.0
    if queue > detector.task_queue_depth.critical or errors > detector.error_rate.critical:
        return "critical"
    if (values.get("node_load_variance") or 0.0) > cfg.high_variance or (values.get("response_time_p95") or 0.0) > cfg.high_p95_ms:
        return "high"
    return "medium"


def may_receive(node: NodeView, caps: Caps) -> str | None:
    """Why a node may not receive work, or None when it may.

    Queued items use no CPU or memory until they start, so "would exceed" is judged on the node's
    latest sample: a node already at the CPU cap or below the free-memory floor gets nothing.
    """
    if not node.online:
        return "offline"
    if node.metrics_only:
        return "metrics-only"
    if node.drained:
        return "drained"
    if node.error_rate is not None and node.error_rate >= FAILING_ERROR_RATE:
        return "failing"
    if node.cpu_percent >= caps.max_cpu_percent:
        return f"cpu {node.cpu_percent:.0f}% >= {caps.max_cpu_percent:.0f}%"
    if node.mem_available_mb <= caps.max_memory_mb:
        return f"free memory {node.mem_available_mb:.0f} MB <= {caps.max_memory_mb:.0f} MB"
    return None


def plan_moves(nodes: list[NodeView], caps: Caps, *, sources: list[str] | None = None, fraction: float = 1.0) -> list[PlannedAction]:
    """Queue moves from nodes above the mean to eligible nodes below it, at most max_moves_per_step each.

    `fraction` < 1 plans gradual moves (medium priority moves half the excess).
    """
    eligible = [n for n in nodes if may_receive(n, caps) is None]
    pool = [n for n in nodes if n.online] if sources is None else [n for n in nodes if n.node in sources]
    group = {n.node: n for n in pool + eligible}
    if not eligible or not group:
        return []
    mean = sum(n.queue_depth for n in group.values()) / len(group)
    if sources is not None:  # isolated sources are emptied entirely onto the eligible nodes
        mean_targets = (sum(n.queue_depth for n in eligible) + sum(n.queue_depth for n in pool)) / len(eligible)
    else:
        mean_targets = mean
    excess = {n.node: int((n.queue_depth - (0 if sources is not None else mean)) * fraction) for n in pool}
    room = {n.node: int(max(0.0, mean_targets - n.queue_depth) * fraction) for n in eligible}
    moves: list[PlannedAction] = []
    for src, extra in sorted(excess.items(), key=lambda kv: -kv[1]):
        if extra <= 0:
            break  # the rest have no excess either: no sort of the targets per node at or below the mean
        for dst in sorted(room, key=lambda d: -room[d]):
            if extra <= 0:
                break
            if dst == src or room[dst] <= 0:
                continue
            count = min(extra, room[dst], caps.max_moves_per_step)
            moves.append(PlannedAction("move", src, "queue.move", to_node=dst, count=count, note=f"move {count} queued items {src} -> {dst}"))
            extra -= count
            room[dst] -= count
    return moves


def build_plan(
    nodes: list[NodeView], values: dict[str, float | None], detector: DetectorConfig, cfg: RebalanceConfig, caps: Caps | None = None
) -> RebalancePlan:
    caps = caps or Caps.from_config(cfg)
    priority = priority_of(values, detector, cfg)
    excluded = {n.node: why for n in nodes if (why := may_receive(n, caps)) is not None}
    actions: list[PlannedAction] = []
    if priority == "critical":
        failing = [n for n in nodes if n.online and not n.drained and n.error_rate is not None and n.error_rate >= FAILING_ERROR_RATE]
        healthy = [n for n in nodes if may_receive(n, caps) is None]
        for n in failing:
            if healthy:  # never drain the whole fleet
                actions.append(PlannedAction("drain", n.node, "node.drain", note=f"isolate {n.node}: error rate {n.error_rate:.0%}"))
        actions += plan_moves(nodes, caps, sources=[n.node for n in failing]) if failing else []
        actions += plan_moves([n for n in nodes if n not in failing], caps)
        errors = values.get("error_rate") or 0.0
        for n in healthy:
            if errors > detector.error_rate.threshold:
                # Failing calls (a provider rate-limiting or overloaded): more at once adds to the load
                # that fails them, so healthy nodes back off by one instead of taking more.
                if n.running_managed > 1:
                    value = n.running_managed - 1
                    actions.append(PlannedAction("concurrency", n.node, "node.set_concurrency", value=value,
                                                 note=f"lower concurrency on {n.node} to {value}: error rate {errors:.0%}"))
            elif n.running_managed > 0:
                value = n.running_managed + 1
                actions.append(PlannedAction("concurrency", n.node, "node.set_concurrency", value=value, note=f"raise concurrency on {n.node} to {value}"))
    elif priority == "high":
        actions += plan_moves(nodes, caps)
        mean_util = sum(n.utilisation for n in nodes if n.online) / max(1, sum(1 for n in nodes if n.online))
        for n in nodes:
            if not n.online or n.utilisation <= mean_util or n.cpu_percent < caps.max_cpu_percent:
                continue
            for s in n.sessions:
                if s.state == "running" and s.managed is None and s.priority != "high" and (s.nice or 0) < BACKGROUND_NICE:
                    actions.append(PlannedAction("renice", n.node, "session.renice", target=s.id, value=BACKGROUND_NICE, note=f"renice background session {s.id} on hot node {n.node}"))
    else:
        actions += plan_moves(nodes, caps, fraction=0.5)
    return RebalancePlan(
        priority=priority,
        actions=tuple(actions),
        caps=caps,
        estimated_duration_s=min(caps.max_duration_s, len(actions) * cfg.step_interval_s),
        breaches={k: v for k, v in values.items() if v is not None},
        excluded=excluded,
    )


def revert_of(action: str, target: str | None, args: dict[str, Any], detail: dict[str, Any], before: PlannedAction) -> tuple[str | None, dict[str, Any]]:
    """The command that undoes an applied action, from what the agent reported back."""
    if action == "node.drain":
        return "node.undrain", {}
    if action == "session.pause":
        return "session.resume", {}
    if action == "node.set_concurrency":
        previous = detail.get("previous")
        if isinstance(previous, int):
            return "node.set_concurrency", {"value": previous}
        if isinstance(previous, dict) and previous:
            # one value per managed name; restored one by one (the brain sends each)
            return "node.set_concurrency", {"per_managed": {k: int(v) for k, v in previous.items()}}
        if before.value is not None:
            return "node.set_concurrency", {"value": max(0, before.value - 1)}
    if action == "session.renice":
        previous = detail.get("previous")
        if isinstance(previous, int):
            return "session.renice", {"nice": previous}
    return None, {}


@dataclass
class RebalanceStatus:
    run_id: str
    state: str  # running | stopped
    priority: str
    grant_id: str | None
    started_at: float
    stopped_at: float | None
    reason_stopped: str | None  # balanced | max_duration | stopped | crashed | revoked
    steps_done: int
    steps_total: int
    balanced_streak: int
    restored: bool | None  # balance returned before the run stopped
    time_to_restore_s: float | None
    reverted: int
    plan: RebalancePlan
    step_results: list[dict[str, Any]] = field(default_factory=list)

    @property
    def watching_for_balance(self) -> bool:
        """Every step is done and the run still goes: it waits for balance (or its time cap)."""
        return self.state == "running" and self.steps_done >= self.steps_total


class RebalanceRun:
    """The bounded run: one step per tick, stops on balance or at max_duration_s."""

    def __init__(self, run_id: str, plan: RebalancePlan, grant_id: str | None, started_at: float, cfg: RebalanceConfig) -> None:
        self.cfg = cfg
        self.status = RebalanceStatus(
            run_id=run_id,
            state="running",
            priority=plan.priority,
            grant_id=grant_id,
            started_at=started_at,
            stopped_at=None,
            reason_stopped=None,
            steps_done=0,
            steps_total=len(plan.actions),
            balanced_streak=0,
            restored=None,
            time_to_restore_s=None,
            reverted=0,
            plan=plan,
        )
        self._last_step_at: float | None = None

    @property
    def running(self) -> bool:
        return self.status.state == "running"

    def observe(self, level: str, now: float) -> str | None:
        """Feed the detector's level after a tick; returns the reason to stop, or None to go on."""
        st = self.status
        st.balanced_streak = st.balanced_streak + 1 if level == "balanced" else 0
        if self.cfg.auto_shutdown_on_balance and st.balanced_streak >= self.cfg.balanced_checks:
            return "balanced"
        if now - st.started_at >= st.plan.caps.max_duration_s:
            return "max_duration"
        return None

    def next_step(self, now: float) -> PlannedAction | None:
        st = self.status
        if not self.running or st.steps_done >= len(st.plan.actions):
            return None
        if self._last_step_at is not None and now - self._last_step_at < self.cfg.step_interval_s:
            return None
        self._last_step_at = now
        step = st.plan.actions[st.steps_done]
        st.steps_done += 1
        return step

    def stop(self, reason: str, now: float, *, restored: bool, reverted: int) -> RebalanceStatus:
        st = self.status
        st.state = "stopped"
        st.stopped_at = now
        st.reason_stopped = reason
        st.restored = restored
        st.time_to_restore_s = (now - st.started_at) if restored else None
        st.reverted = reverted
        return st
